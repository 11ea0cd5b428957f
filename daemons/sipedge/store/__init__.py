"""Persistent state: CDRs and registrations, behind one interface with backends behind it.

Public names: the records (`CallRecord`, `AttemptRecord`, `Binding`, `RemoteBinding`), the
Protocols (`CdrStore`, `CdrReader`, `BindingStore`, `FleetView`), `OnCommitted` (what
`CdrStore.write` calls back once a CDR is committed), `StoreMetric`, `Unsupported`,
`SchemaError` (a database this code must not use as it is), `PostgresSettings`, the openers
below, which pick the backend (SQLite under `storage.path`, its CDRs group-committed by a
writer thread; or PostgreSQL, its CDRs through a local spool), and `migrate_databases`
(`sipedge db migrate`). docs/storage.md.

Dependency direction: calls/, registrar/, api/, sipd and the CLI import store/; store/
imports nothing else from sipedge. Only store/ talks to a database driver.
"""

from __future__ import annotations

from pathlib import Path

from sipedge.store.base import (
    BindingStore,
    CdrFilters,
    CdrReader,
    CdrStore,
    FleetView,
    OnCommitted,
    StoreMetric,
    Unsupported,
)
from sipedge.store.postgres.settings import SPOOL, PostgresSettings
from sipedge.store.records import AttemptRecord, Binding, CallRecord, RemoteBinding
from sipedge.store.schema import Migration, SchemaError, migrate_sqlite
from sipedge.store.sqlite import bindings as sqlite_bindings
from sipedge.store.sqlite import cdr as sqlite_cdr
from sipedge.store.sqlite.bindings import SqliteBindingStore
from sipedge.store.sqlite.cdr import SqliteCdrReader, SqliteCdrStore

__all__ = [
    "AttemptRecord",
    "Binding",
    "BindingStore",
    "CallRecord",
    "CdrFilters",
    "CdrReader",
    "CdrStore",
    "FleetView",
    "OnCommitted",
    "PostgresSettings",
    "RemoteBinding",
    "SchemaError",
    "StoreMetric",
    "Unsupported",
    "migrate_databases",
    "open_binding_store",
    "open_cdr_reader",
    "open_cdr_store",
    "open_fleet_view",
]


def open_cdr_store(
    directory: Path,
    *,
    durable: bool = False,
    postgres: PostgresSettings | None = None,
    migrate: bool = True,
) -> CdrStore:
    """The CDR store a daemon writes to; `close()` it (it commits what is still queued).
    With `postgres`, CDRs spool under `directory` and are shipped to the server. `migrate`:
    apply missing schema steps at open (else SchemaBehind); SchemaTooNew is always raised."""
    if postgres is not None:
        from sipedge.store.postgres.cdr import PostgresCdrStore  # asyncpg only when used

        return PostgresCdrStore(directory, postgres, durable=durable, migrate_on_start=migrate)
    return SqliteCdrStore(directory, durable=durable, migrate=migrate)


def open_cdr_reader(directory: Path, postgres: PostgresSettings | None = None) -> CdrReader:
    """Read-only CDR access while a daemon writes (`sipedge cdr`); FileNotFoundError if none."""
    if postgres is not None:
        from sipedge.store.postgres.cdr import PostgresCdrReader

        return PostgresCdrReader(postgres)
    return SqliteCdrReader(directory)


def open_binding_store(
    directory: Path, postgres: PostgresSettings | None = None, *, migrate: bool = True
) -> BindingStore:
    """The registrar's binding store."""
    if postgres is not None:
        from sipedge.store.postgres.bindings import PostgresBindingStore

        return PostgresBindingStore(postgres, migrate_on_start=migrate)
    return SqliteBindingStore(directory, migrate=migrate)


def open_fleet_view(postgres: PostgresSettings | None, host: str, port: int) -> FleetView:
    """The other edges' bindings and this edge's heartbeat (`host`, `port`: where the others
    send calls for this edge's phones); only a shared database has a fleet."""
    if postgres is None:
        raise Unsupported("a fleet needs storage.backend postgresql (SQLite is one edge's)")
    from sipedge.store.postgres.fleet import PostgresFleetView

    return PostgresFleetView(postgres, host, port)


def migrate_databases(
    directory: Path, postgres: PostgresSettings | None = None
) -> list[tuple[str, int, int]]:
    """`sipedge db migrate`: every database of the configured backend brought to the latest
    schema (the local ones always: the SQLite files, or the PostgreSQL backend's spool);
    (database, version before, version after) each. Raises SchemaError on a refusal."""
    import sqlite3

    directory.mkdir(parents=True, exist_ok=True)
    files: list[tuple[str, tuple[Migration, ...]]] = [
        (SPOOL if postgres is not None else "cdr.sqlite", sqlite_cdr.MIGRATIONS)
    ]
    if postgres is None:
        files.append(("registrations.sqlite", sqlite_bindings.MIGRATIONS))
    done = []
    for name, steps in files:
        db = sqlite3.connect(directory / name, isolation_level=None)
        try:
            if name != "registrations.sqlite":
                db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            db.execute("PRAGMA journal_mode=WAL")
            path = str(directory / name)
            done.append((path, *migrate_sqlite(db, path, steps)))
        finally:
            db.close()
    if postgres is not None:
        from sipedge.store.postgres.runner import PgRunner
        from sipedge.store.postgres.schema import migrate

        runner = PgRunner(postgres, name="migrate")
        try:
            what = f"PostgreSQL ({postgres.dsn})"
            done.append((what, *runner.run(lambda pool: migrate(pool, what))))
        finally:
            runner.close()
    return done
