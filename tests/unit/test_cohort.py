"""sip.cohort: finished transactions' end timers armed in cohorts, on a fake clock."""

from __future__ import annotations

from sipedge.sip.cohort import WINDOW, Cohorts
from sipedge.sip.message import make_response
from sipedge.sip.transaction import State
from tests.unit.test_transaction import PEER, FakeClock, make_layer, request


class CountingClock(FakeClock):
    def __init__(self) -> None:
        super().__init__()
        self.armed = 0

    def call_later(self, delay, callback):  # type: ignore[no-untyped-def]
        self.armed += 1
        return super().call_later(delay, callback)


def test_each_ends_no_sooner_than_its_delay_and_at_most_a_window_later() -> None:
    clock = CountingClock()
    cohorts = Cohorts(clock, 5.0)
    ended: dict[int, float] = {}
    added: dict[int, float] = {}
    for n in range(300):  # one every 3 ms for 0.9 s: nine or ten cohorts
        added[n] = clock.now
        cohorts.add(lambda n=n: ended.setdefault(n, clock.now))  # type: ignore[misc]
        clock.advance(0.003)
    clock.advance(10)
    assert sorted(ended) == list(range(300))
    lateness = [ended[n] - added[n] - 5.0 for n in range(300)]
    assert min(lateness) >= -1e-9 and max(lateness) <= WINDOW + 1e-9
    assert clock.armed <= 2 * (0.9 / WINDOW + 1)  # two timers a cohort, not one an ending


def test_a_finished_transaction_ends_after_its_timer_in_a_cohort() -> None:
    clock, rec, layer = make_layer()
    for n in range(50):  # 50 OPTIONS answered within a few ms: Timer J in one cohort
        layer.receive(request("OPTIONS", branch=f"z9hG4bKj{n}"), PEER)
        tx = rec.requests[-1]
        tx.respond(make_response(tx.request, 200))
        clock.advance(0.001)
    timeout = layer.schedule.timeout
    armed = [handle for _, _, handle in clock._queue if not handle.cancelled]
    assert len(armed) == 1  # the cohort's close: nothing per transaction
    clock.advance(timeout - 0.05)  # J (32 s) has not run for any of them
    assert len(layer.server) == 50 and all(tx.state is State.COMPLETED for tx in rec.requests)
    rec.sent.clear()
    layer.receive(request("OPTIONS", branch="z9hG4bKj0"), PEER)  # still absorbed, answered
    assert rec.sent_first_lines() == ["SIP/2.0 200 OK"]
    clock.advance(WINDOW + 0.05)
    assert not layer.server and all(tx.state is State.TERMINATED for tx in rec.requests)


def test_one_that_ended_meanwhile_is_not_ended_again() -> None:
    clock, rec, layer = make_layer()
    layer.receive(request("OPTIONS", branch="z9hG4bKe1"), PEER)
    first = rec.requests[-1]
    first.respond(make_response(first.request, 200))
    first.terminate()  # ended otherwise (shutdown, say)
    # a new transaction with the same key, not finished: the old cohort must not end it
    layer.receive(request("OPTIONS", branch="z9hG4bKe1"), PEER)
    second = rec.requests[-1]
    clock.advance(layer.schedule.timeout + WINDOW + 1)
    assert second is not first and layer.server[second.key] is second
    assert second.state is not State.TERMINATED
