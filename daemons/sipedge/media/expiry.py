"""Idle session expiry: which sessions saw nothing for `timeout` seconds, with bounded work.

Sessions wait in a round-robin queue. Each `due()` looks at no more than a batch of them
(at least MIN_BATCH, enough to go round the queue in CYCLES runs, at most MAX_BATCH): an idle
one is returned (the caller deletes it), a live one goes to the back of the queue, one that
was deleted meanwhile is forgotten. A session is an object identity, so a call id deleted and
offered again is not confused with the old session.

Owns: the queue and the idle test. Must not: read the clock (`now` comes in), delete
sessions, or know where activity comes from (the caller's `activity(session)` says: the last
packet in userspace or XDP, or the last command naming it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

S = TypeVar("S")

MIN_BATCH = 64
MAX_BATCH = 4096
CYCLES = 5


class IdleSweeper(Generic[S]):
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.queue: deque[tuple[str, S]] = deque()

    def add(self, call_id: str, session: S) -> None:
        self.queue.append((call_id, session))

    def batch(self) -> int:
        return min(MAX_BATCH, max(MIN_BATCH, -(-len(self.queue) // CYCLES)))

    def due(self, live: Mapping[str, S], activity: Callable[[S], float], now: float) -> list[str]:
        """Call ids idle for `timeout` among the next batch of the queue."""
        idle: list[str] = []
        for _ in range(min(self.batch(), len(self.queue))):
            call_id, session = self.queue.popleft()
            if live.get(call_id) is not session:
                continue  # deleted (or replaced) since it was queued
            if now - activity(session) >= self.timeout:
                idle.append(call_id)
            else:
                self.queue.append((call_id, session))
        return idle
