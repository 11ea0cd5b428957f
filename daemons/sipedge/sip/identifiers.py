"""Fresh identifiers: Via branches, From/To tags and Call-IDs (RFC 3261 8.1.1.4-8.1.1.7, 19.3).

Owns: `new_branch`, `new_tag`, `new_call_id`, all drawn from the kernel's CSPRNG so that no
other party can guess a dialog's or a transaction's identifiers. A call needs about six of them;
one getrandom() per value showed up in sipd's profile, so the bytes come from a pool refilled
4 KiB at a time (each byte is used once; a forked child starts with an empty pool, never its
parent's). message.py re-exports these names; other code imports them from there.
Must not: use a seeded or non-cryptographic generator, or import from sipedge (it is a leaf of
the grammar modules).
"""

from __future__ import annotations

import os

__all__ = ["new_branch", "new_call_id", "new_tag"]

_REFILL = 4096
_pool = bytearray()
os.register_at_fork(after_in_child=_pool.clear)


def _random_hex(size: int) -> str:
    """`size` unused random bytes from the pool, as hex."""
    if len(_pool) < size:
        _pool[:] = os.urandom(_REFILL)
    chunk = _pool[-size:]
    del _pool[-size:]
    return chunk.hex()


def new_branch() -> str:
    """A fresh RFC 3261 branch (magic cookie + 64 random bits)."""
    return "z9hG4bK" + _random_hex(8)


def new_tag() -> str:
    """A fresh From/To tag; random so other parties cannot guess dialog identifiers."""
    return _random_hex(6)


def new_call_id() -> str:
    return _random_hex(12)
