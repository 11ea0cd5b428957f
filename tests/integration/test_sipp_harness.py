"""The SIPp harness and every scenario, SIPp against SIPp on loopback, no sipedge involved.

Each UAC scenario is run against a UAS scenario directly, so that when sipedge sits between
them and something fails, the fault is ours and not the harness's.
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sipp.harness import (
    SCENARIO_DIR,
    Sipp,
    SippMessage,
    SippResult,
    SippStartError,
    free_udp_port,
    parse_message_log,
    parse_stat_csv,
    render_scenario,
    run_sipp,
    scenario_keys,
    scenario_names,
)

needs_sipp = pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (sip-tester) missing")


def pair(
    uas_name: str,
    uac_name: str,
    uas_keys: dict[str, str] | None = None,
    uac_keys: dict[str, str] | None = None,
    calls: int = 1,
    rate: float | None = None,
    timeout: float = 15,
) -> tuple[SippResult, SippResult]:
    """Run a UAC scenario against a UAS scenario; both must end by themselves."""
    port = free_udp_port()
    with Sipp(uas_name, port=port, calls=calls, timeout=timeout, keys=uas_keys) as uas:
        uac = run_sipp(
            uac_name,
            port=free_udp_port(),
            remote=f"127.0.0.1:{port}",
            calls=calls,
            rate=rate,
            timeout=timeout,
            service="4420001",
            keys=uac_keys,
        )
        # a failed caller may leave the gateway waiting: then do not sit out its timeout
        server = uas.wait(timeout + 5) if uac.returncode == 0 else uas.stop(grace=1)
    return uac, server


def lines(result: SippResult, direction: str) -> list[str]:
    """Request lines without port, parameters and version: "INVITE sip:4420001@127.0.0.1"."""
    return [
        re.sub(r"(:\d+)?(;\S*)? SIP/2\.0$", "", m.first_line)
        for m in result.messages
        if m.direction == direction and m.is_request
    ]


def only(result: SippResult, direction: str, what: str | int) -> SippMessage:
    found = result.sent(what) if direction == "sent" else result.received(what)
    assert len(found) == 1, result.describe()
    return found[0]


def assert_sane_times(result: SippResult) -> None:
    stamps = [m.timestamp for m in result.messages]
    assert stamps == sorted(stamps)
    assert all(abs(t - time.time()) < 120 for t in stamps), stamps  # epoch seconds, now-ish


def tag(value: str | None) -> str | None:
    match = re.search(r";\s*tag=([^;>\s]+)", value or "")
    return match.group(1) if match else None


# ---------------------------------------------------------------------------------------------
# pure helpers, no SIPp


def test_every_attribute_key_is_declared() -> None:
    """Every [key] outside CDATA (where SIPp would not substitute it) and in a status line
    (which SIPp parses at load time) must have a declared default; <log message=...> is
    expanded by SIPp like message text."""
    names = scenario_names()
    assert len(names) >= 17
    for name in names:
        text = (SCENARIO_DIR / f"{name}.xml").read_text(encoding="latin-1")
        outside = re.sub(
            r'<!\[CDATA\[.*?\]\]>|<!--.*?-->|message="[^"]*"', "", text, flags=re.DOTALL
        )
        used = set(re.findall(r"\[([A-Za-z_][\w-]*)\]", outside))
        used |= set(re.findall(r"SIP/2\.0 \[(\w+)\]", text))
        assert used <= set(scenario_keys(name)), (name, used)
        assert text.lstrip().startswith("<?xml") and "<!--" in text, name


def test_render_substitutes_keys_only() -> None:
    text = '<pause milliseconds="[hold]"/><![CDATA[x [hold] <[call_id]>]]><recv response="[c]"/>'
    out = render_scenario(text, {"hold": "250", "c": '4"8'})
    assert (
        out == '<pause milliseconds="250"/><![CDATA[x 250 <[call_id]>]]><recv response="4&quot;8"/>'
    )


def test_message_log_parser() -> None:
    log = (
        "----------------------------------------------- 2026-11-26 17:55:00.123456\n"
        "UDP message sent (120 bytes):\n\n"
        "INVITE sip:1@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-1\r\ni: abc\r\n"
        "Content-Length: 3\r\n\r\nv=0\n\n"
        "-----------------------------------------------\n"
        "Ignoring provisional UDP message for transaction invite:\n\n"
        "SIP/2.0 180 Ringing\r\n\r\n\n"
        "----------------------------------------------- 2026-11-26\t17:55:00.623456\n"
        "UDP message received [80] bytes :\n\n"
        "SIP/2.0 486 Busy Here\r\nCSeq: 1 INVITE\r\nTo: <sip:1@h>;tag=x\r\n\r\n\n"
    )
    first, second = parse_message_log(log)
    assert first.direction == "sent" and first.first_line == "INVITE sip:1@h SIP/2.0"
    assert first.header("call-id") == first.call_id == "abc" and first.branch == "z9hG4bK-1"
    assert first.body.strip() == "v=0" and first.method == "INVITE" and first.status is None
    assert second.direction == "received" and second.status == 486 and second.method == "INVITE"
    assert second.header("TO") == "<sip:1@h>;tag=x" and second.header("X-None") is None
    assert second.timestamp - first.timestamp == pytest.approx(0.5, abs=1e-6)


def test_stat_csv_parser() -> None:
    csv_text = (
        "StartTime;TotalCallCreated;SuccessfulCall(P);SuccessfulCall(C);FailedCall(C);\n"
        "x;1;0;0;0;\n"
        "y;3;1;2;1;\n"
    )
    stats = parse_stat_csv(csv_text)
    assert stats["successful"] == 2 and stats["failed"] == 1 and stats["created"] == 3


def test_bad_arguments() -> None:
    with pytest.raises(FileNotFoundError):
        Sipp("no_such_scenario", port=5060)
    with pytest.raises(ValueError):
        Sipp("uas_answer", port=5060, keys={"bad key": "1"})
    with pytest.raises(ValueError):
        Sipp("uas_answer", port=5060, keys={"call_id": "1"})
    assert scenario_keys("uac_basic")["hold"] == "1000"


# ---------------------------------------------------------------------------------------------
# SIPp against SIPp


@pytest.mark.sipp
@needs_sipp
def test_basic_call_caller_hangs_up() -> None:
    uac, uas = pair("uas_answer", "uac_basic", {"ring": "200"}, {"hold": "300"})
    assert uac.returncode == 0, uac.describe()
    assert uas.returncode == 0, uas.describe()
    assert uac.successful == 1 and uac.failed == 0 and uas.successful == 1
    assert lines(uac, "sent") == [
        "INVITE sip:4420001@127.0.0.1",
        "ACK sip:gw@127.0.0.1",
        "BYE sip:gw@127.0.0.1",
    ]
    assert [m.status for m in uac.received()] == [100, 180, 200, 200]
    assert lines(uas, "received") == [
        "INVITE sip:4420001@127.0.0.1",
        "ACK sip:gw@127.0.0.1",
        "BYE sip:gw@127.0.0.1",
    ]
    assert_sane_times(uac)
    assert_sane_times(uas)
    invite = only(uas, "received", "INVITE")
    assert invite.call_id == only(uac, "sent", "INVITE").call_id
    assert "m=audio " in invite.body and "a=rtpmap:0 PCMU/8000" in invite.body
    assert "c=IN IP4 127.0.0.1" in invite.body
    ok = uac.received(200)[0]
    assert "m=audio " in ok.body and tag(ok.header("To"))
    # the ACK goes to the 200's Contact, inside the dialog, on a new branch
    ack = only(uac, "sent", "ACK")
    assert ack.first_line.startswith("ACK sip:gw@127.0.0.1:") and tag(ack.header("To")) == tag(
        ok.header("To")
    )
    assert ack.branch != invite.branch
    # ring=200 between 180 and 200; hold=300 between ACK and BYE
    ringing, answer = uas.sent(180)[0], uas.sent(200)[0]
    assert 0.18 <= answer.timestamp - ringing.timestamp < 0.6
    bye = only(uac, "sent", "BYE")
    assert 0.28 <= bye.timestamp - ack.timestamp < 0.8


@pytest.mark.sipp
@needs_sipp
def test_callee_hangs_up() -> None:
    uac, uas = pair("uas_answer_then_bye", "uac_callee_bye", {"hold": "300"})
    assert uac.returncode == 0, uac.describe()
    assert uas.returncode == 0, uas.describe()
    bye = only(uas, "sent", "BYE")
    ok = only(uas, "sent", 200)
    invite = only(uas, "received", "INVITE")
    # in-dialog BYE: to the caller's Contact, From/To swapped with both tags
    contact = (invite.header("Contact") or "").strip("<>")
    assert contact.startswith("sip:sipp@127.0.0.1:") and bye.first_line == f"BYE {contact} SIP/2.0"
    assert tag(bye.header("From")) == tag(ok.header("To"))
    assert tag(bye.header("To")) == tag(invite.header("From"))
    assert bye.call_id == invite.call_id
    assert bye.timestamp - only(uas, "received", "ACK").timestamp >= 0.28
    assert [m.status for m in uas.received() if m.status] == [200]


@pytest.mark.sipp
@needs_sipp
@pytest.mark.parametrize(
    ("uas_name", "uas_keys", "code"),
    [
        ("uas_reject", {}, 503),
        ("uas_reject", {"code": "404", "reason": "Not_Found"}, 404),
        ("uas_busy", {}, 486),
        ("uas_183_sdp_then_fail", {"code": "480", "delay": "200"}, 480),
    ],
)
def test_rejected_call_is_acked_in_transaction(
    uas_name: str, uas_keys: dict[str, str], code: int
) -> None:
    uac, uas = pair(uas_name, "uac_expect_fail", uas_keys, {"expect_code": str(code)})
    assert uac.returncode == 0, uac.describe()
    assert uas.returncode == 0, uas.describe()
    invite, final = only(uac, "sent", "INVITE"), only(uac, "received", code)
    ack = only(uas, "received", "ACK")
    # RFC 3261 17.1.1.3: same branch and Request-URI as the INVITE, To of the response
    assert ack.branch == invite.branch
    assert ack.first_line.split()[1] == invite.first_line.split()[1]
    assert tag(ack.header("To")) == tag(final.header("To")) is not None
    assert ack.header("CSeq") == "1 ACK"
    if uas_name == "uas_183_sdp_then_fail":
        early = only(uac, "received", 183)
        assert "m=audio " in early.body
        assert 0.18 <= final.timestamp - early.timestamp < 0.6


@pytest.mark.sipp
@needs_sipp
def test_expect_fail_fails_on_another_code() -> None:
    """The expected code is really checked: 404 when 503 is expected fails the caller."""
    port = free_udp_port()
    with Sipp("uas_reject", port=port, timeout=10, keys={"code": "404"}) as uas:
        uac = run_sipp(
            "uac_expect_fail",
            port=free_udp_port(),
            remote=f"127.0.0.1:{port}",
            timeout=10,
            keys={"expect_code": "503"},
        )
        uas.stop()
    assert uac.returncode == 1 and uac.failed == 1, uac.describe()
    assert uac.stats["unexpected"] == 1


@pytest.mark.sipp
@needs_sipp
@pytest.mark.parametrize(
    ("uas_name", "provisional"),
    [
        ("uas_ring_then_cancel", [100, 180]),
        ("uas_ringing_only", [100, 180]),
        ("uas_trying_only", [100]),
        ("uas_progress_only", [100, 183]),
    ],
)
def test_cancel(uas_name: str, provisional: list[int]) -> None:
    uac, uas = pair(uas_name, "uac_cancel", {"wait": "5000"}, {"delay": "300"})
    assert uac.returncode == 0, uac.describe()
    assert uas.returncode == 0, uas.describe()
    assert [m.status for m in uac.received()][: len(provisional)] == provisional
    assert sorted(m.status or 0 for m in uac.received()[len(provisional) :]) == [200, 487]
    invite, cancel = only(uac, "sent", "INVITE"), only(uas, "received", "CANCEL")
    assert cancel.branch == invite.branch and cancel.header("CSeq") == "1 CANCEL"
    assert cancel.first_line.split()[1] == invite.first_line.split()[1]
    assert tag(cancel.header("To")) is None
    last_provisional = uac.received(provisional[-1])[-1]
    assert 0.28 <= cancel.timestamp - last_provisional.timestamp < 0.8
    r487 = only(uas, "sent", 487)
    assert r487.header("CSeq") == "1 INVITE" and only(uas, "sent", 200).header("CSeq") == "1 CANCEL"
    ack = only(uas, "received", "ACK")
    assert ack.branch == invite.branch and tag(ack.header("To")) == tag(r487.header("To"))


@pytest.mark.sipp
@needs_sipp
def test_silent_gateway_ends_by_itself() -> None:
    """Without a CANCEL the silence scenarios end after [wait] ms as a successful call."""
    port = free_udp_port()
    started = time.monotonic()
    with Sipp("uas_trying_only", port=port, timeout=10, keys={"wait": "600"}) as uas:
        # -nd: when its [wait] runs out the caller must not CANCEL (SIPp's default behaviour)
        uac = run_sipp(
            "uac_basic",
            port=free_udp_port(),
            remote=f"127.0.0.1:{port}",
            timeout=10,
            keys={"wait": "400"},
            extra=["-nd"],
        )
        server = uas.wait(8)
    assert server.returncode == 0 and server.successful == 1, server.describe()
    assert not server.stopped and time.monotonic() - started < 5
    # the caller gave up on its own [wait]: a receive timeout is a failed call
    assert uac.returncode == 1 and uac.stats["timeouts"] == 1, uac.describe()


@pytest.mark.sipp
@needs_sipp
def test_no_answer_shows_invite_retransmissions() -> None:
    """SIPp logs every received copy of the INVITE: the UAS trace shows T1 doubling."""
    port = free_udp_port()
    with Sipp("uas_no_answer", port=port, timeout=10) as uas:
        uac = run_sipp(
            "uac_basic",
            port=free_udp_port(),
            remote=f"127.0.0.1:{port}",
            timeout=10,
            keys={"wait": "2000"},
        )
        server = uas.stop()
    assert server.stopped and not uas.running
    copies = server.received("INVITE")
    assert len(copies) >= 3, server.describe()
    assert len({m.branch for m in copies}) == 1 and len({m.text for m in copies}) == 1
    gaps = [b.timestamp - a.timestamp for a, b in itertools.pairwise(copies)]
    assert gaps[0] == pytest.approx(0.5, abs=0.1), gaps  # SIPp retrans="500": 0.5, 1, 2 s
    assert gaps[1] == pytest.approx(1.0, abs=0.1), gaps
    assert all(b > a for a, b in itertools.pairwise(gaps)), gaps
    assert server.sent() == []
    # the sender's side agrees, and SIPp counted the retransmissions
    assert len(uac.sent("INVITE")) == len(copies) and uac.stats["retransmissions"] >= 2
    assert uac.returncode == 1


@pytest.mark.sipp
@needs_sipp
def test_late_200_without_cancel() -> None:
    uac, uas = pair("uas_late_200", "uac_basic", {"delay": "400"}, {"hold": "100"})
    assert uac.returncode == 0, uac.describe()
    assert uas.returncode == 0, uas.describe()
    gap = uas.sent(200)[0].timestamp - only(uas, "sent", 180).timestamp
    assert 0.38 <= gap < 0.9


@pytest.mark.sipp
@needs_sipp
def test_late_200_crosses_cancel() -> None:
    uac, uas = pair(
        "uas_late_200", "uac_cancel_race", {"delay": "800"}, {"delay": "200", "hold": "100"}
    )
    assert uac.returncode == 0, uac.describe()
    assert uas.returncode == 0, uas.describe()
    assert "CANCEL received" in uas.logs
    ringing, cancel = only(uas, "sent", 180), only(uas, "received", "CANCEL")
    cancel_ok, answer = uas.sent(200)[0], uas.sent(200)[1]
    assert cancel_ok.header("CSeq") == "1 CANCEL" and answer.header("CSeq") == "1 INVITE"
    assert 0.18 <= cancel.timestamp - ringing.timestamp < 0.6
    # the 200 OK still comes [delay] after the 180, not right after the CANCEL
    assert 0.75 <= answer.timestamp - ringing.timestamp < 1.3
    assert uas.sent(487) == []
    assert lines(uas, "received") == [
        "INVITE sip:4420001@127.0.0.1",
        "CANCEL sip:4420001@127.0.0.1",
        "ACK sip:gw@127.0.0.1",
        "BYE sip:gw@127.0.0.1",
    ]


@pytest.mark.sipp
@needs_sipp
def test_options_health_check() -> None:
    uac, uas = pair("uas_options", "uac_options", calls=3, rate=20)
    assert uac.returncode == 0 and uac.successful == 3, uac.describe()
    assert uas.returncode == 0 and uas.successful == 3, uas.describe()
    assert len(uas.received("OPTIONS")) == 3 and len(uac.received(200)) == 3


@pytest.mark.sipp
@needs_sipp
def test_several_calls_at_a_rate() -> None:
    """-m / -r / -l: 20 calls at 40 cps, all counted in the statistics, bounded in time."""
    started = time.monotonic()
    uac, uas = pair("uas_answer", "uac_basic", None, {"hold": "100"}, calls=20, rate=40)
    assert uac.returncode == 0, uac.describe()
    assert uas.returncode == 0, uas.describe()
    assert uac.successful == 20 and uas.successful == 20 and uac.failed == 0
    assert len({m.call_id for m in uas.received("INVITE")}) == 20
    assert time.monotonic() - started < 10


@pytest.mark.sipp
@needs_sipp
def test_global_timeout_always_stops_sipp() -> None:
    started = time.monotonic()
    result = run_sipp("uas_answer", port=free_udp_port(), timeout=1)
    assert time.monotonic() - started < 4
    assert result.returncode != 0 and not result.timed_out  # -timeout_error: a failure
    assert result.messages == []


@pytest.mark.sipp
@needs_sipp
def test_bind_failure_is_reported() -> None:
    port = free_udp_port()
    with Sipp("uas_answer", port=port, timeout=5), pytest.raises(SippStartError) as err:
        run_sipp("uas_answer", port=port, timeout=5)
    clash = err.value.result
    assert clash.returncode not in (0, 1) and clash.stderr, clash.describe()


# ---------------------------------------------------------------------------------------------
# a network namespace of our own


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"sipp-h-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, timeout=10)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=10)


@pytest.mark.sipp
@pytest.mark.root
@needs_sipp
def test_in_a_network_namespace(netns: str, tmp_path: Path) -> None:
    port = 5060  # a fresh namespace: every port is free
    with Sipp("uas_answer", port=port, timeout=10, netns=netns, workdir=tmp_path / "uas") as uas:
        uac = run_sipp(
            "uac_basic",
            port=5070,
            remote=f"127.0.0.1:{port}",
            timeout=10,
            netns=netns,
            keys={"hold": "50"},
            workdir=tmp_path / "uac",
        )
        server = uas.wait(10)
    assert uac.returncode == 0, uac.describe()
    assert server.returncode == 0 and server.command[:4] == ["ip", "netns", "exec", netns]
    assert (tmp_path / "uac").is_dir()  # a caller-given workdir is kept
