"""SIP call-rate benchmark: SIPp UAC -> sipedge-sipd -> SIPp UAS, all on 127.0.0.1.

For each rate in --rates it runs calls for --duration seconds (each call held --hold ms, so
rate x hold calls are up at once), then prints: calls attempted / succeeded / failed, setup
latency p50/p99 (INVITE sent -> 200 received, from SIPp's RTT trace), the daemon's CPU use and
peak RSS, and the most calls that were up at the same time. It stops at the first rate with a
failed call. Bounded: every SIPp run has -m (calls) and a global -timeout.

    make bench                                      # defaults below
    .venv/bin/python -m tests.bench.sip_cps --rates 300,500 --duration 30 --hold 10000
    .venv/bin/python -m tests.bench.sip_cps --rates 200 --duration 10 --cdr-durable off

CDRs are written as on the appliance, `storage.cdr_durable` on (synchronous=FULL: an fsync per
call) unless `--cdr-durable off`; the database lives in a temporary directory under --workdir
(default: the system's temporary directory), which must be on a real disk for the fsync to
cost what it costs on the appliance (not tmpfs).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.conftest import free_port, gateway, make_config, start_sipd

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid: int, key: str = "VmHWM") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def udp_rcvbuf_errors() -> int:
    """Datagrams the kernel dropped machine-wide because a socket buffer was full."""
    snmp = Path("/proc/net/snmp").read_text().splitlines()
    lines = [row.split() for row in snmp if row.startswith("Udp:")]
    return int(dict(zip(lines[0], lines[1], strict=True))["RcvbufErrors"])


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    index = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[index]


def run_rate(
    sipd: Any, gw_port: int, rate: int, duration: float, hold_ms: int, work: Path
) -> dict[str, Any]:
    sipp = shutil.which("sipp") or "sipp"
    calls = int(rate * duration)
    run_dir = work / f"rate{rate}"
    run_dir.mkdir()
    uas = subprocess.Popen(
        [
            sipp,
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            str(gw_port),
            "-nostdin",
            "-m",
            str(calls),
            "-timeout",
            f"{int(duration + hold_ms / 1000 + 60)}s",
            "-max_socket",
            "10000",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=run_dir,
    )
    time.sleep(0.5)
    pid = sipd.proc.pid
    cpu0, t0, drops0 = cpu_seconds(pid), time.monotonic(), udp_rcvbuf_errors()
    peak_active = 0
    uac = subprocess.Popen(
        [
            sipp,
            "-sn",
            "uac",
            "-s",
            "1000",
            "-i",
            "127.0.0.1",
            "-p",
            str(free_port()),
            "-r",
            str(rate),
            "-m",
            str(calls),
            "-d",
            str(hold_ms),
            "-l",
            str(rate * (hold_ms // 1000 + 5)),
            "-nostdin",
            "-timeout",
            f"{int(duration + hold_ms / 1000 + 60)}s",
            "-timeout_error",
            "-trace_rtt",
            "-trace_err",
            "-rtt_freq",
            "1000",
            "-trace_stat",
            "-fd",
            "1",
            "-max_socket",
            "10000",
            sipd.sip_target,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=run_dir,
    )
    while uac.poll() is None:
        time.sleep(1)
        try:
            active = len(sipd.api("/api/calls"))
        except OSError:
            active = -1
        peak_active = max(peak_active, active)
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds(pid) - cpu0
    uas.wait(timeout=60)
    stats = _last_stat_row(run_dir)
    rtts = _rtts(run_dir)
    return {
        "rate": rate,
        "calls": calls,
        "successful": int(stats.get("SuccessfulCall(C)", 0)),
        "failed": int(stats.get("FailedCall(C)", 0)),
        "setup_p50_ms": round(percentile(rtts, 0.5), 2),
        "setup_p99_ms": round(percentile(rtts, 0.99), 2),
        "daemon_cpu_percent": round(100 * cpu / elapsed, 1),
        "daemon_cpu_us_per_call": round(1e6 * cpu / max(1, calls), 1),
        "daemon_rss_peak_mib": round(rss_kib(pid) / 1024, 1),
        "concurrent_calls_peak": peak_active,
        "elapsed_s": round(elapsed, 1),
        "udp_buffer_drops": udp_rcvbuf_errors() - drops0,
        "uac_exit": uac.returncode,
    }


def _last_stat_row(run_dir: Path) -> dict[str, str]:
    files = sorted(run_dir.glob("*_.csv"))
    if not files:
        return {}
    with files[0].open() as f:
        rows = list(csv.DictReader(f, delimiter=";"))
    return rows[-1] if rows else {}


def _rtts(run_dir: Path) -> list[float]:
    """Call set-up times (ms) from SIPp's `-trace_rtt` files: `Date_ms;response_time_ms;rtd_no`.

    The column is found by its header name: taking the third one (`rtd_no`, always 1 here)
    once made every percentile read 1 ms."""
    values: list[float] = []
    for path in run_dir.glob("*_rtt.csv"):
        with path.open() as f:
            column: int | None = None
            for row in csv.reader(f, delimiter=";"):
                if column is None:
                    names = [name.strip() for name in row]
                    if "response_time_ms" in names:
                        column = names.index("response_time_ms")
                    continue
                if len(row) > column:
                    try:
                        values.append(float(row[column]))
                    except ValueError:
                        continue
    return values


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="200,400,500,600,800")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--hold", type=int, default=10000, help="ms each call stays up")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--cdr-durable", choices=("on", "off"), default="on", help="storage.cdr_durable"
    )
    parser.add_argument("--workdir", help="where the CDR database and traces go")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sipedge-bench-", dir=args.workdir))
    gw_port = free_port()
    config = make_config(
        work,
        free_port(),
        free_port(1),
        [gateway("bench-gw", gw_port)],
        parameters={"SS_SIP_TIMEOUT_INVITE": 30},
    )
    config["storage"]["cdr_durable"] = args.cdr_durable == "on"
    print(f"CDRs in {work / 'state'}, cdr_durable {args.cdr_durable}", flush=True)
    sipd = start_sipd(work, config, name="bench")
    results = []
    try:
        for rate in (int(r) for r in args.rates.split(",")):
            result = run_rate(sipd, gw_port, rate, args.duration, args.hold, work)
            results.append(result)
            print(json.dumps(result) if args.json else _line(result), flush=True)
            if result["failed"] or result["successful"] < result["calls"]:
                break
            time.sleep(2)
    finally:
        sipd.stop()
    good = [r for r in results if not r["failed"] and r["successful"] == r["calls"]]
    best = max((r["rate"] for r in good), default=0)
    print(f"highest rate with zero failed calls for {args.duration:.0f} s: {best} calls/s")
    if any(r["rate"] == best for r in good):
        r = next(r for r in good if r["rate"] == best)
        print(
            f"  at that rate: setup p50 {r['setup_p50_ms']} ms, p99 {r['setup_p99_ms']} ms, "
            f"sipd CPU {r['daemon_cpu_percent']}%, RSS peak {r['daemon_rss_peak_mib']} MiB, "
            f"{r['concurrent_calls_peak']} calls up at once"
        )
    if good and len(good) == len(results):
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"SIPp traces kept in {work}")
    sys.exit(0)


def _line(r: dict[str, Any]) -> str:
    return (
        f"rate {r['rate']:>4}/s: {r['successful']}/{r['calls']} ok, {r['failed']} failed, "
        f"setup p50 {r['setup_p50_ms']} ms p99 {r['setup_p99_ms']} ms, "
        f"sipd CPU {r['daemon_cpu_percent']}% ({r['daemon_cpu_us_per_call']} us/call), "
        f"RSS peak {r['daemon_rss_peak_mib']} MiB, up at once {r['concurrent_calls_peak']}, "
        f"UDP buffer drops (all sockets) {r['udp_buffer_drops']}"
    )


if __name__ == "__main__":
    main()
