"""`sipedge.__version__`: read from the installed wheel's METADATA without importing
importlib.metadata (a start-up cost under emulation), else from importlib.metadata."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import sipedge

PACKAGE_INIT = Path(sipedge.__file__)
ASK = "import sys; import sipedge; print(sipedge.__version__, 'importlib.metadata' in sys.modules)"


def _site(tmp_path: Path, *dist_infos: str) -> Path:
    """A site folder as pip lays one out: the package (its __init__ only) and dist-info(s)."""
    site = tmp_path / "site"
    (site / "sipedge").mkdir(parents=True)
    shutil.copy(PACKAGE_INIT, site / "sipedge" / "__init__.py")
    for name in dist_infos:
        (site / name).mkdir()
        version = name.removeprefix("sipedge-").removesuffix(".dist-info")
        (site / name / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: sipedge\n"
            f"Version: {version}\nSummary: x\n\nVersion: not-a-header\n"
        )
    return site


def _ask(site: Path) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {ASK}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.split()


def test_the_wheels_version_is_read_from_its_metadata(tmp_path: Path) -> None:
    assert _ask(_site(tmp_path, "sipedge-1.2.3+broken.dist-info")) == ["1.2.3+broken", "False"]


def test_no_single_dist_info_asks_importlib_metadata(tmp_path: Path) -> None:
    # two leftovers: which one is installed is importlib.metadata's call, not a guess here
    site = _site(tmp_path, "sipedge-1.0.0.dist-info", "sipedge-2.0.0.dist-info")
    version, asked = _ask(site)
    assert asked == "True"
    assert version in {"1.0.0", "2.0.0", "0.0.0"}


def test_a_source_tree_asks_importlib_metadata(tmp_path: Path) -> None:
    assert _ask(_site(tmp_path))[1] == "True"
