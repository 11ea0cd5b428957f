"""The `storage:` keys of the backend choice (issue 17): backend, dsn, password_file,
pool_size, migrate_on_start; the DSN never carries (nor prints) a password."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sipedge.config import check_config_main, parse_config
from sipedge.store import PostgresSettings
from tests.unit.test_config import one_problem
from tests.unit.test_config_api import section

DSN = "postgresql://sipedge@db.example.net:5432/sipedge"


def test_defaults_are_sqlite_and_migrate_at_start() -> None:
    storage = parse_config({}).storage
    assert (storage.backend, storage.dsn, storage.password_file) == ("sqlite", None, None)
    assert storage.pool_size == 4 and storage.migrate_on_start is True
    assert PostgresSettings.of(storage, "edge") is None


def test_postgresql_keys() -> None:
    config = parse_config(
        section(
            "storage",
            backend="PostgreSQL",
            dsn=DSN + "?sslmode=require",
            password_file="/etc/sipedge/postgres.password",
            pool_size=8,
            migrate_on_start="Off",
        )
    )
    s = config.storage
    assert s.backend == "postgresql" and s.dsn == DSN + "?sslmode=require"
    assert s.password_file == Path("/etc/sipedge/postgres.password")
    assert s.pool_size == 8 and s.migrate_on_start is False
    settings = PostgresSettings.of(s, config.node_name)
    assert settings == PostgresSettings(s.dsn, s.password_file, 8, config.node_name)


@pytest.mark.parametrize(
    ("keys", "path", "allowed"),
    [
        ({"backend": "mysql"}, "storage.backend", "sqlite or postgresql"),
        ({"backend": "postgresql"}, "storage.dsn", "a DSN: storage.backend is postgresql"),
        ({"dsn": "host=db user=x"}, "storage.dsn", "postgresql://"),
        ({"dsn": 5432}, "storage.dsn", "postgresql://"),
        ({"password_file": "relative/pw"}, "storage.password_file", "an absolute path"),
        ({"pool_size": 0}, "storage.pool_size", "1-64"),
        ({"pool_size": 65}, "storage.pool_size", "1-64"),
        ({"migrate_on_start": "later"}, "storage.migrate_on_start", "On/Off"),
    ],
)
def test_bad_values(keys: dict[str, Any], path: str, allowed: str) -> None:
    problem = one_problem(section("storage", **keys))
    assert problem.path == path
    assert allowed in str(problem)


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://sipedge:hunter2secret@db:5432/sipedge",
        "postgres://db/sipedge?user=sipedge&password=hunter2secret",
    ],
)
def test_a_password_in_the_dsn_is_refused_and_never_printed(dsn: str) -> None:
    problem = one_problem(section("storage", backend="postgresql", dsn=dsn))
    assert problem.path == "storage.dsn"
    assert "storage.password_file" in str(problem)
    assert "hunter2secret" not in str(problem)


def test_check_config_names_the_backend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    path = tmp_path / "sipedge.yaml"
    data = section("storage", backend="postgresql", dsn=DSN, password_file=str(tmp_path / "no"))
    path.write_text(yaml.safe_dump(data))
    assert check_config_main(str(path)) == 0
    out = capsys.readouterr().out
    assert f"storage PostgreSQL (password_file {tmp_path / 'no'} unreadable here)" in out
    (tmp_path / "no").write_text("pw\n")
    assert check_config_main(str(path)) == 0
    assert capsys.readouterr().out.rstrip().endswith("storage PostgreSQL")
