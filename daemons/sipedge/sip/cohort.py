"""The end timers of finished transactions, armed in cohorts: one event-loop timer for all the
transactions that finished within `WINDOW` of each other.

Why: at 500 calls/s each ended call leaves its BYE's server transaction (Timer J, 32 s), its
INVITE's client transaction (Timer M, 32 s) and its BYE's client transaction (Timer K, 5 s)
waiting out their timers: some 48,000 event-loop timers at once, about 570 bytes each in
uvloop (its handle, its libuv timer, its entry in the loop's set of timers), and the set keeps
the table of that peak for good (measured in docs/performance.md). A cohort is a list and one
timer. A transaction ends between `delay` and `delay + WINDOW` after it was added, never
before: a finished transaction that lingers a little longer absorbs a retransmission a little
longer, which RFC 3261's timers allow (they are lower bounds on the wait).

Owns: `Cohorts` (one delay's cohorts), `WINDOW`.
Must not: read the clock (a cohort opens at its first member and closes `WINDOW` later, timed
by the scheduler), or import from sipedge outside sip/.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sipedge.sip.timers import Scheduler

log = logging.getLogger(__name__)

WINDOW = 0.1  # s: a cohort takes what finishes within this of its first member

Ending = Callable[[], object]


class Cohorts:
    """Callbacks run `delay` (to `delay + WINDOW`) after they were added, one timer per cohort."""

    def __init__(self, scheduler: Scheduler, delay: float, window: float = WINDOW) -> None:
        self.scheduler = scheduler
        self.delay = delay
        self.window = window
        self._open: list[Ending] | None = None  # the cohort still taking members

    def add(self, ending: Ending) -> None:
        if self._open is None:
            self._open = []
            self.scheduler.call_later(self.window, self._close)
        self._open.append(ending)

    def _close(self) -> None:
        # Its members' delay counts from here, so that none ends before its own `delay`.
        cohort, self._open = self._open or [], None
        self.scheduler.call_later(self.delay, lambda: _end(cohort))


def _end(cohort: list[Ending]) -> None:
    for ending in cohort:
        try:
            ending()
        except Exception:  # one member's fault must not keep the others from ending
            log.exception("a finished transaction failed to end")
