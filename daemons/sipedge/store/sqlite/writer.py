"""Group commit: one writer thread per SQLite database, off the event loop.

Rows are queued from the event loop (`submit`); the writer takes everything queued (up to
`batch` rows), inserts it in ONE transaction (one fsync with `synchronous=FULL`) and reports
back to each row's event loop with `loop.call_soon_threadsafe`, one handle per batch, the
callbacks in the order of their rows. While one batch commits, the next one accumulates, so the
number of fsyncs follows the disk, not the call rate.

* Paced: at most one commit of rows per `pace` seconds (20 ms). Under load a row that arrives
  less than `pace` after the last commit began waits for the rest of that interval, so the rows
  of a busy second go in ~50 transactions, not one per row or two. Why: each wake-up of this
  thread costs the event loop more than the rows' own work. Both threads want Python's GIL, and
  SQLite's module drops and retakes it around every statement, so a thread that commits a batch
  of six rows hands the GIL back and forth some ten times (measured at 500 calls/s: the writer
  thread 27 % of sipd's CPU while calls end unpaced, 13 % paced; docs/performance.md). An idle
  writer commits a lone row at once: the pause only comes after a recent commit. The price is
  that a row's callback (the BYE's 200 waits for its CDR) runs up to `pace` later under load.

* Failures: a failed transaction is rolled back and tried once more; if it fails again its
  rows are logged with their labels (call ids) and counted (`failures`), and their callbacks
  run all the same. The thread never dies of a failed write.
* Bounded: at most `capacity` rows wait. A row submitted to a full queue is committed at once
  on the submitting thread (back-pressure, counted in `sync_writes`), never dropped. So is
  a row submitted outside an event loop (a script): it is committed before `submit` returns.
* One writer: every other change to the database (`call`: retention) runs on the writer
  thread, after the rows queued before it; a lock makes the submitting thread's own commits
  (the two cases above) wait for the writer's transaction, so transactions never interleave.
* `close` commits everything queued, then stops the thread (bounded wait; rows left over are
  logged with their labels).

Owns: the write connection once it is handed over, the queue, the writer thread and its
counters. Must not: know what the rows mean (the INSERT statement and the labels come from
the caller, `store/sqlite/cdr.py`), read, or touch the connection outside the lock.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from sipedge.store.base import OnCommitted

log = logging.getLogger(__name__)

T = TypeVar("T")

BATCH = 500  # rows per transaction at most
CAPACITY = 20_000  # rows waiting at most; then the submitting thread commits its own
PACE = 0.02  # seconds: at most one commit of rows per PACE (see "Paced" above)
RETRY_PAUSE = 0.05  # seconds before the second try of a failed transaction
CLOSE_TIMEOUT = 10.0  # seconds close() waits for the queue to be committed


@dataclass(slots=True)
class _Row:
    values: Sequence[Any]
    label: str  # what the logs name it by (a call id)
    loop: asyncio.AbstractEventLoop | None
    callback: OnCommitted | None


@dataclass(slots=True)
class _Task:
    """Work on the connection, run by the writer thread in queue order (`stop`: the last)."""

    work: Callable[[sqlite3.Connection], Any]
    result: Future[Any]
    stop: bool = False

    def run(self, db: sqlite3.Connection) -> None:
        if not self.result.set_running_or_notify_cancel():
            return
        try:
            self.result.set_result(self.work(db))
        except BaseException as err:  # handed to the waiting thread
            self.result.set_exception(err)


def _nothing(db: sqlite3.Connection) -> None:
    return None


class GroupWriter:
    """The one writer of a SQLite connection: group commit of queued rows, tasks in order."""

    def __init__(
        self,
        db: sqlite3.Connection,
        insert: str,
        *,
        kind: str,
        batch: int = BATCH,
        capacity: int = CAPACITY,
        pace: float = PACE,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._db = db  # opened with isolation_level=None and check_same_thread=False
        # One cursor for every transaction: each new one (`db.execute` makes one) leaves a weak
        # reference in the connection's list, which CPython purges only every 200 cursors; at
        # the end of a peak those ~200 dead references sat each alone on a page of it.
        self._cursor = db.cursor()
        self._insert = insert
        self.kind = kind  # "CDR": in the logs and the thread's name
        self.batch = batch
        self.capacity = capacity
        self.pace = pace
        self._clock = clock
        self._sleep = sleep  # the writer thread's pause before a paced commit
        self._next_commit = float("-inf")  # no commit of rows before this (clock's time)
        self._queue: queue.SimpleQueue[_Row | _Task] = queue.SimpleQueue()
        self._lock = threading.Lock()  # held for every transaction on the connection
        self._gate = threading.Lock()  # a submit and close() never cross
        self._closed = False
        self._stopped = False  # the writer thread has run the stop task
        self._in_flight = 0
        self.written = 0
        self.batches = 0  # committed transactions of rows
        self.sync_writes = 0  # rows committed by the submitting thread: the queue was full
        self.failures = 0  # rows lost after two tries (logged)
        self._thread = threading.Thread(
            target=self._run, name=f"{kind.lower()}-writer", daemon=True
        )
        self._thread.start()

    @property
    def queued(self) -> int:
        """Rows submitted and not yet committed."""
        return self._queue.qsize() + self._in_flight

    @property
    def closed(self) -> bool:
        return self._closed

    # -- the submitting side (the event loop) -------------------------------------------------
    def submit(
        self, values: Sequence[Any], label: str, callback: OnCommitted | None = None
    ) -> None:
        """Queue one row; `callback` runs on the current event loop once it is committed (or
        its failure logged). RuntimeError once closed."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        row = _Row(values, label, loop, callback)
        if loop is not None:
            with self._gate:
                if self._closed:
                    raise RuntimeError(f"the {self.kind} store is closed")
                if self._queue.qsize() < self.capacity:
                    self._queue.put(row)
                    return
            self.sync_writes += 1
        elif self._closed:
            raise RuntimeError(f"the {self.kind} store is closed")
        with self._lock:
            self._commit([row])
        if callback is None:
            return
        if loop is not None:
            loop.call_soon(_run_callbacks, [callback])  # never inside submit() on a loop
        else:
            _run_callbacks([callback])

    def call(self, work: Callable[[sqlite3.Connection], T], timeout: float | None = None) -> T:
        """Run `work(connection)` on the writer thread after everything queued before it, and
        return its result (or raise its exception). Blocks: not for the event loop."""
        if threading.current_thread() is self._thread:
            return work(self._db)
        result: Future[T] = Future()
        with self._gate:
            if self._closed:
                raise RuntimeError(f"the {self.kind} store is closed")
            self._queue.put(_Task(work, result))
        return result.result(timeout)

    def close(self, timeout: float = CLOSE_TIMEOUT) -> bool:
        """Commit everything queued and stop the thread; False if it did not finish within
        `timeout` (the rows still queued are logged with their labels, then dropped)."""
        with self._gate:
            if self._closed:
                return not self._thread.is_alive()
            self._closed = True
            self._queue.put(_Task(_nothing, Future(), stop=True))
        self._thread.join(timeout)
        if not self._thread.is_alive():
            return True
        left: list[str] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Row):
                left.append(item.label)
            else:
                item.result.cancel()  # a thread waiting in call() gets CancelledError
        self.failures += len(left)
        log.error(
            "the %s writer did not finish within %g s (the disk is stuck?): %d %ss not"
            " written, %d still being committed; call ids: %s",
            self.kind,
            timeout,
            len(left),
            self.kind,
            self._in_flight,
            " ".join(left),
        )
        return False

    # -- the writer thread --------------------------------------------------------------------
    def _run(self) -> None:
        held: _Task | None = None
        while not self._stopped:
            held = self._step(held if held is not None else self._queue.get())

    def _step(self, item: _Row | _Task) -> _Task | None:
        """Run one task, or commit one batch of rows starting with `item`; returns the task
        met while gathering the batch (it runs next: it must see the rows before it). The
        rows and their callbacks are not kept once their loops have them."""
        if isinstance(item, _Task):
            with self._lock:
                item.run(self._db)
            self._stopped = item.stop
            return None
        wait = self._next_commit - self._clock()
        if wait > 0:  # a commit began less than `pace` ago: let more rows gather
            self._in_flight = 1  # `item` is out of the queue: still counted in `queued`
            self._sleep(wait)
        self._next_commit = self._clock() + self.pace
        batch = [item]
        held: _Task | None = None
        while len(batch) < self.batch:
            try:
                following = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(following, _Task):
                held = following
                break
            batch.append(following)
        self._in_flight = len(batch)
        try:
            with self._lock:
                self._commit(batch)
            self._in_flight = 0  # before the callbacks: the gauge they see is current
            self._report(batch)
        except Exception:  # a bug here must not stop every later CDR
            log.exception("the %s writer failed on a batch of %d", self.kind, len(batch))
        finally:
            self._in_flight = 0
        return held

    def _commit(self, rows: list[_Row]) -> bool:
        """One transaction for `rows`, tried twice; the caller holds the lock."""
        values = [row.values for row in rows]
        error = self._transaction(values)
        if error is not None:
            log.warning("writing %d %ss failed (%s); trying once more", len(rows), self.kind, error)
            time.sleep(RETRY_PAUSE)
            error = self._transaction(values)
        if error is None:
            self.written += len(rows)
            self.batches += 1
            return True
        self.failures += len(rows)
        log.error(
            "%d %ss could not be written (%s); call ids: %s",
            len(rows),
            self.kind,
            error,
            " ".join(row.label for row in rows),
        )
        return False

    def _transaction(self, values: list[Sequence[Any]]) -> Exception | None:
        try:
            self._cursor.execute("BEGIN IMMEDIATE")
            self._cursor.executemany(self._insert, values)
            self._cursor.execute("COMMIT")
        except Exception as err:
            self._rollback()
            return err
        return None

    def _rollback(self) -> None:
        try:
            if self._db.in_transaction:
                self._cursor.execute("ROLLBACK")
        except sqlite3.Error as err:
            log.warning("rolling back a failed %s transaction failed: %s", self.kind, err)

    def _report(self, rows: list[_Row]) -> None:
        """Each event loop gets one handle with its rows' callbacks, in their order."""
        by_loop: dict[asyncio.AbstractEventLoop, list[OnCommitted]] = {}
        for row in rows:
            if row.callback is not None and row.loop is not None:
                by_loop.setdefault(row.loop, []).append(row.callback)
        for loop, callbacks in by_loop.items():
            try:
                loop.call_soon_threadsafe(_run_callbacks, callbacks)
            except RuntimeError:  # that loop is closed: its daemon has stopped
                log.warning(
                    "%d callbacks after %s commits not run: their event loop is closed",
                    len(callbacks),
                    self.kind,
                )


def _run_callbacks(callbacks: list[OnCommitted]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:
            log.exception("a callback after a commit failed")
