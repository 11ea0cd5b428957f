"""CDR insert microbenchmark: what one CDR costs SQLite on the writer thread, by kind of key.

Each CDR's uuid is a unique index (`store/sqlite/cdr.py`, migration 2). A random key (UUID
version 4) lands on a random page of that index, so every transaction rewrites a page per row,
and more of them have to be read back once the index outgrows the page cache; a time-ordered
key (version 7, `sipedge.entropy.time_ordered_uuid`, what sipd writes) lands on its last page.

The bench opens a database as the store does (`open_for_writing`, `migrate_sqlite`), fills it
with `--prefill` CDRs, then inserts `--rows` more in transactions of `--per-transaction` (what
the paced writer commits at 500 calls/s: ten every 20 ms) with the store's own INSERT and row
(`row_of`), the records a second apart in setup time as calls at 500/s. It prints the writer
thread's CPU per row (`time.thread_time`: the waits for the disk's flush are not CPU) and the
pages SQLite wrote to its WAL per row, for each kind of key in turn, `--repeat` times.

    .venv/bin/python -m tests.bench.cdr_insert
    .venv/bin/python -m tests.bench.cdr_insert --prefill 200000 --durable
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from sipedge.entropy import time_ordered_uuid
from sipedge.store.records import AttemptRecord, CallRecord
from sipedge.store.schema import migrate_sqlite
from sipedge.store.sqlite.cdr import INSERT, MIGRATIONS, open_for_writing, row_of

START = 1_790_000_000.0  # a Unix time in 2026
SPACING = 0.002  # seconds between two calls' set-up: 500 calls/s

KEYS: dict[str, Callable[[float], str]] = {
    "random (v4)": lambda _: str(uuid.uuid4()),
    "time-ordered (v7)": lambda t: time_ordered_uuid(int(t * 1000)),
}


def record(index: int, key: Callable[[float], str]) -> CallRecord:
    setup = START + index * SPACING
    attempt = AttemptRecord(
        gateway="gw1",
        start=setup,
        end=setup + 1.5,
        result="answered",
        status=200,
        target="192.0.2.10:5060",
        progress=setup + 0.5,
        pdd=0.5,
    )
    return CallRecord(
        call_id=f"{index:x}-call@192.0.2.1",
        caller="1001",
        callee="442071234567",
        source="192.0.2.1:5060",
        mapping_gateway="mgw1",
        setup_time=setup,
        answer_time=setup + 1.5,
        end_time=setup + 10.0,
        release_side="caller",
        cause="normal",
        final_status=200,
        routing_gateway="gw1",
        attempts=[attempt],
        uuid=key(setup),
    )


def wal_frames(db_path: Path) -> int:
    """Frames written to the WAL since the last checkpoint (the WAL's size over a frame)."""
    wal = Path(f"{db_path}-wal")
    size = wal.stat().st_size if wal.exists() else 0
    page = 4096 + 24  # SQLite's default page size and the frame header
    return max(0, size - 32) // page


def run(
    key: Callable[[float], str], prefill: int, rows: int, per_transaction: int, durable: bool
) -> tuple[float, float]:
    """(µs of the thread's CPU per row, WAL frames per row) of inserting `rows` CDRs."""
    with tempfile.TemporaryDirectory(prefix="sipedge-cdr-insert-") as tmp:
        path = Path(tmp) / "cdr.sqlite"
        db = open_for_writing(path, durable)
        migrate_sqlite(db, str(path), MIGRATIONS)
        cursor = db.cursor()
        for start in range(0, prefill, 1000):
            cursor.execute("BEGIN IMMEDIATE")
            cursor.executemany(
                INSERT, [row_of(record(i, key)) for i in range(start, min(prefill, start + 1000))]
            )
            cursor.execute("COMMIT")
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("PRAGMA wal_autocheckpoint=0")  # count every frame of the measured inserts
        values = [row_of(record(prefill + i, key)) for i in range(rows)]
        cpu = time.thread_time()
        for start in range(0, rows, per_transaction):
            cursor.execute("BEGIN IMMEDIATE")
            cursor.executemany(INSERT, values[start : start + per_transaction])
            cursor.execute("COMMIT")
        cpu = time.thread_time() - cpu
        frames = wal_frames(path)
        (count,) = db.execute("SELECT count(*) FROM cdr").fetchone()
        db.close()
    if count != prefill + rows:
        raise SystemExit(f"expected {prefill + rows} CDRs, found {count}")
    return cpu / rows * 1e6, frames / rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefill", type=int, default=0, help="CDRs in the table before")
    parser.add_argument("--rows", type=int, default=20_000, help="CDRs inserted and measured")
    parser.add_argument("--per-transaction", type=int, default=10)
    parser.add_argument("--durable", action="store_true", help="synchronous=FULL (sipd's default)")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    print(
        f"{args.rows} CDRs in transactions of {args.per_transaction} after {args.prefill},"
        f" synchronous={'FULL' if args.durable else 'NORMAL'}, SQLite {sqlite3.sqlite_version}"
    )
    for _ in range(args.repeat):
        for name, key in KEYS.items():
            cpu, frames = run(key, args.prefill, args.rows, args.per_transaction, args.durable)
            print(f"  {name:18} {cpu:6.1f} µs CPU per CDR, {frames:5.2f} WAL pages per CDR")


if __name__ == "__main__":
    main()
