"""Carrier statistics (stats/): the rings of time buckets, ASR/ACD/PDD arithmetic, current
calls, reloads, the Prometheus families; and calls/carrier_events.py's reason vocabulary.
Every test drives an injected clock: nothing sleeps."""

from __future__ import annotations

import tracemalloc

import pytest
from prometheus_client.core import Metric

from sipedge.calls.carrier_events import (
    ANSWERED,
    attempt_reason,
    call_pdd,
    call_reason,
    progressed,
)
from sipedge.calls.switching import StopReason
from sipedge.stats import MAPPING, ROUTING, WINDOWS, CarrierStats, Window, WindowSpec, windows
from sipedge.stats.windows import ATTEMPTS, MAX_REASONS, OTHER
from sipedge.store import AttemptRecord, CallRecord


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def window_totals(stats: CarrierStats, kind: str, name: str, window: str) -> dict[str, object]:
    snap = stats.snapshot()
    gateways = snap[f"{kind}_gateways"]
    assert isinstance(gateways, dict)
    return gateways[name]["windows"][window]  # type: ignore[no-any-return]


def current(stats: CarrierStats, kind: str, name: str) -> int:
    gateways = stats.snapshot()[f"{kind}_gateways"]
    assert isinstance(gateways, dict)
    return int(gateways[name]["current_calls"])


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stats(clock: Clock) -> CarrierStats:
    s = CarrierStats(clock)
    s.configure(["gw-a", "gw-b"], ["pbx"])
    return s


# -- windows.py --------------------------------------------------------------------------------
def test_the_three_windows_and_their_bounded_rings() -> None:
    assert [(w.name, w.seconds) for w in WINDOWS] == [("5m", 300), ("1h", 3600), ("24h", 86400)]
    window = Window(WindowSpec("t", 10.0, 6))
    assert window._epochs is None  # nothing allocated before the first event
    for second in range(0, 100_000, 7):  # a day of events: the ring never grows
        window.settle(float(second), "r", None)
    assert window._epochs is not None and len(window._epochs) == 6
    assert len(window._counts) == 6 * 4 and len(window._sums) == 6 * 2
    assert len(window._reasons) == 6


def _feed(window: Window, events: int) -> None:
    for i in range(events):
        window.settle(1.0 + i / events, None, 0.5)
        window.duration(1.0 + i / events, 3.0)


def test_counting_keeps_no_new_object() -> None:
    """The counts live in the window's arrays: once its first event has allocated them, a
    thousand more (past 256, where each count kept as an int would be a new object, the last
    one alive as long as its bucket) leave nothing allocated behind."""
    window = Window(WindowSpec("t", 10.0, 6))
    window.settle(0.0, None, 0.5)
    window.duration(0.0, 3.0)
    tracemalloc.start()
    try:
        _feed(window, 1000)
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    counting = snapshot.filter_traces([tracemalloc.Filter(True, windows.__file__)])
    assert [t.size for t in counting.traces] == []
    t = window.totals(2.0)
    assert (t.attempts, t.answered, t.pdd_n, t.duration_n) == (1001, 1001, 1001, 1001)
    assert t.pdd == pytest.approx(0.5) and t.acd == pytest.approx(3.0)


def test_an_empty_window_has_no_ratios() -> None:
    t = Window(WindowSpec("t", 10.0, 6)).totals(123.0)
    assert (t.attempts, t.answered, t.reasons) == (0, 0, {})
    assert t.asr is None and t.acd is None and t.pdd is None


def test_a_bucket_rolls_over_and_old_buckets_leave_the_window() -> None:
    window = Window(WindowSpec("t", 10.0, 6))  # 60 s
    window.settle(5.0, "r", None)  # bucket 0
    window.settle(9.99, "r", None)  # still bucket 0
    window.settle(15.0, "r", None)  # bucket 1
    window.settle(15.0, "r", None)
    assert window.totals(15.0).attempts == 4
    assert window.totals(59.9).attempts == 4  # buckets 0..5: all in
    assert window.totals(60.0).attempts == 2  # bucket 6 is current: bucket 0 left
    assert window.totals(70.0).attempts == 0  # bucket 1 left too
    # bucket 6 takes bucket 0's slot: the old counts are reset, not added
    for _ in range(5):
        window.settle(61.0, "r", None)
    assert window._counts[0 * 4 + ATTEMPTS] == 5
    assert window.reasons(61.0) == {"r": 5}
    assert window.reasons(121.0) == {}  # bucket 12 shares the slot: nothing counted in it yet
    # buckets 1..6: bucket 1 is still in (and asking for bucket 12 did not reset the slot)
    assert window.totals(61.0).attempts == 5 + 2
    assert window.totals(70.0).attempts == 5  # buckets 2..7: bucket 1 left


def test_a_clock_that_goes_back_does_not_count_future_buckets() -> None:
    window = Window(WindowSpec("t", 10.0, 6))
    window.settle(100.0, None, None)
    assert window.totals(50.0).attempts == 0
    assert window.totals(100.0).attempts == 1


def test_a_window_must_have_positive_width_and_slots() -> None:
    with pytest.raises(ValueError):
        Window(WindowSpec("bad", 0.0, 6))
    with pytest.raises(ValueError):
        Window(WindowSpec("bad", 1.0, 0))


def test_reasons_per_bucket_are_capped() -> None:
    window = Window(WindowSpec("t", 10.0, 1))
    for i in range(MAX_REASONS * 3):
        window.settle(0.0, f"reason-{i}", None)
    reasons = window.reasons(0.0)
    assert len(reasons) == MAX_REASONS
    assert reasons[OTHER] == MAX_REASONS * 3 - (MAX_REASONS - 1)
    window.settle(0.0, "reason-0", None)  # a known one still counts under its own name
    assert window.reasons(0.0)["reason-0"] == 2
    assert window.totals(0.0).attempts == MAX_REASONS * 3 + 1


# -- CarrierStats: ASR, ACD, PDD ---------------------------------------------------------------
def test_asr_pdd_and_reasons_of_a_routing_gateway(stats: CarrierStats, clock: Clock) -> None:
    for _ in range(4):
        stats.attempt_started("gw-a")
    stats.attempt_ended("gw-a", None, 1.5)  # answered, 18x after 1.5 s
    stats.attempt_ended("gw-a", None, 2.5)
    stats.attempt_ended("gw-a", None, None)  # answered without any 18x first? PDD from the 200
    stats.attempt_ended("gw-a", "5xx", 0.5)
    stats.attempt_unresolved("gw-a")
    t = window_totals(stats, ROUTING, "gw-a", "5m")
    assert t["attempts"] == 5 and t["answered"] == 3
    assert t["asr"] == pytest.approx(3 / 5)
    assert t["pdd_seconds"] == pytest.approx((1.5 + 2.5 + 0.5) / 3)
    assert t["switch_reasons"] == {"5xx": 1, "dns-failure": 1}
    assert t["acd_seconds"] is None  # no call has ended yet
    assert current(stats, ROUTING, "gw-a") == 3  # the three answered calls are up
    assert window_totals(stats, ROUTING, "gw-b", "5m")["attempts"] == 0


def test_acd_counts_answered_calls_when_they_end(stats: CarrierStats, clock: Clock) -> None:
    stats.call_started("pbx")
    stats.attempt_started("gw-a")
    stats.attempt_ended("gw-a", None, 1.0)
    stats.call_answered("pbx", 1.2)
    stats.call_started("pbx")
    stats.attempt_started("gw-a")
    stats.attempt_ended("gw-a", None, 3.0)
    stats.call_answered("pbx", 3.4)
    assert current(stats, ROUTING, "gw-a") == 2 and current(stats, MAPPING, "pbx") == 2
    clock.advance(30)
    stats.call_ended("pbx", "gw-a", 30.0, "", None)
    clock.advance(60)
    stats.call_ended("pbx", "gw-a", 90.0, "", None)
    for kind, name in ((ROUTING, "gw-a"), (MAPPING, "pbx")):
        t = window_totals(stats, kind, name, "1h")
        assert t["acd_seconds"] == pytest.approx(60.0)
        assert t["attempts"] == 2 and t["answered"] == 2 and t["asr"] == 1.0
        assert current(stats, kind, name) == 0
    assert window_totals(stats, MAPPING, "pbx", "1h")["pdd_seconds"] == pytest.approx(2.3)
    # the first call ended 90 s ago: still in the 5 min window; both are gone after 5 min
    assert window_totals(stats, ROUTING, "gw-a", "5m")["acd_seconds"] == pytest.approx(60.0)
    clock.advance(301)
    assert window_totals(stats, ROUTING, "gw-a", "5m")["acd_seconds"] is None
    assert window_totals(stats, ROUTING, "gw-a", "1h")["acd_seconds"] == pytest.approx(60.0)


def test_an_unanswered_call_settles_its_mapping_gateway(stats: CarrierStats) -> None:
    stats.call_started("pbx")
    stats.attempt_started("gw-a")
    stats.attempt_ended("gw-a", "5xx", None)
    stats.attempt_started("gw-b")
    stats.attempt_ended("gw-b", "timeout-invite", None)
    stats.call_ended("pbx", None, None, "no-more-gateways", 0.2)
    t = window_totals(stats, MAPPING, "pbx", "5m")
    assert (t["attempts"], t["answered"], t["asr"]) == (1, 0, 0.0)
    assert t["switch_reasons"] == {"no-more-gateways": 1}
    assert t["pdd_seconds"] == pytest.approx(0.2)
    assert current(stats, MAPPING, "pbx") == 0
    assert current(stats, ROUTING, "gw-a") == 0 and current(stats, ROUTING, "gw-b") == 0
    assert window_totals(stats, ROUTING, "gw-b", "24h")["switch_reasons"] == {"timeout-invite": 1}


def test_windows_roll_over_independently(stats: CarrierStats, clock: Clock) -> None:
    stats.attempt_started("gw-a")
    stats.attempt_ended("gw-a", None, 1.0)
    clock.advance(10 * 60)  # 10 min later: out of 5 min, in 1 h and 24 h
    stats.attempt_started("gw-a")
    stats.attempt_ended("gw-a", "4xx", None)
    asr = {w: window_totals(stats, ROUTING, "gw-a", w)["asr"] for w in ("5m", "1h", "24h")}
    assert asr == {"5m": 0.0, "1h": 0.5, "24h": 0.5}
    clock.advance(2 * 3600)  # out of 1 h too
    asr = {w: window_totals(stats, ROUTING, "gw-a", w)["asr"] for w in ("5m", "1h", "24h")}
    assert asr == {"5m": None, "1h": None, "24h": 0.5}
    clock.advance(24 * 3600)
    assert window_totals(stats, ROUTING, "gw-a", "24h")["attempts"] == 0


def test_negative_pdd_and_duration_do_not_count(stats: CarrierStats) -> None:
    stats.attempt_ended("gw-a", None, -1.0)  # a wall clock stepped back
    assert window_totals(stats, ROUTING, "gw-a", "5m")["pdd_seconds"] is None
    stats.call_ended("pbx", "gw-a", -5.0, "", None)
    assert window_totals(stats, ROUTING, "gw-a", "5m")["acd_seconds"] == 0.0


# -- gateways: bounded labels and reloads ------------------------------------------------------
def test_unknown_gateways_are_not_tracked(stats: CarrierStats) -> None:
    for i in range(1000):  # endpoint names, or a hostile flood of names: no new label
        stats.attempt_started(f"endpoint-{i}")
        stats.attempt_ended(f"endpoint-{i}", "5xx", 0.1)
        stats.call_started(f"m-{i}")
        stats.call_ended(f"m-{i}", f"endpoint-{i}", 1.0, "", None)
    stats.call_started(None)
    stats.call_answered(None, None)
    stats.call_ended(None, None, None, "no-gateway", None)
    assert set(stats.gateways[ROUTING]) == {"gw-a", "gw-b"}
    assert set(stats.gateways[MAPPING]) == {"pbx"}
    assert window_totals(stats, ROUTING, "gw-a", "5m")["attempts"] == 0


def test_a_reload_keeps_staying_gateways_and_forgets_removed_ones(stats: CarrierStats) -> None:
    stats.attempt_started("gw-a")
    stats.attempt_ended("gw-a", None, 1.0)
    stats.attempt_started("gw-b")
    stats.attempt_ended("gw-b", None, 1.0)
    stats.configure(["gw-a", "gw-c"], [])
    snap = stats.snapshot()
    assert set(snap["routing_gateways"]) == {"gw-a", "gw-c"}  # type: ignore[arg-type]
    assert snap["mapping_gateways"] == {}
    assert window_totals(stats, ROUTING, "gw-a", "5m")["answered"] == 1
    assert current(stats, ROUTING, "gw-a") == 1
    # gw-b's call ends after it was removed: nothing to count, nothing fails
    stats.call_ended("pbx", "gw-b", 10.0, "", None)
    # gw-b comes back empty; a call of before the reload ending never makes it negative
    stats.configure(["gw-a", "gw-b"], ["pbx"])
    assert window_totals(stats, ROUTING, "gw-b", "5m")["attempts"] == 0
    stats.call_ended("pbx", "gw-b", 10.0, "", None)
    assert current(stats, ROUTING, "gw-b") == 0 and current(stats, MAPPING, "pbx") == 0


# -- Prometheus --------------------------------------------------------------------------------
def samples(stats: CarrierStats) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    family: Metric
    for family in stats.metrics():
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_per_gateway_and_window(stats: CarrierStats) -> None:
    for reason in (None, None, None, "5xx"):
        stats.attempt_started("gw-a")
        stats.attempt_ended("gw-a", reason, 2.0)
    got = samples(stats)

    def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return (f"sipedge_carrier_{name}", tuple(sorted(labels.items())))

    for window in ("5m", "1h", "24h"):
        labels = {"kind": ROUTING, "gateway": "gw-a", "window": window}
        assert got[key("attempts", **labels)] == 4
        assert got[key("answered", **labels)] == 3
        assert got[key("asr", **labels)] == 0.75
        assert got[key("pdd_seconds", **labels)] == 2.0
        assert got[key("switch_reasons", reason="5xx", **labels)] == 1
        assert key("acd_seconds", **labels) not in got  # no call ended: no sample, not 0
        # gw-b had no attempt: counts are 0, its ratios absent
        empty = {**labels, "gateway": "gw-b"}
        assert got[key("attempts", **empty)] == 0 and key("asr", **empty) not in got
    assert got[key("current_calls", kind=ROUTING, gateway="gw-a")] == 3
    assert got[key("current_calls", kind=MAPPING, gateway="pbx")] == 0
    gateways = {dict(labels).get("gateway") for _, labels in got}
    assert gateways == {"gw-a", "gw-b", "pbx"}


# -- calls/carrier_events.py -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("result", "status", "reason"),
    [
        (ANSWERED, 200, None),
        ("timeout: invite", None, "timeout-invite"),
        ("timeout: session progress", None, "timeout-session-progress"),
        ("transport: connection refused", None, "transport-failure"),
        ("503", 503, "5xx"),
        ("486", 486, "4xx"),
        ("302", 302, "3xx"),
        ("603", 603, "6xx"),
        ("cancelled", None, "caller-cancelled"),
        ("terminated", None, "terminated"),
        ("media-address-refused", 503, "media-refused"),
        ("media unavailable", 503, "media-refused"),
    ],
)
def test_attempt_reasons(result: str, status: int | None, reason: str | None) -> None:
    assert attempt_reason(result, status) == reason


def record(**fields: object) -> CallRecord:
    r = CallRecord("c1", "100", "200", "127.0.0.1:5060", "pbx", 1000.0)
    for name, value in fields.items():
        setattr(r, name, value)
    return r


def test_call_reasons_are_the_stop_reasons_as_labels() -> None:
    labels = {call_reason(record(switch_stop_reason=r.value)) for r in StopReason}
    assert "no-more-gateways" in labels and "caller-cancelled" in labels
    assert all(" " not in label for label in labels) and len(labels) == len(StopReason)
    assert call_reason(record(final_status=503, release_side="system")) == "terminated"
    assert call_reason(record(final_status=488, release_side="system")) == "media-refused"


class Progress:
    def __init__(self, at: float | None) -> None:
        self.progress_at = at


class Sent:
    def __init__(self) -> None:
        self.sent_at: float | None = None
        self.progress_at: float | None = None
        self.record = AttemptRecord("gw", 0.0)


def test_pdd_runs_from_the_first_invite_to_the_first_18x_or_2xx() -> None:
    attempt = Sent()
    progressed(attempt, 180, 5.0)  # type: ignore[arg-type]
    assert attempt.progress_at == 5.0
    progressed(attempt, 200, 6.0)  # type: ignore[arg-type]
    assert attempt.progress_at == 5.0  # the first one only
    assert attempt.record.progress == 5.0  # in the CDR too (the fleet's statistics)
    for status in (100, 408, 503, 603):  # neither a 100 nor a failure ends the PDD
        other = Sent()
        progressed(other, status, 1.0)  # type: ignore[arg-type]
        assert other.progress_at is None


def test_call_pdd_is_the_first_progress_of_any_attempt() -> None:
    attempts = [Progress(None), Progress(1003.5), Progress(1002.0)]
    assert call_pdd(1000.0, attempts) == 2.0  # type: ignore[arg-type]
    assert call_pdd(1000.0, [Progress(None)]) is None  # type: ignore[list-item]
