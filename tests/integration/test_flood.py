"""A flooding source is banned and counted while a mapping gateway's calls complete; the ban
shows in the API and can be lifted. On loopback: the flooder sends from 127.0.0.5, the mapping
gateway (SIPp) from 127.0.0.1 (Linux answers for all of 127.0.0.0/8), so no namespace is needed.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Sipd, free_port, gateway, make_config, start_sipd
from tests.integration.test_sipd import options, udp_exchange
from tests.sipp.harness import Sipp

FLOODER = "127.0.0.5"
SCANNER = "127.0.0.6"
TOKEN = "flood-test-token"


def invite(n: int) -> bytes:
    return (
        f"INVITE sip:1000@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {FLOODER}:5999;branch=z9hG4bKflood{n}\r\n"
        f"From: <sip:evil@{FLOODER}>;tag=f{n}\r\nTo: <sip:1000@127.0.0.1>\r\n"
        f"Call-ID: flood{n}@x\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def flood(port: int, seconds: float, counts: dict[str, int]) -> None:
    """INVITEs and garbage from FLOODER, ~1000 a second, counting bytes both ways."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((FLOODER, 0))
        s.setblocking(False)
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end:
            payload = invite(n) if n % 2 == 0 else b"\x00garbage\xff" * 20
            s.sendto(payload, ("127.0.0.1", port))
            counts["sent"] += len(payload)
            n += 1
            try:
                while True:
                    counts["received"] += len(s.recv(65535))
            except BlockingIOError:
                pass
            time.sleep(0.001)


@pytest.fixture
def guarded_sipd(tmp_path: Path) -> Iterator[tuple[Sipd, int]]:
    gw_port = free_port()
    config = make_config(
        tmp_path,
        free_port(),
        free_port(socket.SOCK_STREAM),
        [gateway("gw1", gw_port)],
        mapping_addresses=["127.0.0.1/32"],
    )
    config["api"]["token"] = TOKEN
    config["security"] = {"rate_limit": {"requests": 20, "window": 1.0, "ban": 120}}
    sipd = start_sipd(tmp_path, config)
    try:
        yield sipd, gw_port
    finally:
        sipd.stop()


@pytest.mark.sipp
def test_flooder_banned_counted_listed_and_cleared_while_calls_complete(
    guarded_sipd: tuple[Sipd, int],
) -> None:
    sipd, gw_port = guarded_sipd
    counts = {"sent": 0, "received": 0}
    flooder = threading.Thread(target=flood, args=(sipd.sip_port, 3.0, counts))
    with Sipp("uas_answer", port=gw_port, calls=20, timeout=40):
        caller = Sipp(
            "uac_basic",
            port=free_port(),
            remote=sipd.sip_target,
            calls=20,
            rate=10,
            timeout=40,
            service="1000",
            keys={"hold": "100"},
        )
        caller.start()
        flooder.start()
        result = caller.wait(45)
        flooder.join()
    assert result.returncode == 0 and result.successful == 20 and result.failed == 0, (
        result.describe()
    )
    # the flooder got a few answers before its ban, then nothing
    assert counts["received"] < counts["sent"] / 10, counts
    metrics = sipd.metrics()
    assert metrics['sipedge_guard_bans_total{reason="rate"}'] >= 1
    assert metrics['sipedge_guard_drops_total{reason="banned"}'] > 100
    assert metrics["sipedge_guard_bans_active"] == 1
    bans = sipd.api("/api/bans")
    assert [b["address"] for b in bans] == [FLOODER] and bans[0]["reason"] == "rate"
    # a scanner's User-Agent: no answer, banned at once
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((SCANNER, 0))
        s.settimeout(0.5)
        s.sendto(options(extra="User-Agent: friendly-scanner\r\n"), ("127.0.0.1", sipd.sip_port))
        with pytest.raises(TimeoutError):
            s.recvfrom(65535)
    assert {b["address"]: b["reason"] for b in sipd.api("/api/bans")} == {
        FLOODER: "rate",
        SCANNER: "scanner",
    }
    # lifting: one, then all; the API wants the token
    assert sipd.api(f"/api/bans/{FLOODER}", method="DELETE") == {"cleared": 1}
    with pytest.raises(urllib.error.HTTPError) as err:
        sipd.api(f"/api/bans/{FLOODER}", method="DELETE")
    assert err.value.code == 404
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((FLOODER, 0))
        s.settimeout(2)
        s.sendto(options(), ("127.0.0.1", sipd.sip_port))
        assert s.recvfrom(65535)[0].startswith(b"SIP/2.0 200")
    assert sipd.api("/api/bans", method="DELETE") == {"cleared": 1}
    assert sipd.api("/api/bans") == []
    sipd.token = None
    with pytest.raises(urllib.error.HTTPError) as err:
        sipd.api("/api/bans")
    assert err.value.code == 401
    assert udp_exchange(sipd.sip_port, options("z9hG4bKgw")) is not None  # the gateway
    assert sipd.alive()
