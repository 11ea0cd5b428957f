"""The hook that times every garbage collection of this interpreter.

Owns: `GcWatch`: a `gc.callbacks` entry that reads a clock (`time.perf_counter`) when a
collection starts and when it stops, and records the difference, with the generation and the
objects collected, in its `PauseHistogram`. What it measures is the whole stop: the walk, the
finalizers and weakref callbacks of what was freed.
Must not: collect, change the collector's settings (that is `tuning`), allocate much or log in
the callback: it runs inside the collection it measures.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from typing import Any

from sipedge.gcwatch.pauses import Family, PauseHistogram, pause_metrics


class GcWatch:
    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.pauses = PauseHistogram()
        self._clock = clock
        self._started: float | None = None

    @property
    def installed(self) -> bool:
        return self._on_gc in gc.callbacks

    def install(self) -> None:
        """Start timing collections (once; installing again does nothing)."""
        if not self.installed:
            gc.callbacks.append(self._on_gc)

    def uninstall(self) -> None:
        while self.installed:
            gc.callbacks.remove(self._on_gc)
        self._started = None

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = self._clock()
            return
        if self._started is None:  # installed during a collection: no start to measure from
            return
        self.pauses.observe(
            int(info["generation"]), self._clock() - self._started, int(info["collected"])
        )
        self._started = None

    def metrics(self) -> Iterator[Family]:
        return pause_metrics(self.pauses)
