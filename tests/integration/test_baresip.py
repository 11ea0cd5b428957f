"""A real phone: Debian's baresip (libre 1.1) registers to sipd with digest and calls through it.

baresip runs headless on loopback (`-f <dir>`: `aufile` audio, the `account` and `ctrl_tcp`
modules) and is driven over ctrl_tcp (netstring JSON). Its call goes to a SIPp gateway that
answers and echoes RTP, through a real sipedge-mediad (userspace relay): RTP crosses the relay
both ways and baresip's aufile player records what came back.

libre 1.1 gives up at the first digest algorithm it does not know, so this also checks that the
default challenge offers MD5 only.
"""

from __future__ import annotations

import json
import math
import shutil
import socket
import struct
import subprocess
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, gateway
from tests.media.netns import Mediad
from tests.sipp.harness import Sipp

pytestmark = [
    pytest.mark.sipp,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip not installed"),
]

MODULES = Path("/usr/lib/baresip/modules")


@pytest.fixture
def mediad(tmp_path: Path) -> Iterator[Mediad]:
    low = 44600
    m = Mediad(
        tmp_path / "mediad.sock",  # the path make_config gives sipd
        ["--fast-path", "userspace", "--interface", "lo", "--bind", "127.0.0.1",
         "--port-range", f"{low}-{low + 39}", "--behind-nat", "On"],
        tmp_path / "mediad.log",
    )  # fmt: skip
    m.start()
    yield m
    m.stop()


def tone(path: Path, seconds: float = 20.0) -> None:
    """8 kHz mono 16-bit: a 440 Hz tone for baresip's aufile source."""
    rate = 8000
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
        for i in range(int(rate * seconds))
    )
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)


class Baresip:
    """One headless baresip with its own config directory, driven over ctrl_tcp."""

    def __init__(self, home: Path, sipd_target: str, password: str) -> None:
        self.home = home
        home.mkdir()
        self.sip_port, self.ctrl_port = free_port(), free_port(socket.SOCK_STREAM)
        self.source = home / "tone.wav"
        tone(self.source)
        (home / "config").write_text(
            "\n".join(
                [
                    "poll_method epoll",
                    f"sip_listen 127.0.0.1:{self.sip_port}",
                    "net_interface 127.0.0.1",
                    # no aufile player in baresip 1.0: a bridge that nobody reads, and the
                    # sndfile module records the decoded (received) audio under snd_path
                    "audio_player aubridge,sink",
                    f"audio_source aufile,{self.source}",
                    f"audio_alert aufile,{home / 'alert.wav'}",
                    "rtp_ports 45100-45199",
                    f"module_path {MODULES}",
                    "module g711.so",
                    "module aufile.so",
                    "module aubridge.so",
                    "module sndfile.so",
                    f"snd_path {home}",
                    "module_app account.so",
                    "module_app menu.so",
                    "module_app ctrl_tcp.so",
                    f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}",
                    "",
                ]
            )
        )
        (home / "accounts").write_text(
            f"<sip:alice@{sipd_target}>;auth_pass={password};regint=600;audio_codecs=PCMU\n"
        )
        self.log_path = home / "baresip.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                ["baresip", "-f", str(home)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def command(self, command: str, params: str = "") -> dict[str, Any]:
        """One ctrl_tcp command (netstring JSON in, netstring JSON out)."""
        body = json.dumps({"command": command, "params": params, "token": "t"}).encode()
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=5) as s:
                    s.sendall(str(len(body)).encode() + b":" + body + b",")
                    data = b""
                    while not data.endswith(b","):
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                        length, _, rest = data.partition(b":")
                        if length.isdigit() and len(rest) > int(length):
                            break
                    reply = data.partition(b":")[2][:-1]
                    try:
                        result: dict[str, Any] = json.loads(reply)
                    except ValueError:
                        result = {"raw": reply.decode(errors="replace")}
                    return result
            except ConnectionRefusedError:  # not listening yet; never re-send a command
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.command("quit")
            except OSError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def wait_for(what: str, check: Any, timeout: float, *logs: Any) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n" + "\n".join(f() for f in logs))


def test_baresip_registers_and_calls_with_rtp_both_ways(
    sipd_factory: Any, mediad: Mediad, tmp_path: Path
) -> None:
    gw_port, gw_media = free_port(), free_port()
    sipd = sipd_factory(
        [gateway("gw1", gw_port)],
        mapping_addresses=["127.0.0.2/32"],  # baresip on 127.0.0.1 is no mapping gateway
        extra={"endpoints": [{"account": "alice", "password": "s3cret"}]},
    )
    phone = Baresip(tmp_path / "baresip", sipd.sip_target, "s3cret")
    try:
        with Sipp(
            "uas_answer",
            port=gw_port,
            calls=1,
            timeout=60,
            media_port=gw_media,
            extra=["-rtp_echo"],
        ) as gw:
            # registration with digest (401, MD5 only, qop=auth)
            binding = wait_for(
                "baresip's registration",
                lambda: {b["account"]: b for b in sipd.api("/api/endpoints")["bindings"]}.get(
                    "alice"
                ),
                20,
                phone.log,
                sipd.log,
            )
            assert binding["source"] == f"127.0.0.1:{phone.sip_port}"
            assert "baresip" in binding["user_agent"].lower()
            # a call through sipd (407 answered by baresip) to the gateway
            phone.command("dial", f"sip:4420001@{sipd.sip_target}")
            calls = wait_for(
                "the answered call's relay session",
                lambda: [c for c in mediad.ok({"command": "list"})["calls"] if c["answered"]],
                20,
                phone.log,
                sipd.log,
            )
            call_id = calls[0]["call-id"]

            def both_ways() -> dict[str, Any] | None:
                q = mediad.ok({"command": "query", "call-id": call_id})
                legs = {leg["tag"]: leg for leg in q["legs"]}
                return legs if min(leg["packets"] for leg in legs.values()) >= 100 else None

            legs = wait_for("RTP both ways", both_ways, 15, phone.log, mediad.log)
            phone.command("hangup")
            gw_result = gw.wait(30)
        assert gw_result.returncode == 0, gw_result.describe() + phone.log()
    finally:
        phone.stop()
    # the phone's RTP reached the gateway, the gateway's echo reached the phone
    assert legs["caller"]["packets"] >= 100 and legs["callee"]["packets"] >= 100, legs
    received = [p for p in phone.home.glob("dump-*-dec.wav")]
    assert received, sorted(p.name for p in phone.home.iterdir())
    with wave.open(str(received[0]), "rb") as w:
        assert w.getnframes() >= 8000, "baresip played back less than a second of RTP"
        samples = struct.unpack(f"<{w.getnframes()}h", w.readframes(w.getnframes()))
    assert max(abs(s) for s in samples) > 1000, "what came back is silence, not the echo"
    cdrs = sipd.cdrs(wait_for=1)
    assert len(cdrs) == 1, cdrs
    assert cdrs[0]["mapping_gateway"] == "endpoint:alice" and cdrs[0]["answer_time"] is not None
    m = sipd.metrics()
    assert m["sipedge_endpoint_invites_authenticated_total"] >= 1
    assert m["sipedge_registrar_auth_failures_total"] == 0
