"""Versioned schema migrations (store/schema.py) on real SQLite files: from empty, from a
database made before versioning, refusals of a newer one and of one behind with migration at
start off; the step lists of both backends are numbered without gaps."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sipedge.store import SchemaError, migrate_databases, open_binding_store, open_cdr_store
from sipedge.store.postgres import schema as pg_schema
from sipedge.store.schema import Migration, SchemaBehind, SchemaTooNew, migrate_sqlite, plan
from sipedge.store.sqlite import bindings, cdr
from tests.unit.test_store import record


@pytest.mark.parametrize("steps", [cdr.MIGRATIONS, bindings.MIGRATIONS, pg_schema.MIGRATIONS])
def test_steps_are_numbered_from_one_without_gaps(steps: tuple[Migration, ...]) -> None:
    assert [s.version for s in steps] == list(range(1, len(steps) + 1))
    assert plan("db", 0, steps) == list(steps)
    assert plan("db", len(steps), steps) == []


def test_a_step_out_of_order_is_a_programming_error() -> None:
    steps = (Migration(1, "a", ()), Migration(3, "c", ()))
    with pytest.raises(ValueError, match="out of order"):
        plan("db", 0, steps)


def versions(path: Path) -> list[int]:
    db = sqlite3.connect(path)
    try:
        return [r[0] for r in db.execute("SELECT version FROM schema_version ORDER BY 1")]
    finally:
        db.close()


def test_from_empty_every_step_once(tmp_path: Path) -> None:
    store = open_cdr_store(tmp_path)
    store.write(record("c1"))
    store.close()
    assert versions(tmp_path / "cdr.sqlite") == [1, 2]
    open_binding_store(tmp_path).close()
    assert versions(tmp_path / "registrations.sqlite") == [1]
    done = migrate_databases(tmp_path)
    assert [(b, a) for _, b, a in done] == [(2, 2), (1, 1)]


def test_a_database_from_before_versioning_is_migrated_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    db = sqlite3.connect(tmp_path / "cdr.sqlite")
    db.executescript(cdr.MIGRATIONS[0].statements[0])  # the table as the old code made it
    db.execute(
        "INSERT INTO cdr (call_id, caller, callee, source, setup_time, end_time, duration,"
        " release_side, cause, final_status, attempts) VALUES"
        " ('old', '1', '2', 'x', 1, 2, 0, 'caller', 'normal', 200, '[]')"
    )
    db.commit()
    db.close()
    done = migrate_databases(tmp_path)
    assert done[0] == (str(tmp_path / "cdr.sqlite"), 0, 2)
    store = open_cdr_store(tmp_path)
    new = record("new")
    store.write(new)
    store.write(new)  # the same CDR handed over twice is kept once (its uuid)
    rows = store.recent()
    store.close()
    assert [(r["call_id"], r["uuid"]) for r in rows] == [("new", new.uuid), ("old", None)]


def test_a_newer_database_is_refused_untouched(tmp_path: Path) -> None:
    open_cdr_store(tmp_path).close()
    db = sqlite3.connect(tmp_path / "cdr.sqlite")
    db.execute("INSERT INTO schema_version VALUES (3, 'from the future', 0)")
    db.commit()
    db.close()
    with pytest.raises(
        SchemaTooNew, match=r"schema version 3, newer than this sipedge knows \(2\)"
    ):
        open_cdr_store(tmp_path)
    with pytest.raises(SchemaError, match="Upgrade sipedge"):
        migrate_databases(tmp_path)
    assert versions(tmp_path / "cdr.sqlite") == [1, 2, 3]


def test_behind_with_migrate_on_start_off_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(SchemaBehind, match="run `sipedge db migrate`"):
        open_binding_store(tmp_path, migrate=False)
    db = sqlite3.connect(tmp_path / "x.sqlite", isolation_level=None)
    assert migrate_sqlite(db, "x", bindings.MIGRATIONS) == (0, 1)
    assert migrate_sqlite(db, "x", bindings.MIGRATIONS, apply=False) == (1, 1)
    db.close()
