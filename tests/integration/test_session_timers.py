"""RFC 4028 session timers through the B2BUA, SIPp on each side (docs/session-timers.md).

Each leg negotiates its own timer: the caller's Session-Expires never reaches the gateway.
The fast tests check the negotiation (422, the headers of our 2xx and of our INVITE, the
one retry after a gateway's 422); the slow one waits for a real refresh and a real expiry
(the RFC floor of 90 s makes that about a minute).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import free_port, gateway
from tests.sipp.harness import Sipp, SippMessage, SippResult

pytestmark = [pytest.mark.sipp]


def run(
    sipd: Any, gw_port: int, uac: str, uas: str | None, timeout: float = 30, **keys: str
) -> tuple[SippResult, SippResult | None]:
    def caller() -> SippResult:
        c = Sipp(
            uac,
            port=free_port(),
            remote=sipd.sip_target,
            calls=1,
            timeout=timeout,
            service="4420001",
            keys=keys,
        )
        c.start()
        return c.wait(timeout + 10)

    if uas is None:
        return caller(), None
    with Sipp(uas, port=gw_port, calls=1, timeout=timeout) as gw:
        result = caller()
        gw_result = gw.wait(20) if result.ok else gw.stop(grace=1)
    return result, gw_result


def first_final(result: SippResult, direction: str, cseq: str) -> SippMessage:
    found = result.sent() if direction == "sent" else result.received()
    for m in found:
        if not m.is_request and (m.status or 0) >= 200 and m.header("CSeq") == cseq:
            return m
    raise AssertionError(f"no final to {cseq}:\n{result.describe()}")


def test_too_small_session_expires_gets_422_with_min_se(sipd_factory: Any) -> None:
    port = free_port()
    sipd = sipd_factory([gateway("gw1", port)])
    caller, _ = run(sipd, port, "uac_session_too_small", None, se="30")
    assert caller.ok, caller.describe() + sipd.log()
    answer = first_final(caller, "received", "1 INVITE")
    assert answer.status == 422
    assert answer.header("Min-SE") == "90"
    assert sipd.metrics().get('sipedge_calls_rejected_total{status="422"}') == 1


def test_configured_min_se_is_what_422_asks_for(sipd_factory: Any) -> None:
    port = free_port()
    sipd = sipd_factory([gateway("gw1", port)], parameters={"SS_SIP_MIN_SE": 600})
    caller, _ = run(sipd, port, "uac_session_too_small", None, se="300")
    assert caller.ok, caller.describe() + sipd.log()
    assert first_final(caller, "received", "1 INVITE").header("Min-SE") == "600"


def test_negotiation_on_both_legs(sipd_factory: Any) -> None:
    port = free_port()
    sipd = sipd_factory([gateway("gw1", port)])
    caller, gw = run(sipd, port, "uac_session_timer", "uas_answer", se="600", supported="timer")
    assert caller.ok, caller.describe() + sipd.log()
    assert gw is not None and gw.ok, gw.describe() if gw else ""
    # caller leg: its interval, and it refreshes (it supports timers)
    ok = first_final(caller, "received", "1 INVITE")
    assert ok.status == 200
    assert ok.header("Session-Expires") == "600;refresher=uac"
    assert "timer" in (ok.header("Require") or "")
    # gateway leg: our own request, nothing of the caller's
    invite = gw.received("INVITE")[0]
    assert invite.header("Session-Expires") == "1800"
    assert invite.header("Min-SE") == "90"
    assert "timer" in (invite.header("Supported") or "")


def test_caller_without_timer_support_gets_refresher_uas(sipd_factory: Any) -> None:
    port = free_port()
    sipd = sipd_factory([gateway("gw1", port)], parameters={"SS_SIP_SESSION_EXPIRES": 300})
    caller, gw = run(sipd, port, "uac_session_timer", "uas_answer", se="7200", supported="path")
    assert caller.ok, caller.describe() + sipd.log()
    ok = first_final(caller, "received", "1 INVITE")
    assert ok.header("Session-Expires") == "300;refresher=uas"  # lowered to ours, we refresh
    assert ok.header("Require") is None
    assert gw is not None and gw.received("INVITE")[0].header("Session-Expires") == "300"


def test_session_timer_off(sipd_factory: Any) -> None:
    port = free_port()
    sipd = sipd_factory([gateway("gw1", port)], parameters={"SS_SIP_SESSION_TIMER": "Off"})
    caller, gw = run(sipd, port, "uac_session_timer", "uas_answer", se="30")
    assert caller.ok, caller.describe() + sipd.log()  # no 422 when we do not do timers
    assert first_final(caller, "received", "1 INVITE").header("Session-Expires") is None
    assert gw is not None and gw.received("INVITE")[0].header("Session-Expires") is None


def test_gateway_422_is_retried_once_with_its_min_se(sipd_factory: Any) -> None:
    port = free_port()
    sipd = sipd_factory([gateway("gw1", port)])
    caller, gw = run(sipd, port, "uac_session_timer", "uas_session_422")
    assert caller.ok, caller.describe() + sipd.log()
    assert gw is not None and gw.ok, gw.describe()
    invites = gw.received("INVITE")
    first = invites[0]
    retry = next(m for m in invites if m.header("CSeq") == "2 INVITE")
    assert first.header("Session-Expires") == "1800"
    assert retry.header("Session-Expires") == "3600" and retry.header("Min-SE") == "3600"
    assert retry.call_id == first.call_id
    assert retry.header("From") == first.header("From")


@pytest.mark.slow
def test_refresh_as_refresher_and_expiry_when_the_gateway_does_not_refresh(
    sipd_factory: Any,
) -> None:
    """Caller leg: Session-Expires 90, no timer support -> we refresh (UPDATE) at ~45 s.
    Gateway leg: its 200 says it refreshes (refresher=uas, 90 s) and it never does -> at
    90 - 30 = 60 s we end the call: BYE to both, CDR cause "session timer expired"."""
    port = free_port()
    sipd = sipd_factory([gateway("gw1", port)], parameters={"SS_MEDIA_RTP_TIMEOUT": "Off"})
    caller, gw = run(sipd, port, "uac_session_refreshed", "uas_session_refresher", timeout=90)
    assert caller.ok, caller.describe() + sipd.log()
    assert gw is not None and gw.ok, gw.describe()
    ack_time = caller.sent("ACK")[0].timestamp
    update = caller.received("UPDATE")[0]
    assert 44 <= update.timestamp - ack_time <= 47, update.timestamp - ack_time
    assert update.header("Session-Expires") == "90;refresher=uac"
    assert update.body.strip() == ""
    bye = caller.received("BYE")[0]
    assert 59 <= bye.timestamp - ack_time <= 62, bye.timestamp - ack_time
    assert gw.received("BYE")
    cdr = sipd.cdrs(wait_for=1)[0]
    assert cdr["cause"] == "session timer expired"
    assert sipd.metrics().get("sipedge_session_timer_ends_total") == 1
