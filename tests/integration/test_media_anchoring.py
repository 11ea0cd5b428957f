"""Media anchoring end to end on loopback: SIPp caller -> sipd -> SIPp gateway, with a real
sipedge-mediad (userspace relay) that sipd drives. RTP is real: SIPp's pcap player and echo,
and UDP sockets of the test.

What is checked: the SDP each side sees points at the relay (and nothing of the other side's
media address leaks), RTP crosses the relay both ways, every relay session is deleted whatever
way the call ends, RTP start stops (or not) gateway switching, the RTP timeout and hold,
re-INVITE with a new address, the maximum call duration.
"""

from __future__ import annotations

import re
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, gateway
from tests.media.netns import Mediad
from tests.sipp.harness import Sipp, SippResult

pytestmark = [pytest.mark.sipp, pytest.mark.slow]

_range = iter(range(43000, 44000, 40))


@pytest.fixture
def mediad(tmp_path: Path) -> Iterator[Mediad]:
    low = next(_range)
    m = Mediad(
        tmp_path / "mediad.sock",  # the path make_config gives sipd
        [
            "--fast-path",
            "userspace",
            "--interface",
            "lo",
            "--bind",
            "127.0.0.1",
            "--port-range",
            f"{low}-{low + 39}",
            "--behind-nat",
            "On",
        ],
        tmp_path / "mediad.log",
    )
    m.start()
    yield m
    m.stop()


def sessions(m: Mediad) -> list[dict[str, Any]]:
    return list(m.ok({"command": "list"})["calls"])


def wait_sessions(m: Mediad, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        calls = sessions(m)
        if len(calls) == count or time.monotonic() > deadline:
            return calls
        time.sleep(0.05)


def assert_no_leak(m: Mediad) -> None:
    assert wait_sessions(m, 0) == []
    _status, health = m.get("/healthz")
    assert health["sessions"] == 0 and health["ports_in_use"] == 0


def caller(sipd: Any, scenario: str, media_port: int | None = None, **keys: str) -> Sipp:
    return Sipp(
        scenario,
        port=free_port(),
        remote=sipd.sip_target,
        calls=1,
        timeout=40,
        service="4420001",
        keys=keys,
        media_port=media_port,
    )


def uas(
    name: str, port: int, media_port: int | None = None, echo: bool = False, **keys: str
) -> Sipp:
    return Sipp(
        name,
        port=port,
        calls=1,
        timeout=40,
        keys=keys,
        media_port=media_port,
        extra=["-rtp_echo"] if echo else [],
    )


def sdp_media(message_text: str) -> tuple[str, int]:
    c = re.findall(r"^c=IN IP4 (\S+)", message_text, re.M)
    m = re.search(r"^m=audio (\d+)", message_text, re.M)
    assert c and m, message_text
    return c[-1], int(m.group(1))


def first(result: SippResult, direction: str, start: str) -> str:
    for msg in result.messages:
        if msg.direction == direction and msg.first_line.startswith(start):
            return msg.text
    raise AssertionError(f"no {direction} {start!r} in\n{result.describe()}")


def rtp(seq: int, payload: bytes = b"\xd5" * 160) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0x5EED) + payload


def last_cdr(sipd: Any) -> dict[str, Any]:
    records = sipd.cdrs(wait_for=1)
    assert records, sipd.log()
    return records[0]


# ---------------------------------------------------------------------------------------------


def test_sdp_rewritten_and_rtp_relayed_both_ways(sipd_factory: Any, mediad: Mediad) -> None:
    gw_port, gw_media, caller_media = free_port(), free_port(), free_port()
    sipd = sipd_factory([gateway("gw1", gw_port)])
    with uas("uas_answer", gw_port, media_port=gw_media, echo=True) as gw:
        c = caller(sipd, "uac_basic", media_port=caller_media, hold="2500")
        c.start()
        calls = wait_sessions(mediad, 1)
        assert len(calls) == 1, sipd.log()
        relay_a, relay_b = calls[0]["ports"]
        # wait for the answer, then play RTP into the caller's relay port
        deadline = time.monotonic() + 5
        while not mediad.ok({"command": "list"})["calls"][0]["answered"]:
            assert time.monotonic() < deadline, sipd.log()
            time.sleep(0.05)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(2)
        echoed = []
        for seq in range(20):
            sock.sendto(rtp(seq), ("127.0.0.1", relay_a))
            try:
                data, src = sock.recvfrom(2048)
                echoed.append((data, src))
            except TimeoutError:
                pass
        sock.close()
        q = mediad.ok({"command": "query", "call-id": calls[0]["call-id"]})
        live = sipd.api("/api/calls")  # the media path, as the operator console shows it
        result = c.wait(40)
        gw_result = gw.wait(20)
    assert result.returncode == 0, result.describe() + sipd.log()
    assert gw_result.returncode == 0, gw_result.describe()
    # the gateway echoed our RTP back through the relay: both directions crossed it
    assert len(echoed) >= 15, (echoed, q, mediad.log())
    assert all(src == ("127.0.0.1", relay_a) for _, src in echoed)
    assert echoed[0][0][:2] == rtp(0)[:2]
    legs = {leg["tag"]: leg for leg in q["legs"]}
    assert legs["caller"]["packets"] >= 15 and legs["callee"]["packets"] >= 15
    # SDP: the gateway was offered the relay, the caller was answered with the relay
    invite = first(gw_result, "received", "INVITE")
    assert sdp_media(invite) == ("127.0.0.1", relay_b)
    assert str(caller_media) not in invite.split("\n\n", 1)[-1].split("m=audio")[1][:8]
    answer = first(result, "received", "SIP/2.0 200")
    assert sdp_media(answer) == ("127.0.0.1", relay_a)
    assert legs["callee"]["remote-port"] == gw_media
    assert len(live) == 1 and live[0]["media"] == {
        "relayed": True,
        "caller_sends_to": [f"127.0.0.1:{relay_a}"],
        "callee_sends_to": [f"127.0.0.1:{relay_b}"],
        "encrypted": [],
        "on_hold": False,
    }
    assert live[0]["current_attempt"]["gateway_address"] == f"127.0.0.1:{gw_port}"
    assert_no_leak(mediad)
    m = sipd.metrics()
    assert m["sipedge_media_relay_sessions_created_total"] == 1
    assert m["sipedge_media_relay_sessions_deleted_total"] == 1


def test_failed_and_cancelled_calls_leave_no_relay_session(
    sipd_factory: Any, mediad: Mediad
) -> None:
    p1, p2 = free_port(), free_port()
    sipd = sipd_factory([gateway("gw1", p1), gateway("gw2", p2)])
    # gw1 fails, gw2 busy: two attempts, two relay sessions, both deleted
    with uas("uas_reject", p1, code="503"), uas("uas_busy", p2):
        result = caller(sipd, "uac_expect_fail", expect_code="486")
        result.start()
        assert result.wait(40).returncode == 0, sipd.log()
    assert_no_leak(mediad)
    assert len(last_cdr(sipd)["attempts"]) == 2
    # caller CANCEL while ringing
    with uas("uas_ring_then_cancel", p1):
        c = caller(sipd, "uac_cancel", delay="500")
        c.start()
        assert c.wait(40).returncode == 0, sipd.log()
    assert_no_leak(mediad)
    m = sipd.metrics()
    assert m["sipedge_media_relay_sessions_created_total"] == 3
    assert m["sipedge_media_relay_sessions_deleted_total"] == 3


@pytest.mark.parametrize("stop_after_rtp", ["On", "Off"])
def test_rtp_start_stops_switching(sipd_factory: Any, mediad: Mediad, stop_after_rtp: str) -> None:
    p1, p2 = free_port(), free_port()
    sipd = sipd_factory(
        [gateway("gw1", p1), gateway("gw2", p2)],
        parameters={
            "SS_SIP_STOP_SWITCH_AFTER_SDP": "Off",
            "SS_GATEWAY_SWITCH_STOP_AFTER_RTP_START": stop_after_rtp,
        },
    )
    with (
        uas("uas_183_rtp_then_fail", p1, media_port=free_port(), code="503", delay="1500"),
        uas("uas_answer", p2),
    ):
        if stop_after_rtp == "On":
            c = caller(sipd, "uac_expect_fail", expect_code="503")
        else:
            c = caller(sipd, "uac_basic")
        c.start()
        result = c.wait(40)
    assert result.returncode == 0, result.describe() + sipd.log() + mediad.log()
    cdr = last_cdr(sipd)
    assert sipd.metrics()["sipedge_media_rtp_started_total"] == 1
    if stop_after_rtp == "On":
        assert [a["gateway"] for a in cdr["attempts"]] == ["gw1"]
        assert cdr["switch_stop_reason"] == "stop after RTP start"
    else:
        assert [a["gateway"] for a in cdr["attempts"]] == ["gw1", "gw2"]
        assert cdr["answer_time"] is not None
    assert_no_leak(mediad)


def test_rtp_timeout_ends_the_call(sipd_factory: Any, mediad: Mediad) -> None:
    gw_port = free_port()
    sipd = sipd_factory([gateway("gw1", gw_port)], parameters={"SS_MEDIA_RTP_TIMEOUT": 2})
    with uas("uas_answer", gw_port) as gw:
        c = caller(sipd, "uac_callee_bye", wait="15000")
        c.start()
        started = time.monotonic()
        result = c.wait(40)
        elapsed = time.monotonic() - started
        gw_result = gw.wait(20)
    assert result.returncode == 0, result.describe() + sipd.log()
    assert gw_result.returncode == 0, gw_result.describe()  # the gateway got a BYE too
    assert 2.0 <= elapsed < 8.0
    cdr = last_cdr(sipd)
    assert cdr["cause"] == "RTP timeout" and cdr["release_side"] == "system"
    assert sipd.metrics()["sipedge_media_rtp_timeouts_total"] == 1
    assert_no_leak(mediad)


def test_hold_suspends_the_rtp_timeout(sipd_factory: Any, mediad: Mediad) -> None:
    gw_port, gw_media = free_port(), free_port()
    sipd = sipd_factory([gateway("gw1", gw_port)], parameters={"SS_MEDIA_RTP_TIMEOUT": 2})
    with uas("uas_answer_reinvite", gw_port, media_port=gw_media, direction="recvonly") as gw:
        c = caller(
            sipd, "uac_reinvite", before="300", hold="4500", direction="sendonly", re_port="7000"
        )
        c.start()
        result = c.wait(40)
        gw_result = gw.wait(20)
    assert result.returncode == 0, result.describe() + sipd.log()
    assert gw_result.returncode == 0, gw_result.describe()
    cdr = last_cdr(sipd)
    assert cdr["cause"] == "normal clearing" and cdr["release_side"] == "caller"
    # the re-INVITE's hold reached the gateway with the relay's address
    reinvites = [
        m
        for m in gw_result.messages
        if m.direction == "received" and m.first_line.startswith("INVITE")
    ]
    assert len(reinvites) == 2
    assert "a=sendonly" in reinvites[1].text
    assert_no_leak(mediad)


def test_reinvite_with_new_address_updates_the_relay(sipd_factory: Any, mediad: Mediad) -> None:
    gw_port, gw_media = free_port(), free_port()
    new_port = free_port()
    sipd = sipd_factory([gateway("gw1", gw_port)])
    with uas("uas_answer_reinvite", gw_port, media_port=gw_media, direction="sendrecv") as gw:
        c = caller(
            sipd,
            "uac_reinvite",
            before="300",
            hold="1500",
            direction="sendrecv",
            re_ip="127.0.0.1",
            re_port=str(new_port),
        )
        c.start()
        deadline = time.monotonic() + 10
        caller_leg: dict[str, Any] = {}
        while time.monotonic() < deadline:
            calls = sessions(mediad)
            if calls:
                q = mediad.ok({"command": "query", "call-id": calls[0]["call-id"]})
                caller_leg = next(leg for leg in q["legs"] if leg["tag"] == "caller")
                if caller_leg["remote-port"] == new_port:
                    break
            time.sleep(0.05)
        result = c.wait(40)
        gw_result = gw.wait(20)
    assert result.returncode == 0, result.describe() + sipd.log()
    assert caller_leg.get("remote-port") == new_port, caller_leg
    invites = [
        m
        for m in gw_result.messages
        if m.direction == "received" and m.first_line.startswith("INVITE")
    ]
    # the gateway sees the same relay address and port before and after the move
    assert sdp_media(invites[0].text) == sdp_media(invites[1].text)
    assert sdp_media(invites[1].text)[1] != new_port
    replies = [m for m in result.messages if m.direction == "received" and m.status == 200]
    assert sdp_media(replies[1].text)[0] == "127.0.0.1"
    assert sdp_media(replies[1].text)[1] != gw_media
    assert_no_leak(mediad)


def test_max_call_duration(sipd_factory: Any, mediad: Mediad) -> None:
    gw_port = free_port()
    sipd = sipd_factory(
        [gateway("gw1", gw_port)],
        parameters={"SS_MAX_CALL_DURATION": 2, "SS_MEDIA_RTP_TIMEOUT": "Off"},
    )
    with uas("uas_answer", gw_port) as gw:
        c = caller(sipd, "uac_callee_bye", wait="15000")
        c.start()
        result = c.wait(40)
        gw_result = gw.wait(20)
    assert result.returncode == 0, result.describe() + sipd.log()
    assert gw_result.returncode == 0
    cdr = last_cdr(sipd)
    assert cdr["cause"] == "max call duration" and 1.9 <= cdr["duration"] < 4
    assert_no_leak(mediad)


def test_mediad_down_calls_proceed_unanchored(sipd_factory: Any) -> None:
    gw_port = free_port()
    sipd = sipd_factory([gateway("gw1", gw_port)])
    with uas("uas_answer", gw_port) as gw:
        c = caller(sipd, "uac_basic", hold="200")
        c.start()
        result = c.wait(40)
        gw_result = gw.wait(20)
    assert result.returncode == 0, result.describe() + sipd.log()
    m = sipd.metrics()
    assert m['sipedge_media_unanchored_total{reason="unreachable"}'] >= 1
    invite = first(gw_result, "received", "INVITE")
    assert "m=audio" in invite  # the caller's SDP, as it was


def test_encrypted_gateway_refused_without_mediad(sipd_factory: Any) -> None:
    p1, p2 = free_port(), free_port()
    sipd = sipd_factory(
        [gateway("gw1", p1, rtp_encryption=True), gateway("gw2", p2)],
        parameters={"SS_RTPENCRYPTIONMODE": 1, "SS_RTPENCRYPTIONKEY": "sipedge"},
    )
    with uas("uas_answer", p2):
        c = caller(sipd, "uac_basic", hold="200")
        c.start()
        result = c.wait(40)
    assert result.returncode == 0, result.describe() + sipd.log()
    cdr = last_cdr(sipd)
    assert [(a["gateway"], a["result"]) for a in cdr["attempts"]] == [
        ("gw1", "media unavailable"),
        ("gw2", "answered"),
    ]


def test_caller_media_in_a_refused_network_gets_488(
    sipd_factory: Any, mediad: Mediad, tmp_path: Path
) -> None:
    gw_port = free_port()
    media = {
        "control_socket": str(tmp_path / "mediad.sock"),
        "port_range": [20000, 20999],
        "fast_path": "userspace",
        "interfaces": ["lo"],
        # the default list: refuses 127.0.0.0/8, where the SIPp caller's media is
    }
    sipd = sipd_factory([gateway("gw1", gw_port)], extra={"media": media})
    c = caller(sipd, "uac_expect_fail", expect_code="488")
    c.start()
    result = c.wait(40)
    assert result.returncode == 0, result.describe() + sipd.log()
    refused = first(result, "received", "SIP/2.0 488")
    assert re.search(r"^Warning: 301 \S+ \"media-address-refused: .*127\.0\.0\.0/8", refused, re.M)
    cdr = last_cdr(sipd)
    assert (cdr["cause"], cdr["final_status"]) == ("media-address-refused", 488)
    assert cdr["attempts"][0]["result"] == "media-address-refused"
    assert sipd.metrics()['sipedge_media_refused_total{reason="media-address-refused"}'] == 1
    assert_no_leak(mediad)


def test_sessions_of_a_previous_sipd_are_deleted_at_start(
    sipd_factory: Any, mediad: Mediad
) -> None:
    # a session no sipd owns (its sipd was killed): the next sipd deletes it when it starts
    mediad.ok(
        {
            "command": "offer",
            "call-id": "orphan-of-a-dead-sipd/0",
            "from-tag": "caller",
            "address": "127.0.0.1",
            "port": 4000,
        }
    )
    assert len(sessions(mediad)) == 1
    sipd = sipd_factory([gateway("gw1", free_port())])
    assert_no_leak(mediad)
    deadline = time.monotonic() + 5
    while sipd.metrics().get("sipedge_media_orphans_deleted_total") != 1:
        assert time.monotonic() < deadline, sipd.log()
        time.sleep(0.1)
