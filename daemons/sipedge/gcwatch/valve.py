"""The full collection a tuned daemon runs when its memory says cycles pile up.

`tuning.THRESHOLDS` turns CPython's automatic full collections off: with 5,000 calls up a full
collection walks about a million objects and stops the loop for 0.5-1 s, and sipd's calls and
transactions leave no reference cycles for it to find (reference counting frees them; see
tests/unit/test_call_garbage.py). Young collections (generations 0 and 1) still run as usual
and free the short-lived cycles (exceptions and their tracebacks, asyncio internals).

What such a tuning risks is a cycle that does reach generation 2: it would never be freed. The
valve bounds that: every `CHECK_INTERVAL` seconds it reads the process's resident memory; when
it has grown by more than `growth_bytes` above the lowest reading since the last full
collection, and the last one is at least `min_spacing` seconds old, it runs one (timed by the
`GcWatch` hook like every other, logged with what it freed). A daemon without such a leak never
runs one; a daemon with one pays a pause now and then instead of running into its MemoryMax.

Owns: `FullCollectionValve` (the pure decision, given readings and times), `resident_bytes`,
and `run_valve` (the loop that reads, decides and collects).
Must not: import from sipedge, or run a full collection for any other reason (the other one a
tuned daemon runs is `heap`'s, once a peak of calls has drained, to empty the free lists).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

CHECK_INTERVAL = 30.0  # seconds between two readings
GROWTH_BYTES = 256 << 20  # above the lowest reading: a quarter of sipd's default MemoryMax
MIN_SPACING = 600.0  # seconds: at most one full collection every 10 minutes
_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes(statm: str = "/proc/self/statm") -> int:
    """This process's resident set (VmRSS), from the second field of /proc/self/statm."""
    with open(statm, encoding="ascii") as f:
        return int(f.read().split()[1]) * _PAGE


@dataclass
class FullCollectionValve:
    """Decides, from resident-memory readings, when a full collection is due. Pure."""

    growth_bytes: int = GROWTH_BYTES
    min_spacing: float = MIN_SPACING
    low: int | None = None  # lowest reading since the last full collection
    last_run: float | None = None  # when the last one ran (the clock the caller passes)
    runs: int = 0
    freed: list[int] = field(default_factory=list)  # objects each run collected (last 16)

    def due(self, rss: int, now: float) -> bool:
        """Take a reading; True when memory grew past the allowance and spacing allows."""
        if self.low is None or rss < self.low:
            self.low = rss
            return False
        if rss - self.low <= self.growth_bytes:
            return False
        return self.last_run is None or now - self.last_run >= self.min_spacing

    def ran(self, rss_after: int, now: float, collected: int) -> None:
        """A full collection just ran: memory is measured again from where it left it."""
        self.low = rss_after
        self.last_run = now
        self.runs += 1
        self.freed = [*self.freed[-15:], collected]


async def run_valve(
    valve: FullCollectionValve,
    interval: float = CHECK_INTERVAL,
    read_rss: Callable[[], int] = resident_bytes,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Read, decide and collect every `interval` seconds, until cancelled."""
    while True:
        await asyncio.sleep(interval)
        try:
            rss = read_rss()
        except OSError:
            continue
        now = clock()
        if not valve.due(rss, now):
            continue
        low = valve.low or 0
        started = time.perf_counter()
        collected = gc.collect()
        pause = time.perf_counter() - started
        after = read_rss()
        valve.ran(after, now, collected)
        log.warning(
            "full garbage collection: memory had grown %d MiB (to %d MiB); it freed %d objects"
            " in %.0f ms, %d MiB left (a steady growth means a reference cycle per call: report"
            " it)",
            (rss - low) >> 20,
            rss >> 20,
            collected,
            pause * 1000,
            after >> 20,
        )
