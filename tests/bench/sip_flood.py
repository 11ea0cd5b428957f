"""SIP flood benchmark: one source floods sipd while a mapping gateway places calls.

A real sipedge-sipd on loopback with a SIPp UAS as its routing gateway and a SIPp UAC as its
mapping gateway (127.0.0.1 only) placing calls at the rated rate. After a warm-up of legit
calls alone, a second process sends from 127.0.0.5 at 10x the rated call rate, in datagrams
a second, for the whole run: new INVITEs (each a new transaction), binary garbage, and
requests with a bad Content-Length (answerable: the transport's 400), in turn. Printed: legit
calls completed/failed, sipd's RSS before/after the flood and its peak, bytes and datagrams
sent to and received from the flooding source, and the guard's drops by reason.

Before trusting the byte counts it checks the flooder against a known input: an echo server
that answers every datagram with exactly 10 bytes, so sent/received must come out exact.

    .venv/bin/python -m tests.bench.sip_flood                  # 50 calls/s, 500 flood/s, 30 s
    .venv/bin/python -m tests.bench.sip_flood --rate 100 --duration 60 --json
    .venv/bin/python -m tests.bench.sip_flood --factor 0       # no flood: the RSS baseline

Bounded: every SIPp has -m and a timeout, the flooder stops after --duration. Not a test: it
asserts nothing about timing; run it on a quiet machine and note the load (`uptime`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.conftest import free_port, gateway, make_config, start_sipd
from tests.sipp.harness import Sipp

FLOODER = "127.0.0.5"
ECHO_REPLY = b"0123456789"


# -- the flooder (its own process: no GIL shared with the measuring side) ------------------------
def payloads(n: int, target_port: int) -> bytes:
    kind = n % 3
    if kind == 1:
        return bytes((n * 7 + i) % 256 for i in range(200))  # binary garbage: never parses
    headers = (
        f"Via: SIP/2.0/UDP {FLOODER}:5999;branch=z9hG4bKfl{n}\r\n"
        f"From: <sip:evil@{FLOODER}>;tag=f{n}\r\nTo: <sip:1000@127.0.0.1>\r\n"
        f"Call-ID: flood{n}@{FLOODER}\r\nMax-Forwards: 70\r\n"
        "User-Agent: floodbench\r\n"
    )
    if kind == 0:
        return (
            f"INVITE sip:1000@127.0.0.1:{target_port} SIP/2.0\r\n{headers}"
            "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        ).encode()
    return (  # a bad Content-Length: answerable, the transport says 400
        f"OPTIONS sip:1000@127.0.0.1:{target_port} SIP/2.0\r\n{headers}"
        "CSeq: 1 OPTIONS\r\nContent-Length: 900\r\n\r\n"
    ).encode()


def flood(target: tuple[str, int], rate: float, duration: float, source: str) -> dict[str, Any]:
    """Send `rate` datagrams a second for `duration` s from `source`, in 10 ms batches;
    count what goes out and what comes back (also for 1 s after the last one)."""
    counts = {"sent": 0, "sent_bytes": 0, "received": 0, "received_bytes": 0}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        s.setblocking(False)

        def drain() -> None:
            while True:
                try:
                    data = s.recv(65535)
                except BlockingIOError:
                    return
                counts["received"] += 1
                counts["received_bytes"] += len(data)

        start = time.monotonic()
        n = 0
        while True:
            elapsed = time.monotonic() - start
            if elapsed >= duration:
                break
            due = int(elapsed * rate) + 1 if rate > 0 else 0
            while n < due:
                data = payloads(n, target[1])
                try:
                    s.sendto(data, target)
                except BlockingIOError:
                    break
                counts["sent"] += 1
                counts["sent_bytes"] += len(data)
                n += 1
            drain()
            time.sleep(0.01)
        sent_for = time.monotonic() - start
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            drain()
            time.sleep(0.01)
    return {**counts, "achieved_rate": round(counts["sent"] / sent_for, 1)}


def run_flooder(target: tuple[str, int], rate: float, duration: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.bench.sip_flood",
            "--flooder",
            f"{target[0]}:{target[1]}",
            "--flood-rate",
            str(rate),
            "--duration",
            str(duration),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )


def calibrate(rate: float) -> dict[str, Any]:
    """The flooder against an echo server that answers each datagram with 10 bytes."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(0.2)
    seen = {"datagrams": 0, "bytes": 0}
    stop = threading.Event()

    def echo() -> None:
        while not stop.is_set():
            try:
                data, addr = server.recvfrom(65535)
            except TimeoutError:
                continue
            seen["datagrams"] += 1
            seen["bytes"] += len(data)
            server.sendto(ECHO_REPLY, addr)

    thread = threading.Thread(target=echo)
    thread.start()
    port = int(server.getsockname()[1])
    proc = run_flooder(("127.0.0.1", port), rate, 2.0)
    out, _ = proc.communicate(timeout=30)
    stop.set()
    thread.join()
    server.close()
    got = json.loads(out)
    expected_bytes = sum(len(payloads(n, port)) for n in range(got["sent"]))
    ok = (
        got["sent"] == seen["datagrams"]
        and got["sent_bytes"] == seen["bytes"] == expected_bytes
        and got["received"] == got["sent"]
        and got["received_bytes"] == len(ECHO_REPLY) * got["sent"]
        and abs(got["achieved_rate"] - rate) <= 0.1 * rate
    )
    return {"ok": ok, "flooder": got, "echo_server": seen}


# -- the run --------------------------------------------------------------------------------------
def rss_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def guard_figures(metrics: dict[str, float]) -> dict[str, float]:
    keep = ("sipedge_guard_", "sipedge_sip_parse_errors", "sipedge_sip_bad_requests")
    return {k: v for k, v in metrics.items() if k.startswith(keep) and "_created" not in k}


def legit_calls(sipd: Any, rate: float, seconds: float, hold_ms: int) -> Sipp:
    calls = int(rate * seconds)
    caller = Sipp(
        "uac_basic",
        port=free_port(),
        remote=sipd.sip_target,
        calls=calls,
        rate=rate,
        limit=int(rate * (hold_ms / 1000 + 5)),
        timeout=seconds + hold_ms / 1000 + 60,
        service="1000",
        keys={"hold": str(hold_ms)},
        trace_msg=False,
    )
    caller.start()
    return caller


def run(rate: float, duration: float, warmup: float, hold_ms: int, factor: float) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="sipedge-flood-"))
    gw_port = free_port()
    config = make_config(
        work,
        free_port(),
        free_port(socket.SOCK_STREAM),
        [gateway("bench-gw", gw_port)],
        mapping_addresses=["127.0.0.1/32"],
    )
    sipd = start_sipd(work, config, name="flood")
    pid = sipd.proc.pid
    total_calls = int(rate * (warmup + duration))
    try:
        with Sipp(
            "uas_answer",
            port=gw_port,
            calls=total_calls,
            timeout=warmup + duration + hold_ms / 1000 + 90,
            trace_msg=False,
        ) as uas:
            warm = legit_calls(sipd, rate, warmup, hold_ms)
            warm_result = warm.wait(warmup + hold_ms / 1000 + 60)
            rss_before = rss_kib(pid, "VmRSS")
            before = sipd.metrics()
            caller = legit_calls(sipd, rate, duration, hold_ms)
            flooder = run_flooder(("127.0.0.1", sipd.sip_port), factor * rate, duration)
            peak_rss = rss_before
            while flooder.poll() is None:
                peak_rss = max(peak_rss, rss_kib(pid, "VmRSS"))
                time.sleep(0.5)
            flood_counts = json.loads(flooder.communicate()[0])
            result = caller.wait(duration + hold_ms / 1000 + 60)
            rss_after = rss_kib(pid, "VmRSS")
            after = sipd.metrics()
            uas.stop()
    finally:
        sipd.stop()
    shutil.rmtree(work, ignore_errors=True)
    b, a = guard_figures(before), guard_figures(after)
    return {
        "rated_calls_per_s": rate,
        "flood_datagrams_per_s": factor * rate,
        "duration_s": duration,
        "warmup_calls": {"successful": warm_result.successful, "failed": warm_result.failed},
        "legit_calls": {
            "placed": int(rate * duration),
            "successful": result.successful,
            "failed": result.failed,
        },
        "sipd_rss_kib": {"before_flood": rss_before, "after_flood": rss_after, "peak": peak_rss},
        "flooder": flood_counts,
        "sent_below_received": flood_counts["received_bytes"] < flood_counts["sent_bytes"],
        "guard_during_flood": {k: a[k] - b.get(k, 0.0) for k in sorted(a)},
        "load_average": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=50.0, help="rated calls per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of flood")
    parser.add_argument(
        "--warmup",
        type=float,
        default=40.0,
        help="seconds of calls alone (transactions linger 32 s)",
    )
    parser.add_argument("--hold", type=int, default=2000, help="ms each call stays up")
    parser.add_argument(
        "--factor", type=float, default=10.0, help="flood rate / call rate (0: a baseline run)"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--flooder", help=argparse.SUPPRESS)  # internal: the flood process
    parser.add_argument("--flood-rate", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flooder:
        host, port = args.flooder.rsplit(":", 1)
        print(json.dumps(flood((host, int(port)), args.flood_rate, args.duration, FLOODER)))
        return
    print(f"load average before: {os.getloadavg()}", flush=True)
    check = calibrate(10 * args.rate)  # the rate of the default run, whatever --factor
    print(f"calibration against a 10-byte echo server: {'ok' if check['ok'] else 'WRONG'}")
    if not check["ok"]:
        print(json.dumps(check, indent=2))
        sys.exit(1)
    result = run(args.rate, args.duration, args.warmup, args.hold, args.factor)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    legit, fl, rss = result["legit_calls"], result["flooder"], result["sipd_rss_kib"]
    print(
        f"legit calls at {args.rate:g}/s for {args.duration:g} s: {legit['successful']}/"
        f"{legit['placed']} completed, {legit['failed']} failed"
    )
    print(
        f"flood from {FLOODER} at {result['flood_datagrams_per_s']:g}/s (achieved "
        f"{fl['achieved_rate']}/s): sent {fl['sent']} datagrams / {fl['sent_bytes']} bytes, "
        f"answered {fl['received']} datagrams / {fl['received_bytes']} bytes "
        f"(answers below requests: {result['sent_below_received']})"
    )
    print(
        f"sipd RSS: {rss['before_flood']} KiB before the flood, {rss['after_flood']} KiB after, "
        f"peak {rss['peak']} KiB"
    )
    for name, value in result["guard_during_flood"].items():
        print(f"  {name} {value:g}")
    print(f"load average after: {result['load_average']}")


if __name__ == "__main__":
    main()
