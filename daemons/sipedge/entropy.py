"""Random values for identifiers, from the kernel's CSPRNG through a pool.

Owns: `random_hex` (the pool: bytes from `os.urandom`, refilled 4 KiB at a time, each byte used
once; a forked child starts with an empty pool, never its parent's) and `time_ordered_uuid`
(a version 7 UUID: the time in milliseconds, then 74 bits from the pool). Why a pool: one
getrandom() system call per value showed up in sipd's profile, and a call needs about seven
values (branches, tags, its Call-ID, its CDR's uuid).
Must not: use a seeded or non-cryptographic generator, or import from sipedge (a leaf: the SIP
grammar's identifiers and the store's records both draw from it).
"""

from __future__ import annotations

import os
import time

__all__ = ["random_hex", "time_ordered_uuid"]

_REFILL = 4096
_pool = bytearray()
os.register_at_fork(after_in_child=_pool.clear)


def random_hex(size: int) -> str:
    """`size` unused random bytes from the pool, as hex."""
    if len(_pool) < size:
        _pool[:] = os.urandom(_REFILL)
    chunk = _pool[-size:]
    del _pool[-size:]
    return chunk.hex()


def time_ordered_uuid(unix_ms: int | None = None) -> str:
    """A UUID of RFC 9562's version 7 in its 8-4-4-4-12 form: 48 bits of Unix time in
    milliseconds (now unless given), then 74 random bits.

    Why not version 4: a CDR's uuid is a unique index (SQLite's and the PostgreSQL server's),
    and random keys land on a random page of it each, so every transaction of a few CDRs
    rewrites a few random pages, more of them as the table grows beyond the page cache; keys in
    time order land on the index's last page (`tests.bench.cdr_insert`: half the WAL pages per
    CDR, and 15 -> 10 µs of CPU on a new table, 27 -> 9 µs with a million rows; the figures are
    in docs/performance.md). The time in it is not a secret: the CDR holds
    the call's times anyway. Within one millisecond the keys are unordered, which costs a
    B-tree nothing."""
    if unix_ms is None:
        unix_ms = time.time_ns() // 1_000_000
    if not 0 <= unix_ms < 1 << 48:
        raise ValueError(f"time out of a UUID's 48 bits: {unix_ms}")
    h = random_hex(10)
    variant = "89ab"[int(h[3], 16) & 3]  # the two top bits 10, the next two random
    return f"{unix_ms >> 16:08x}-{unix_ms & 0xFFFF:04x}-7{h[:3]}-{variant}{h[4:7]}-{h[7:19]}"
