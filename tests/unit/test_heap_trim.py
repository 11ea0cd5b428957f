"""gcwatch.heap: when a trim is due, and that a trim really gives a fragmented heap back."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import textwrap

import pytest

from sipedge.gcwatch.heap import HeapTrim, can_trim, run_heap_trim


def test_due_once_the_count_halved_from_a_peak_over_the_floor() -> None:
    trim = HeapTrim(floor=100)
    assert not any(trim.due(held) for held in (0, 40, 99, 60, 49))  # never over the floor
    assert not any(trim.due(held) for held in (100, 5000, 4000, 2501))
    assert trim.due(2500)  # half of the peak (5000)
    trim.ran(2500)
    assert trim.peak == 2500 and trim.runs == 1
    assert not trim.due(1251) and trim.due(1250)  # measured from the trim, not the old peak
    trim.ran(0)
    assert not trim.due(0)  # nothing held, no new peak: nothing to give back


def test_steady_load_that_wanders_never_trims() -> None:
    trim = HeapTrim(floor=100)
    assert not any(trim.due(10_000 + (n * 3_701) % 4_000) for n in range(10_000))


# A peak of small objects (as a burst of calls' transactions leaves them) of which every 1000th
# outlives the rest, spread through the whole peak (about one per 100 KB): every 1 MiB arena of
# pymalloc keeps about ten, and so all of them; glibc's pages mostly hold none.
_PEAK = textwrap.dedent(
    """
    import sys
    from sipedge.gcwatch.heap import trim_heap
    from sipedge.gcwatch.valve import resident_bytes

    base = resident_bytes()
    peak = [("x" * 40 + str(i)) for i in range(2_000_000)]
    kept = peak[::1000]  # the long-lived few, spread through the whole peak
    top = resident_bytes()
    del peak
    after_free = resident_bytes()
    trimmed = trim_heap()
    after_trim = resident_bytes()
    print(base, top, after_free, after_trim, int(trimmed), len(kept))
    """
)


def _peak(allocator: str) -> tuple[int, int, int, int, int]:
    env = {**os.environ, "PYTHONMALLOC": allocator}
    out = subprocess.run(
        [sys.executable, "-c", _PEAK], env=env, capture_output=True, text=True, check=True
    ).stdout
    base, top, after_free, after_trim, trimmed, _ = (int(v) for v in out.split())
    assert top - base > 100 << 20, out  # the peak took over 100 MiB
    return base, top - base, after_free, after_trim, trimmed


def test_a_trim_gives_back_the_pages_a_peak_left_free() -> None:
    if not can_trim():
        pytest.skip("not glibc: sipd runs without heap trimming there")
    base, peak, after_free, after_trim, trimmed = _peak("malloc")
    assert after_free > base + peak // 2  # free() alone gives back little
    assert trimmed == 1
    assert after_trim < base + peak // 4  # the trim gave most of it back


def test_pymalloc_keeps_the_peak_whatever_the_trim() -> None:
    """Why sipd runs on PYTHONMALLOC=malloc: with pymalloc the same peak stays resident."""
    if not can_trim():
        pytest.skip("not glibc: sipd runs without heap trimming there")
    base, peak, _after_free, after_trim, _trimmed = _peak("pymalloc")
    assert after_trim > base + peak // 2


def test_the_loop_trims_when_due_and_stops_when_cancelled() -> None:
    if not can_trim():
        pytest.skip("not glibc: sipd runs without heap trimming there")
    trim = HeapTrim(floor=2)
    # a tide going out: trims at 4 (half of 10), at 2 and at 1; then the peak (1) is under the
    # floor, and the zeros after it trim no more
    counts = itertools.chain([10, 4, 2, 1], itertools.repeat(0))
    looked = 0

    def unreadable() -> int:  # /proc unreadable: the log line says 0, the trims go on
        raise OSError("no /proc")

    def held() -> int:
        nonlocal looked
        looked += 1
        return next(counts)

    async def run() -> None:
        task = asyncio.create_task(run_heap_trim(trim, held, unreadable, 0.001))
        while looked < 20:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(asyncio.wait_for(run(), 10))
    assert trim.runs == 3 and trim.peak == 1
