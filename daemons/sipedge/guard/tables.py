"""The guard's two tables: request counts per source (pike's ip_tree) and bans (an htable).

Owns: `RateTable` (requests per source in a sliding window) and `BanTable` (banned sources
until a time), both bounded: when full, the entry touched longest ago makes room. Every
operation is O(1) (amortised for the sweeps), so a datagram costs the same whatever the
table size.
Must not: read the clock (time comes in as `now`), log, or know what a source is beyond its
address string.

Kamailio's pike keeps a tree of address prefixes with a hit counter per time unit and a timer
that ages the nodes; we keep one flat table of whole addresses (a spoofed flood fills it and
evicts the oldest entries, which the bound makes harmless) with two counters per source, the
current and the previous window, weighted by how far the current window has run (a sliding
window without a timer).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

# Entries removed by one sweep at most: a sweep never holds the event loop for long (what is
# left goes at the next sweep, or is evicted when the table is full).
SWEEP_MAX = 2048


class RateTable:
    """Requests per source address over the last `window` seconds (approximate, sliding)."""

    def __init__(self, window: float, capacity: int) -> None:
        self.window = window
        self.capacity = capacity
        self.evicted = 0
        # source -> [start of its current window, hits in it, hits in the previous one]
        self._entries: OrderedDict[str, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def hit(self, source: str, now: float) -> float:
        """Count one request from `source`; return its rate: requests in the last window,
        this one included."""
        entries = self._entries
        entry = entries.get(source)
        if entry is None:
            if len(entries) >= self.capacity:
                entries.popitem(last=False)
                self.evicted += 1
            entry = [now, 0.0, 0.0]
            entries[source] = entry
        elapsed = now - entry[0]
        if elapsed >= self.window:
            periods = int(elapsed // self.window)
            entry[2] = entry[1] if periods == 1 else 0.0
            entry[1] = 0.0
            entry[0] += periods * self.window
            entries.move_to_end(source)  # the table stays ordered by window start
        entry[1] += 1
        weight = 1.0 - (now - entry[0]) / self.window
        return entry[1] + entry[2] * weight

    def forget(self, source: str) -> None:
        self._entries.pop(source, None)

    def sweep(self, now: float) -> int:
        """Drop sources idle for two windows (their counts are zero); oldest first, so this
        stops at the first live one."""
        entries = self._entries
        gone = 0
        horizon = now - 2 * self.window
        while entries and gone < SWEEP_MAX:
            source, entry = next(iter(entries.items()))
            if entry[0] > horizon:
                break
            del entries[source]
            gone += 1
        return gone


@dataclass
class Ban:
    address: str
    reason: str  # a member of BAN_REASONS (rules.py)
    since: float
    until: float
    dropped: int = 0  # datagrams dropped since the ban started

    def to_json(self, now: float) -> dict[str, object]:
        return {
            "address": self.address,
            "reason": self.reason,
            "age": round(now - self.since, 3),
            "expires_in": round(max(0.0, self.until - now), 3),
            "dropped": self.dropped,
        }


class BanTable:
    """Banned sources until a time. Bans of one length end in the order they began, so the
    oldest ban is always at the front: expiry and eviction take it from there."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.evicted = 0
        self._bans: OrderedDict[str, Ban] = OrderedDict()

    def __len__(self) -> int:
        return len(self._bans)

    def get(self, address: str, now: float) -> Ban | None:
        ban = self._bans.get(address)
        if ban is None:
            return None
        if ban.until <= now:
            del self._bans[address]
            return None
        return ban

    def add(self, address: str, reason: str, now: float, duration: float) -> Ban:
        self._bans.pop(address, None)
        if len(self._bans) >= self.capacity:
            self._bans.popitem(last=False)
            self.evicted += 1
        ban = Ban(address, reason, now, now + duration)
        self._bans[address] = ban
        return ban

    def remove(self, address: str) -> bool:
        return self._bans.pop(address, None) is not None

    def clear(self) -> int:
        count = len(self._bans)
        self._bans.clear()
        return count

    def sweep(self, now: float) -> int:
        """Remove ended bans from the front (a ban of another length, after a reload, may
        linger behind a longer one until `get` meets it)."""
        bans = self._bans
        gone = 0
        while bans and gone < SWEEP_MAX:
            address, ban = next(iter(bans.items()))
            if ban.until > now:
                break
            del bans[address]
            gone += 1
        return gone

    def active(self, now: float) -> list[Ban]:
        return [ban for ban in self._bans.values() if ban.until > now]
