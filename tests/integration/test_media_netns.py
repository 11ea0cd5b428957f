"""Media anchoring end to end in network namespaces, on the XDP fast path.

    A (SIPp caller, 10.77.1.2) -- veth -- R (sipd + mediad, XDP on ra/rb) -- veth -- B (SIPp
    gateway with -rtp_echo, 10.77.2.2), and the same over IPv6 (fd00:77:1::2 ... fd00:77:2::2)

The caller's RTP (a UDP socket in A, sent to the relay address from the 200's SDP) crosses the
relay on the XDP path to the gateway, which echoes it back through the relay: both directions,
counted by mediad as XDP packets, with the SDP on both sides rewritten to the relay.
"""

from __future__ import annotations

import json
import struct
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import BIN, gateway, make_config
from tests.media.netns import Mediad, Topology, in_ns, mount_bpffs, ns_socket, umount
from tests.sipp.harness import Sipp

pytestmark = [pytest.mark.root, pytest.mark.xdp, pytest.mark.sipp, pytest.mark.slow]


def ns_get(ns: str, url: str) -> Any:
    def get() -> Any:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return json.loads(resp.read())

    return in_ns(ns, get)


@pytest.fixture
def topo() -> Iterator[Topology]:
    t = Topology.create()
    yield t
    t.destroy()


@pytest.fixture
def bpffs(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "bpffs"
    mount_bpffs(path)
    yield path
    umount(path)


def rtp(seq: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0xA11CE) + bytes([seq % 256]) * 160


@pytest.mark.parametrize(("family", "gw_family"), [("IP4", "IP4"), ("IP6", "IP6"), ("IP4", "IP6")])
def test_call_media_on_the_xdp_path(
    topo: Topology, tmp_path: Path, bpffs: Path, family: str, gw_family: str
) -> None:
    """The call and its RTP in one family: IPv4 end to end, or IPv6 end to end (SIP over IPv6,
    `c=IN IP6`, the XDP program's IPv6 path); or an IPv4 caller and an IPv6 gateway, each
    given the relay address of its own family, the RTP relayed 4-to-6 and 6-to-4 by the XDP
    program (it rewrites the IP header, docs/media.md)."""
    v6 = family == "IP6"
    gw_v6 = gw_family == "IP6"
    a_ip, ra_ip = (topo.a_ip6, topo.ra_ip6) if v6 else (topo.a_ip, topo.ra_ip)
    b_ip = topo.b_ip6 if gw_v6 else topo.b_ip
    gw_relay_ip = topo.ra_ip6 if gw_v6 else topo.ra_ip  # what the gateway's SDP is given
    sip_ra = f"[{ra_ip}]" if v6 else ra_ip
    sock = tmp_path / "mediad.sock"
    mediad = Mediad(
        sock,
        [
            "--fast-path",
            "xdp-native",
            "--interface",
            "ra",
            "--interface",
            "rb",
            "--port-range",
            "42200-42299",
            "--pin-dir",
            str(bpffs / "pins"),
            "--state",
            str(tmp_path / "state.json"),
            *(["--bind6", topo.ra_ip6] if v6 or gw_v6 else []),
        ],
        tmp_path / "mediad.log",
        netns=topo.r,
    ).start()
    api_port = 18080
    config = make_config(
        tmp_path,
        5060,
        api_port,
        [gateway("gw1", 5060, address=b_ip)],
        mapping_addresses=[f"{a_ip}/{128 if v6 else 32}"],
    )
    config["sip"]["listen"] = [
        *(["udp://0.0.0.0:5060"] if not v6 or not gw_v6 else []),
        *(["udp://[::]:5060"] if v6 or gw_v6 else []),
    ]
    config["media"]["control_socket"] = str(sock)
    config_path = tmp_path / "sipd.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = tmp_path / "sipd.log"
    with log_path.open("wb") as log:
        sipd = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                topo.r,
                str(BIN / "sipedge-sipd"),
                "--config",
                str(config_path),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        api = f"http://127.0.0.1:{api_port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                ns_get(topo.r, f"{api}/healthz")
                break
            except OSError:
                assert time.monotonic() < deadline and sipd.poll() is None, log_path.read_text()
                time.sleep(0.1)
        gw = Sipp(
            "uas_answer",
            local=b_ip,
            port=5060,
            netns=topo.b,
            timeout=40,
            media_port=6000,
            extra=["-rtp_echo"],
        )
        caller = Sipp(
            "uac_basic",
            local=a_ip,
            port=5060,
            remote=f"{sip_ra}:5060",
            netns=topo.a,
            timeout=40,
            service="4420001",
            media_port=6000,
            keys={"hold": "5000"},
        )
        with gw:
            caller.start()
            deadline = time.monotonic() + 10
            calls: list[dict[str, Any]] = []
            while time.monotonic() < deadline:
                calls = mediad.ok({"command": "list"})["calls"]
                if calls and calls[0]["answered"]:
                    break
                time.sleep(0.05)
            assert calls and calls[0]["answered"], log_path.read_text() + mediad.log()
            relay_a, relay_b = calls[0]["ports"]
            call_id = calls[0]["call-id"]
            s = ns_socket(topo.a, (a_ip, 0))
            s.settimeout(0.5)

            def burst(first: int, count: int) -> int:
                """RTP to the caller's relay port; how many came back (echoed by the gateway)."""
                for seq in range(first, first + count):
                    s.sendto(rtp(seq), (ra_ip, relay_a))
                    time.sleep(0.005)
                got, end = 0, time.monotonic() + 2
                while time.monotonic() < end and got < count:
                    try:
                        data, src = s.recvfrom(2048)
                    except TimeoutError:
                        break
                    assert (
                        src[:2] == (ra_ip, relay_a)
                        and data[12:] == rtp(struct.unpack("!H", data[2:4])[0])[12:]
                    )
                    got += 1
                return got

            got = burst(0, 100)  # userspace latches each leg on its first packets
            latched = mediad.ok({"command": "query", "call-id": call_id})
            got_latched = burst(100, 50)  # then every packet goes through XDP
            s.close()
            q = mediad.ok({"command": "query", "call-id": call_id})
            result = caller.wait(40)
            gw_result = gw.wait(20)
        assert result.returncode == 0, result.describe() + log_path.read_text()
        assert gw_result.returncode == 0, gw_result.describe()
        assert got >= 95 and got_latched >= 45, (got, got_latched, q, mediad.log())
        # The packets that reach a leg before userspace has latched it go through userspace
        # (the first one on a quiet machine, up to 11 under a proof run's load). Once both legs
        # are latched, none does: every packet of the second burst went through XDP, a 4-to-6
        # call's too.
        assert q["path"] == "xdp-native", q
        before = {leg["tag"]: leg for leg in latched["legs"]}
        legs = {leg["tag"]: leg for leg in q["legs"]}
        assert all(before[tag]["latched"] for tag in ("caller", "callee")), latched
        for tag in ("caller", "callee"):
            assert legs[tag]["packets-userspace"] == before[tag]["packets-userspace"], (latched, q)
            assert legs[tag]["packets-xdp"] - before[tag]["packets-xdp"] >= got_latched, q
        invite = next(m for m in gw_result.messages if m.first_line.startswith("INVITE"))
        assert f"c=IN {gw_family} {gw_relay_ip}" in invite.text, invite.text
        assert f"m=audio {relay_b} " in invite.text
        ok = next(m for m in result.messages if m.direction == "received" and m.status == 200)
        assert f"c=IN {family} {ra_ip}" in ok.text and f"m=audio {relay_a} " in ok.text
        deadline = time.monotonic() + 5
        while mediad.ok({"command": "list"})["count"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mediad.ok({"command": "list"})["count"] == 0
    finally:
        sipd.terminate()
        try:
            sipd.wait(10)
        except subprocess.TimeoutExpired:
            sipd.kill()
        mediad.stop()
