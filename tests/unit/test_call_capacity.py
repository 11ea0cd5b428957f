"""Call limits: the token bucket and `CallCaps` on a given clock, then the B2BUA's 503s."""

from __future__ import annotations

from pathlib import Path

from sipedge.calls.capacity import OVER_CAPACITY, Backlog, CallCaps, GatewayLimits, TokenBucket
from sipedge.sip.message import Request, parse_message
from tests.unit.test_session_timer_call import CALLER, GW, Edge


def test_token_bucket_refills_at_its_rate_and_holds_a_burst() -> None:
    bucket = TokenBucket(2.0, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [True, True, False]
    assert not bucket.take(0.4)
    assert bucket.take(0.5)  # one token after half a second
    assert [bucket.take(10.0) for _ in range(3)] == [True, True, False]  # capped at the burst
    slow = TokenBucket(0.5, now=0.0)  # below one a second: still one call at a time
    assert slow.take(0.0) and not slow.take(1.0) and slow.take(2.0)


def test_caps_count_per_gateway_and_by_limit() -> None:
    caps = CallCaps(3, {"gw": GatewayLimits(max_calls=2, max_cps=10), "free": GatewayLimits()}, 0.0)
    assert caps.over_total(2) is None and caps.over_total(3) == "calls"
    assert caps.over_gateway("gw", 0.0) is None
    caps.started("gw")
    assert caps.over_gateway("gw", 0.0) is None
    caps.started("gw")
    assert caps.over_gateway("gw", 0.0) == "gateway_calls"
    caps.ended("gw")
    assert caps.over_gateway("gw", 0.0) is None
    assert caps.over_gateway("free", 0.0) is None
    assert caps.over_gateway("endpoint:alice", 0.0) is None  # not a mapping gateway
    caps.started("endpoint:alice")
    assert "endpoint:alice" not in caps.active
    assert caps.rejected == {"overload": 0, "calls": 1, "gateway_calls": 1, "gateway_cps": 0}
    assert set(caps.rejected) == set(OVER_CAPACITY)
    # ended more often than started (a reload added the gateway mid-call): never negative
    for _ in range(5):
        caps.ended("gw")
    assert caps.active == {}


def test_caps_cps_and_reload() -> None:
    caps = CallCaps(100, {"gw": GatewayLimits(max_cps=1)}, 0.0)
    assert caps.over_gateway("gw", 0.0) is None
    assert caps.over_gateway("gw", 0.5) == "gateway_cps"
    caps.configure(100, {"gw": GatewayLimits(max_cps=1)}, 0.6)  # same rate: same bucket
    assert caps.over_gateway("gw", 0.7) == "gateway_cps"
    caps.configure(100, {"gw": GatewayLimits(max_cps=5)}, 0.8)  # new rate: a full bucket
    assert caps.over_gateway("gw", 0.8) is None
    caps.configure(100, {}, 1.0)  # gateway gone: no limit
    assert caps.over_gateway("gw", 1.0) is None


def test_backlog_sheds_above_the_limit_until_half_of_it() -> None:
    backlog = Backlog(1000)
    # (sample, behind after it, changed): over the limit to fall behind, half of it to catch up
    steps = [
        (0, False, False),
        (1000, False, False),  # at the limit: not over it
        (1001, True, True),
        (900, True, False),  # below the limit, above half: still behind (no flapping)
        (501, True, False),
        (500, False, True),
        (999, False, False),
        (5000, True, True),
        (0, False, True),
    ]
    for queued, behind, changed in steps:
        assert backlog.observe(queued) is changed, queued
        assert backlog.behind is behind and backlog.queued == queued
    assert backlog.episodes == 2
    off = Backlog(0)  # SS_SIP_OVERLOAD_QUEUE 0: never
    assert not off.observe(10**9) and not off.behind
    backlog.observe(5000)
    backlog.limit = 0  # reloaded to 0 while behind: the next sample ends it
    assert backlog.observe(5000) and not backlog.behind


def test_caps_refuse_every_new_call_while_behind_before_other_limits() -> None:
    caps = CallCaps(1, {"gw": GatewayLimits(max_calls=0)}, 0.0)
    assert caps.backlog.limit == 0  # no shedding until configured
    caps.configure(1, {"gw": GatewayLimits(max_calls=0)}, 0.0, backlog_limit=100)
    caps.backlog.observe(101)
    assert caps.over_total(5) == "overload"  # counted as overload, not as "calls"
    caps.backlog.observe(50)
    assert caps.over_total(0) is None
    assert caps.rejected["overload"] == 1 and caps.rejected["calls"] == 0
    caps.configure(1, {}, 1.0, backlog_limit=0)
    assert caps.backlog.limit == 0


def invite(n: int) -> Request:
    msg = parse_message(
        (
            "INVITE sip:4420001@10.0.0.9 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-cap-{n}\r\n"
            f"From: <sip:100@10.0.0.1>;tag=cap-{n}\r\n"
            "To: <sip:4420001@10.0.0.9>\r\n"
            f"Call-ID: cap-{n}\r\nCSeq: 1 INVITE\r\nContact: <sip:100@10.0.0.1:5060>\r\n"
            "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(msg, Request)
    return msg


def over_capacity(edge: Edge) -> list[str]:
    return [
        r.headers.get("Retry-After") or ""
        for r in edge.responses(503, CALLER)
        if r.reason == "Over Capacity"
    ]


def test_b2bua_answers_503_with_retry_after_over_sip_max_calls(tmp_path: Path) -> None:
    edge = Edge(tmp_path, {"SS_SIP_MAX_CALLS": 2, "SS_SIP_RETRY_AFTER": 7})
    for n in range(3):
        edge.feed(invite(n), CALLER)
    assert len(edge.b2bua.calls) == 2
    assert over_capacity(edge) == ["7"]
    assert edge.b2bua.caps.rejected["calls"] == 1
    assert edge.b2bua.stats.rejected.get(503) == 1
    # a call ends: room for the next one
    gw_invite = edge.requests("INVITE", GW)[0]
    edge.answer(gw_invite, 486, GW)
    edge.feed(invite(3), CALLER)
    assert len(edge.b2bua.calls) == 2 and over_capacity(edge) == ["7"]


def test_b2bua_sheds_new_calls_while_behind_and_keeps_calls_in_progress(
    tmp_path: Path,
) -> None:
    edge = Edge(tmp_path, {"SS_SIP_OVERLOAD_QUEUE": 64, "SS_SIP_RETRY_AFTER": 3})
    caps = edge.b2bua.caps
    assert caps.backlog.limit == 64 * 1024  # KiB in the parameter, bytes in the Backlog
    edge.feed(invite(0), CALLER)  # admitted before sipd fell behind
    assert len(edge.b2bua.calls) == 1
    caps.backlog.observe(64 * 1024 + 1)  # what the daemon's sampler does
    edge.feed(invite(1), CALLER)
    edge.feed(invite(2), CALLER)
    assert len(edge.b2bua.calls) == 1 and over_capacity(edge) == ["3", "3"]
    assert caps.rejected["overload"] == 2
    # the call in progress goes on: its answer reaches the caller
    gw_invite = edge.requests("INVITE", GW)[0]
    edge.answer(gw_invite, 200, GW)
    assert edge.responses(200, CALLER)
    caps.backlog.observe(0)
    edge.feed(invite(3), CALLER)
    assert len(edge.b2bua.calls) == 2


def test_b2bua_per_gateway_limits(tmp_path: Path) -> None:
    edge = Edge(tmp_path)
    caps = edge.b2bua.caps
    caps.configure(100, {"test-caller": GatewayLimits(max_calls=1)}, 0.0)
    edge.feed(invite(0), CALLER)
    edge.feed(invite(1), CALLER)
    assert len(edge.b2bua.calls) == 1 and caps.rejected["gateway_calls"] == 1
    assert caps.active == {"test-caller": 1}
    edge.b2bua.terminate_all("test")
    assert caps.active == {}
    caps.configure(100, {"test-caller": GatewayLimits(max_cps=1)}, 0.0)
    edge.b2bua.clock = lambda: 5.0
    edge.feed(invite(2), CALLER)
    edge.feed(invite(3), CALLER)
    assert caps.rejected["gateway_cps"] == 1
    assert len(over_capacity(edge)) == 2


def test_unknown_source_refused_once_without_retransmission(tmp_path: Path) -> None:
    edge = Edge(tmp_path)
    stranger = ("10.9.9.9", 5060)
    edge.feed(invite(0), stranger)
    refusals = edge.responses(403, stranger)
    assert len(refusals) == 1
    assert not edge.b2bua.transactions.server  # nothing kept
    edge.clock.advance(40)
    assert len(edge.responses(403, stranger)) == 1  # never retransmitted
