"""Two appliances back to back on loopback, the A-B leg encrypted (XOR, RC4, AES128).

    caller (test socket) -> edge A (sipd + mediad) =encrypted=> edge B (sipd + mediad) ->
    SIPp gateway with -rtp_echo

Edge A's routing gateway is edge B (rtp_encryption On); edge B's mapping gateway is A
(rtp_encryption On); both share SS_RTPENCRYPTIONMODE / SS_RTPENCRYPTIONKEY. The caller gets its
own RTP back as plaintext; tcpdump on the A-B leg sees only ciphertext payloads.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    LOOPBACK_TEST_REFUSED_NETWORKS,
    free_port,
    gateway,
    make_config,
    start_sipd,
)
from tests.media.netns import Mediad
from tests.sipp.harness import Sipp

pytestmark = [pytest.mark.root, pytest.mark.sipp, pytest.mark.slow]

KEYS = {1: "sipedge-xor", 2: "sipedge-rc4-key", 3: "0123456789abcdef"}


def media_section(sock: Path, low: int) -> dict[str, Any]:
    return {
        "control_socket": str(sock),
        "port_range": [low, low + 19],
        "fast_path": "userspace",
        "interfaces": ["lo"],
        # loopback peers: 127.0.0.0/8 must not be refused (see tests/conftest.py)
        "refused_networks": LOOPBACK_TEST_REFUSED_NETWORKS,
    }


def start_mediad(tmp: Path, name: str, low: int, mode: int) -> Mediad:
    return Mediad(
        tmp / f"{name}.sock",
        [
            "--fast-path",
            "userspace",
            "--interface",
            "lo",
            "--bind",
            "127.0.0.1",
            "--port-range",
            f"{low}-{low + 19}",
            "--encryption-mode",
            str(mode),
            "--encryption-key",
            KEYS[mode],
        ],
        tmp / f"{name}.log",
    ).start()


def rtp(seq: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0xB0B) + b"plaintext-audio!" * 10


def payloads(pcap: Path) -> list[bytes]:
    """UDP payloads from a pcap of `tcpdump -i lo` (DLT_EN10MB: 14-byte fake Ethernet)."""
    data = pcap.read_bytes()
    link = struct.unpack("<I", data[20:24])[0]
    off, out = 24, []
    while off + 16 <= len(data):
        incl = struct.unpack("<I", data[off + 8 : off + 12])[0]
        frame = data[off + 16 : off + 16 + incl]
        off += 16 + incl
        ip = frame[14:] if link == 1 else frame[4:]
        ihl = (ip[0] & 0x0F) * 4
        out.append(ip[ihl + 8 :])
    return out


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="needs tcpdump")
@pytest.mark.parametrize("mode", [1, 2, 3])
def test_back_to_back_encrypted_leg(sipd_factory: Any, tmp_path: Path, mode: int) -> None:
    params = {"SS_RTPENCRYPTIONMODE": mode, "SS_RTPENCRYPTIONKEY": KEYS[mode]}
    low_a, low_b = 44100 + mode * 100, 44150 + mode * 100
    mediad_a = start_mediad(tmp_path, "ma", low_a, mode)
    mediad_b = start_mediad(tmp_path, "mb", low_b, mode)
    gw_port, gw_media = free_port(), free_port()
    mapping = {
        "name": "edge-a",
        "addresses": ["127.0.0.0/8"],
        "support_privacy": False,
        "rtp_encryption": True,
    }
    # edge B: its mapping gateway (edge A) carries encrypted RTP
    config_b = make_config(
        tmp_path,
        free_port(),
        free_port(socket.SOCK_STREAM),
        [gateway("gw1", gw_port)],
        parameters=params,
        extra={"media": media_section(tmp_path / "mb.sock", low_b)},
    )
    config_b["mapping_gateways"] = [mapping]
    edge_b = start_sipd(tmp_path, config_b, name="edge-b")
    edge_a = sipd_factory(
        [gateway("edge-b", edge_b.sip_port, rtp_encryption=True)],
        parameters=params,
        extra={"media": media_section(tmp_path / "ma.sock", low_a)},
    )
    capture = tmp_path / "ab.pcap"
    try:
        with Sipp(
            "uas_answer", port=gw_port, timeout=40, media_port=gw_media, extra=["-rtp_echo"]
        ) as gw:
            caller = Sipp(
                "uac_basic",
                port=free_port(),
                remote=edge_a.sip_target,
                timeout=40,
                service="4420001",
                keys={"hold": "3000"},
            )
            caller.start()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                a_calls = mediad_a.ok({"command": "list"})["calls"]
                b_calls = mediad_b.ok({"command": "list"})["calls"]
                if a_calls and b_calls and a_calls[0]["answered"] and b_calls[0]["answered"]:
                    break
                time.sleep(0.05)
            assert a_calls and b_calls, edge_a.log() + edge_b.log()
            a_caller_port, a_callee_port = a_calls[0]["ports"]
            b_caller_port, _ = b_calls[0]["ports"]
            dump = subprocess.Popen(
                [
                    "tcpdump",
                    "-i",
                    "lo",
                    "-U",
                    "-n",
                    "--immediate-mode",
                    "-c",  # it stops by itself once the whole exchange is captured
                    "60",
                    "-w",
                    str(capture),
                    f"udp and (port {a_callee_port} or port {b_caller_port})",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            assert dump.stderr is not None
            assert b"listening on" in dump.stderr.readline()  # capturing from here on
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.settimeout(1.0)
            back = []
            for seq in range(30):
                s.sendto(rtp(seq), ("127.0.0.1", a_caller_port))
                try:
                    back.append(s.recvfrom(2048)[0])
                except TimeoutError:
                    pass
            s.close()
            # a capture stopped too early loses what tcpdump has not read yet (seen under load:
            # 38 of 60, and 18 of 60 with 10 s given, the relay having echoed 25 or more of 30):
            # let it count to 60, or give up after 30 s
            try:
                dump.wait(30)
            except subprocess.TimeoutExpired:
                dump.terminate()
                dump.wait(10)
            dump.stderr.close()
            result = caller.wait(40)
            gw.wait(20)
        assert result.returncode == 0, result.describe() + edge_a.log() + edge_b.log()
        # the caller's end: plaintext, exactly what it sent
        assert len(back) >= 25, (back, mediad_a.log(), mediad_b.log())
        for data in back:
            seq = struct.unpack("!H", data[2:4])[0]
            assert data == rtp(seq)
        # the A-B link: RTP headers in clear, payloads never the plaintext
        seen = [p for p in payloads(capture) if len(p) == len(rtp(0))]
        assert len(seen) >= 30, len(seen)  # a sample of the 60: every one is checked below
        plain = rtp(0)[12:]
        assert all(p[12:] != plain for p in seen)
        assert all(p[:2] == rtp(0)[:2] for p in seen)
        assert mediad_a.ok({"command": "list"})["count"] == 0
    finally:
        edge_a.stop()
        edge_b.stop()
        mediad_a.stop()
        mediad_b.stop()
