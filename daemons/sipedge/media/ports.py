"""RTP/RTCP port pairs from media.port_range: RTP even, RTCP = RTP + 1, never given twice.

Ports are drawn at random (`secrets.SystemRandom`) from the free ones, so a port says nothing
about the next one: a free list with swap-remove makes every allocation, reservation and
release O(1). A port a session holds is never in the free list.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable

PROBE_ATTEMPTS = 64  # ports tried per allocation when `probe` refuses (bind failed)


class PortsExhausted(RuntimeError):
    """Every even port of the range is in use (or could not be bound)."""


class PortAllocator:
    """Hands out even RTP ports at random; `probe(port)` may refuse a port (bind failed)."""

    def __init__(self, low: int, high: int, rng: secrets.SystemRandom | None = None) -> None:
        if not 1024 <= low <= high <= 65535:
            raise ValueError(f"media.port_range must lie within 1024-65535, got {low}-{high}")
        first = low + (low & 1)
        last = high - 1 if high & 1 == 0 else high  # RTCP (odd) must fit too
        if last - 1 < first:
            raise ValueError(f"media.port_range {low}-{high} holds no RTP/RTCP pair")
        self.low, self.high = low, high
        self._first, self._last = first, last - 1  # RTP ports first.._last step 2
        self._free = list(range(first, last, 2))
        self._where = {port: i for i, port in enumerate(self._free)}  # free port -> index
        self._capacity = len(self._free)
        self._used: set[int] = set()
        self._rng = rng or secrets.SystemRandom()

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def used(self) -> int:
        return len(self._used)

    @property
    def in_use(self) -> frozenset[int]:
        return frozenset(self._used)

    def _take(self, index: int) -> int:
        """Swap-remove the free port at `index`."""
        port = self._free[index]
        last = self._free.pop()
        if last != port:
            self._free[index] = last
            self._where[last] = index
        del self._where[port]
        return port

    def _put(self, port: int) -> None:
        self._where[port] = len(self._free)
        self._free.append(port)

    def allocate(self, probe: Callable[[int], bool] | None = None) -> int:
        refused: list[int] = []
        try:
            for _ in range(PROBE_ATTEMPTS):
                if not self._free:
                    break
                port = self._take(self._rng.randrange(len(self._free)))
                if probe is not None and not probe(port):
                    refused.append(port)  # busy now: back in the free list afterwards
                    continue
                self._used.add(port)
                return port
        finally:
            for port in refused:
                self._put(port)
        raise PortsExhausted(
            f"no free RTP port pair in {self.low}-{self.high} ({len(self._used)} in use"
            + (f", {len(refused)} tried were busy)" if refused else ")")
        )

    def reserve(self, port: int) -> None:
        """Mark a port as used (re-adoption after a restart)."""
        if port in self._used:
            raise ValueError(f"port {port} already in use")
        if port not in self._where:
            raise ValueError(f"port {port} is not an RTP port of {self.low}-{self.high}")
        self._take(self._where[port])
        self._used.add(port)

    def release(self, port: int) -> None:
        if port in self._used:
            self._used.remove(port)
            self._put(port)

    def release_all(self, ports: Iterable[int]) -> None:
        for port in ports:
            self.release(port)
