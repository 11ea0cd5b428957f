"""`sipedge token show`: the configured tokens' scope, file and value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sipedge.cli import main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out = capsys.readouterr()
    return int(info.value.code or 0), out.out, out.err


def config(tmp_path: Path, api: dict[str, Any]) -> str:
    path = tmp_path / "sipedge.yaml"
    path.write_text(yaml.safe_dump({"api": {"listen": "0.0.0.0:8080", **api}}))
    return str(path)


def test_token_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    admin, read = tmp_path / "api-admin.token", tmp_path / "api-read.token"
    admin.write_text("a" * 64 + "\n")
    read.write_text("b" * 64 + "\n")
    path = config(tmp_path, {"token_file": str(admin), "read_token_file": str(read)})
    code, out, _ = run(["token", "show", "--config", path], capsys)
    assert code == 0
    assert out.splitlines() == [f"admin\t{admin}\t{'a' * 64}", f"read\t{read}\t{'b' * 64}"]
    code, out, _ = run(["token", "show", "--config", path, "--scope", "read"], capsys)
    assert (code, out) == (0, "b" * 64 + "\n")


def test_inline_token_and_unreadable_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "gone.token"
    path = config(tmp_path, {"token": "t" * 20, "read_token_file": str(missing)})
    code, out, err = run(["token", "show", "--config", path], capsys)
    assert code == 1
    assert out == f"admin\tapi.token (inline in {path})\t{'t' * 20}\n"
    assert f"api.read_token_file: cannot read {missing}" in err


def test_no_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sipedge.yaml"
    path.write_text("api: {listen: '127.0.0.1:8080'}\n")
    code, out, err = run(["token", "show", "--config", str(path)], capsys)
    assert (code, out) == (1, "") and "no API token configured" in err
