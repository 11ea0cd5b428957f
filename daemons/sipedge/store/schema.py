"""Versioned schema migrations, for every backend: the steps, the plan and its refusals.

A database records its schema in a `schema_version` table (one row per applied step: version,
description, when). The steps of a database kind are an ordered tuple of `Migration`s numbered
1, 2, 3... without gaps; `plan()` says which of them a database at version N still needs, and
refuses a database newer than this code (`SchemaTooNew`: an older sipedge must not write to a
schema it does not know, e.g. after a downgrade while a newer edge shares the database).
`SchemaBehind` is what a daemon raises when its database needs steps and it was told not to
apply them at start (`storage.migrate_on_start: off`: `sipedge db migrate` does it).

Each backend runs the plan its own way (SQLite: `migrate_sqlite` below, one transaction per
step; PostgreSQL: `store/postgres/schema.py`, under an advisory lock).

Owns: `Migration`, `plan`, the two refusals and the SQLite runner.
Must not: know the tables of a kind (the steps live with their backend's modules).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

VERSION_TABLE_SQLITE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at REAL NOT NULL)"
)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]  # run in order, in one transaction


class SchemaError(Exception):
    """The database's schema cannot be used as it is; the message says what to do."""


class SchemaTooNew(SchemaError):
    pass


class SchemaBehind(SchemaError):
    pass


def latest(steps: Sequence[Migration]) -> int:
    return steps[-1].version if steps else 0


def plan(what: str, current: int, steps: Sequence[Migration]) -> list[Migration]:
    """The steps a database at `current` needs, in order; SchemaTooNew if it is ahead."""
    for number, step in enumerate(steps, start=1):
        if step.version != number:  # a programming error: caught by the unit tests
            raise ValueError(f"{what}: migration {step.version} out of order (expected {number})")
    if current > latest(steps):
        raise SchemaTooNew(
            f"{what} has schema version {current}, newer than this sipedge knows"
            f" ({latest(steps)}): it was migrated by a newer sipedge. Upgrade sipedge (or"
            " restore the database from before that upgrade); refusing to use it."
        )
    return [step for step in steps if step.version > current]


def behind(what: str, current: int, steps: Sequence[Migration]) -> SchemaBehind:
    return SchemaBehind(
        f"{what} has schema version {current}, this sipedge needs {latest(steps)}: run"
        " `sipedge db migrate` (storage.migrate_on_start is off)"
    )


def sqlite_version(db: sqlite3.Connection) -> int:
    db.execute(VERSION_TABLE_SQLITE)
    row = db.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0]) if row[0] is not None else 0


def migrate_sqlite(
    db: sqlite3.Connection, what: str, steps: Sequence[Migration], *, apply: bool = True
) -> tuple[int, int]:
    """Bring a SQLite database (opened with isolation_level=None) to the latest version, one
    transaction per step; returns (version before, version after). With `apply=False` only
    checks: SchemaBehind if steps are missing."""
    current = sqlite_version(db)
    todo = plan(what, current, steps)
    if todo and not apply:
        raise behind(what, current, steps)
    for step in todo:
        db.execute("BEGIN IMMEDIATE")
        try:
            # another process may have applied it while we waited for the lock
            if sqlite_version(db) >= step.version:
                db.execute("ROLLBACK")
                continue
            for statement in step.statements:
                db.execute(statement)
            db.execute(
                "INSERT INTO schema_version VALUES (?, ?, ?)",
                (step.version, step.description, time.time()),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return current, sqlite_version(db)
