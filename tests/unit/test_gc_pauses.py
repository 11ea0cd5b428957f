"""Garbage collection pauses: the histogram (pure), the gc.callbacks hook, the tuning, and
the families sipd's /metrics exports (sipedge.gcwatch)."""

from __future__ import annotations

import gc
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from sipedge.config import parse_config
from sipedge.gcwatch import BUCKETS, GcWatch, PauseHistogram, pause_metrics, tune
from sipedge.gcwatch.pauses import Family
from sipedge.sipd import SipDaemon


def samples(collect: Iterator[Family]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """What a Prometheus scrape of these families reads, by name and labels."""

    class Families(Collector):
        def collect(self) -> Iterator[Family]:
            return collect

    registry = CollectorRegistry()
    registry.register(Families())
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_pauses_fall_into_their_buckets() -> None:
    h = PauseHistogram()
    for seconds in (0.0001, 0.0005, 0.0006, 0.009, 0.011, 2.0):
        h.observe(1, seconds, collected=3)
    h.observe(2, 0.3)
    cumulative = dict(h.cumulative(1))
    assert cumulative[0.0005] == 2  # a pause equal to a bound counts in that bucket
    assert cumulative[0.001] == 3
    assert cumulative[0.01] == 4 and cumulative[0.02] == 5
    assert cumulative[1.0] == 5 and cumulative[float("inf")] == 6
    gen1 = h.generations[1]
    assert gen1.count == 6 and gen1.longest == 2.0 and gen1.collected == 18
    assert gen1.total == pytest.approx(2.0212)
    assert h.generations[0].count == 0 and h.generations[2].longest == 0.3
    assert [b for b, _ in h.cumulative(0)] == [*BUCKETS, float("inf")]


def test_buckets_must_increase() -> None:
    with pytest.raises(ValueError):
        PauseHistogram(buckets=(0.01, 0.001))


def test_exported_families() -> None:
    h = PauseHistogram()
    h.observe(0, 0.0004, collected=7)
    h.observe(0, 0.003)
    h.observe(2, 0.6, collected=100)
    got = samples(pause_metrics(h))
    gen0, gen2 = (("generation", "0"),), (("generation", "2"),)
    assert got[("sipedge_gc_pause_seconds_bucket", (("generation", "0"), ("le", "0.0005")))] == 1
    assert got[("sipedge_gc_pause_seconds_bucket", (("generation", "0"), ("le", "0.005")))] == 2
    assert got[("sipedge_gc_pause_seconds_bucket", (("generation", "2"), ("le", "0.5")))] == 0
    assert got[("sipedge_gc_pause_seconds_bucket", (("generation", "2"), ("le", "+Inf")))] == 1
    assert got[("sipedge_gc_pause_seconds_count", gen0)] == 2
    assert got[("sipedge_gc_pause_seconds_sum", gen0)] == pytest.approx(0.0034)
    assert got[("sipedge_gc_pause_max_seconds", gen2)] == 0.6
    assert got[("sipedge_gc_pause_max_seconds", (("generation", "1"),))] == 0
    assert got[("sipedge_gc_collected_objects_total", gen0)] == 7
    assert got[("sipedge_gc_collected_objects_total", gen2)] == 100


@pytest.fixture
def collector_off() -> Iterator[None]:
    """No automatic collection while a test counts collections."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def test_the_hook_times_each_collection(collector_off: None) -> None:
    ticks = itertools.count(0.0, 0.25)  # every reading of the clock is 250 ms later
    watch = GcWatch(clock=lambda: next(ticks))
    watch.install()
    watch.install()  # once only
    try:
        assert gc.callbacks.count(watch._on_gc) == 1
        gc.collect(1)
        gc.collect(2)
        gc.collect(2)
    finally:
        watch.uninstall()
    assert not watch.installed
    gen = watch.pauses.generations
    assert [g.count for g in gen] == [0, 1, 2]
    assert gen[2].longest == 0.25 and gen[2].total == 0.5
    gc.collect(0)  # uninstalled: not counted
    assert gen[0].count == 0


def test_the_hook_counts_what_a_collection_frees(collector_off: None) -> None:
    watch = GcWatch()
    watch.install()
    try:
        for _ in range(10):
            cycle: list[object] = []
            cycle.append(cycle)
        del cycle
        freed = gc.collect(2)
    finally:
        watch.uninstall()
    assert freed >= 10
    assert watch.pauses.generations[2].collected == freed
    assert 0 < watch.pauses.generations[2].longest < 1


def test_the_hook_skips_a_collection_it_saw_only_stop(collector_off: None) -> None:
    watch = GcWatch(clock=lambda: 1.0)
    watch._on_gc("stop", {"generation": 0, "collected": 0, "uncollectable": 0})
    assert watch.pauses.generations[0].count == 0


def test_tune_freezes_and_sets_the_thresholds() -> None:
    before = gc.get_threshold()
    try:
        frozen = tune((1234, 7, 99))
        assert gc.get_threshold() == (1234, 7, 99)
        assert frozen == gc.get_freeze_count() > 1000  # every module loaded so far, at least
        assert gc.get_count()[0] < 1234
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_sipd_exports_the_pauses(tmp_path: Path) -> None:
    daemon = SipDaemon(tmp_path / "x.yaml", parse_config({"storage": {"path": str(tmp_path)}}))
    daemon.gc_watch.pauses.observe(1, 0.004)
    got = samples(iter(daemon.metrics_registry.collect()))
    assert got[("sipedge_gc_pause_seconds_count", (("generation", "1"),))] == 1
    assert got[("sipedge_gc_pause_max_seconds", (("generation", "1"),))] == 0.004
    assert not daemon.gc_watch.installed  # only while the daemon serves
