"""docs/releases.json, the list molecule/lib/wheels builds the previous release from.

Tags do not travel with main, so this file is the record of what was released from which
commit. A wrong entry would make the upgrade scenario install something else than the release
it names, so every entry is checked against the repository's own history.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
RELEASES = json.loads((REPO / "docs" / "releases.json").read_text())["releases"]
CHANGELOG = (REPO / "docs" / "CHANGELOG.md").read_text()


def working_tree_version() -> Version:
    return Version(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"])


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)


def test_versions_rise_and_stay_below_the_working_tree() -> None:
    # X.Y.Z only: image/build and the A/B updater (appliance/signing.py) order by it
    assert re.fullmatch(r"\d+\.\d+\.\d+", str(working_tree_version()))
    versions = [Version(r["version"]) for r in RELEASES]
    assert versions, "at least one release"
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    assert versions[-1] < working_tree_version()


def test_each_release_has_a_changelog_section() -> None:
    for version in [*(r["version"] for r in RELEASES), str(working_tree_version())]:
        assert re.search(rf"^## {re.escape(version)}\b", CHANGELOG, re.M), version


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="not a git clone: no history to check")
@pytest.mark.parametrize("release", RELEASES, ids=lambda r: r["version"])
def test_the_commit_is_in_main_and_carries_that_version(release: dict[str, str]) -> None:
    commit = release["commit"]
    assert re.fullmatch(r"[0-9a-f]{40}", commit)
    assert git("merge-base", "--is-ancestor", commit, "HEAD").returncode == 0, (
        f"{commit} is not in HEAD's history"
    )
    pyproject = git("show", f"{commit}:pyproject.toml")
    assert pyproject.returncode == 0, pyproject.stderr
    assert tomllib.loads(pyproject.stdout)["project"]["version"] == release["version"]
