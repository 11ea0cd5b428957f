"""RTP/RTCP port pairs from media.port_range: RTP even, RTCP = RTP + 1, never given twice."""

from __future__ import annotations

from collections.abc import Callable, Iterable


class PortsExhausted(RuntimeError):
    """Every even port of the range is in use (or could not be bound)."""


class PortAllocator:
    """Hands out even RTP ports round-robin; `probe(port)` may refuse a port (bind failed)."""

    def __init__(self, low: int, high: int) -> None:
        if not 1024 <= low <= high <= 65535:
            raise ValueError(f"media.port_range must lie within 1024-65535, got {low}-{high}")
        first = low + (low & 1)
        last = high - 1 if high & 1 == 0 else high  # RTCP (odd) must fit too
        if last - 1 < first:
            raise ValueError(f"media.port_range {low}-{high} holds no RTP/RTCP pair")
        self.low, self.high = low, high
        self._ports = list(range(first, last, 2))
        self._used: set[int] = set()
        self._next = 0

    @property
    def capacity(self) -> int:
        return len(self._ports)

    @property
    def in_use(self) -> frozenset[int]:
        return frozenset(self._used)

    def allocate(self, probe: Callable[[int], bool] | None = None) -> int:
        n = len(self._ports)
        for step in range(n):
            port = self._ports[(self._next + step) % n]
            if port in self._used:
                continue
            if probe is not None and not probe(port):
                continue
            self._used.add(port)
            self._next = (self._next + step + 1) % n
            return port
        raise PortsExhausted(
            f"no free RTP port pair in {self.low}-{self.high} ({len(self._used)} in use)"
        )

    def reserve(self, port: int) -> None:
        """Mark a port as used (re-adoption after a restart)."""
        if port in self._used:
            raise ValueError(f"port {port} already in use")
        if port not in range(self._ports[0], self._ports[-1] + 1, 2):
            raise ValueError(f"port {port} is not an RTP port of {self.low}-{self.high}")
        self._used.add(port)

    def release(self, port: int) -> None:
        self._used.discard(port)

    def release_all(self, ports: Iterable[int]) -> None:
        for port in ports:
            self.release(port)
