"""IPv6 through sipedge-mediad in network namespaces (A -- R -- B, tests/media/netns.py):
v6<->v6 calls relayed by the userspace relay and by XDP (native and generic) with every
cipher XDP applies, byte-exact against tests/media/reference.py; calls bridging an IPv4 leg
to an IPv6 leg (4-to-6 and 6-to-4 in each, the caller on either family) on the same three
paths; the strict source rule for IPv6 sources in both paths; and the ng `address-family`
contract."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.media import reference
from tests.media.netns import Mediad, Topology, ns_socket, recv_all, sh
from tests.media.test_relay import KEYS, assert_no_leak, ns_mediad, pinned_entries, stream


def mediad6(topo: Topology, tmp: Path, path: str, pin: Path, *extra: str) -> Mediad:
    """mediad in R: IPv4 relay address 10.77.1.1 (ra's, the default), IPv6 fd00:77:1::1."""
    return ns_mediad(topo, tmp, path, pin, "--bind6", topo.ra_ip6, *extra)


def call_af(
    m: Mediad,
    call_id: str,
    a: tuple[Any, ...],
    b: tuple[Any, ...],
    mode: int,
    family_for_b: str,
    family_for_a: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Offer from A (its leg encrypted when mode > 0), answer from B. `family_for_b` is the
    family of the relay address put in the SDP sent to B (the offer's address-family),
    `family_for_a` that of the SDP sent back to A."""
    offer = m.ok(
        {
            "command": "offer",
            "call-id": call_id,
            "from-tag": "ta",
            "address": a[0],
            "port": a[1],
            "address-family": family_for_b,
            "encryption": mode > 0,
            "encryption-mode": mode,
            "encryption-key": KEYS[mode],
        }
    )
    answer = m.ok(
        {
            "command": "answer",
            "call-id": call_id,
            "from-tag": "ta",
            "to-tag": "tb",
            "address": b[0],
            "port": b[1],
            "address-family": family_for_a,
            "encryption": False,
        }
    )
    return offer, answer


def relay_call(
    m: Mediad,
    call_id: str,
    sa: socket.socket,
    sb: socket.socket,
    mode: int,
    families: tuple[str, str],
    count: int,
) -> dict[str, Any]:
    """One call (`families`: for B's SDP, for A's), RTP and RTCP both ways checked byte by
    byte; returns the query answer."""
    offer, answer = call_af(m, call_id, sa.getsockname(), sb.getsockname(), mode, *families)
    relay_a = (answer["address"], answer["port"])  # where A sends
    relay_b = (offer["address"], offer["port"])  # where B sends
    stream(m, sa, sb, relay_a, relay_b, mode, count=count, size=161)
    time.sleep(0.1)
    q = m.ok({"command": "query", "call-id": call_id})
    leg_a, leg_b = q["legs"]
    assert leg_a["latched-address"] == where(sa.getsockname())
    assert (leg_a["relay-family"], leg_b["relay-family"]) == (families[1], families[0])
    assert leg_a["packets"] == count and leg_b["packets"] == count
    assert leg_a["rtcp-packets"] == 1
    return q


def where(addr: tuple[Any, ...]) -> str:
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    assert found, name
    return float(found.group(1))


def assert_checksums(topo: Topology, udp6: tuple[str, ...], ip4: tuple[str, ...] = ()) -> None:
    """Every checksum the relay wrote was right: the receiving stacks (namespaces `udp6`: UDP
    over IPv6; `ip4`: IPv4 headers) counted no checksum error and received datagrams."""
    for ns in udp6:
        snmp6 = sh("ip", "netns", "exec", ns, "cat", "/proc/net/snmp6")
        assert re.search(r"^Udp6InCsumErrors\s+0$", snmp6, re.M), snmp6
        assert re.search(r"^Udp6InDatagrams\s+([1-9]\d*)$", snmp6, re.M), snmp6
    for ns in ip4:
        lines = [
            line.split()
            for line in sh("ip", "netns", "exec", ns, "cat", "/proc/net/snmp").splitlines()
        ]
        ip = dict(zip(lines[0][1:], lines[1][1:], strict=True))
        assert ip["InHdrErrors"] == "0", ip  # a bad header checksum counts here
        assert int(ip["InDelivers"]) > 0, ip


@pytest.mark.root
@pytest.mark.xdp
@pytest.mark.slow
@pytest.mark.parametrize("path", ["xdp-native", "xdp-generic", "userspace"])
def test_ipv6_call_paths(topo: Topology, tmp_path: Path, bpffs: Path, path: str) -> None:
    """A v6<->v6 call: relay address fd00:77:1::1 both ways; XDP relays all but the latching
    packet for none, XOR and RC4 (with the UDP checksum IPv6 requires, or the receiving stack
    would drop the packets); AES128 stays in userspace."""
    pin = bpffs / f"v6-{path}"
    m = mediad6(topo, tmp_path, path, pin).start()
    try:
        assert m.get("/healthz")[1]["path"] == path
        modes = [0, 1, 2, 3]
        for n, mode in enumerate(modes):
            sa = ns_socket(topo.a, (topo.a_ip6, 5000 + 2 * n))
            sb = ns_socket(topo.b, (topo.b_ip6, 6000 + 2 * n))
            call_id = f"v6-{mode}"
            q = relay_call(m, call_id, sa, sb, mode, ("IP6", "IP6"), 60)
            leg_a, leg_b = q["legs"]
            assert leg_a["remote-address"] == topo.a_ip6
            expected = path if path != "userspace" and mode != 3 else "userspace"
            assert q["path"] == expected, q
            if expected.startswith("xdp"):
                assert leg_a["packets-xdp"] >= 55, q
                assert leg_b["packets-xdp"] >= 55, q
            else:
                assert leg_a["packets-xdp"] == 0
            m.ok({"command": "delete", "call-id": call_id})
            sa.close()
            sb.close()
        assert_no_leak(m)
        if path.startswith("xdp"):
            assert pinned_entries(pin) == []
        # every checksum the program wrote was right (the stacks of A and B verify them)
        assert_checksums(topo, (topo.a, topo.b))
    finally:
        m.stop()
    assert m.log().count("Traceback") == 0, m.log()


@pytest.mark.root
@pytest.mark.xdp
@pytest.mark.slow
@pytest.mark.parametrize("caller", ["IP4", "IP6"])
@pytest.mark.parametrize("path", ["xdp-native", "xdp-generic", "userspace"])
def test_ipv4_leg_to_ipv6_leg(
    topo: Topology, tmp_path: Path, bpffs: Path, path: str, caller: str
) -> None:
    """A on one family, B on the other, each given the relay address of its own: every call
    relays 4-to-6 one way and 6-to-4 the other, byte-exact with each cipher. On the XDP paths
    the program rewrites the IP header (bpf_xdp_adjust_head), so all but the latching packets
    are counted as XDP (AES128 stays in userspace); the userspace relay counts only what it
    relayed across families itself."""
    pin = bpffs / f"x-{path}-{caller}"
    m = mediad6(topo, tmp_path, path, pin).start()
    a6 = caller == "IP6"
    callee = "IP4" if a6 else "IP6"
    try:
        userspace = 0
        for n, mode in enumerate((0, 1, 2, 3)):
            sa = ns_socket(topo.a, (topo.a_ip6 if a6 else topo.a_ip, 5100 + 2 * n))
            sb = ns_socket(topo.b, (topo.b_ip if a6 else topo.b_ip6, 6100 + 2 * n))
            call_id = f"x-{mode}"
            q = relay_call(m, call_id, sa, sb, mode, (callee, caller), 40)
            expected = path if path != "userspace" and mode != 3 else "userspace"
            assert q["path"] == expected, q
            leg_a, leg_b = q["legs"]
            assert leg_b["remote-address"] == sb.getsockname()[0]
            if expected.startswith("xdp"):
                # the first packet of each leg latches it in userspace
                assert leg_a["packets-xdp"] >= 36 and leg_b["packets-xdp"] >= 36, q
            else:
                assert leg_a["packets-xdp"] == 0 and leg_b["packets-xdp"] == 0, q
            # + the RTCP packet, which latches its port in userspace
            userspace += leg_a["packets-userspace"] + leg_b["packets-userspace"] + 1
            m.ok({"command": "delete", "call-id": call_id})
            sa.close()
            sb.close()
        text = m.get("/metrics")[1]
        assert metric(text, "sipedge_media_cross_family_packets_total") == userspace
        assert_no_leak(m)
        if path.startswith("xdp"):
            assert userspace < 4 * 81 and pinned_entries(pin) == []
        assert_checksums(topo, (topo.a if a6 else topo.b,), (topo.b if a6 else topo.a,))
    finally:
        m.stop()
    assert m.log().count("Traceback") == 0, m.log()


@pytest.mark.root
@pytest.mark.xdp
@pytest.mark.slow
@pytest.mark.parametrize("path", ["xdp-native", "userspace"])
def test_ipv6_strict_source(topo: Topology, tmp_path: Path, bpffs: Path, path: str) -> None:
    """Latching on: before the latch a foreign IPv6 source neither latches nor passes; after
    it only the exact (address, port) passes, another port of the same address and another
    address of A's network are dropped (in XDP on the XDP path) and counted."""
    sh("ip", "-n", topo.a, "-6", "addr", "add", "fd00:77:1::3/64", "dev", "eth0", "nodad")
    m = mediad6(topo, tmp_path, path, bpffs / f"s-{path}", "--behind-nat", "On").start()
    sa = ns_socket(topo.a, (topo.a_ip6, 5300))
    other_port = ns_socket(topo.a, (topo.a_ip6, 5301))
    other_addr = ns_socket(topo.a, ("fd00:77:1::3", 5300))
    sb = ns_socket(topo.b, (topo.b_ip6, 6300))
    try:
        _offer, answer = call_af(m, "s6", sa.getsockname(), sb.getsockname(), 1, "IP6", "IP6")
        relay_a = (topo.ra_ip6, answer["port"])
        key = KEYS[1].encode()
        for i in range(5):
            other_addr.sendto(reference.encrypt(1, key, reference.rtp(i, payload=b"evil")), relay_a)
        assert recv_all(sb, 1, timeout=0.5) == []
        first = reference.rtp(100, payload=b"good")
        sa.sendto(reference.encrypt(1, key, first), relay_a)
        assert [d for d, _ in recv_all(sb, 1)] == [first]
        good = []
        for i in range(30):
            pkt = reference.rtp(200 + i, payload=b"good" * 10)
            good.append(pkt)
            sa.sendto(reference.encrypt(1, key, pkt), relay_a)
            other_port.sendto(reference.rtp(300 + i, payload=b"evil"), relay_a)
            other_addr.sendto(reference.rtp(400 + i, payload=b"evil"), relay_a)
            time.sleep(0.001)
        got = recv_all(sb, 31, timeout=2)
        assert sorted(d for d, _ in got) == sorted(good)
        q = m.ok({"command": "query", "call-id": "s6"})
        leg_a = q["legs"][0]
        assert leg_a["dropped"] == {"foreign-source": 60, "unlearned-source": 5}, q
        if path.startswith("xdp"):
            assert q["path"] == path and leg_a["packets-xdp"] >= 25, q
        m.ok({"command": "delete", "call-id": "s6"})
    finally:
        m.stop()
        for s in (sa, other_port, other_addr, sb):
            s.close()


@pytest.mark.root
def test_address_family_contract(topo: Topology, tmp_path: Path, bpffs: Path) -> None:
    """Without media.bind_address_v6 an IP6 offer is refused (address-family-unavailable,
    409, counted) and nothing is allocated; a bad value is a bad request; with IPv6 the
    answer's family picks the address, absent means IPv4."""
    no6 = Mediad(
        tmp_path / "a.sock",
        ["--fast-path", "userspace", "--bind", topo.ra_ip, "--port-range", "43000-43009"],
        tmp_path / "a.log",
        netns=topo.r,
    ).start()
    try:
        body = {
            "command": "offer",
            "call-id": "c",
            "from-tag": "t",
            "address": topo.a_ip6,  # an IPv6 leg is fine; an IPv6 relay address is not
            "port": 4000,
        }
        status, data = no6.post({**body, "address-family": "IP6"})
        assert (status, data["error-code"]) == (409, "address-family-unavailable"), data
        status, data = no6.post({**body, "address-family": "inet6"})
        assert (status, data["error-code"]) == (400, "bad-request"), data
        assert_no_leak(no6)
        assert no6.ok(body)["address"] == topo.ra_ip  # absent: IPv4
        text = no6.get("/metrics")[1]
        assert 'sipedge_media_errors_total{code="address-family-unavailable"} 1.0' in text
    finally:
        no6.stop()
    m = mediad6(topo, tmp_path, "userspace", bpffs / "contract").start()
    try:
        body = {"command": "offer", "call-id": "d", "from-tag": "t", "port": 4000}
        assert m.ok({**body, "address": topo.a_ip})["address"] == topo.ra_ip
        again = m.ok({**body, "address": topo.a_ip, "address-family": "IP6"})
        assert again["address"] == topo.ra_ip6  # a re-offer may change the family
        status, data = m.post({**body, "address": "fe80::1%eth0"})
        assert (status, data["error-code"]) == (400, "bad-address"), data
    finally:
        m.stop()
