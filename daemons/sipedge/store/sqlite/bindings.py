"""Registrations in SQLite (`<storage.path>/registrations.sqlite`, WAL) so a restart keeps them.

Writes are batched: the registrar marks accounts dirty and `flush()` (called every 0.5 s by the
daemon, and at shutdown) writes them in one transaction. A crash loses at most the refreshes of
the last half second; the device's next refresh restores them. At start the live bindings are
read back (expired ones are deleted).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sipedge.store.records import Binding
from sipedge.store.schema import Migration, migrate_sqlite

MIGRATIONS = (
    Migration(
        1,
        "the bindings table",
        (
            """
CREATE TABLE IF NOT EXISTS bindings (
    account TEXT PRIMARY KEY,
    contact TEXT NOT NULL,
    source_host TEXT NOT NULL,
    source_port INTEGER NOT NULL,
    nat INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    call_id TEXT NOT NULL,
    cseq INTEGER NOT NULL,
    registered_at REAL NOT NULL,
    user_agent TEXT NOT NULL DEFAULT ''
)""",
        ),
    ),
)


class SqliteBindingStore:
    def __init__(self, directory: Path, *, migrate: bool = True) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "registrations.sqlite"
        self.db = sqlite3.connect(str(self.path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            migrate_sqlite(self.db, str(self.path), MIGRATIONS, apply=migrate)
        except BaseException:
            self.db.close()
            raise
        self._dirty: dict[str, Binding | None] = {}
        self.writes = 0

    def load(self, now: float) -> list[Binding]:
        self.db.execute("DELETE FROM bindings WHERE expires_at <= ?", (now,))
        rows = self.db.execute(
            "SELECT account, contact, source_host, source_port, nat, expires_at, call_id, cseq,"
            " registered_at, user_agent FROM bindings"
        ).fetchall()
        return [
            Binding(
                account=r[0],
                contact=r[1],
                source=(r[2], int(r[3])),
                nat=bool(r[4]),
                expires_at=float(r[5]),
                call_id=r[6],
                cseq=int(r[7]),
                registered_at=float(r[8]),
                user_agent=r[9],
            )
            for r in rows
        ]

    def put(self, binding: Binding) -> None:
        self._dirty[binding.account] = binding

    def delete(self, account: str) -> None:
        self._dirty[account] = None

    @property
    def pending(self) -> int:
        return len(self._dirty)

    def flush(self) -> int:
        if not self._dirty:
            return 0
        dirty, self._dirty = self._dirty, {}
        upserts = [
            (
                b.account,
                b.contact,
                b.source[0],
                b.source[1],
                int(b.nat),
                b.expires_at,
                b.call_id,
                b.cseq,
                b.registered_at,
                b.user_agent,
            )
            for b in dirty.values()
            if b is not None
        ]
        deletes = [(a,) for a, b in dirty.items() if b is None]
        with self.db:
            self.db.execute("BEGIN")
            if upserts:
                self.db.executemany(
                    "INSERT OR REPLACE INTO bindings VALUES (?,?,?,?,?,?,?,?,?,?)", upserts
                )
            if deletes:
                self.db.executemany("DELETE FROM bindings WHERE account = ?", deletes)
        self.writes += len(dirty)
        return len(dirty)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.db.close()
