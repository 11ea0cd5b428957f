"""The store contract: every backend behind `sipedge.store` keeps and returns the same things.

Parametrised over backends (SQLite today); a new backend joins `BACKENDS` and must pass as is.
CDR writes made outside an event loop commit before `write()` returns (the synchronous tests);
on a loop they are queued and called back once committed (the async test).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from sipedge.store import (
    AttemptRecord,
    Binding,
    BindingStore,
    CallRecord,
    CdrStore,
    open_binding_store,
    open_cdr_reader,
    open_cdr_store,
)
from sipedge.store.sqlite.cdr import row_of

BACKENDS: dict[str, tuple[Callable[[Path], CdrStore], Callable[[Path], BindingStore]]] = {
    "sqlite": (open_cdr_store, open_binding_store),
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def record(call_id: str, answered: bool = True, end_time: float = 110.5) -> CallRecord:
    return CallRecord(
        call_id=call_id,
        caller="1001",
        callee="2002",
        source="127.0.0.1:5070",
        mapping_gateway="customer",
        setup_time=100.0,
        answer_time=102.0 if answered else None,
        end_time=end_time,
        release_side="caller",
        cause="normal",
        final_status=200 if answered else 486,
        routing_gateway="carrier-b",
        attempts=[
            AttemptRecord("carrier-a", 100.0, 101.0, "503", 503),
            AttemptRecord("carrier-b", 101.0, 110.5, "answered", 200),
        ],
    )


def binding(account: str, expires_at: float) -> Binding:
    return Binding(
        account=account,
        contact=f"sip:{account}@192.0.2.7:5060",
        source=("192.0.2.7", 40000),
        nat=True,
        expires_at=expires_at,
        call_id=f"reg-{account}",
        cseq=3,
        registered_at=90.0,
        user_agent="phone/1.0",
    )


def test_cdrs_come_back_newest_first_with_attempts(tmp_path: Path, backend: str) -> None:
    store = BACKENDS[backend][0](tmp_path)
    store.write(record("a"))
    store.write(record("b", answered=False))
    assert store.written == 2
    rows = store.recent(10)
    assert [r["call_id"] for r in rows] == ["b", "a"]
    assert rows[1]["duration"] == pytest.approx(8.5)
    assert rows[0]["duration"] == 0.0
    assert [a["gateway"] for a in rows[1]["attempts"]] == ["carrier-a", "carrier-b"]
    assert rows[1]["attempts"][0]["status"] == 503
    assert [r["call_id"] for r in store.recent(10, call_id="a")] == ["a"]
    assert len(store.recent(1)) == 1
    store.close()


def test_a_cdrs_attempts_column_is_every_field_of_each_attempt_in_order() -> None:
    """`row_of` flattens attempts by hand (no `dataclasses.asdict`): the stored JSON must stay
    what `asdict` gives, every field present, in field order, non-ASCII escaped."""
    cdr = record("a")
    cdr.attempts.append(
        AttemptRecord(
            "carrier-c",
            110.0,
            None,
            'dns-failure: gw.example: "é"',
            None,
            "no more",
            challenged=True,
            auth_algorithm="SHA-256",
            auth_failure="rechallenged",
            target="192.0.2.9:5060",
            progress=110.2,
            pdd=0.2,
        )
    )
    expected = json.dumps([dataclasses.asdict(a) for a in cdr.attempts], separators=(",", ":"))
    assert row_of(cdr)[14] == expected
    assert json.loads(expected)[2]["result"] == 'dns-failure: gw.example: "é"'


def test_the_cursor_pages_through_every_record_once(tmp_path: Path, backend: str) -> None:
    store = BACKENDS[backend][0](tmp_path)
    for n in range(25):
        store.write(record(f"c{n}"))
    seen: list[str] = []
    before = None
    while True:
        page = store.recent(10, before=before)
        if not page:
            break
        seen += [r["call_id"] for r in page]
        before = page[-1]["id"]
    assert seen == [f"c{n}" for n in range(24, -1, -1)]
    store.close()


def test_a_search_filters_by_number_gateway_time_and_answer(tmp_path: Path, backend: str) -> None:
    store = BACKENDS[backend][0](tmp_path)
    for i, (caller, callee) in enumerate([("1001", "442001"), ("1%_1", "2002"), ("777", "99_5")]):
        r = record(f"c{i}", answered=i != 1, end_time=200.0 + i)
        r.caller, r.callee = caller, callee
        store.write(r)

    def ids(**filters: str | float | bool) -> list[str]:
        return [r["call_id"] for r in store.recent(10, filters=filters)]

    assert ids() == ["c2", "c1", "c0"]
    assert ids(callee="4420") == ["c0"]  # contains
    assert ids(caller="%") == ["c1"]  # LIKE wildcards are literal
    assert ids(callee="9_") == ["c2"]
    assert ids(caller="_") == ["c1"]
    assert ids(gateway="customer") == ids(gateway="carrier-b") == ["c2", "c1", "c0"]
    assert ids(gateway="carrier-a") == []  # an attempt's gateway is not the call's
    assert ids(since=201.0) == ["c2", "c1"]
    assert ids(since=200.0, until=201.0) == ["c0"]
    assert ids(answered=True) == ["c2", "c0"]
    assert ids(answered=False) == ["c1"]
    assert ids(caller="1", answered=True) == ["c0"]
    with pytest.raises(ValueError):
        store.recent(10, filters={"caller; DROP TABLE cdr": "x"})
    assert [r["call_id"] for r in store.recent(1, before=3, filters={"answered": True})] == ["c0"]


def test_export_streams_a_time_window_oldest_first(tmp_path: Path, backend: str) -> None:
    store = BACKENDS[backend][0](tmp_path)
    for n in range(2500):  # more than one export batch
        store.write(record(f"c{n}", end_time=1000.0 + n))
    window = [r["call_id"] for r in store.export(1100.0, 2100.0)]
    assert window == [f"c{n}" for n in range(100, 1100)]
    assert len(list(store.export(0.0))) == 2500
    store.close()


def test_retention_by_age_then_by_size(tmp_path: Path, backend: str) -> None:
    store = BACKENDS[backend][0](tmp_path)
    for n in range(100):
        store.write(record(f"old{n}", end_time=1000.0))
    for n in range(100):
        store.write(record(f"new{n}", end_time=90000.0))
    assert store.prune(now=100000.0, max_age=86400.0, max_bytes=None) == 100
    assert {r["call_id"][:3] for r in store.recent(500)} == {"new"}
    # by size: write well past a limit, pruning as sipd does (until a short batch)
    limit = 256 * 1024
    for n in range(3000):
        store.write(record(f"bulk{n}", end_time=95000.0 + n))
        if n % 100 == 0:
            while store.prune(now=100000.0, max_age=None, max_bytes=limit) >= 1000:
                pass
    while store.prune(now=100000.0, max_age=None, max_bytes=limit) >= 1000:
        pass
    assert store.size_bytes() <= limit
    newest = store.recent(1)[0]["call_id"]
    assert newest == "bulk2999"  # the oldest went first
    store.close()
    if backend == "sqlite":  # the file gives the pages back (auto_vacuum on a new database)
        assert (tmp_path / "cdr.sqlite").stat().st_size <= 2 * limit


async def test_writes_on_a_loop_are_called_back_in_order_once_committed(
    tmp_path: Path, backend: str
) -> None:
    store = BACKENDS[backend][0](tmp_path)
    loop = asyncio.get_running_loop()
    order: list[int] = []
    done: asyncio.Future[str] = loop.create_future()
    for n in range(50):
        store.write(record(f"c{n}"), lambda n=n: order.append(n))
    store.write(record("last"), lambda: done.set_result(store.recent(1)[0]["call_id"]))
    assert await done == "last"  # committed (readable) when its callback runs
    assert order == list(range(50))
    assert store.written == 51 and store.queued == 0 and 1 <= store.batches <= 51
    assert store.sync_writes == 0 and store.write_failures == 0
    # retention runs behind the writes queued before it, awaited off the loop
    for n in range(5):
        store.write(record(f"old{n}", end_time=10.0))  # the others ended at 110.5
    assert await asyncio.to_thread(store.prune, 86500.0, 86400.0, None) == 5
    store.write(record("queued at close"))
    store.close()  # commits it
    reader = open_cdr_reader(tmp_path)
    try:
        assert reader.recent(1)[0]["call_id"] == "queued at close"
    finally:
        reader.close()


def test_a_reader_sees_what_the_writer_committed(tmp_path: Path, backend: str) -> None:
    store = BACKENDS[backend][0](tmp_path)
    store.write(record("a"))
    reader = open_cdr_reader(tmp_path)
    try:
        assert [r["call_id"] for r in reader.recent(5)] == ["a"]
    finally:
        reader.close()
        store.close()


def test_reading_where_nothing_was_written_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_cdr_reader(tmp_path / "nothing")


def test_bindings_survive_a_reopen_and_expire(tmp_path: Path, backend: str) -> None:
    store = BACKENDS[backend][1](tmp_path)
    store.put(binding("alice", expires_at=1000.0))
    store.put(binding("bob", expires_at=150.0))
    store.put(binding("carol", expires_at=1000.0))
    store.delete("carol")
    assert store.pending == 3
    assert store.flush() == 3
    assert store.pending == 0
    assert store.flush() == 0
    store.close()

    again = BACKENDS[backend][1](tmp_path)
    live = again.load(now=200.0)
    assert [b.account for b in live] == ["alice"]
    assert live[0] == binding("alice", expires_at=1000.0)
    again.close()
    # bob expired at load time and was removed from the store, not just filtered
    third = BACKENDS[backend][1](tmp_path)
    assert [b.account for b in third.load(now=0.0)] == ["alice"]
    third.close()


def test_close_flushes_pending_changes(tmp_path: Path, backend: str) -> None:
    store = BACKENDS[backend][1](tmp_path)
    store.put(binding("alice", expires_at=1000.0))
    store.close()
    again = BACKENDS[backend][1](tmp_path)
    assert [b.account for b in again.load(now=0.0)] == ["alice"]
    again.close()
