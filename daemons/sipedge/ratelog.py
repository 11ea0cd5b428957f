"""Log lines that an attacker cannot multiply: one line per refusal class per interval.

Under a flood, every refused datagram would otherwise write a line (and journald's own rate
limit would then hide the lines that matter). `RateLimitedLog.event(key, ...)` writes the first
event of a class at once, then at most one line per `interval` seconds for that class, saying
how many were suppressed in between. The classes are a closed set chosen by the caller (e.g.
"400 bad Content-Length", "banned source"), never a value taken from the input, so the table
stays small.

A leaf: imports nothing from sipedge, so every package may use it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

# A caller that mislabels classes with input-derived keys still cannot grow the table forever.
MAX_CLASSES = 256


class RateLimitedLog:
    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        level: int = logging.WARNING,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self.level = level
        # class -> (time of its last line, events suppressed since)
        self._classes: dict[str, tuple[float, int]] = {}

    def event(self, key: str, message: str, *args: object) -> bool:
        """Count one event of class `key`; log it (returns True) unless the class logged within
        the interval. `message % args` is only formatted when a line is written."""
        now = self.clock()
        last = self._classes.get(key)
        if last is not None and now - last[0] < self.interval:
            self._classes[key] = (last[0], last[1] + 1)
            return False
        suppressed = last[1] if last is not None else 0
        if last is None and len(self._classes) >= MAX_CLASSES:
            self._classes.pop(next(iter(self._classes)))
        self._classes[key] = (now, 0)
        if suppressed:
            self.logger.log(
                self.level, message + " (%d more like it suppressed)", *args, suppressed
            )
        else:
            self.logger.log(self.level, message, *args)
        return True
