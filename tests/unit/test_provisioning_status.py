"""sipd's reading of sipedge-provision's verdict (sipedge.sipd.provisioning): any content."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sipedge.sipd.provisioning import MAX_BYTES, MAX_REASON, provisioning_error


def write(tmp_path: Path, data: bytes) -> Path:
    (tmp_path / "provision.json").write_bytes(data)
    return tmp_path


def test_no_seed_ever_applied_is_no_error(tmp_path: Path) -> None:
    assert provisioning_error(tmp_path) is None
    assert provisioning_error(tmp_path / "missing-folder") is None


@pytest.mark.parametrize("error", [None, "", False])
def test_an_applied_seed_is_no_error(tmp_path: Path, error: object) -> None:
    verdict = {"instance_id": "i-1", "applied": ["host name a"], "error": error}
    assert provisioning_error(write(tmp_path, json.dumps(verdict).encode())) is None


def test_a_refused_seed_gives_its_reason_cut_to_a_bound(tmp_path: Path) -> None:
    assert provisioning_error(write(tmp_path, b'{"error": "bad port"}')) == "bad port"
    long = json.dumps({"error": "x" * (MAX_REASON * 3)}).encode()
    assert provisioning_error(write(tmp_path, long)) == "x" * MAX_REASON


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"\xff\xfe not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'"text"', "not a JSON object"),
        (b"[" * 100_000, "larger than"),
        (b"[" * 5_000 + b"]" * 5_000, "not JSON"),  # deeper than the parser recurses
        (b" " * (MAX_BYTES + 1), "larger than"),
    ],
)
def test_a_file_that_is_not_the_verdict_is_reported_never_raised(
    tmp_path: Path, data: bytes, says: str
) -> None:
    error = provisioning_error(write(tmp_path, data))
    assert error is not None and says in error


def test_a_folder_in_place_of_the_file_is_no_error(tmp_path: Path) -> None:
    (tmp_path / "provision.json").mkdir()
    assert provisioning_error(tmp_path) is None
