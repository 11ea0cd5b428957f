"""The B2BUA's side of media anchoring: one `MediaService` for all calls.

Owns: `MediaService` (the mediad client, the counters, the reconciler and its loops, the
hold-off after an unreachable mediad, the calls' background tasks), `UNREACHABLE_HOLD_OFF`.
Must not: know a call's sessions or SDP (`media_link.CallMedia` does, one per call, and is
built on this), send SIP, or import `calls.call` / `calls.service`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

from sipedge.calls.media_backend import MediaBackend
from sipedge.calls.media_families import watch_families
from sipedge.calls.media_metrics import MediaStats
from sipedge.calls.media_policy import MediaPolicy
from sipedge.calls.media_reconcile import Reconciler
from sipedge.calls.media_session import WatchSettings
from sipedge.media.client import MediaError
from sipedge.ratelog import RateLimitedLog

# The failures of the calls' mediad work are CallMedia's lines: they keep its logger's name.
log = logging.getLogger("sipedge.calls.media_link")
T = TypeVar("T")

# After a call's request found mediad unreachable, the calls of the next second skip it (one
# request per second probes): a dead control socket must not cost every call a connection
# attempt and a log line. A reconciliation round that reaches mediad lifts the hold-off early.
UNREACHABLE_HOLD_OFF = 1.0
ERROR_LOG_INTERVAL = 10.0  # one mediad-failure line per (operation, code) per interval
HELD_OFF_REASON = "mediad unreachable (held off, retried each second)"


class MediaService:
    """One per B2BUA: the mediad client, the counters, the background tasks."""

    def __init__(
        self,
        backend: MediaBackend | None,
        settings: WatchSettings | None = None,
        policy: MediaPolicy | None = None,
        idle_timeout: float = 120.0,
    ):
        self.backend = backend
        self.settings = settings or WatchSettings()
        self.policy = policy or MediaPolicy()  # replaced on reload; each call keeps its own
        self.stats = MediaStats()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.reconciler = Reconciler(backend, idle_timeout, self._orphan_deleted)
        self._loops: list[asyncio.Task[None]] = []  # reconciliation, mediad's families
        self.clock = time.monotonic
        self._skip_until = 0.0  # calls skip mediad until then (see UNREACHABLE_HOLD_OFF)
        self.error_log = RateLimitedLog(log, ERROR_LOG_INTERVAL)

    def _orphan_deleted(self) -> None:
        self.stats.orphans_deleted += 1

    def start(self) -> None:
        """Reconcile with mediad now and every `idle_timeout / 4`, and ask its relay families
        (media_families); needs a running loop."""
        if self.backend is not None and not self._loops:
            loop, ask = asyncio.get_running_loop(), self.backend.relay_families
            self._loops.append(loop.create_task(self.reconciler.run()))
            watch = watch_families(self.stats, ask, self.reconciler.on_success)
            self._loops.append(loop.create_task(watch))

    def holding_off(self) -> bool:
        """mediad was unreachable for a call less than UNREACHABLE_HOLD_OFF ago."""
        return not self.reconciler.reachable and self.clock() < self._skip_until

    async def request(self, work: Awaitable[T]) -> T:
        """One mediad request; tells the reconciler whether mediad answered. While holding
        off after an unreachable mediad, fails at once with `unreachable` (`work` unsent)."""
        if self.holding_off():
            if isinstance(work, Coroutine):
                work.close()  # never started: nothing was sent
            raise MediaError("unreachable", HELD_OFF_REASON)
        try:
            result = await work
        except MediaError as exc:
            self.reconciler.on_error(exc)
            if exc.code == "unreachable":
                self._skip_until = self.clock() + UNREACHABLE_HOLD_OFF
            raise
        self.reconciler.on_success()
        return result

    @property
    def enabled(self) -> bool:
        return self.backend is not None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) for queued mediad work, deletes above all, to finish."""
        deadline = time.monotonic() + timeout
        while self._tasks and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        for task in self._loops:
            task.cancel()
        await self.reconciler.stop()
        for task in list(self._tasks):
            task.cancel()
        if self.backend is not None:
            await self.backend.close()


__all__ = ["UNREACHABLE_HOLD_OFF", "MediaService"]
