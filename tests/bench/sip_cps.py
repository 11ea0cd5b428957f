"""SIP call-rate benchmark: SIPp UAC -> sipedge-sipd -> SIPp UAS, all on 127.0.0.1.

For each rate in --rates it places calls for --duration seconds (each call held --hold ms, so
rate x hold calls are up at once) and prints one line with:

- calls attempted / succeeded / failed (the UAC's stat file);
- set-up time p50/p90/p99/max: INVITE sent -> 200 received, one sample per call from SIPp's
  `-trace_rtt` file (SIPp's clock: whole milliseconds, see `setup_times`);
- INVITE retransmissions the UAC sent (`<n>_INVITE_Retrans` of its `-trace_counts` file: a
  retransmission means no 100 Trying came back within 500 ms), and every retransmission the UAC
  and the UAS sent (`Retransmissions(C)` of their `-trace_stat` files);
- sipd's CPU over the measured window (UAC start -> UAC exit: every call set up, held and torn
  down), as % of one core and per call, and per call again including the drain below (which
  holds the transactions' timers and up to one /metrics read per second); from /proc: the
  threads' schedstat run time (ns), checked against /proc/PID/stat (10 ms ticks), whose figure
  is taken instead if they disagree; and the same over 2 s before the window, idle;
- the most calls up at once (the UAC's `CurrentCall` column, one row per second);
- sipd's memory (VmRSS) at the end of the window and again after the drain (SIPp's calls all
  finished, /metrics showing no call and no transaction left, or the --drain bound), and its
  peak (VmHWM);
- GC pauses from sipd's `sipedge_gc_pause_seconds` histogram and `sipedge_gc_pause_max_seconds`
  gauge, when the daemon exports them;
- datagrams the kernel dropped for a full socket buffer in sipd's network namespace.

Nothing polls sipd during the measured window: /metrics is read once before it, once right
after it and at most once per second during the drain. It stops at the first rate with a failed
call. Bounded: every SIPp run has -m (calls) and a global -timeout, every wait a deadline.

    make bench                                      # defaults below
    .venv/bin/python -m tests.bench.sip_cps --rates 300,500 --duration 30 --hold 10000
    .venv/bin/python -m tests.bench.sip_cps --rates 200 --duration 10 --cdr-durable off
    .venv/bin/python -m tests.bench.sip_cps --rates 200 --duration 10 --storage postgresql

CDRs are written as on the appliance, `storage.cdr_durable` on (synchronous=FULL: an fsync per
call) unless `--cdr-durable off`; the database lives in a temporary directory under --workdir
(default: the system's temporary directory), which must be on a real disk for the fsync to
cost what it costs on the appliance (not tmpfs). `--storage postgresql` stores them in a
throw-away PostgreSQL cluster on this machine instead (tests/pg.py, Debian's `postgresql`, its
fsync on): each CDR goes through the local spool (the same durable commit) and is shipped to
the server off the event loop; after the window the benchmark waits (bounded) until the
server has every CDR and prints how long that took. `tests/bench/kamailio_cps.py` runs the same
measurement against Kamailio and sipd side by side.
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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port, gateway, make_config, start_sipd
from tests.pg import PgCluster

CLK_TCK = os.sysconf("SC_CLK_TCK")
# SIPp's socket buffers (-buff_size): the kernel grants at most net.core.rmem_max/wmem_max,
# which this benchmark does not change (sipd's granted size is in its log).
SIPP_BUFFER = 4 << 20

# One metric sample: (sample name, labels, value), as in Prometheus' text format.
Sample = tuple[str, dict[str, str], float]


# --- /proc ------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (all its threads) so far, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_seconds_total(pids: Iterable[int]) -> float:
    """CPU time summed over processes, from /proc/PID/stat (a process gone counts nothing).
    Each reading is truncated to a clock tick (10 ms) per field, so a difference can be off by
    up to 2 ticks per process: see `cpu_ns_total`."""
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            continue
    return total


def cpu_ns_total(pids: Iterable[int]) -> int:
    """CPU time (ns) summed over every thread of the processes, from
    /proc/PID/task/TID/schedstat (its first field: time run on a CPU). Nanosecond resolution,
    but a thread that exits takes its time with it (/proc/PID/stat keeps it), so `measure`
    takes this figure only when it agrees with `cpu_seconds_total` to within the ticks."""
    total = 0
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, IndexError, ValueError):
                continue
    return total


def cpu_delta(ticks_s: float, schedstat_ns: int, processes: int) -> tuple[float, str]:
    """The CPU seconds of a window and where they come from: schedstat's (ns) when it is
    within the tick truncation of /proc/PID/stat's (2 ticks per process), else stat's (a
    thread exited during the window)."""
    precise = schedstat_ns / 1e9
    if abs(precise - ticks_s) <= (2 * processes + 1) / CLK_TCK:
        return precise, "schedstat"
    return ticks_s, "stat"


def process_tree(root: int) -> list[int]:
    """`root` and all its live descendants (by the ppid in /proc/*/stat): Kamailio's main
    process and its children, or sipd alone."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return sorted(found)


def rss_kib(pid: int, key: str = "VmHWM") -> int:
    """A `Vm*` line of /proc/PID/status in KiB (VmRSS: now, VmHWM: the peak); 0 if gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def pss_kib(pid: int) -> int:
    """Proportional set size (KiB): shared pages split between the processes that map them,
    so that summing over Kamailio's processes counts its shared memory once."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def udp_rcvbuf_errors(pid: int | None = None) -> int:
    """Datagrams the kernel dropped because a socket buffer was full, for every socket in the
    network namespace of `pid` (default: ours)."""
    path = Path(f"/proc/{pid}/net/snmp") if pid else Path("/proc/net/snmp")
    lines = [row.split() for row in path.read_text().splitlines() if row.startswith("Udp:")]
    return int(dict(zip(lines[0], lines[1], strict=True))["RcvbufErrors"])


# --- SIPp's files -----------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of `values`; NaN for none."""
    if not values:
        return float("nan")
    values = sorted(values)
    index = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[index]


def setup_times(run_dir: Path, scenario: str = "uac") -> list[float]:
    """Call set-up times (ms) from SIPp's `-trace_rtt` files: `Date_ms;response_time_ms;rtd_no`.

    The column is found by its header name: taking the third one (`rtd_no`, always 1 here)
    once made every percentile read 1 ms. SIPp stamps both ends with its event loop's clock,
    in whole milliseconds (on the 2-core build VM the values came in steps of 4 ms: 0, 4, 8),
    so a p50 below a few ms is not resolved. SIPp writes the file every `-rtt_freq` calls and
    drops the remainder at exit: the runs here use `-rtt_freq 1`."""
    values: list[float] = []
    for path in sorted(run_dir.glob(f"{scenario}_*_rtt.csv")):
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


def setup_summary(values: list[float]) -> dict[str, float | int]:
    """p50/p90/p99/max of the set-up times (ms) and how many samples there were."""
    return {
        "setup_samples": len(values),
        "setup_p50_ms": round(percentile(values, 0.5), 2),
        "setup_p90_ms": round(percentile(values, 0.9), 2),
        "setup_p99_ms": round(percentile(values, 0.99), 2),
        "setup_max_ms": round(max(values), 2) if values else float("nan"),
    }


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of one of SIPp's `;`-separated CSV files (stat or counts), by column name."""
    with path.open(newline="") as f:
        return list(csv.DictReader(f, delimiter=";"))


def sipp_rows(run_dir: Path, scenario: str, kind: str = "") -> list[dict[str, str]]:
    """Rows of `<scenario>_<pid>_<kind>.csv` in `run_dir`: kind "" is the `-trace_stat` file,
    "counts" the `-trace_counts` file. One SIPp of each scenario runs per directory."""
    files = sorted(run_dir.glob(f"{scenario}_*_{kind}.csv"))
    return read_rows(files[0]) if files else []


def last_count(rows: Sequence[dict[str, str]], column: str) -> int:
    """A cumulative counter's final value (the last row); 0 without rows or column."""
    if not rows:
        return 0
    try:
        return int(float(rows[-1].get(column) or 0))
    except ValueError:
        return 0


def peak_current_calls(rows: Sequence[dict[str, str]]) -> int:
    """The most calls SIPp had open at once: the largest `CurrentCall` in its stat file (one
    row per `-fd` second, so a shorter peak between two rows is missed)."""
    peak = 0
    for row in rows:
        try:
            peak = max(peak, int(float(row.get("CurrentCall") or 0)))
        except ValueError:
            continue
    return peak


def invite_retransmissions(count_rows: Sequence[dict[str, str]]) -> int | None:
    """INVITE retransmissions the UAC sent: the final `<index>_INVITE_Retrans` of its
    `-trace_counts` file (summed if the scenario sends several INVITEs). Checked with a UAS that
    never answers: 3 calls gave 15 (5 each, SIPp's default), as did `Retransmissions(C)`,
    which counts every message's retransmissions (BYEs too). None without such a column."""
    if not count_rows:
        return None
    last = count_rows[-1]
    columns = [name for name in last if name and name.endswith("_INVITE_Retrans")]
    if not columns:
        return None
    return sum(int(float(last[name] or 0)) for name in columns)


# --- /metrics ---------------------------------------------------------------------------------


def parse_metrics(text: str) -> list[Sample]:
    """Every sample of a Prometheus text exposition (counters keep their `_total` name)."""
    return [
        (s.name, dict(s.labels), float(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def metric_total(samples: Iterable[Sample], name: str, **labels: str) -> float | None:
    """The sum of the samples called `name` whose labels include `labels`; None if none."""
    values = [
        value
        for sample, sample_labels, value in samples
        if sample == name and all(sample_labels.get(k) == v for k, v in labels.items())
    ]
    return sum(values) if values else None


GC_HISTOGRAM = "sipedge_gc_pause_seconds"
GC_MAX = "sipedge_gc_pause_max_seconds"


def gc_pause_summary(
    after: Sequence[Sample], before: Sequence[Sample] = ()
) -> dict[str, Any] | None:
    """GC pauses between two reads of sipd's /metrics (`before` empty: since sipd started).

    count, total_ms, by_generation: the deltas of the histogram's `_count` and `_sum`;
    longest_bound_ms: the bound of the lowest bucket that holds every pause of the window, so
    the window's longest pause is at most that (inf: only +Inf holds it); longest_ms and
    longest_generation: the `sipedge_gc_pause_max_seconds` gauge, the longest pause since sipd
    started (a maximum cannot be taken per window). None when sipd exports neither."""
    names = {f"{GC_HISTOGRAM}_count", GC_MAX}
    generations = sorted({labels.get("generation", "") for n, labels, _ in after if n in names})
    if not generations:
        return None

    def delta(name: str, generation: str) -> float:
        now = metric_total(after, name, generation=generation) or 0.0
        return now - (metric_total(before, name, generation=generation) or 0.0)

    by_generation = {g: int(delta(f"{GC_HISTOGRAM}_count", g)) for g in generations}
    bound = 0.0
    for g, count in by_generation.items():
        if count <= 0:
            continue
        now, then = _buckets(after, g), _buckets(before, g)
        bound = max(
            bound, min((le for le in now if now[le] - then.get(le, 0.0) >= count), default=0.0)
        )
    longest = max(
        ((value, labels.get("generation", "")) for n, labels, value in after if n == GC_MAX),
        default=None,
    )
    total = sum(delta(f"{GC_HISTOGRAM}_sum", g) for g in generations)
    return {
        "count": sum(by_generation.values()),
        "total_ms": round(1000 * total, 3),
        "by_generation": by_generation,
        "longest_bound_ms": round(1000 * bound, 3) if bound else None,
        "longest_ms": round(1000 * longest[0], 3) if longest else None,
        "longest_generation": longest[1] if longest else None,
    }


def _buckets(samples: Iterable[Sample], generation: str) -> dict[float, float]:
    """One generation's cumulative histogram buckets: upper bound (s, inf for +Inf) -> count."""
    return {
        float(labels["le"]): value
        for name, labels, value in samples
        if name == f"{GC_HISTOGRAM}_bucket" and labels.get("generation") == generation
    }


# --- one measured run -------------------------------------------------------------------------


@dataclass
class Target:
    """The SIP element under load and how to reach it.

    `probe` reads the target's own counters once (sipd: its /metrics; Kamailio: its statistics
    over kamcmd) and is called only outside the measured window. `live` names the gauges that
    must all read 0 for the drain to be over (calls and transactions still held), `answered`
    the counter of calls the target itself saw answered, to check against SIPp's count;
    `counters` are reported as their change over the run, `gauges` as read right after it."""

    name: str
    sip_target: str  # where the UAC sends: host:port
    gateway_port: int  # where the UAS listens (the target relays there)
    root_pid: int  # its main process: its descendants count too
    probe: Callable[[], list[Sample]] | None = None
    live: tuple[str, ...] = ()
    answered: str | None = None
    counters: tuple[str, ...] = ()
    gauges: tuple[str, ...] = ()
    gc: bool = False  # whether it may export sipd's GC pause metrics
    prefix: Sequence[str] = ()  # runs SIPp beside it, e.g. ("ip", "netns", "exec", NS)
    ip: str = "127.0.0.1"
    uac_port: int = field(default_factory=free_port)


def uas_command(target: Target, calls: int, timeout_s: int) -> list[str]:
    """SIPp's built-in UAS answering `calls` calls on the gateway port (180, 200, waits for the
    BYE), with its stat and per-message count files."""
    return [
        *target.prefix,
        shutil.which("sipp") or "sipp",
        "-sn",
        "uas",
        "-i",
        target.ip,
        "-p",
        str(target.gateway_port),
        "-nostdin",
        "-m",
        str(calls),
        "-timeout",
        f"{timeout_s}s",
        "-max_socket",
        "10000",
        "-trace_stat",
        "-fd",
        "1",
        "-trace_counts",
        "-buff_size",
        str(SIPP_BUFFER),
    ]


def uac_command(target: Target, rate: int, calls: int, hold_ms: int, timeout_s: int) -> list[str]:
    """SIPp's built-in UAC: `calls` calls at `rate`/s, each held `hold_ms`, with an RTT sample
    per call (`-rtt_freq 1`: SIPp drops the last partial batch), a stat row per second and
    per-message counts."""
    return [
        *target.prefix,
        shutil.which("sipp") or "sipp",
        "-sn",
        "uac",
        "-s",
        "1000",
        "-i",
        target.ip,
        "-p",
        str(target.uac_port),
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
        f"{timeout_s}s",
        "-timeout_error",
        "-trace_rtt",
        "-rtt_freq",
        "1",
        "-trace_err",
        "-trace_stat",
        "-fd",
        "1",
        "-trace_counts",
        "-max_socket",
        "10000",
        "-buff_size",
        str(SIPP_BUFFER),
        target.sip_target,
    ]


def _memory(pids: Sequence[int]) -> dict[str, float]:
    return {
        "rss": round(sum(rss_kib(p, "VmRSS") for p in pids) / 1024, 1),
        "pss": round(sum(pss_kib(p) for p in pids) / 1024, 1),
        "hwm": round(sum(rss_kib(p, "VmHWM") for p in pids) / 1024, 1),
        # what the resident memory is: the heap and stacks, mapped files (code), shared memory
        "anon": round(sum(rss_kib(p, "RssAnon") for p in pids) / 1024, 1),
        "file": round(sum(rss_kib(p, "RssFile") for p in pids) / 1024, 1),
        "shmem": round(sum(rss_kib(p, "RssShmem") for p in pids) / 1024, 1),
    }


def _probe(target: Target) -> list[Sample]:
    if target.probe is None:
        return []
    try:
        return target.probe()
    except (OSError, ValueError, subprocess.SubprocessError):
        return []


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Terminate, then kill after `timeout` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


IDLE_S = 2.0  # how long the idle CPU is measured before each window
SETTLE_S = 15.0  # s after the drain before memory is read again: past sipd's heap look (10 s)


def measure(
    target: Target,
    rate: int,
    duration: float,
    hold_ms: int,
    work: Path,
    drain_s: float = 45.0,
    settle_s: float = SETTLE_S,
) -> dict[str, Any]:
    """One rate against `target`: start the UAS, read the target's counters, run the UAC to
    its end (the measured window: CPU and nothing else touches the target), read the counters
    and memory, then drain (wait for the UAS to finish and the target's live calls and
    transactions to reach 0, at most `drain_s` s, one probe per second) and read memory again."""
    calls = int(rate * duration)
    timeout_s = int(duration + hold_ms / 1000 + 60)
    run_dir = work / f"{target.name}-rate{rate}-calls{calls}"
    for n in range(2, 100):  # the same rate and count again (a memory check): its own folder
        if not run_dir.exists():
            break
        run_dir = work / f"{target.name}-rate{rate}-calls{calls}-{n}"
    run_dir.mkdir()
    quiet: dict[str, Any] = {
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.DEVNULL,
        "cwd": run_dir,
    }
    uas = subprocess.Popen(uas_command(target, calls, timeout_s), **quiet)
    uac: subprocess.Popen[bytes] | None = None
    try:
        time.sleep(0.5)
        before = _probe(target)
        pids = process_tree(target.root_pid)
        idle0 = cpu_ns_total(pids)
        time.sleep(IDLE_S)  # the target's own background work, for reference
        idle = (cpu_ns_total(pids) - idle0) / 1e9
        cpu0, ns0, t0 = cpu_seconds_total(pids), cpu_ns_total(pids), time.monotonic()
        drops0 = udp_rcvbuf_errors(target.root_pid)
        uac = subprocess.Popen(uac_command(target, rate, calls, hold_ms, timeout_s), **quiet)
        try:
            uac.wait(timeout=timeout_s + 10)
        except subprocess.TimeoutExpired:
            stop_process(uac)
        elapsed = time.monotonic() - t0
        cpu, cpu_source = cpu_delta(
            cpu_seconds_total(pids) - cpu0, cpu_ns_total(pids) - ns0, len(pids)
        )
        memory_end = _memory(pids)
        after = _probe(target)  # the one read right after the window
        drops = udp_rcvbuf_errors(target.root_pid) - drops0
        # The drain: the UAS ends when its last call has; then the target's timers.
        deadline = time.monotonic() + drain_s
        while uas.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        live: int | None = None
        while target.live:
            samples = _probe(target)
            values = [metric_total(samples, name) for name in target.live]
            live = int(sum(v for v in values if v is not None)) if samples else None
            if live == 0 or time.monotonic() >= deadline:
                break
            time.sleep(1)
        drained_s = drain_s - max(0.0, deadline - time.monotonic())
        memory_drained = _memory(pids)
        cpu_drained, _ = cpu_delta(
            cpu_seconds_total(pids) - cpu0, cpu_ns_total(pids) - ns0, len(pids)
        )
        # Memory once it settled: sipd looks at its heap every 10 s and gives back what the
        # ended calls freed (sipedge.gcwatch.heap); this is the figure runs are compared by.
        time.sleep(settle_s)
        memory_settled = _memory(pids)
    finally:
        if uac is not None:
            stop_process(uac)
        stop_process(uas)
    uac_stats = sipp_rows(run_dir, "uac")
    uas_stats = sipp_rows(run_dir, "uas")
    result: dict[str, Any] = {
        "target": target.name,
        "rate": rate,
        "calls": calls,
        "successful": last_count(uac_stats, "SuccessfulCall(C)"),
        "failed": last_count(uac_stats, "FailedCall(C)"),
        **setup_summary(setup_times(run_dir)),
        "invite_retransmissions": invite_retransmissions(sipp_rows(run_dir, "uac", "counts")),
        "uac_retransmissions": last_count(uac_stats, "Retransmissions(C)"),
        "uas_retransmissions": last_count(uas_stats, "Retransmissions(C)"),
        "uas_calls": last_count(uas_stats, "SuccessfulCall(C)"),
        "target_answered": None,
        "processes": len(pids),
        "idle_cpu_percent": round(100 * idle / IDLE_S, 1),
        "cpu_percent": round(100 * cpu / elapsed, 1),
        "cpu_us_per_call": round(1e6 * cpu / max(1, calls), 1),
        "cpu_us_per_call_with_drain": round(1e6 * cpu_drained / max(1, calls), 1),
        "cpu_source": cpu_source,
        "concurrent_calls_peak": peak_current_calls(uac_stats),
        "rss_end_mib": memory_end["rss"],
        "rss_drained_mib": memory_drained["rss"],
        "rss_settled_mib": memory_settled["rss"],
        "rss_settled_split_mib": {k: memory_settled[k] for k in ("anon", "file", "shmem")},
        "rss_peak_mib": memory_drained["hwm"],
        "pss_end_mib": memory_end["pss"],
        "pss_drained_mib": memory_drained["pss"],
        "drain_s": round(drained_s, 1),
        "live_after_drain": live,
        "gc": gc_pause_summary(after, before) if target.gc else None,
        "elapsed_s": round(elapsed, 1),
        "udp_buffer_drops": drops,
        "uac_exit": uac.returncode if uac is not None else None,
    }
    if after:
        changes = {
            name: int((metric_total(after, name) or 0) - (metric_total(before, name) or 0))
            for name in (*target.counters, *([target.answered] if target.answered else []))
        }
        result["target_answered"] = changes.get(target.answered or "")
        result["target_counters"] = changes
        result["target_gauges"] = {name: metric_total(after, name) for name in target.gauges}
    return result


def line(r: dict[str, Any]) -> str:
    """One human-readable line with every figure of a `measure` result."""
    invite = r["invite_retransmissions"]
    memory = (
        f"RSS end {r['rss_end_mib']} MiB, after drain {r['rss_drained_mib']} MiB, "
        f"settled {r['rss_settled_mib']} MiB ({_split(r['rss_settled_split_mib'])}), "
        f"peak {r['rss_peak_mib']} MiB"
        if r["processes"] == 1
        else f"PSS ({r['processes']} processes) end {r['pss_end_mib']} MiB, "
        f"after drain {r['pss_drained_mib']} MiB"
    )
    return (
        f"{r['target']} rate {r['rate']:>4}/s: {r['successful']}/{r['calls']} ok, "
        f"{r['failed']} failed (UAS answered {r['uas_calls']}, {r['target']} saw "
        f"{r['target_answered']} answered) | setup ms p50 {r['setup_p50_ms']} "
        f"p90 {r['setup_p90_ms']} p99 {r['setup_p99_ms']} max {r['setup_max_ms']} "
        f"({r['setup_samples']} samples) | INVITE retransmissions "
        f"{'n/a' if invite is None else invite} (all UAC {r['uac_retransmissions']}, "
        f"UAS {r['uas_retransmissions']}) | CPU {r['cpu_percent']}% of a core (idle "
        f"{r['idle_cpu_percent']}%), "
        f"{r['cpu_us_per_call']} us/call ({r['cpu_us_per_call_with_drain']} with the drain) | "
        f"up at once {r['concurrent_calls_peak']} | {memory} (drain {r['drain_s']} s, "
        f"{r['live_after_drain']} live) | {gc_text(r)} | UDP buffer drops {r['udp_buffer_drops']}"
    )


def _split(split: dict[str, float]) -> str:
    return ", ".join(f"{kind} {mib}" for kind, mib in split.items())


def gc_text(r: dict[str, Any]) -> str:
    """The GC part of a line: count, total, longest (this run's bound and since start)."""
    if r["target"] != "sipd":
        return f"gc pauses: n/a ({r['target']})"
    gc = r["gc"]
    if gc is None:
        return "gc pauses: not exported by this sipd"
    generations = ", ".join(f"gen{g} {n}" for g, n in gc["by_generation"].items())
    return (
        f"gc pauses: {gc['count']} ({generations}), total {gc['total_ms']} ms, "
        f"longest <= {gc['longest_bound_ms']} ms this run, {gc['longest_ms']} ms "
        f"(gen{gc['longest_generation']}) since start"
    )


# --- make bench -------------------------------------------------------------------------------


def memory_growth(results: Sequence[dict[str, Any]]) -> str:
    """sipd's resident memory once settled after the drain of the last run against after the
    first's."""
    first, last = results[0], results[-1]
    growth = 100 * (last["rss_settled_mib"] - first["rss_settled_mib"]) / first["rss_settled_mib"]
    calls = sum(r["calls"] for r in results)
    return (
        f"memory settled after the drain: {first['rss_settled_mib']} MiB after the first"
        f" {first['calls']:,} calls, {last['rss_settled_mib']} MiB after all {calls:,}"
        f" ({growth:+.1f} %)"
    )


def sipd_target(sipd: Any, gateway_port: int) -> Target:
    """A sipd started by tests.conftest.start_sipd on host loopback (API without a token)."""
    return Target(
        name="sipd",
        sip_target=sipd.sip_target,
        gateway_port=gateway_port,
        root_pid=sipd.proc.pid,
        probe=lambda: parse_metrics(sipd.api("/metrics")),
        **SIPD_METRICS,
    )


# What a sipd target reads from its /metrics (sipd/metrics.py's SipdCollector).
SIPD_METRICS: dict[str, Any] = {
    "live": ("sipedge_calls_active", "sipedge_transactions"),
    "answered": "sipedge_calls_answered_total",
    "counters": (
        "sipedge_calls_total",
        "sipedge_calls_failed_total",
        "sipedge_retransmissions_total",
        "sipedge_transaction_timeouts_total",
    ),
    "gauges": ("sipedge_calls_active",),
    "gc": True,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="200,400,500,600,800")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument(
        "--durations",
        help="seconds per rate, comma-separated, one per --rates entry (default: --duration for"
        " all); e.g. --rates 500,500 --durations 2,200 compares memory after 1,000 and after"
        " 100,000 calls",
    )
    parser.add_argument("--hold", type=int, default=10000, help="ms each call stays up")
    parser.add_argument("--drain", type=float, default=45.0, help="s to wait for the drain")
    parser.add_argument(
        "--settle", type=float, default=SETTLE_S, help="s to wait after the drain for memory"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--cdr-durable", choices=("on", "off"), default="on", help="storage.cdr_durable"
    )
    parser.add_argument("--workdir", help="where the CDR database and traces go")
    parser.add_argument(
        "--storage",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="storage.backend; postgresql: a throw-away cluster on this machine (tests/pg.py)",
    )
    args = parser.parse_args()
    cluster = None
    if args.storage == "postgresql":
        reason = PgCluster.unavailable()
        if reason is not None:
            sys.exit(f"--storage postgresql: {reason}")
        cluster = PgCluster(fsync=True)
    try:
        bench(parser, args, cluster)
    finally:
        if cluster is not None:
            cluster.destroy()


def wait_shipped(target: Target, timeout: float = 60.0) -> str:
    """After the last rate: until the server has every CDR sipd wrote (bounded)."""
    assert target.probe is not None
    start = time.monotonic()
    while True:
        samples = target.probe()
        written = metric_total(samples, "sipedge_cdrs_written_total") or 0
        shipped = metric_total(samples, "sipedge_cdr_shipped_total") or 0
        waited = time.monotonic() - start
        if shipped >= written or waited > timeout:
            return (
                f"PostgreSQL: {shipped:.0f} of {written:.0f} CDRs on the server"
                f" {waited:.1f} s after the last drain"
            )
        time.sleep(0.2)


def bench(parser: argparse.ArgumentParser, args: argparse.Namespace, cluster: Any) -> None:
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
    where = work / "state"
    if cluster is not None:
        cluster.new_database("bench")
        settings = cluster.settings("bench", node="bench")
        config["storage"].update(
            backend="postgresql", dsn=settings.dsn, password_file=str(settings.password_file)
        )
        where = f"PostgreSQL {cluster.bin.parent.name} (fsync on) via the spool in {where}"
    print(f"CDRs in {where}, cdr_durable {args.cdr_durable}", flush=True)
    sipd = start_sipd(work, config, name="bench")
    target = sipd_target(sipd, gw_port)
    results = []
    try:
        rates = [int(r) for r in args.rates.split(",")]
        durations = [float(d) for d in args.durations.split(",")] if args.durations else []
        if durations and len(durations) != len(rates):
            parser.error("--durations needs one value per --rates entry")
        for index, rate in enumerate(rates):
            duration = durations[index] if durations else args.duration
            result = measure(target, rate, duration, args.hold, work, args.drain, args.settle)
            results.append(result)
            print(json.dumps(result) if args.json else line(result), flush=True)
            if result["failed"] or result["successful"] < result["calls"]:
                break
            time.sleep(2)
        if cluster is not None:
            print(wait_shipped(target), flush=True)
    finally:
        sipd.stop()
    if len(results) >= 2:
        print(memory_growth(results), flush=True)
    good = [r for r in results if not r["failed"] and r["successful"] == r["calls"]]
    best = max((r["rate"] for r in good), default=0)
    print(f"highest rate with zero failed calls for {args.duration:.0f} s: {best} calls/s")
    if good and len(good) == len(results):
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"SIPp traces kept in {work}")
    sys.exit(0)


if __name__ == "__main__":
    main()
