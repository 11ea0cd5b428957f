"""The media relay under attack: an attacker host beside caller and callee, in namespaces.

    A caller (10.78.1.2) ---- R relay (10.78.1.1 | 10.78.2.1 | 10.78.3.1) ---- B callee (10.78.2.2)
                                          |
                                   M attacker (10.78.3.2)

With `nat=True`, A is a NAT box instead (real nftables masquerade) and the caller C
(192.168.78.2) sits behind it: its SDP carries the private address, its SIP (the signalling
address sipd passes to mediad) and its RTP come from A's address.

mediad is driven over its ng socket exactly as sipd drives it (offer with the caller's SDP and
signalling address, answer with the callee's), on the XDP path (native, then generic) and on the
userspace path. What is checked, from the wire:

* spraying every port of the relay range before and during a call captures nothing: the
  attacker receives no packet of the call, none of its packets reaches either party, and the
  drops are counted per leg and reason;
* a NAT'd caller still latches (its packets come from the signalling address, not the SDP one);
* packets to a relay port at an address the box does not own are not relayed, even when they
  claim to come from the caller;
* every packet a party receives from the relay comes from one address and port, the one in its
  SDP, whether XDP or userspace relayed it (the first packet of a leg, which latches, always
  crosses userspace).

On loopback (no namespaces), the orphan clean-up: sipd killed with SIGKILL mid-call and
restarted deletes the relay sessions it no longer knows, and mediad expires idle sessions on its
own when no sipd is there at all.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, gateway
from tests.media.netns import Mediad, in_ns, mount_bpffs, ns_socket, recv_all, sh, umount
from tests.sipp.harness import Sipp

RELAY = "10.78.1.1"  # mediad's bind address (ra), the address every SDP gets
LOW, HIGH = 41000, 41029  # 15 port pairs: small enough to spray completely


@dataclass
class Lab:
    """Namespaces R (relay), A (caller, or the caller's NAT), B (callee), M (attacker), and C
    (the caller behind A) when `nat`."""

    tag: str
    nat: bool

    def ns(self, name: str) -> str:
        return f"{self.tag}-{name}"

    @property
    def names(self) -> list[str]:
        return ["r", "a", "b", "m"] + (["c"] if self.nat else [])

    @classmethod
    def create(cls, nat: bool = False) -> Lab:
        lab = cls(tag=f"se-h-{os.getpid()}-{time.monotonic_ns() % 100000}", nat=nat)
        try:
            lab._build()
        except Exception:
            lab.destroy()
            raise
        return lab

    def _veth(self, left: str, left_if: str, right: str, right_if: str) -> None:
        sh("ip", "-n", left, "link", "add", left_if, "type", "veth", "peer", "name", right_if,
           "netns", right)  # fmt: skip
        for ns, dev in ((left, left_if), (right, right_if)):
            sh("ip", "-n", ns, "link", "set", dev, "up")
            # native XDP redirect into a veth delivers only with GRO (or XDP) on the peer
            sh("ip", "netns", "exec", ns, "ethtool", "-K", dev, "gro", "on")

    def _build(self) -> None:
        for name in self.names:
            sh("ip", "netns", "add", self.ns(name))
            sh("ip", "-n", self.ns(name), "link", "set", "lo", "up")
        r = self.ns("r")
        for name, rif, net in (("a", "ra", 1), ("b", "rb", 2), ("m", "rm", 3)):
            peer = self.ns(name)
            self._veth(r, rif, peer, "eth0")
            sh("ip", "-n", r, "addr", "add", f"10.78.{net}.1/24", "dev", rif)
            sh("ip", "-n", peer, "addr", "add", f"10.78.{net}.2/24", "dev", "eth0")
            sh("ip", "-n", peer, "route", "add", "default", "via", f"10.78.{net}.1")
        if self.nat:
            a, c = self.ns("a"), self.ns("c")
            self._veth(a, "in0", c, "eth0")
            sh("ip", "-n", a, "addr", "add", "192.168.78.1/24", "dev", "in0")
            sh("ip", "-n", c, "addr", "add", "192.168.78.2/24", "dev", "eth0")
            sh("ip", "-n", c, "route", "add", "default", "via", "192.168.78.1")
            sh("ip", "netns", "exec", a, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            ruleset = (
                "table ip nat {\n chain post {\n  type nat hook postrouting priority srcnat;\n"
                '  oifname "eth0" masquerade\n }\n}\n'
            )
            res = subprocess.run(
                ["ip", "netns", "exec", a, "nft", "-f", "-"],
                input=ruleset,
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert res.returncode == 0, res.stderr

    def destroy(self) -> None:
        for name in self.names:
            subprocess.run(["ip", "netns", "del", self.ns(name)], capture_output=True, check=False)


@pytest.fixture(scope="module")
def bpffs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private bpffs (ip netns exec remounts /sys, so /sys/fs/bpf is not shared)."""
    path = tmp_path_factory.mktemp("bpffs")
    mount_bpffs(path)
    yield path
    umount(path)


def relay_mediad(lab: Lab, tmp: Path, path: str, pin: Path) -> Mediad:
    args = [
        "--fast-path", path,
        "--interface", "ra", "--interface", "rb", "--interface", "rm",
        "--bind", RELAY,
        "--port-range", f"{LOW}-{HIGH}",
        "--pin-dir", str(pin),
        "--state", str(tmp / "sessions.journal"),
        "--behind-nat", "On",
    ]  # fmt: skip
    return Mediad(tmp / "mediad.sock", args, tmp / "mediad.log", netns=lab.ns("r"))


def rtp(who: bytes, seq: int) -> bytes:
    """An RTP packet whose payload says who sent it."""
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0xC0FFEE) + who * 160


def set_up_call(
    m: Mediad, call_id: str, a_sdp: tuple[str, int], a_signal: str, b: tuple[str, int]
) -> tuple[tuple[str, int], tuple[str, int]]:
    """Offer (caller) and answer (callee) as sipd sends them; returns the relay address the
    caller sends to and the one the callee sends to."""
    offer = m.ok({
        "command": "offer", "call-id": call_id, "from-tag": "caller",
        "address": a_sdp[0], "port": a_sdp[1], "signal-address": a_signal,
    })  # fmt: skip
    answer = m.ok({
        "command": "answer", "call-id": call_id, "from-tag": "caller", "to-tag": "callee",
        "address": b[0], "port": b[1], "signal-address": b[0],
    })  # fmt: skip
    assert offer["address"] == RELAY and answer["address"] == RELAY
    return (RELAY, int(answer["port"])), (RELAY, int(offer["port"]))


def spray(sock: socket.socket, rounds: int = 2) -> None:
    """Two packets to every port of the relay range (RTP and RTCP), as the attacker did."""
    for _ in range(rounds):
        for port in range(LOW, HIGH + 1):
            with contextlib.suppress(OSError):
                sock.sendto(rtp(b"M", port), (RELAY, port))


def drops(q: dict[str, Any]) -> dict[str, int]:
    total: dict[str, int] = {}
    for leg in q["legs"]:
        for reason, n in (leg.get("dropped") or {}).items():
            total[reason] = total.get(reason, 0) + int(n)
    return total


@pytest.mark.parametrize("path", ["xdp-native", "xdp-generic", "userspace"])
@pytest.mark.root
@pytest.mark.xdp
@pytest.mark.slow
def test_spraying_the_range_captures_and_injects_nothing(
    tmp_path: Path, bpffs: Path, path: str
) -> None:
    lab = Lab.create()
    m = relay_mediad(lab, tmp_path, path, bpffs / f"spray-{path}").start()
    try:
        assert m.get("/healthz")[1]["path"] == path
        sa = ns_socket(lab.ns("a"), ("10.78.1.2", 30000))
        sb = ns_socket(lab.ns("b"), ("10.78.2.2", 30002))
        sm = ns_socket(lab.ns("m"), ("10.78.3.2", 5555))
        relay_a, relay_b = set_up_call(
            m, "spray", ("10.78.1.2", 30000), "10.78.1.2", ("10.78.2.2", 30002)
        )
        spray(sm)  # before the parties speak: tries to be the first source on every port
        time.sleep(0.2)
        for seq in range(100):
            sa.sendto(rtp(b"A", seq), relay_a)
            sb.sendto(rtp(b"B", seq), relay_b)
            if seq % 10 == 5:
                spray(sm, rounds=1)  # and during the call: tries to inject
            time.sleep(0.002)
        got_a = recv_all(sa, 200, timeout=2.0)
        got_b = recv_all(sb, 200, timeout=2.0)
        got_m = recv_all(sm, 1, timeout=1.0)
        q = m.ok({"command": "query", "call-id": "spray"})
        health = m.get("/healthz")[1]
    finally:
        m.stop()
        lab.destroy()
    # the attacker heard nothing of the call
    assert got_m == [], got_m
    # each party heard exactly the other party, all of it, nothing of the attacker
    assert sorted(d[12:13] for d, _ in got_a) == [b"B"] * 100, (len(got_a), q)
    assert sorted(d[12:13] for d, _ in got_b) == [b"A"] * 100, (len(got_b), q)
    # one source per leg, the address and port in that party's SDP, whichever path relayed
    assert {src for _, src in got_a} == {relay_a}, {src for _, src in got_a}
    assert {src for _, src in got_b} == {relay_b}, {src for _, src in got_b}
    # the refusals are counted per leg and reason
    dropped = drops(q)
    assert dropped.get("unlearned-source", 0) > 0, q
    assert dropped.get("foreign-source", 0) > 0, q
    if path != "userspace":
        assert health["xdp_verdicts"]["foreign_source"] > 0, health
    assert m.log().count("Traceback") == 0, m.log()


@pytest.mark.parametrize("path", ["xdp-native", "userspace"])
@pytest.mark.root
@pytest.mark.xdp
@pytest.mark.slow
def test_natted_caller_latches_through_masquerade(tmp_path: Path, bpffs: Path, path: str) -> None:
    lab = Lab.create(nat=True)
    m = relay_mediad(lab, tmp_path, path, bpffs / f"nat-{path}").start()
    try:
        sc = ns_socket(lab.ns("c"), ("192.168.78.2", 30000))
        sb = ns_socket(lab.ns("b"), ("10.78.2.2", 30002))
        sm = ns_socket(lab.ns("m"), ("10.78.3.2", 5555))
        # SDP: the private address; signalling: the NAT's public address
        relay_c, relay_b = set_up_call(
            m, "nat", ("192.168.78.2", 30000), "10.78.1.2", ("10.78.2.2", 30002)
        )
        spray(sm)  # the attacker's address is neither: it must not latch the caller's leg
        time.sleep(0.2)
        for seq in range(50):  # the caller speaks first: that latches its leg through the NAT
            sc.sendto(rtp(b"C", seq), relay_c)
            time.sleep(0.002)
        got_b = recv_all(sb, 50, timeout=2.0)
        for seq in range(50):
            sb.sendto(rtp(b"B", seq), relay_b)
            time.sleep(0.002)
        got_c = recv_all(sc, 50, timeout=2.0)
        got_m = recv_all(sm, 1, timeout=0.5)
        q = m.ok({"command": "query", "call-id": "nat"})
    finally:
        m.stop()
        lab.destroy()
    caller_leg = q["legs"][0]
    assert caller_leg["latched"] and caller_leg["remote-address"] == "10.78.1.2", q
    assert [d[12:13] for d, _ in got_b] == [b"C"] * 50, (len(got_b), q)
    assert [d[12:13] for d, _ in got_c] == [b"B"] * 50, (len(got_c), q)
    assert {src for _, src in got_c} == {relay_c}
    assert got_m == []


def _spoofed_udp(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0,
        socket.inet_aton(src[0]), socket.inet_aton(dst[0]),
    )  # fmt: skip
    return header + udp


@pytest.mark.parametrize("path", ["xdp-native", "xdp-generic", "userspace"])
@pytest.mark.root
@pytest.mark.xdp
@pytest.mark.slow
def test_foreign_destination_address_is_not_relayed(tmp_path: Path, bpffs: Path, path: str) -> None:
    lab = Lab.create()
    m = relay_mediad(lab, tmp_path, path, bpffs / f"foreign-{path}").start()
    try:
        sa = ns_socket(lab.ns("a"), ("10.78.1.2", 30000))
        sb = ns_socket(lab.ns("b"), ("10.78.2.2", 30002))
        relay_a, relay_b = set_up_call(
            m, "foreign", ("10.78.1.2", 30000), "10.78.1.2", ("10.78.2.2", 30002)
        )
        for seq in range(5):  # both legs latched and relaying
            sa.sendto(rtp(b"A", seq), relay_a)
            sb.sendto(rtp(b"B", seq), relay_b)
        assert len(recv_all(sb, 5)) == 5 and len(recv_all(sa, 5)) == 5
        # the attacker routes an address the relay does not own through it
        sh("ip", "-n", lab.ns("m"), "route", "add", "10.78.99.0/24", "via", "10.78.3.1")
        foreign = ("10.78.99.9", relay_a[1])

        def send() -> None:
            plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            try:
                for seq in range(20):
                    plain.sendto(rtp(b"M", seq), foreign)
                    # claiming to be the caller, from its latched address and port
                    packet = _spoofed_udp(("10.78.1.2", 30000), foreign, rtp(b"S", seq))
                    raw.sendto(packet, (foreign[0], 0))
            finally:
                plain.close()
                raw.close()

        in_ns(lab.ns("m"), send)
        got_b = recv_all(sb, 1, timeout=1.0)
        q = m.ok({"command": "query", "call-id": "foreign"})
    finally:
        m.stop()
        lab.destroy()
    assert got_b == [], (got_b, q)
    assert q["legs"][0]["packets"] == 5, q


# -- loopback: orphans after a sipd crash, idle expiry ----------------------------------------


def _loopback_mediad(tmp: Path, low: int, *extra: str) -> Mediad:
    return Mediad(
        tmp / "mediad.sock",  # the path make_config gives sipd
        ["--fast-path", "userspace", "--interface", "lo", "--bind", "127.0.0.1",
         "--port-range", f"{low}-{low + 9}", "--behind-nat", "On",
         "--state", str(tmp / "sessions.journal"), *extra],
        tmp / "mediad.log",
    )  # fmt: skip


def _list(m: Mediad) -> list[dict[str, Any]]:
    return list(m.ok({"command": "list"})["calls"])


def _wait_count(m: Mediad, count: int, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        calls = _list(m)
        if len(calls) == count or time.monotonic() > deadline:
            return calls
        time.sleep(0.1)


@pytest.mark.sipp
@pytest.mark.slow
def test_sipd_killed_mid_call_its_relay_sessions_are_reconciled(
    sipd_factory: Any, tmp_path: Path
) -> None:
    m = _loopback_mediad(tmp_path, 44800).start()
    try:
        gw_port, gw_media = free_port(), free_port()
        first = sipd_factory([gateway("gw1", gw_port)])
        with Sipp("uas_answer", port=gw_port, calls=1, timeout=40, media_port=gw_media) as gw:
            caller = Sipp("uac_basic", port=free_port(), remote=first.sip_target, calls=1,
                          timeout=40, service="4420001", keys={"hold": "30000"})  # fmt: skip
            caller.start()
            calls = _wait_count(m, 1, 10)
            assert len(calls) == 1, first.log()
            deadline = time.monotonic() + 10
            while not _list(m)[0]["answered"]:
                assert time.monotonic() < deadline, first.log()
                time.sleep(0.05)
            first.proc.kill()  # SIGKILL: no clean-up of any kind
            first.proc.wait()
            caller.stop(grace=0.5)
            gw.stop(grace=0.5)
        assert len(_list(m)) == 1  # the orphan: nobody will ever delete it
        second = sipd_factory([gateway("gw1", gw_port)])  # same mediad socket
        assert _wait_count(m, 0, 15) == [], second.log()
        # sipd logs the deletion once mediad's answer is back: mediad's list can be empty first
        deadline = time.monotonic() + 5
        while "orphan" not in second.log():
            assert time.monotonic() < deadline, second.log()
            time.sleep(0.05)
        # the ports are free again: the whole range can be allocated
        health = m.get("/healthz")[1]
        assert health["sessions"] == 0 and health["ports_in_use"] == 0, health
        for n in range(2):  # 10 ports = 5 pairs: two sessions of two pairs each
            m.ok({"command": "offer", "call-id": f"again-{n}", "from-tag": "caller",
                  "address": "127.0.0.1", "port": 30000 + 2 * n})  # fmt: skip
    finally:
        m.stop()


@pytest.mark.slow
def test_mediad_expires_idle_sessions_without_sipd(tmp_path: Path) -> None:
    m = _loopback_mediad(tmp_path, 44820, "--idle-timeout", "10").start()
    try:
        m.ok({"command": "offer", "call-id": "idle", "from-tag": "caller",
              "address": "127.0.0.1", "port": 30000})  # fmt: skip
        m.ok({"command": "offer", "call-id": "busy", "from-tag": "caller",
              "address": "127.0.0.1", "port": 30002})  # fmt: skip
        started = time.monotonic()
        # "busy" is touched by its owner, "idle" is not
        while time.monotonic() - started < 14:
            m.ok({"command": "touch", "call-ids": ["busy"]})
            time.sleep(1)
        remaining = [c["call-id"] for c in _wait_count(m, 1, 12)]
        metrics = m.get("/metrics")[1]
    finally:
        m.stop()
    assert remaining == ["busy"], (remaining, m.log())
    assert "sipedge_media_sessions_expired" in metrics
    expired = [
        line for line in metrics.splitlines() if line.startswith("sipedge_media_sessions_expired")
    ]
    assert any(float(line.rsplit(" ", 1)[1]) >= 1 for line in expired), expired
