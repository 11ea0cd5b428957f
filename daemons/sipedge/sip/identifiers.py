"""Fresh identifiers: Via branches, From/To tags and Call-IDs (RFC 3261 8.1.1.4-8.1.1.7, 19.3).

Owns: `new_branch`, `new_tag`, `new_call_id`, all drawn from the kernel's CSPRNG (through
`sipedge.entropy`'s pool) so that no other party can guess a dialog's or a transaction's
identifiers. message.py re-exports these names; other code imports them from there.
Must not: use a seeded or non-cryptographic generator, or import from sipedge beyond the leaf
`entropy` (it is a leaf of the grammar modules).
"""

from __future__ import annotations

from sipedge.entropy import random_hex

__all__ = ["new_branch", "new_call_id", "new_tag"]


def new_branch() -> str:
    """A fresh RFC 3261 branch (magic cookie + 64 random bits)."""
    return "z9hG4bK" + random_hex(8)


def new_tag() -> str:
    """A fresh From/To tag; random so other parties cannot guess dialog identifiers."""
    return random_hex(6)


def new_call_id() -> str:
    return random_hex(12)
