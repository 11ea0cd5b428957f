"""The call-control microbenchmark's driver (tests/bench/call_path.py) places real calls.

A benchmark whose calls quietly failed would measure refusals: every call here must be set up
and torn down as SIPp's scenarios expect (the driver asserts each step), and nothing may be
left once the clock has passed every timer. The harness-only driver must do the same header
work on canned datagrams without the stack.
"""

from __future__ import annotations

import pytest

from tests.bench.call_path import Bench, Harness


@pytest.mark.parametrize("media", ["none", "held-off"])
def test_calls_go_through_and_leave_nothing(media: str) -> None:
    bench = Bench(tune_gc=False, media=media)  # this process's collector stays as pytest has it
    for _ in range(20):
        bench.call()
    assert bench.b2bua.stats.answered == 20
    bench.settle()
    if media == "held-off":  # each call's offer went unanchored at once, no task started
        stats = bench.b2bua.media.stats
        assert stats.unanchored == {"unreachable": 20} and not bench.b2bua.media._tasks


def test_the_harness_alone_needs_no_stack() -> None:
    harness = Harness(tune_gc=False)
    for _ in range(5):
        harness.call()
    assert not harness.wire.sent
