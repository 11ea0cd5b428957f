"""The CPS benchmark reads SIPp's files right: a file with known values gives known figures."""

from __future__ import annotations

from pathlib import Path

from tests.bench.sip_cps import _rtts, percentile


def test_setup_times_come_from_the_response_time_column(tmp_path: Path) -> None:
    # what `sipp -trace_rtt` writes: the date, the response time, the rtd number (always 1)
    lines = ["Date_ms;response_time_ms;rtd_no;"]
    lines += [f"1764547200{n:03d}.000000;{float(n):.6f};1;" for n in range(1, 101)]
    (tmp_path / "uac_1234_rtt.csv").write_text("\n".join(lines) + "\n")
    values = _rtts(tmp_path)
    assert len(values) == 100
    assert percentile(values, 0.5) == 51.0  # not 1: the third column is rtd_no
    assert percentile(values, 0.99) == 99.0
    assert max(values) == 100.0
