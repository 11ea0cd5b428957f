"""Call detail records in SQLite (`<storage.path>/cdr.sqlite`).

One row per call, its attempts as a JSON array in the same row, written in one committed
transaction when the call ends: a crash of the daemon loses no finished call (WAL mode; the
commit is durable against a process crash, `synchronous=NORMAL`; `durable=True` (the appliance
default, `storage.cdr_durable`) gives `synchronous=FULL`, which also survives power loss at the
cost of an fsync per call).

Retention (`prune`) removes by age, then the oldest rows while the table is over its size;
new databases are created with `auto_vacuum=INCREMENTAL` so that the freed pages go back to the
file system, older ones reuse their free pages (the file stops growing at the limit).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sipedge.store.records import CallRecord

SCHEMA = """
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
);
CREATE INDEX IF NOT EXISTS cdr_end_time ON cdr(end_time);
"""

PRUNE_BATCH = 1000  # rows per prune() call: a few ms on the event loop
EXPORT_BATCH = 1000  # rows per read of export()
WAL_LIMIT = 4 << 20  # the WAL is truncated back to this after a checkpoint


class SqliteCdrStore:
    """Append-only CDR table. Writes happen on the event loop: one INSERT + COMMIT, ~30 µs."""

    def __init__(self, directory: Path, *, durable: bool = False) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "cdr.sqlite"
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only takes on a new database
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._db.executescript(SCHEMA)
        self.durable = durable
        self.written = 0
        self.pruned = 0

    def write(self, record: CallRecord) -> None:
        attempts = json.dumps([asdict(a) for a in record.attempts], separators=(",", ":"))
        self._db.execute(
            "INSERT INTO cdr (call_id, caller, callee, source, mapping_gateway, setup_time,"
            " answer_time, end_time, duration, release_side, cause, final_status,"
            " routing_gateway, switch_stop_reason, attempts)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
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
            ),
        )
        self.written += 1

    def recent(
        self, limit: int = 50, call_id: str | None = None, before: int | None = None
    ) -> list[dict[str, Any]]:
        return read_cdrs(self._db, limit, call_id, before)

    def export(self, since: float, until: float | None = None) -> Iterator[dict[str, Any]]:
        return export_cdrs(self._db, since, until)

    def _used_bytes(self) -> int:
        page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        pages = int(self._db.execute("PRAGMA page_count").fetchone()[0])
        free = int(self._db.execute("PRAGMA freelist_count").fetchone()[0])
        return (pages - free) * page_size

    def size_bytes(self) -> int:
        return self._used_bytes()

    def prune(self, now: float, max_age: float | None, max_bytes: int | None) -> int:
        removed = 0
        if max_age is not None:
            removed += self._delete(
                "SELECT id FROM cdr WHERE end_time < ? ORDER BY id LIMIT ?",
                (now - max_age, PRUNE_BATCH),
            )
        if max_bytes is not None and removed < PRUNE_BATCH:
            used = self._used_bytes()
            if used > max_bytes:
                first, last = self._db.execute("SELECT MIN(id), MAX(id) FROM cdr").fetchone()
                rows = (last - first + 1) if first is not None else 0
                if rows:
                    # down to 90% of the limit, so that pruning does not run on every call
                    excess = used - int(max_bytes * 0.9)
                    count = min(PRUNE_BATCH - removed, max(1, excess * rows // used + 1))
                    removed += self._delete("SELECT id FROM cdr ORDER BY id LIMIT ?", (count,))
        if removed:
            self._db.execute("PRAGMA incremental_vacuum")
            self.pruned += removed
        return removed

    def _delete(self, select: str, args: tuple[Any, ...]) -> int:
        cur = self._db.execute(f"DELETE FROM cdr WHERE id IN ({select})", args)
        return int(cur.rowcount)

    def close(self) -> None:
        self._db.close()


def _decode(rows: list[sqlite3.Row]) -> list[dict[str, Any]]:
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
) -> list[dict[str, Any]]:
    """Newest first, attempts decoded; `before` is the cursor (an id: older records only)."""
    where: list[str] = []
    args: list[Any] = []
    if call_id is not None:
        where.append("call_id = ?")
        args.append(call_id)
    if before is not None:
        where.append("id < ?")
        args.append(before)
    sql = "SELECT * FROM cdr"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    cur = db.cursor()
    cur.row_factory = sqlite3.Row
    return _decode(cur.execute(sql, (*args, limit)).fetchall())


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
        yield from _decode(rows)
        after = int(rows[-1]["id"])


class SqliteCdrReader:
    """For `sipedge cdr`: read while the daemon writes (WAL allows it)."""

    def __init__(self, directory: Path) -> None:
        path = directory / "cdr.sqlite"
        if not path.exists():
            raise FileNotFoundError(f"no CDR database at {path}")
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)

    def recent(
        self, limit: int = 50, call_id: str | None = None, before: int | None = None
    ) -> list[dict[str, Any]]:
        return read_cdrs(self._db, limit, call_id, before)

    def export(self, since: float, until: float | None = None) -> Iterator[dict[str, Any]]:
        return export_cdrs(self._db, since, until)

    def close(self) -> None:
        self._db.close()
