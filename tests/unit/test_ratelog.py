"""RateLimitedLog: one line per class per interval, with the count of what was suppressed."""

from __future__ import annotations

import logging

import pytest

from sipedge.ratelog import MAX_CLASSES, RateLimitedLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_one_line_per_class_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = RateLimitedLog(logging.getLogger("t.ratelog"), interval=10, clock=clock)
    with caplog.at_level(logging.WARNING, logger="t.ratelog"):
        assert log.event("bad", "dropped from %s", "192.0.2.1")
        for _ in range(500):
            assert not log.event("bad", "dropped from %s", "192.0.2.1")
        assert log.event("other", "something else")
        clock.now += 10
        assert log.event("bad", "dropped from %s", "192.0.2.9")
        clock.now += 10
        assert log.event("bad", "dropped from %s", "192.0.2.9")
    assert [r.getMessage() for r in caplog.records] == [
        "dropped from 192.0.2.1",
        "something else",
        "dropped from 192.0.2.9 (500 more like it suppressed)",
        "dropped from 192.0.2.9",
    ]


def test_the_class_table_is_bounded() -> None:
    log = RateLimitedLog(logging.getLogger("t.ratelog.bound"), interval=60, clock=Clock())
    for i in range(MAX_CLASSES * 3):
        log.event(f"class {i}", "x")
    assert len(log._classes) == MAX_CLASSES
