"""The full-collection valve: when memory growth makes a full collection due, and the loop."""

from __future__ import annotations

import asyncio
import gc
import os
from pathlib import Path

from sipedge.gcwatch import THRESHOLDS, FullCollectionValve, run_valve
from sipedge.gcwatch.valve import resident_bytes

MIB = 1 << 20


def test_no_automatic_full_collection() -> None:
    assert THRESHOLDS[2] == 2**31 - 1  # the largest the collector takes
    before = gc.get_threshold()
    try:
        gc.set_threshold(*THRESHOLDS)
        assert gc.get_threshold() == THRESHOLDS
    finally:
        gc.set_threshold(*before)


def test_due_only_past_the_growth_above_the_lowest_reading() -> None:
    valve = FullCollectionValve(growth_bytes=100 * MIB, min_spacing=600)
    assert not valve.due(300 * MIB, 0)  # the first reading is the baseline
    assert not valve.due(200 * MIB, 30)  # calls ended: the baseline follows memory down
    assert valve.low == 200 * MIB
    assert not valve.due(300 * MIB, 60)  # exactly the allowance: not yet
    assert valve.due(300 * MIB + 1, 90)


def test_spacing_between_two_runs_and_a_new_baseline_after_one() -> None:
    valve = FullCollectionValve(growth_bytes=100 * MIB, min_spacing=600)
    valve.due(100 * MIB, 0)
    assert valve.due(250 * MIB, 30)
    valve.ran(240 * MIB, 30, collected=12)  # it freed little: memory is held by live calls
    assert valve.low == 240 * MIB and valve.runs == 1 and valve.freed == [12]
    assert not valve.due(330 * MIB, 60)  # measured from where the run left it
    assert not valve.due(400 * MIB, 600)  # past the allowance, but too soon after the last
    assert valve.due(400 * MIB, 630)


def test_resident_bytes_reads_statm(tmp_path: Path) -> None:
    statm = tmp_path / "statm"
    statm.write_text("5000 1234 300 10 0 900 0\n")
    assert resident_bytes(str(statm)) == 1234 * os.sysconf("SC_PAGE_SIZE")
    assert resident_bytes() > 10 * MIB  # this interpreter


def test_loop_collects_when_due_and_logs() -> None:
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    readings = iter([100 * MIB, 100 * MIB, 500 * MIB, 120 * MIB])
    valve = FullCollectionValve(growth_bytes=100 * MIB, min_spacing=0)

    async def main() -> None:
        for _ in range(1000):
            Cycle()  # garbage only a full collection (or a young one) frees
        task = asyncio.get_running_loop().create_task(
            run_valve(valve, interval=0, read_rss=lambda: next(readings))
        )
        for _ in range(50):
            await asyncio.sleep(0)
            if valve.runs:
                break
        task.cancel()

    gc.disable()
    try:
        asyncio.run(main())
    finally:
        gc.enable()
    assert valve.runs == 1 and valve.low == 120 * MIB
    assert valve.freed[0] >= 1000
