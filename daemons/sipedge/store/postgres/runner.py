"""The PostgreSQL side of a store: one thread with its own event loop and an asyncpg pool.

asyncpg is asynchronous, the store interface is not (its users call it from the event loop
without waiting, or from worker threads and the CLI, waiting). So every statement runs on
this thread's loop: `submit` hands it a coroutine and returns a concurrent Future at once (the
daemon's event loop never waits for PostgreSQL), `run` waits for the result with a timeout
(worker threads, the CLI, start-up).

The pool is created with min_size=0: opening a store never needs the server (an edge starts
while PostgreSQL is down; its CDRs spool), and a connection broken by a restart of the server
is replaced at the next acquire.

Owns: the thread, its loop and the pool, and `storable` (text PostgreSQL accepts).
Must not: know any table (the callers' coroutines do), or be called from its own loop's
coroutines through `run` (that would wait for itself).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import asyncpg

from sipedge.store.postgres.settings import PostgresSettings

T = TypeVar("T")

CONNECT_TIMEOUT = 5.0  # seconds to open one connection
COMMAND_TIMEOUT = 30.0  # seconds one statement may take
CLOSE_TIMEOUT = 5.0


def storable(value: Any) -> Any:
    """PostgreSQL refuses NUL in text and in jsonb (SQLite keeps it): a caller, a SIP reason
    or a User-Agent from the network carrying one must not block the spool or the bindings
    forever; it becomes U+FFFD (in the attempts' JSON it is escaped as \\u0000)."""
    if isinstance(value, str) and ("\x00" in value or "\\u0000" in value):
        return value.replace("\x00", "\ufffd").replace("\\u0000", "\\ufffd")
    return value


Work = Callable[[asyncpg.Pool], Awaitable[T]]


class PgRunner:
    def __init__(self, settings: PostgresSettings, *, name: str = "postgres") -> None:
        self.settings = settings
        self._password = settings.password()
        self.loop = asyncio.new_event_loop()
        self._pool: asyncpg.Pool | None = None
        ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._main, args=(ready,), name=name, daemon=True)
        self._thread.start()
        ready.result()  # the pool object exists (no connection yet) or its error is raised

    def _main(self, ready: Future[None]) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self._pool = self.loop.run_until_complete(self._create())
        except BaseException as err:
            ready.set_exception(err)
            self.loop.close()
            return
        ready.set_result(None)
        self.loop.run_forever()
        self.loop.run_until_complete(self._close_pool())
        self.loop.close()

    async def _create(self) -> asyncpg.Pool:
        pool = asyncpg.create_pool(
            self.settings.dsn,
            password=self._password,
            min_size=0,
            max_size=self.settings.pool_size,
            timeout=CONNECT_TIMEOUT,
            command_timeout=COMMAND_TIMEOUT,
        )
        return await pool

    async def _close_pool(self) -> None:
        if self._pool is None:
            return
        try:
            await asyncio.wait_for(self._pool.close(), CLOSE_TIMEOUT)
        except (TimeoutError, OSError, asyncpg.PostgresError):
            self._pool.terminate()

    @property
    def pool(self) -> asyncpg.Pool:
        assert self._pool is not None
        return self._pool

    def submit(self, work: Work[T]) -> Future[T]:
        """Start `work(pool)` on the runner's loop; never waits."""
        return asyncio.run_coroutine_threadsafe(self._call(work), self.loop)

    def spawn(self, coro: Awaitable[Any]) -> Future[Any]:
        """A long-running coroutine of the caller's (the CDR shipper) on the runner's loop."""

        async def wrapped() -> Any:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop)

    async def _call(self, work: Work[T]) -> T:
        return await work(self.pool)

    def run(self, work: Work[T], timeout: float = COMMAND_TIMEOUT + CONNECT_TIMEOUT) -> T:
        """`work(pool)` on the runner's loop; waits (not from the daemon's event loop)."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("PgRunner.run from its own loop would wait for itself")
        return self.submit(work).result(timeout)

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(CLOSE_TIMEOUT * 2)
