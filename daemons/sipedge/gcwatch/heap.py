"""The C heap after a peak: its free pages given back to the kernel (glibc's `malloc_trim`).

Why: at 500 calls/s sipd holds the finished transactions of the last 32 s (RFC 3261 Timer J,
RFC 6026 Timer M), some 16,000 calls' worth. Once the rate drops they are freed, but the memory
stayed with the process: pymalloc gives a 1 MiB arena back only when every object in it is
free, and after a peak nearly every arena keeps a few long-lived objects (measured after a
drain: 187 arenas held, 28 MB of them in live objects). So sipd runs with `PYTHONMALLOC=malloc`
(its systemd unit and the test helper set it; its price, measured in docs/performance.md: about
9 % more instructions per call in the SIP stack): Python's objects then live in glibc's heap,
and `malloc_trim(0)` gives back every free page wherever it lies, not only at the heap's top.
glibc does not do that by itself.

`HeapTrim` decides when, from the daemon's own count of what it holds (sipd: its calls and
transactions): when that count has fallen to half of its peak since the last trim (the calls of
a peak have ended), with a peak of at least `floor` (a trim of a small heap gives back little).
Under steady load the count stays, and no trim runs. glibc's own count of free bytes
(`mallinfo2`) is not asked: after a peak it walks every free chunk (22 ms measured in a
contrived peak of 3,000,000 small strings). A trim stops the loop while glibc walks the free
chunks and gives their pages back: 25-54 ms per trim measured in the drain after 100,000 calls
at 500/s (docs/performance.md), and no better from a thread (each arena is locked while it is
walked, and the loop's mallocs wait for the lock). `run_heap_trim` logs each trim, with that
pause.

When little is held (at most `floor`: the calls of a peak have drained), a full collection runs
first, after the type attribute cache is cleared (`release_caches`). Why: CPython keeps objects
it frees for reuse in free lists (up to 2,000 tuples of each small size, 80 dicts, lists...),
and the ones freed last at a peak lie scattered through the whole peak, each keeping its page
resident: some 4,000 objects, enough to hold most of a trimmed heap's growth (in process,
100,000 calls through sipd's stack, trimmed once drained: the heap 39.4 -> 51.0 MB without the
collection, 33.4 -> 36.6 MB with it; docs/performance.md). Only a full collection empties the
free lists (the `gc` module's documentation says so). It walks every object that is not frozen,
so it is cheap only when little is held, and only then does it run (12-15 ms with the trim after
100,000 calls; the log line gives each pause). What else sipd holds outside its calls grows with
transactions too (bindings are refreshed by REGISTERs, each a transaction that lingers 32 s), so
few held means few objects to walk.
Before it the daemon may `compact` what it holds (sipd rebuilds its transaction tables: a dict
keeps the table of its peak size, CPython never shrinks one on delete).

Owns: `ALLOCATOR_ENV`, `HeapTrim` (the pure decisions: when to trim, when to collect first),
`trim_heap` (the call into libc), `release_caches` (what CPython keeps for reuse, let go),
`run_heap_trim` (the loop that counts, collects and trims).
Must not: import from sipedge (the daemon passes its count in); fail on a C library without
`malloc_trim` (musl): it then turns itself off, and says so once.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

# The environment sipd starts in (set before the interpreter starts, so by whoever starts it:
# the systemd unit, `make run`, the tests): Python's objects in glibc's heap.
ALLOCATOR_ENV = {"PYTHONMALLOC": "malloc"}
CHECK_INTERVAL = 10.0  # seconds between two counts
FLOOR = 256  # a peak below this many held things is not worth a trim


def _libc() -> ctypes.CDLL | None:
    """The C library when it has `malloc_trim` (glibc), else None. dlopen(NULL): the process's
    own symbols, libc's among them (find_library would run ldconfig at every start)."""
    try:
        libc = ctypes.CDLL(None)
        libc.malloc_trim.restype = ctypes.c_int
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def can_trim() -> bool:
    return _LIBC is not None


def trim_heap() -> bool:
    """Give every free page of every arena back to the kernel; True when any was."""
    return _LIBC is not None and bool(_LIBC.malloc_trim(0))


@dataclass
class HeapTrim:
    """When the heap is worth a trim, given the daemon's count of what it holds. Pure."""

    floor: int = FLOOR
    peak: int = 0  # the highest count since the last trim
    runs: int = 0

    def due(self, held: int) -> bool:
        self.peak = max(self.peak, held)
        return self.peak >= self.floor and held <= self.peak // 2

    def collects_first(self, held: int) -> bool:
        """A trim that is due empties the free lists first (a full collection) when no more
        than `floor` things are held: the collection then walks little."""
        return held <= self.floor

    def ran(self, held: int) -> None:
        """A trim just ran: the peak is measured again from here."""
        self.peak = held
        self.runs += 1


async def run_heap_trim(
    policy: HeapTrim,
    held: Callable[[], int],
    resident: Callable[[], int],
    interval: float = CHECK_INTERVAL,
    compact: Callable[[], None] = lambda: None,
) -> None:
    """Every `interval` seconds count what the daemon holds (`held`) and trim when `policy`
    says so, until cancelled. `resident` reads the process's resident bytes (for the log);
    `compact` lets the daemon shrink its tables before a trim that empties the free lists."""
    if not can_trim():
        log.info("heap trimming off: the C library has no malloc_trim")
        return
    allocator = os.environ.get("PYTHONMALLOC", "")
    if allocator not in ("malloc", "malloc_debug"):  # started by hand, without the unit's env
        log.warning(
            "PYTHONMALLOC is %r, not %r: Python's objects stay in pymalloc's arenas, and the"
            " heap trim gives little of them back after a peak of calls",
            allocator or "unset",
            ALLOCATOR_ENV["PYTHONMALLOC"],
        )
    while True:
        await asyncio.sleep(interval)
        count = held()
        if not policy.due(count):
            continue
        peak = policy.peak
        collect = policy.collects_first(count)
        before = _read(resident)
        started = time.perf_counter()
        if collect:
            compact()
            release_caches()
        trim_heap()
        pause = time.perf_counter() - started
        policy.ran(count)
        after = _read(resident)
        log.info(
            "heap trimmed (%d held, %d at the peak%s): %d MiB given back to the kernel, %d MiB"
            " resident, in %.1f ms",
            count,
            peak,
            ", free lists emptied" if collect else "",
            max(0, before - after) >> 20,
            after >> 20,
            pause * 1000,
        )


def release_caches() -> None:
    """Let go of what CPython keeps for reuse, so that the pages under it can be given back:
    the free lists (only a full collection empties them) and the type attribute cache.

    The cache (4,096 entries) keeps a reference to each attribute name it has looked up, and it
    is indexed by the name's address: a name built at run time (`getattr` with a computed
    string, `"{0.path}".format(exc)` in aiohttp's connection errors) takes a new entry each
    time and stays until that entry is reused. After 100,000 calls with mediad down, 356 such
    `'path'` strings sat each alone on a page of the peak (docs/performance.md). Dropping the
    cache costs a few lookups to fill it again."""
    sys._clear_type_cache()
    gc.collect()


def _read(resident: Callable[[], int]) -> int:
    """The resident bytes for the log line; 0 when /proc cannot be read (the trim goes on)."""
    try:
        return resident()
    except OSError:
        return 0
