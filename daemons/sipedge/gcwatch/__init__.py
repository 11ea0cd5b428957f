"""The garbage collector in a daemon: how long each collection stops it, and how it is tuned.

CPython's cyclic garbage collector stops the whole interpreter, and so the event loop, while
it walks a generation's objects; a full collection walks every object the process holds.
sipd keeps its calls free of reference cycles (reference counting frees a finished call, see
tests/unit/test_call_garbage.py), so collections find little; what they cost is measured here
and exported in /metrics, and `tune` makes the expensive ones rare.

* `pauses`: `PauseHistogram` (pauses per generation in fixed buckets, the longest, the objects
  collected) and `pause_metrics` (its Prometheus families). Pure: given seconds, no clock.
* `hook`: `GcWatch`, the `gc.callbacks` hook that times each collection into a histogram.
* `tuning`: `tune`, what a daemon calls once its start-up objects are built (`gc.freeze` and
  the collection thresholds, with the reasoning: no automatic full collection).
* `valve`: `FullCollectionValve` and `run_valve`, the full collection that runs only when
  resident memory grows past an allowance (a reference cycle piling up).
* `heap`: `HeapTrim` and `run_heap_trim`, the free pages of glibc's heap given back to the
  kernel after a peak (sipd runs with `ALLOCATOR_ENV`, PYTHONMALLOC=malloc, to have them).

Public names: `GcWatch`, `PauseHistogram`, `pause_metrics`, `tune`, `THRESHOLDS`, `BUCKETS`,
`FullCollectionValve`, `run_valve`, `ALLOCATOR_ENV`, `HeapTrim`, `run_heap_trim`.
Dependency direction: a leaf like `ratelog`: imports nothing from sipedge; the daemons' roots
import it.
"""

from sipedge.gcwatch.heap import ALLOCATOR_ENV, HeapTrim, run_heap_trim
from sipedge.gcwatch.hook import GcWatch
from sipedge.gcwatch.pauses import BUCKETS, PauseHistogram, pause_metrics
from sipedge.gcwatch.tuning import THRESHOLDS, tune
from sipedge.gcwatch.valve import FullCollectionValve, run_valve

__all__ = [
    "ALLOCATOR_ENV",
    "BUCKETS",
    "THRESHOLDS",
    "FullCollectionValve",
    "GcWatch",
    "HeapTrim",
    "PauseHistogram",
    "pause_metrics",
    "run_heap_trim",
    "run_valve",
    "tune",
]
