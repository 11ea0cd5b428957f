"""Garbage collection pauses as a histogram per generation, and its Prometheus families.

Owns: `PauseHistogram` (for each generation: the count of pauses in each bucket, their sum and
count, the longest, the objects collected) and `pause_metrics`, the families sipd's /metrics
exports: `sipedge_gc_pause_seconds{generation}` (histogram), `sipedge_gc_pause_max_seconds`
`{generation}` (the longest since start) and `sipedge_gc_collected_objects_total{generation}`.
Must not: read a clock, touch the `gc` module or import from sipedge: `hook` measures and
calls `observe`; anything can be fed to it in a test.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

# Upper bounds (s): sub-millisecond young collections up to full ones of a loaded daemon; the
# 10 ms bound is the goal (no pause longer than that with 5,000 calls up).
BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
GENERATIONS = 3  # CPython's: 0, 1 and 2 (a full collection)


@dataclass
class GenerationPauses:
    """The pauses of one generation's collections."""

    counts: list[int]  # per bucket, not cumulative; the last one is +Inf
    count: int = 0
    total: float = 0.0  # seconds
    longest: float = 0.0
    collected: int = 0  # unreachable objects freed


@dataclass
class PauseHistogram:
    buckets: tuple[float, ...] = BUCKETS
    generations: list[GenerationPauses] = field(default_factory=list)

    def __post_init__(self) -> None:
        if list(self.buckets) != sorted(set(self.buckets)):
            raise ValueError("histogram buckets must be increasing")
        if not self.generations:
            self.generations = [
                GenerationPauses([0] * (len(self.buckets) + 1)) for _ in range(GENERATIONS)
            ]

    def observe(self, generation: int, seconds: float, collected: int = 0) -> None:
        """One collection of `generation` that stopped the process for `seconds`."""
        pauses = self.generations[generation]
        pauses.counts[bisect_left(self.buckets, seconds)] += 1  # le: a bound holds its value
        pauses.count += 1
        pauses.total += seconds
        pauses.collected += collected
        if seconds > pauses.longest:
            pauses.longest = seconds

    def cumulative(self, generation: int) -> list[tuple[float, int]]:
        """(upper bound, pauses at most that long) per bucket, the last bound +Inf."""
        out: list[tuple[float, int]] = []
        running = 0
        bounds = (*self.buckets, float("inf"))
        for bound, count in zip(bounds, self.generations[generation].counts, strict=True):
            running += count
            out.append((bound, running))
        return out


Family = CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily


def pause_metrics(histogram: PauseHistogram) -> Iterator[Family]:
    """The families of /metrics, one sample (or histogram) per generation."""
    pauses = HistogramMetricFamily(
        "sipedge_gc_pause_seconds",
        "How long each garbage collection stopped the process, by generation (2: full)",
        labels=["generation"],
    )
    longest = GaugeMetricFamily(
        "sipedge_gc_pause_max_seconds",
        "The longest garbage collection pause since start, by generation",
        labels=["generation"],
    )
    collected = CounterMetricFamily(
        "sipedge_gc_collected_objects",
        "Unreachable objects (reference cycles) the garbage collector freed, by generation",
        labels=["generation"],
    )
    for generation, gen in enumerate(histogram.generations):
        label = [str(generation)]
        buckets = [(_le(b), float(n)) for b, n in histogram.cumulative(generation)]
        pauses.add_metric(label, buckets, sum_value=gen.total)
        longest.add_metric(label, gen.longest)
        collected.add_metric(label, gen.collected)
    yield pauses
    yield longest
    yield collected


def _le(bound: float) -> str:
    """A bucket's `le` label as Prometheus writes it ("0.0005", "1.0", "+Inf")."""
    return "+Inf" if bound == float("inf") else repr(bound)
