"""Group commit of CDRs (`store/sqlite/writer.py`): real SQLite files, a real writer thread.

Batching (fewer transactions than records, none bigger than the cap), pacing (after a recent
commit the writer waits out the rest of its interval and the rows of that pause go in one
transaction; an idle writer does not wait), callbacks on the loop in order, `close()`
committing what is queued, back-pressure when the queue is full, a failing table (logged with
the call ids, counted, callbacks run, the writer carries on), retention on the writer after the
records queued before it; and the B2BUA: the 200 to a BYE leaves only once the call's CDR is
committed, a retransmitted BYE meanwhile is absorbed, and the call is still freed by reference
counting.
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from sipedge.calls.call import Call
from sipedge.sip.message import Response, parse_message
from sipedge.store import open_cdr_reader, open_cdr_store
from sipedge.store.sqlite.cdr import MIGRATIONS, SqliteCdrStore
from sipedge.store.sqlite.writer import PACE, GroupWriter
from tests.unit.test_call_garbage import CALLER, GW1, Stack, answered
from tests.unit.test_store import record


def rows(directory: Path) -> list[str]:
    """The call ids committed, oldest first, read as `sipedge cdr` reads them."""
    reader = open_cdr_reader(directory)
    try:
        return [r["call_id"] for r in reversed(reader.recent(100_000))]
    finally:
        reader.close()


async def writer_waiting(store: SqliteCdrStore) -> None:
    """Until the writer has taken what was queued (and waits for the lock in its BEGIN)."""
    writer = store._writer
    while writer._in_flight == 0 or writer._queue.qsize():
        await asyncio.sleep(0.005)


@contextmanager
def write_lock_held(directory: Path) -> Iterator[Callable[[float], None]]:
    """Another connection holds the database's write lock: the writer waits in its BEGIN
    (the busy timeout) as it would behind a slow disk. Yields `release(after_seconds)`."""
    other = sqlite3.connect(directory / "cdr.sqlite", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    timer: list[threading.Timer] = []

    def release(after: float) -> None:
        timer.append(threading.Timer(after, other.execute, ("COMMIT",)))
        timer[0].start()

    try:
        yield release
    finally:
        for t in timer:
            t.join()
        if other.in_transaction:
            other.execute("COMMIT")
        other.close()


async def test_records_are_committed_in_batches_up_to_the_cap(tmp_path: Path) -> None:
    store = SqliteCdrStore(tmp_path, durable=True, batch=100)
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    with write_lock_held(tmp_path) as release:
        store.write(record("first"))
        await writer_waiting(store)
        for n in range(1000):
            store.write(record(f"c{n}"))
        store.write(record("last"), lambda: done.set_result(None))
        assert store.queued == 1002 and store.written == 0
        release(0.0)
        await done
    assert store.written == 1002 and store.queued == 0
    # "first" (with whatever queued before the writer took it), then what had queued
    # meanwhile, 100 at a time
    assert store.batches in (11, 12)
    assert rows(tmp_path) == ["first", *(f"c{n}" for n in range(1000)), "last"]
    store.close()


async def test_group_commit_needs_far_fewer_transactions_than_records(tmp_path: Path) -> None:
    store = open_cdr_store(tmp_path, durable=True)
    done = asyncio.get_running_loop().create_future()
    for n in range(1999):
        store.write(record(f"c{n}"))
    store.write(record("c1999"), lambda: done.set_result(None))
    await done
    assert store.written == 2000
    assert 4 <= store.batches < 2000 // 4  # at most 500 a batch; many records per fsync
    store.close()


async def test_callbacks_run_on_the_loop_in_order_after_the_commit(tmp_path: Path) -> None:
    store = open_cdr_store(tmp_path)
    loop = asyncio.get_running_loop()
    seen: list[tuple[int, bool, bool]] = []
    done = loop.create_future()

    def committed(n: int) -> None:
        on_loop = threading.current_thread() is threading.main_thread()
        seen.append((n, on_loop, bool(store.recent(1, call_id=f"c{n}"))))
        if n == 299:
            done.set_result(None)

    for n in range(300):
        before = len(seen)
        store.write(record(f"c{n}"), lambda n=n: committed(n))
        assert len(seen) == before  # never inside write()
        if n % 50 == 0:
            await asyncio.sleep(0)
    await done
    assert seen == [(n, True, True) for n in range(300)]
    store.close()


async def test_close_commits_everything_queued(tmp_path: Path) -> None:
    store = open_cdr_store(tmp_path, durable=True)
    for n in range(3000):
        store.write(record(f"c{n}"))
    store.close()  # at once, on the loop: as sipd's stop() does
    assert store.written == 3000
    assert rows(tmp_path) == [f"c{n}" for n in range(3000)]
    with pytest.raises(RuntimeError, match="closed"):
        store.write(record("late"))


async def test_close_gives_up_after_its_timeout_and_names_what_is_left(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_cdr_store(tmp_path)
    assert isinstance(store, SqliteCdrStore)
    with write_lock_held(tmp_path) as release, caplog.at_level("ERROR"):
        store.write(record("stuck"))
        await writer_waiting(store)
        store.write(record("left-1"))
        store.write(record("left-2"))
        store.close(timeout=0.2)  # the disk does not answer: close does not hang
        release(0.0)
    (error,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "did not finish" in error and "left-1 left-2" in error
    assert store.write_failures == 2
    with pytest.raises(RuntimeError, match="closed"):
        store.write(record("late"))


async def test_a_full_queue_makes_the_writer_wait_and_loses_nothing(tmp_path: Path) -> None:
    store = SqliteCdrStore(tmp_path, capacity=10)
    loop = asyncio.get_running_loop()
    order: list[str] = []
    last_queued = loop.create_future()
    with write_lock_held(tmp_path) as release:
        store.write(record("first"), lambda: order.append("first"))
        await writer_waiting(store)
        for n in range(9):
            store.write(record(f"q{n}"), lambda n=n: order.append(f"q{n}"))
        store.write(record("q9"), lambda: last_queued.set_result(order.append("q9")))
        assert store.queued == 11 and store.sync_writes == 0
        release(0.2)
        started = loop.time()
        store.write(record("over"), lambda: order.append("over"))  # on this thread, waiting
        assert loop.time() - started >= 0.1  # back-pressure: the loop waited for the disk
        assert store.sync_writes == 1 and "over" in rows(tmp_path)  # committed on return
        assert order == []  # not even its own callback inside write()
    await last_queued  # the queue drains (callbacks in order; "over" came first)
    assert store.written == 12 and store.write_failures == 0 and store.queued == 0
    assert sorted(rows(tmp_path)) == sorted(["first", "over", *(f"q{n}" for n in range(10))])
    assert set(order) == {"first", "over", *(f"q{n}" for n in range(10))}
    assert [name for name in order if name.startswith("q")] == [f"q{n}" for n in range(10)]
    store.close()


async def test_a_failing_table_is_logged_counted_and_the_writer_carries_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_cdr_store(tmp_path)
    loop = asyncio.get_running_loop()
    other = sqlite3.connect(tmp_path / "cdr.sqlite", isolation_level=None)
    other.execute("DROP TABLE cdr")
    called: list[str] = []
    done = loop.create_future()
    with caplog.at_level("WARNING", logger="sipedge.store.sqlite.writer"):
        store.write(record("lost-1"), lambda: called.append("lost-1"))
        store.write(record("lost-2"), lambda: done.set_result(None))
        await done  # callbacks run all the same: a BYE's 200 is not held forever
    assert called == ["lost-1"]
    assert store.write_failures == 2 and store.written == 0
    messages = [r.getMessage() for r in caplog.records]
    assert any("trying once more" in m for m in messages), messages
    # one batch or two: the writer may take lost-1 before lost-2 is queued (making a record
    # reads os.urandom for its uuid, which lets the writer thread run in between)
    errors = " ".join(r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    assert "lost-1" in errors and "lost-2" in errors
    # the writer lives on: once the table is back, records are committed again
    for step in MIGRATIONS:
        for statement in step.statements:
            other.execute(statement)
    other.close()
    done = loop.create_future()
    store.write(record("kept"), lambda: done.set_result(None))
    await done
    assert store.written == 1 and store.write_failures == 2
    assert rows(tmp_path) == ["kept"]
    store.close()


async def test_prune_runs_on_the_writer_after_the_records_queued_before_it(
    tmp_path: Path,
) -> None:
    store = open_cdr_store(tmp_path)
    for n in range(1500):
        store.write(record(f"old{n}", end_time=1000.0))
    for n in range(10):
        store.write(record(f"new{n}", end_time=90000.0))
    # not waiting for the commits: prune is queued behind them, and awaited off the loop
    removed = await asyncio.to_thread(store.prune, 100000.0, 86400.0, None)
    assert removed == 1000  # one bounded batch
    assert await asyncio.to_thread(store.prune, 100000.0, 86400.0, None) == 500
    assert await asyncio.to_thread(store.prune, 100000.0, 86400.0, None) == 0
    assert rows(tmp_path) == [f"new{n}" for n in range(10)]
    assert store.written == 1510
    store.close()


class _PacedClock:
    """The writer's clock and sleep: time moves only when the test or the writer's pause moves
    it; a pause can be held (`hold`) so that the test queues rows while the writer waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.pauses: list[float] = []
        self.hold = threading.Event()
        self.hold.set()
        self.pausing = threading.Event()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.pausing.set()
        assert self.hold.wait(10)
        self.now += seconds


def _paced_writer(clock: _PacedClock) -> GroupWriter:
    db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    db.execute("CREATE TABLE t (x TEXT)")
    return GroupWriter(
        db, "INSERT INTO t VALUES (?)", kind="T", clock=clock.clock, sleep=clock.sleep
    )


async def _committed(writer: GroupWriter, value: str) -> None:
    done = asyncio.get_running_loop().create_future()
    writer.submit((value,), value, lambda: done.set_result(None))
    await asyncio.wait_for(done, 10)


async def test_an_idle_writer_commits_at_once_a_busy_one_waits_out_its_pace() -> None:
    clock = _PacedClock()
    writer = _paced_writer(clock)
    await _committed(writer, "a")  # idle: no pause
    assert clock.pauses == []
    clock.now += 0.005  # 5 ms after "a"'s commit began
    await _committed(writer, "b")
    assert clock.pauses == [pytest.approx(PACE - 0.005)]
    clock.now += 1.0  # idle again
    await _committed(writer, "c")
    assert len(clock.pauses) == 1 and writer.batches == 3 and writer.written == 3
    assert writer.close()


async def test_the_rows_of_a_pause_go_in_one_transaction() -> None:
    clock = _PacedClock()
    writer = _paced_writer(clock)
    await _committed(writer, "first")
    clock.hold.clear()
    done = asyncio.get_running_loop().create_future()
    writer.submit(("r0",), "r0")  # the writer takes it, and pauses
    await asyncio.to_thread(clock.pausing.wait, 10)
    assert writer.queued == 1  # taken from the queue, not yet committed: still counted
    for n in range(1, 50):
        writer.submit((f"r{n}",), f"r{n}")
    writer.submit(("last",), "last", lambda: done.set_result(None))
    clock.hold.set()
    await asyncio.wait_for(done, 10)
    assert writer.batches == 2 and writer.written == 52
    assert writer.close()


def _dead_cursor_references(db: sqlite3.Connection) -> int:
    """The dead weak references in the connection's list of its cursors (CPython purges it only
    every 200 new cursors)."""
    lists = [r for r in gc.get_referents(db) if isinstance(r, list)]
    return sum(1 for x in lists for r in x if isinstance(r, weakref.ref) and r() is None)


async def test_the_writer_reuses_one_cursor() -> None:
    """Transactions leave no dead cursor behind: after a peak of commits the last ~200 each sat
    alone on a page of it (docs/performance.md)."""
    clock = _PacedClock()
    writer = _paced_writer(clock)
    for n in range(150):
        clock.now += 1.0  # idle between rows: one transaction each
        await _committed(writer, f"r{n}")
    assert writer.batches == 150
    assert _dead_cursor_references(writer._db) <= 1  # the CREATE TABLE's
    # the measure sees them: a cursor per statement, as before, leaves them
    for _ in range(150):
        writer._db.execute("SELECT 1")
    assert _dead_cursor_references(writer._db) >= 150
    assert writer.close()


def test_outside_an_event_loop_a_write_commits_before_it_returns(tmp_path: Path) -> None:
    store = open_cdr_store(tmp_path)
    called: list[bool] = []
    store.write(record("a"), lambda: called.append("a" in rows(tmp_path)))
    assert called == [True] and store.written == 1 and store.queued == 0
    store.close()


# -- the B2BUA: BYE, commit, 200 --------------------------------------------------------------


class _Wire:
    """Sends of the in-process sipd; notes, for each 200 to a BYE, whether the CDR of its call
    was committed when it left."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.sent: list[tuple[bytes, Any]] = []
        self.bye_ok_after_commit: list[bool] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))
        msg = parse_message(data)
        if isinstance(msg, Response) and msg.cseq[1] == "BYE" and addr == CALLER:
            self.bye_ok_after_commit.append(msg.call_id in rows(self.directory))


def calls_alive() -> int:
    """Live `Call` objects (a compiled `Call` takes no weak reference; the collector lists
    every object it tracks, a call among them, even while switched off)."""
    return sum(1 for o in gc.get_objects() if type(o) is Call)


def test_the_byes_200_leaves_after_the_cdr_commit(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    gc.collect()
    gc.disable()
    try:
        sipd = Stack(tmp_path, loop=loop)
        store = open_cdr_store(tmp_path / "cdrs")
        sipd.b2bua.cdrs = store
        wire = _Wire(tmp_path / "cdrs")
        sipd.wire = wire  # type: ignore[assignment]
        sipd.transport._transport = wire  # type: ignore[assignment]
        invite, _ = answered(sipd, GW1)
        assert calls_alive() == 1
        with write_lock_held(tmp_path / "cdrs") as release:
            bye = sipd.caller_request(invite, "BYE", 2)
            assert sipd.last_request("BYE", GW1)  # the other leg hears at once
            assert wire.bye_ok_after_commit == []  # the caller waits for the commit
            sipd.feed(bye, CALLER)  # its retransmission is absorbed meanwhile
            assert wire.bye_ok_after_commit == []
            release(0.0)

            async def answered_200() -> None:
                while not wire.bye_ok_after_commit:
                    await asyncio.sleep(0.01)

            loop.run_until_complete(asyncio.wait_for(answered_200(), 5))
        assert wire.bye_ok_after_commit == [True]
        sipd.feed(bye, CALLER)  # a retransmission now: the same 200 again
        assert wire.bye_ok_after_commit == [True, True]
        sipd.answer(sipd.last_request("BYE", GW1), 200, GW1)
        sipd.settle()  # past every transaction timer: nothing of the call is left
        assert calls_alive() == 0  # freed by reference counting: no cycle through the callback
        assert store.written == 1
        store.close()
    finally:
        gc.enable()
        loop.close()


def test_without_a_cdr_store_the_byes_200_goes_at_once(tmp_path: Path) -> None:
    sipd = Stack(tmp_path)  # cdrs None, no event loop
    invite, _ = answered(sipd, GW1)
    sipd.caller_request(invite, "BYE", 2)
    assert sipd.last_response(200, CALLER).cseq[1] == "BYE"


def test_a_closed_store_still_answers_the_bye(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sipd = Stack(tmp_path)
    store = open_cdr_store(tmp_path / "cdrs")
    store.close()
    sipd.b2bua.cdrs = store
    invite, _ = answered(sipd, GW1)
    with caplog.at_level("ERROR", logger="sipedge.calls.service"):
        sipd.caller_request(invite, "BYE", 2)
    assert sipd.last_response(200, CALLER).cseq[1] == "BYE"
    assert any("writing the CDR" in r.getMessage() for r in caplog.records)
