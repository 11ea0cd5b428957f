"""How a daemon runs CPython's garbage collector once it has started: `tune`.

A collection stops the process for a time proportional to the objects it walks: those of its
generation and of the younger ones (0.2-0.5 us of CPU an object in sipd on a 2-core machine,
more in wall time when the machine is busy). A full collection walks every object: with 5,000
calls up, about a million, 0.5-1 s (issue 20). What measurement gave (sipd's stack in process
at 500 calls/s, calls held 10 s, 5,000 up, collector hooked to count what it walks; and sipd
under SIPp at 150 calls/s), and so `THRESHOLDS`:

* generation 0: CPython's 700 stays. A call's objects live as long as the call, so nearly all
  that a young collection walks survives it: a generation-0 collection walks about threshold0
  objects (~1,000), a generation-1 one about threshold0 x threshold1. Raising threshold0 to
  50,000 made generation-0 collections walk 60,000-70,000 objects (20-100 ms) and one of
  generation 1 walk 970,000 (1.2 s).
* generation 1: 5, not 10: about 5,000 objects, 1-5 ms, instead of 10,000.
* generation 2: no automatic full collection (the largest threshold the collector takes, 2**31
  - 1 generation-1 collections: years at 10 a second). CPython's default ran a full collection
  every 2-4 s (11 in 40 s in process, up to 1.3 s each; under SIPp 2 per 10 s run, 82-195 ms
  with 1,400 calls up); a threshold of 20,000 still ran one about every half hour at 500
  calls/s, 0.5-1 s long with 5,000 calls up. Nothing needs it: finished calls and their
  transactions are freed by reference counting (no cycles), so it finds little. The guard
  against a cycle that does reach generation 2 is `valve`: a full collection when resident
  memory grows past an allowance.
* `gc.freeze()` once start-up is done: the modules, the config and the daemon's long-lived
  objects (some 45,000 in sipd) go to the permanent generation, which no collection walks.

Owns: `THRESHOLDS` and `tune`.
Must not: run before the daemon's start-up objects exist (they would stay in the generations),
or import from sipedge.
"""

from __future__ import annotations

import gc

THRESHOLDS = (700, 5, 2**31 - 1)  # int32 max: full collections only by `valve`


def tune(thresholds: tuple[int, int, int] = THRESHOLDS) -> int:
    """Collect start-up's garbage, freeze what is left, set `thresholds`. Returns the number of
    objects frozen (they are never walked again, but freed as usual when they die)."""
    gc.collect()  # before freezing: frozen garbage would never be freed
    gc.freeze()
    gc.set_threshold(*thresholds)
    return gc.get_freeze_count()
