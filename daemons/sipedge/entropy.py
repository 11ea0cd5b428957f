"""Random values for identifiers, from the kernel's CSPRNG through a pool.

Owns: `random_hex` (the pool: bytes from `os.urandom`, refilled 4 KiB at a time, each byte used
once; a forked child starts with an empty pool, never its parent's) and `random_uuid` (a
version 4 UUID from it). Why a pool: one getrandom() system call per value showed up in sipd's
profile, and a call needs about seven values (branches, tags, its Call-ID, its CDR's uuid).
Must not: use a seeded or non-cryptographic generator, or import from sipedge (a leaf: the SIP
grammar's identifiers and the store's records both draw from it).
"""

from __future__ import annotations

import os

__all__ = ["random_hex", "random_uuid"]

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


def random_uuid() -> str:
    """A random UUID (RFC 9562 version 4: 122 random bits) in its 8-4-4-4-12 form, as
    `str(uuid.uuid4())` gives, without a system call or a `UUID` object per value."""
    h = random_hex(16)
    variant = "89ab"[int(h[16], 16) & 3]  # the two top bits 10, the next two random
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}"
