"""The order of one call's mediad work: a FIFO, so SIP messages leave in the order they came.

SIP callbacks are synchronous, mediad is asynchronous. Each piece of work (an offer, an answer,
a delete) is a coroutine factory paired with `then`, the callback that sends the SIP message
with what the work returned. `MediaQueue.submit` runs `then` at once when there is no work and
nothing is queued; otherwise it queues the pair, and one task drains the queue in order, so an
offer finishes before its answer or its delete starts.

Owns: `MediaQueue`, `Then`, `Work`.
Must not: talk to mediad, read SDP, know calls (`media_link.CallMedia` hands it the work and
the callbacks) or import another module of calls/. A failing work or `then` is logged and the
queue goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

Then = Callable[[bytes | None], None]
Work = Callable[[], Awaitable[bytes | None]]
Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]


class MediaQueue:
    """One call's mediad work in order; `spawn` starts the task that drains it."""

    def __init__(self, name: str, spawn: Spawn) -> None:
        self.name = name  # the call's id, for the log
        self._spawn = spawn
        self._queue: deque[tuple[Work, Then]] = deque()
        self._running = False

    def submit(self, work: Work | None, then: Then, body: bytes | None) -> None:
        """Run `work` (None: none, `then` gets `body`) after what is queued, then `then`."""
        if work is None and not self._queue and not self._running:
            then(body)
            return

        async def passthrough() -> bytes | None:
            return body

        self._queue.append((work or passthrough, then))
        if not self._running:
            self._running = True
            self._spawn(self._drain())

    @property
    def idle(self) -> bool:
        """Nothing queued, nothing running: work submitted now would start at once."""
        return not self._queue and not self._running

    async def _drain(self) -> None:
        try:
            while self._queue:
                work, then = self._queue.popleft()
                try:
                    result = await work()
                except Exception:
                    log.exception("call %s: media work failed", self.name)
                    continue
                try:
                    then(result)
                except Exception:
                    log.exception("call %s: sending after media work failed", self.name)
        finally:
            self._running = False
