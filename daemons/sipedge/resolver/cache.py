"""A bounded cache whose entries expire after their own TTL: the pure half of the resolver's
memory.

Owns: `TtlCache` (put with a TTL, get until it expires, at most `capacity` entries: when full,
expired entries go first, then the oldest put).
Must not: read the clock (``now`` is an argument), start timers or import anything of sipedge.
Driven by: `resolver/client.py`, which keeps one per daemon.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["TtlCache"]

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    __slots__ = ("_entries", "capacity")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity!r}")
        self.capacity = capacity
        self._entries: dict[K, tuple[float, V]] = {}  # key -> (expires at, value), oldest first

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K, now: float) -> V | None:
        """The value put under `key`, or None once its TTL has run out (it is then dropped)."""
        found = self._entries.get(key)
        if found is None:
            return None
        if found[0] <= now:
            del self._entries[key]
            return None
        return found[1]

    def put(self, key: K, value: V, ttl: float, now: float) -> None:
        """Keep `value` for `ttl` seconds (a TTL of 0 or less keeps nothing)."""
        self._entries.pop(key, None)
        if ttl <= 0:
            return
        if len(self._entries) >= self.capacity:
            self._evict(now)
        self._entries[key] = (now + ttl, value)

    def _evict(self, now: float) -> None:
        expired = [k for k, (expires, _) in self._entries.items() if expires <= now]
        for k in expired:
            del self._entries[k]
        while len(self._entries) >= self.capacity:
            del self._entries[next(iter(self._entries))]

    def clear(self) -> None:
        self._entries.clear()
