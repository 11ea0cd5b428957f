"""The units' bearer-token maker (ansible/roles/sipedge/files/sipedge-token): one token per
file however many units start at once, never replaced once made."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOKEN = REPO / "ansible/roles/sipedge/files/sipedge-token"

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the token is chowned root:GROUP)"),
]


def test_units_starting_side_by_side_make_one_token(tmp_path: Path) -> None:
    file = tmp_path / "api-admin.token"
    makers = [
        subprocess.Popen(["sh", str(TOKEN), str(file), "root"], stdout=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    said = [maker.communicate(timeout=60)[0] for maker in makers]
    assert [maker.returncode for maker in makers] == [0] * 8
    assert sum("made" in line for line in said) == 1, said  # the others found it made
    token = file.read_text()
    assert len(token) == 64 and int(token, 16) >= 0
    assert file.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == [file.name]  # no temporary left
    done = subprocess.run(["sh", str(TOKEN), str(file), "root"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "" and file.read_text() == token
