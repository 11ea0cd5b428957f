"""tests.bench.sipd_start times what it says: a build that waits 1 s more before it can start
reads at least 1 s (the figure moves with a known input), and a plain start reads a positive
time below the bench's bound."""

from __future__ import annotations

from pathlib import Path

from tests.bench.sipd_start import READY_TIMEOUT, start_to_ready
from tests.conftest import REPO


def test_a_start_with_a_known_delay_reads_at_least_that_delay(tmp_path: Path) -> None:
    daemons = str(REPO / "daemons")
    plain = start_to_ready(daemons, tcg=False)
    assert 0 < plain < READY_TIMEOUT
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text("import time\ntime.sleep(1.0)\n")  # before main
    assert start_to_ready(f"{slow}:{daemons}", tcg=False) >= 1.0
