"""Call detail records in SQLite (`<storage.path>/cdr.sqlite`).

One row per call, its attempts as a JSON array in the same row. WAL mode: a committed record
survives a crash of the daemon (`synchronous=NORMAL`); `durable=True` (the appliance default,
`storage.cdr_durable`) gives `synchronous=FULL`, which also survives power loss at the cost of
an fsync per commit.

Writes are group-committed by one writer thread (`store/sqlite/writer.py`) that owns the write
connection: `write()` snapshots the record into a row on the caller's thread and queues it;
the writer commits everything queued (up to WRITE_BATCH rows) in one transaction, so at most
one fsync per batch, and then runs the records' `on_committed` callbacks on their event loop.
At most WRITE_QUEUE records wait; beyond that a write commits on the caller's thread (counted,
never dropped). Retention (`prune`) runs on the same writer; reads (`recent`, `export`,
`size_bytes`) use a read connection of their own and see committed records.

Retention removes by age, then the oldest rows while the table is over its size; new databases
are created with `auto_vacuum=INCREMENTAL` so that the freed pages go back to the file system,
older ones reuse their free pages (the file stops growing at the limit).

Owns: the CDR table's schema and queries, `SqliteCdrStore` and `SqliteCdrReader`.
Must not: write on the connection outside its writer, or block on the disk in `write()` (but
for the full-queue fallback).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from sipedge.store.base import CdrFilters, OnCommitted, StoreMetric
from sipedge.store.records import AttemptRecord, CallRecord
from sipedge.store.schema import Migration, migrate_sqlite
from sipedge.store.sqlite.writer import BATCH, CAPACITY, CLOSE_TIMEOUT, GroupWriter

MIGRATIONS = (
    Migration(
        1,
        "the CDR table",
        (
            """
CREATE TABLE IF NOT EXISTS cdr (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL,
    caller TEXT NOT NULL,
    callee TEXT NOT NULL,
    source TEXT NOT NULL,
    mapping_gateway TEXT,
    setup_time REAL NOT NULL,
    answer_time REAL,
    end_time REAL NOT NULL,
    duration REAL NOT NULL,
    release_side TEXT NOT NULL,
    cause TEXT NOT NULL,
    final_status INTEGER NOT NULL,
    routing_gateway TEXT,
    switch_stop_reason TEXT,
    attempts TEXT NOT NULL
)""",
            "CREATE INDEX IF NOT EXISTS cdr_end_time ON cdr(end_time)",
        ),
    ),
    Migration(
        2,
        "an idempotent key per CDR (uuid; NULL in the records written before)",
        (
            "ALTER TABLE cdr ADD COLUMN uuid TEXT",
            "CREATE UNIQUE INDEX cdr_uuid ON cdr(uuid)",
        ),
    ),
)

# A record handed over twice (a spool replayed after a crash) is kept once.
INSERT = (
    "INSERT INTO cdr (call_id, caller, callee, source, mapping_gateway, setup_time,"
    " answer_time, end_time, duration, release_side, cause, final_status,"
    " routing_gateway, switch_stop_reason, attempts, uuid)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(uuid) DO NOTHING"
)

PRUNE_BATCH = 1000  # rows per prune() call: a few ms of the writer thread
EXPORT_BATCH = 1000  # rows per read of export()
WAL_LIMIT = 4 << 20  # the WAL is truncated back to this after a checkpoint
# Each connection's page cache, KiB (SQLite's default is 2,000). The writer appends and touches
# the right edge of each B-tree; a cache that fills to 2 MB over 100,000 calls was resident
# memory that stayed (docs/performance.md); the reader serves the API's pages.
CACHE_KIB = 512
WRITE_BATCH = BATCH  # records per transaction at most
WRITE_QUEUE = CAPACITY  # records waiting for the writer at most


# An attempt's fields are all scalars: a flat dict of them in field order is what
# `dataclasses.asdict` gave, without its deep copy; one encoder, not one per `json.dumps` with
# separators. Both run on the event loop once per call (23 -> 6 µs for two attempts).
_ATTEMPT_FIELDS = tuple(f.name for f in fields(AttemptRecord))
_encode_attempts = json.JSONEncoder(separators=(",", ":")).encode


def row_of(record: CallRecord) -> tuple[Any, ...]:
    """The record as the INSERT's values, taken when the call ends (a snapshot)."""
    attempts = _encode_attempts(
        [{name: getattr(a, name) for name in _ATTEMPT_FIELDS} for a in record.attempts]
    )
    return (
        record.call_id,
        record.caller,
        record.callee,
        record.source,
        record.mapping_gateway,
        record.setup_time,
        record.answer_time,
        record.end_time,
        record.duration,
        record.release_side,
        record.cause,
        record.final_status,
        record.routing_gateway,
        record.switch_stop_reason,
        attempts,
        record.uuid,
    )


def open_for_writing(path: Path, durable: bool) -> sqlite3.Connection:
    """The writer's connection to a CDR database, as the store (and `tests.bench.cdr_insert`)
    use it: WAL, FULL or NORMAL sync, a bounded page cache. Not migrated."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only takes on a new database
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
    db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    return db


def used_bytes(db: sqlite3.Connection) -> int:
    page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
    pages = int(db.execute("PRAGMA page_count").fetchone()[0])
    free = int(db.execute("PRAGMA freelist_count").fetchone()[0])
    return (pages - free) * page_size


class SqliteCdrStore:
    """Append-only CDR table; the event loop only queues (group commit on a writer thread)."""

    def __init__(
        self,
        directory: Path,
        *,
        durable: bool = False,
        batch: int = WRITE_BATCH,
        capacity: int = WRITE_QUEUE,
        name: str = "cdr.sqlite",
        migrate: bool = True,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / name
        db = open_for_writing(self.path, durable)
        try:
            migrate_sqlite(db, str(self.path), MIGRATIONS, apply=migrate)
        except BaseException:
            db.close()
            raise
        self._db = db  # the writer's from here on: touched only through self._writer
        self._read = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._read.execute("PRAGMA query_only=ON")
        self._read.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        self._writer = GroupWriter(db, INSERT, kind="CDR", batch=batch, capacity=capacity)
        self.durable = durable
        self.pruned = 0

    @property
    def written(self) -> int:
        return self._writer.written

    def backend_metrics(self) -> list[StoreMetric]:
        return []

    @property
    def queued(self) -> int:
        return self._writer.queued

    @property
    def batches(self) -> int:
        return self._writer.batches

    @property
    def sync_writes(self) -> int:
        return self._writer.sync_writes

    @property
    def write_failures(self) -> int:
        return self._writer.failures

    def write(self, record: CallRecord, on_committed: OnCommitted | None = None) -> None:
        self._writer.submit(row_of(record), record.call_id, on_committed)

    def recent(
        self,
        limit: int = 50,
        call_id: str | None = None,
        before: int | None = None,
        filters: CdrFilters | None = None,
    ) -> list[dict[str, Any]]:
        return read_cdrs(self._read, limit, call_id, before, filters)

    def export(self, since: float, until: float | None = None) -> Iterator[dict[str, Any]]:
        return export_cdrs(self._read, since, until)

    def size_bytes(self) -> int:
        return used_bytes(self._read)

    def prune(self, now: float, max_age: float | None, max_bytes: int | None) -> int:
        return self._writer.call(lambda db: self._prune(db, now, max_age, max_bytes))

    def _prune(
        self, db: sqlite3.Connection, now: float, max_age: float | None, max_bytes: int | None
    ) -> int:
        """On the writer thread (autocommit: each DELETE is its own transaction)."""
        removed = 0
        if max_age is not None:
            removed += _delete(
                db,
                "SELECT id FROM cdr WHERE end_time < ? ORDER BY id LIMIT ?",
                (now - max_age, PRUNE_BATCH),
            )
        if max_bytes is not None and removed < PRUNE_BATCH:
            used = used_bytes(db)
            if used > max_bytes:
                first, last = db.execute("SELECT MIN(id), MAX(id) FROM cdr").fetchone()
                rows = (last - first + 1) if first is not None else 0
                if rows:
                    # down to 90% of the limit, so that pruning does not run on every call
                    excess = used - int(max_bytes * 0.9)
                    count = min(PRUNE_BATCH - removed, max(1, excess * rows // used + 1))
                    removed += _delete(db, "SELECT id FROM cdr ORDER BY id LIMIT ?", (count,))
        if removed:
            db.execute("PRAGMA incremental_vacuum")
            self.pruned += removed
        return removed

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        if self._writer.closed:
            return
        if self._writer.close(timeout):
            self._db.close()  # left open while a stuck writer might still use it
        self._read.close()


def _delete(db: sqlite3.Connection, select: str, args: tuple[Any, ...]) -> int:
    cur = db.execute(f"DELETE FROM cdr WHERE id IN ({select})", args)
    return int(cur.rowcount)


def decode_rows(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """Rows (SQLite's or asyncpg's: mappings) as dicts, their attempts decoded."""
    result = []
    for row in rows:
        item = dict(row)
        item["attempts"] = json.loads(item["attempts"])
        result.append(item)
    return result


def read_cdrs(
    db: sqlite3.Connection,
    limit: int = 50,
    call_id: str | None = None,
    before: int | None = None,
    filters: CdrFilters | None = None,
) -> list[dict[str, Any]]:
    """Newest first, attempts decoded; `before` is the cursor (an id: older records only)."""
    sql, args = recent_query(limit, call_id, before, filters=filters)
    cur = db.cursor()
    cur.row_factory = sqlite3.Row
    return decode_rows(cur.execute(sql, args).fetchall())


def _contains(text: str) -> str:
    """A LIKE pattern that matches `text` anywhere, its wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def recent_query(
    limit: int,
    call_id: str | None,
    before: int | None,
    postgres: bool = False,
    filters: CdrFilters | None = None,
) -> tuple[str, list[Any]]:
    """The query of `CdrReader.recent` and its arguments (PostgreSQL numbers its placeholders:
    the PostgreSQL backend shares it). Values only ever travel as arguments."""
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}" if postgres else "?"

    if call_id is not None:
        where.append(f"call_id = {arg(call_id)}")
    for key, value in (filters or {}).items():
        if key in ("caller", "callee"):
            where.append(f"{key} LIKE {arg(_contains(str(value)))} ESCAPE '\\'")
        elif key == "gateway":
            where.append(f"(routing_gateway = {arg(value)} OR mapping_gateway = {arg(value)})")
        elif key == "since":
            where.append(f"end_time >= {arg(float(value))}")
        elif key == "until":
            where.append(f"end_time < {arg(float(value))}")
        elif key == "answered":
            where.append("answer_time IS NOT NULL" if value else "answer_time IS NULL")
        else:
            raise ValueError(f"unknown CDR filter {key!r}")
    if before is not None:
        where.append(f"id < {arg(before)}")
    sql = "SELECT * FROM cdr"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return f"{sql} ORDER BY id DESC LIMIT {arg(limit)}", args


def export_cdrs(
    db: sqlite3.Connection, since: float, until: float | None
) -> Iterator[dict[str, Any]]:
    """Records that ended in [since, until), oldest first, EXPORT_BATCH rows per query."""
    after = 0
    cur = db.cursor()
    cur.row_factory = sqlite3.Row
    while True:
        sql = "SELECT * FROM cdr WHERE id > ? AND end_time >= ?"
        args: list[Any] = [after, since]
        if until is not None:
            sql += " AND end_time < ?"
            args.append(until)
        rows = cur.execute(sql + " ORDER BY id LIMIT ?", (*args, EXPORT_BATCH)).fetchall()
        if not rows:
            return
        yield from decode_rows(rows)
        after = int(rows[-1]["id"])


class SqliteCdrReader:
    """For `sipedge cdr`: read while the daemon writes (WAL allows it)."""

    def __init__(self, directory: Path) -> None:
        path = directory / "cdr.sqlite"
        if not path.exists():
            raise FileNotFoundError(f"no CDR database at {path}")
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)

    def recent(
        self,
        limit: int = 50,
        call_id: str | None = None,
        before: int | None = None,
        filters: CdrFilters | None = None,
    ) -> list[dict[str, Any]]:
        return read_cdrs(self._db, limit, call_id, before, filters)

    def export(self, since: float, until: float | None = None) -> Iterator[dict[str, Any]]:
        return export_cdrs(self._db, since, until)

    def close(self) -> None:
        self._db.close()
