"""The CPS benchmarks read SIPp's, sipd's and Kamailio's output right: files with known values
give known figures."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

from tests.bench.kamailio_cps import kamailio_config, parse_kamcmd_stats
from tests.bench.sip_cps import (
    SIPD_METRICS,
    Target,
    cpu_delta,
    gc_pause_summary,
    invite_retransmissions,
    last_count,
    metric_total,
    parse_metrics,
    peak_current_calls,
    percentile,
    process_tree,
    setup_summary,
    setup_times,
    sipp_rows,
    uac_command,
)

# What SIPp 3.6 writes: the first field holds tabs (date, time, epoch), every line ends in ";".
STAMP = "2026-12-02\t04:59:{:02d}.890029\t17961875{:02d}.890029"


def test_setup_times_come_from_the_response_time_column(tmp_path: Path) -> None:
    # what `sipp -trace_rtt` writes: the date, the response time, the rtd number (always 1)
    lines = ["Date_ms;response_time_ms;rtd_no;"]
    lines += [f"1764547200{n:03d}.000000;{float(n):.6f};1;" for n in range(1, 101)]
    (tmp_path / "uac_1234_rtt.csv").write_text("\n".join(lines) + "\n")
    values = setup_times(tmp_path)
    assert len(values) == 100
    assert percentile(values, 0.5) == 51.0  # not 1: the third column is rtd_no
    assert percentile(values, 0.99) == 99.0
    assert max(values) == 100.0
    assert setup_summary(values) == {
        "setup_samples": 100,
        "setup_p50_ms": 51.0,
        "setup_p90_ms": 90.0,
        "setup_p99_ms": 99.0,
        "setup_max_ms": 100.0,
    }


def test_setup_times_skip_the_uas_and_bad_rows(tmp_path: Path) -> None:
    (tmp_path / "uac_1_rtt.csv").write_text("Date_ms;response_time_ms;rtd_no\n1;4;1\n2;x;1\n")
    (tmp_path / "uas_2_rtt.csv").write_text("Date_ms;response_time_ms;rtd_no\n1;400;1\n")
    assert setup_times(tmp_path) == [4.0]
    assert math.isnan(setup_summary([])["setup_p50_ms"])


def test_uac_writes_an_rtt_sample_for_every_call() -> None:
    # SIPp writes the rtt file every -rtt_freq calls and drops the last partial batch: with
    # 1000, a 500-call run had no sample at all.
    target = Target("sipd", "127.0.0.1:5062", 5070, 1)
    argv = uac_command(target, rate=100, calls=500, hold_ms=10000, timeout_s=75)
    assert argv[argv.index("-rtt_freq") + 1] == "1"
    assert {"-trace_rtt", "-trace_stat", "-trace_counts", "-m", "-timeout"} <= set(argv)
    assert argv[-1] == "127.0.0.1:5062"


def test_stat_file_gives_peak_calls_retransmissions_and_results(tmp_path: Path) -> None:
    header = (
        "StartTime;LastResetTime;CurrentTime;TotalCallCreated;CurrentCall;SuccessfulCall(P);"
        "SuccessfulCall(C);FailedCall(P);FailedCall(C);Retransmissions(P);Retransmissions(C);"
    )
    current = [0, 100, 480, 1000, 998, 520, 3, 0]
    rows = [
        f"{STAMP.format(0, 0)};{STAMP.format(0, 0)};{STAMP.format(n, n)};{min(1000, 100 * n)};"
        f"{calls};0;{min(997, 60 * n)};0;{n // 7};0;{2 * n};"
        for n, calls in enumerate(current)
    ]
    (tmp_path / "uac_4321_.csv").write_text("\n".join([header, *rows]) + "\n")
    (tmp_path / "uac_4321_counts.csv").write_text(header + "\n")  # not the stat file
    stats = sipp_rows(tmp_path, "uac")
    assert len(stats) == 8
    assert peak_current_calls(stats) == 1000
    assert last_count(stats, "SuccessfulCall(C)") == 420
    assert last_count(stats, "FailedCall(C)") == 1
    assert last_count(stats, "Retransmissions(C)") == 14
    assert last_count(stats, "NoSuchColumn") == 0
    assert last_count([], "CurrentCall") == 0
    assert sipp_rows(tmp_path, "uas") == []


def test_invite_retransmissions_come_from_the_counts_file(tmp_path: Path) -> None:
    # The default UAC scenario's -trace_counts header, and a run against a UAS that never
    # answers: 3 calls, 5 INVITE retransmissions each; 2 BYE retransmissions must not count.
    header = (
        "CurrentTime;ElapsedTime;0_INVITE_Sent;0_INVITE_Retrans;0_INVITE_Timeout;1_100_Recv;"
        "1_100_Retrans;1_100_Timeout;1_100_Unexp;2_180_Recv;2_180_Retrans;2_180_Timeout;"
        "2_180_Unexp;3_183_Recv;3_183_Retrans;3_183_Timeout;3_183_Unexp;4_200_Recv;"
        "4_200_Retrans;4_200_Timeout;4_200_Unexp;5_ACK_Sent;5_ACK_Retrans;6_Pause_Sessions;"
        "6_Pause_Unexp;7_BYE_Sent;7_BYE_Retrans;7_BYE_Timeout;8_200_Recv;8_200_Retrans;"
        "8_200_Timeout;8_200_Unexp;"
    )

    def row(second: int, sent: int, invite_retrans: int, bye_retrans: int) -> str:
        counts = [0] * 30
        counts[0], counts[1], counts[24] = sent, invite_retrans, bye_retrans
        return f"{STAMP.format(second, second)};00:00:{second:02d}:001000;" + "".join(
            f"{c};" for c in counts
        )

    lines = [header, row(1, 0, 0, 0), row(2, 2, 1, 0), row(3, 3, 9, 1), row(34, 3, 15, 2)]
    (tmp_path / "uac_99_counts.csv").write_text("\n".join(lines) + "\n")
    counts = sipp_rows(tmp_path, "uac", "counts")
    assert invite_retransmissions(counts) == 15
    assert invite_retransmissions([]) is None
    assert invite_retransmissions([{"CurrentTime": "x", "1_BYE_Retrans": "3"}]) is None


GC_BEFORE = """\
# HELP sipedge_gc_pause_seconds Garbage-collection pauses
# TYPE sipedge_gc_pause_seconds histogram
sipedge_gc_pause_seconds_bucket{generation="0",le="0.001"} 90.0
sipedge_gc_pause_seconds_bucket{generation="0",le="0.01"} 100.0
sipedge_gc_pause_seconds_bucket{generation="0",le="0.1"} 100.0
sipedge_gc_pause_seconds_bucket{generation="0",le="+Inf"} 100.0
sipedge_gc_pause_seconds_count{generation="0"} 100.0
sipedge_gc_pause_seconds_sum{generation="0"} 0.05
sipedge_gc_pause_seconds_bucket{generation="2",le="0.001"} 0.0
sipedge_gc_pause_seconds_bucket{generation="2",le="0.01"} 0.0
sipedge_gc_pause_seconds_bucket{generation="2",le="0.1"} 1.0
sipedge_gc_pause_seconds_bucket{generation="2",le="+Inf"} 1.0
sipedge_gc_pause_seconds_count{generation="2"} 1.0
sipedge_gc_pause_seconds_sum{generation="2"} 0.03
# HELP sipedge_gc_pause_max_seconds Longest GC pause since start
# TYPE sipedge_gc_pause_max_seconds gauge
sipedge_gc_pause_max_seconds{generation="0"} 0.004
sipedge_gc_pause_max_seconds{generation="2"} 0.03
"""

GC_AFTER = """\
# HELP sipedge_calls_active Calls in progress
# TYPE sipedge_calls_active gauge
sipedge_calls_active 12.0
# HELP sipedge_transactions Live SIP transactions
# TYPE sipedge_transactions gauge
sipedge_transactions{side="client"} 30.0
sipedge_transactions{side="server"} 45.0
# HELP sipedge_calls_answered Calls answered
# TYPE sipedge_calls_answered counter
sipedge_calls_answered_total 5000.0
# HELP sipedge_gc_pause_seconds Garbage-collection pauses
# TYPE sipedge_gc_pause_seconds histogram
sipedge_gc_pause_seconds_bucket{generation="0",le="0.001"} 280.0
sipedge_gc_pause_seconds_bucket{generation="0",le="0.01"} 300.0
sipedge_gc_pause_seconds_bucket{generation="0",le="0.1"} 300.0
sipedge_gc_pause_seconds_bucket{generation="0",le="+Inf"} 300.0
sipedge_gc_pause_seconds_count{generation="0"} 300.0
sipedge_gc_pause_seconds_sum{generation="0"} 0.15
sipedge_gc_pause_seconds_bucket{generation="1",le="0.001"} 3.0
sipedge_gc_pause_seconds_bucket{generation="1",le="0.01"} 4.0
sipedge_gc_pause_seconds_bucket{generation="1",le="0.1"} 4.0
sipedge_gc_pause_seconds_bucket{generation="1",le="+Inf"} 4.0
sipedge_gc_pause_seconds_count{generation="1"} 4.0
sipedge_gc_pause_seconds_sum{generation="1"} 0.008
sipedge_gc_pause_seconds_bucket{generation="2",le="0.001"} 0.0
sipedge_gc_pause_seconds_bucket{generation="2",le="0.01"} 0.0
sipedge_gc_pause_seconds_bucket{generation="2",le="0.1"} 1.0
sipedge_gc_pause_seconds_bucket{generation="2",le="+Inf"} 3.0
sipedge_gc_pause_seconds_count{generation="2"} 3.0
sipedge_gc_pause_seconds_sum{generation="2"} 0.53
# HELP sipedge_gc_pause_max_seconds Longest GC pause since start
# TYPE sipedge_gc_pause_max_seconds gauge
sipedge_gc_pause_max_seconds{generation="0"} 0.004
sipedge_gc_pause_max_seconds{generation="1"} 0.006
sipedge_gc_pause_max_seconds{generation="2"} 0.3
"""


def test_metrics_are_summed_by_name_and_labels() -> None:
    samples = parse_metrics(GC_AFTER)
    assert metric_total(samples, "sipedge_calls_active") == 12.0
    assert metric_total(samples, "sipedge_transactions") == 75.0
    assert metric_total(samples, "sipedge_transactions", side="server") == 45.0
    assert metric_total(samples, "sipedge_calls_answered_total") == 5000.0
    assert metric_total(samples, "sipedge_no_such_metric") is None
    live = [metric_total(samples, name) for name in SIPD_METRICS["live"]]
    assert live == [12.0, 75.0]


def test_gc_pauses_over_a_run() -> None:
    gc = gc_pause_summary(parse_metrics(GC_AFTER), parse_metrics(GC_BEFORE))
    assert gc == {
        "count": 206,  # 200 + 4 + 2 in the window
        "total_ms": 608.0,  # 100 + 8 + 500
        "by_generation": {"0": 200, "1": 4, "2": 2},
        "longest_bound_ms": math.inf,  # one of generation 2's two landed above 0.1 s
        "longest_ms": 300.0,  # the gauge: since sipd started
        "longest_generation": "2",
    }


def test_gc_pauses_since_start_and_bounded_buckets() -> None:
    before = parse_metrics(GC_BEFORE)
    gc = gc_pause_summary(before)
    assert gc is not None
    assert gc["count"] == 101
    assert gc["by_generation"] == {"0": 100, "2": 1}
    assert gc["total_ms"] == 80.0
    assert gc["longest_bound_ms"] == 100.0  # generation 2's pause is in the 0.1 s bucket
    assert (gc["longest_ms"], gc["longest_generation"]) == (30.0, "2")
    unchanged = gc_pause_summary(before, before)
    assert unchanged is not None
    assert (unchanged["count"], unchanged["longest_bound_ms"]) == (0, None)


def test_gc_pauses_absent_from_an_older_sipd() -> None:
    assert gc_pause_summary(parse_metrics(GC_AFTER.split("# HELP sipedge_gc")[0])) is None
    assert gc_pause_summary([]) is None


def test_kamcmd_statistics() -> None:
    text = (
        "core:rcv_requests_invite = 500\n"
        "core:rcv_replies_2xx_invite = 498\n"
        "shmem:real_used_size = 2451152\n"
        "tmx:inuse_transactions = 49\n"
        "garbage line\n"
    )
    samples = parse_kamcmd_stats(text)
    assert metric_total(samples, "core:rcv_requests_invite") == 500.0
    assert metric_total(samples, "core:rcv_replies_2xx_invite") == 498.0
    assert metric_total(samples, "tmx:inuse_transactions") == 49.0
    assert len(samples) == 4


def test_kamailio_config_is_a_stateful_relay_to_the_uas(tmp_path: Path) -> None:
    cfg = kamailio_config(5060, 5070, 2, tmp_path / "k.ctl", Path("/usr/lib/kam/modules"))
    assert "children=2\n" in cfg
    assert "listen=udp:127.0.0.1:5060\n" in cfg
    for module in ("tm", "sl", "rr", "maxfwd", "ctl"):
        assert f'loadmodule "{module}.so"' in cfg
    assert "db_" not in cfg and "auth" not in cfg
    assert "record_route();" in cfg and "t_relay()" in cfg
    assert '$du = "sip:127.0.0.1:5070";' in cfg
    assert f'modparam("ctl", "binrpc", "unix:{tmp_path / "k.ctl"}")' in cfg


def test_cpu_comes_from_schedstat_unless_a_thread_went_away() -> None:
    assert cpu_delta(1.23, 1_234_567_890, 1) == (1.23456789, "schedstat")
    assert cpu_delta(2.00, 1_000_000_000, 1) == (2.00, "stat")  # 1 s left with a thread


def test_process_tree_finds_children() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"], stdin=subprocess.DEVNULL
    )
    try:
        tree = process_tree(os.getpid())
        assert os.getpid() in tree and child.pid in tree
    finally:
        child.kill()
        child.wait()


def test_memory_growth_compares_the_first_and_last_settled_drains() -> None:
    from tests.bench.sip_cps import memory_growth

    runs = [
        {"calls": 1000, "rss_drained_mib": 86.0, "rss_settled_mib": 80.0},
        {"calls": 100000, "rss_drained_mib": 220.0, "rss_settled_mib": 84.0},
    ]
    assert memory_growth(runs) == (
        "memory settled after the drain: 80.0 MiB after the first 1,000 calls, 84.0 MiB after"
        " all 101,000 (+5.0 %)"
    )
