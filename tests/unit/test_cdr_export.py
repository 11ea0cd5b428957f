"""`sipedge cdr export`: a billing export of a time window, CSV or JSON, from the store."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from sipedge.cli import main, parse_when
from sipedge.store import open_cdr_store
from tests.unit.test_store import record


def _export(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as done:
        main(["cdr", "export", *args])
    assert done.value.code == 0
    return capsys.readouterr().out


def test_csv_and_json_hold_the_same_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = open_cdr_store(tmp_path)
    for n in range(5):
        store.write(record(f"c{n}", end_time=1764547200.0 + 3600 * n))
    store.close()
    window = ["--storage", str(tmp_path), "--since", "1764550800", "--until", "1764558000"]
    rows = list(csv.DictReader(io.StringIO(_export(capsys, *window, "--format", "csv"))))
    assert [r["call_id"] for r in rows] == ["c1", "c2"]
    assert json.loads(rows[0]["attempts"])[1]["gateway"] == "carrier-b"
    records = json.loads(_export(capsys, *window, "--format", "json"))
    assert [r["call_id"] for r in records] == ["c1", "c2"]
    later = ["--storage", str(tmp_path), "--since", "2030-01-01", "--format", "json"]
    assert json.loads(_export(capsys, *later)) == []


def test_times_are_epoch_or_iso() -> None:
    assert parse_when("1764547200") == 1764547200.0
    assert parse_when("2025-12-01T00:00:00Z") == 1764547200.0
    assert parse_when("2025-12-01T01:00:00+01:00") == 1764547200.0
    with pytest.raises(Exception, match="ISO 8601"):
        parse_when("yesterday")
