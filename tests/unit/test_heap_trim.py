"""gcwatch.heap: when a trim is due, and that a trim really gives a fragmented heap back."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import subprocess
import sys
import textwrap
import tracemalloc

import pytest

from sipedge.gcwatch.heap import HeapTrim, can_trim, release_caches, run_heap_trim


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


def test_only_a_trim_with_little_held_collects_first() -> None:
    trim = HeapTrim(floor=100)
    assert trim.collects_first(0) and trim.collects_first(100)
    assert not trim.collects_first(101) and not trim.collects_first(20_000)


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


# The free lists' part: CPython keeps up to 2,000 freed 2-tuples for reuse, and the last ones a
# peak frees lie one per page through it (here one amid every ~6 KB of strings): the trim cannot
# give those pages back until a full collection has emptied the free lists.
_FREE_LISTS = textwrap.dedent(
    """
    import gc
    from sipedge.gcwatch.heap import trim_heap
    from sipedge.gcwatch.valve import resident_bytes

    gc.disable()  # no automatic collection may empty the free lists before the test does
    trim_heap()
    base = resident_bytes()
    peak = []
    for i in range(4_000):
        peak.append(("t" + str(i), i))
        peak.extend(["s" * 100 + str(j) for j in range(40)])
    del peak  # frees the tuples last to first: the last 2,000 stay in the free list
    trim_heap()
    trimmed = resident_bytes()
    gc.collect()
    trim_heap()
    collected = resident_bytes()
    print(base, trimmed, collected)
    """
)


def test_a_full_collection_lets_the_trim_give_back_the_pages_of_the_free_lists() -> None:
    if not can_trim():
        pytest.skip("not glibc: sipd runs without heap trimming there")
    env = {**os.environ, "PYTHONMALLOC": "malloc"}
    out = subprocess.run(
        [sys.executable, "-c", _FREE_LISTS], env=env, capture_output=True, text=True, check=True
    ).stdout
    base, trimmed, collected = (int(v) for v in out.split())
    assert trimmed - base > 4 << 20, out  # ~2,000 pages kept by 2,000 free tuples
    assert collected < trimmed - (4 << 20), out  # emptied and trimmed: given back
    assert collected - base < 2 << 20, out


def test_release_caches_lets_go_of_names_the_type_cache_kept() -> None:
    """A name built at run time takes a new entry of CPython's type attribute cache each time
    (indexed by the name's address) and stays there: aiohttp formats its connection errors with
    `"{0.path}"`, and after a peak 356 such strings sat each alone on a page."""

    class Failure:
        path = "/run/x.sock"

    failure = Failure()
    tracemalloc.start()
    try:
        # 2,000 names equal to "path", each its own object at its own address, as at a peak
        names = ["".join(("pa", "th")) for _ in range(2000)]
        for name in names:
            getattr(failure, name)
        del names, name
        kept, _ = tracemalloc.get_traced_memory()
        release_caches()
        released, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept > 53 * 250  # at least 250 of them (about 500 here)
    assert released < kept / 10


def test_the_loop_trims_when_due_and_stops_when_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
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

    with caplog.at_level(logging.INFO, logger="sipedge.gcwatch.heap"):
        asyncio.run(asyncio.wait_for(run(), 10))
    assert trim.runs == 3 and trim.peak == 1
    trims = [r.getMessage() for r in caplog.records if r.getMessage().startswith("heap trimmed")]
    # the free lists are emptied first where no more than the floor (2) is held: at 2 and 1
    assert [("free lists emptied" in line) for line in trims] == [False, True, True], trims
