"""Media relay benchmark: max packets per second at < 0.1 % loss and cost per packet.

    sudo .venv/bin/python -m tests.bench.media_bench [--paths xdp-native,userspace]
        [--modes 0,1,2,3] [--step-seconds 1.0] [--max-rate 200000]

Builds the namespace topology of the tests (A -- R -- B over veth), runs sipedge-mediad in R and
relays one call's RTP (172-byte packets, G.711 20 ms) from A to B. For each path and mode it
searches the highest paced send rate that B receives with under 0.1 % loss: rates double from
5,000 pps until a step loses packets (or the Python sender cannot go faster), then bisect three
times. Each step sends rate x step-seconds packets (2,000-150,000) paced in 1 ms batches, waits
0.3 s for stragglers and counts what a separate receiver process in B got.

Cost per packet over the passing steps: XDP from the kernel's run time / run count of the
program (kernel.bpf_stats_enabled=1), userspace from mediad's CPU seconds / packets relayed.
"XDP/user" is the ratio of packets per CPU-second of XDP and userspace for the same mode.
The default run (xdp-native + userspace, 4 modes) takes about 2-3 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.media import reference
from tests.media.netns import Mediad, Topology, mount_bpffs, ns_socket, umount

KEYS = {0: "", 1: "sipedge-xor", 2: "sipedge-rc4-key", 3: "0123456789abcdef"}
NAMES = {0: "none", 1: "XOR", 2: "RC4", 3: "AES128"}


def prog_stats(ns: str, dev: str) -> tuple[int, int]:
    link = json.loads(
        subprocess.run(
            ["ip", "-n", ns, "-j", "-d", "link", "show", dev],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )[0]
    prog_id = link["xdp"]["prog"]["id"]
    prog = json.loads(
        subprocess.run(
            ["bpftool", "-j", "prog", "show", "id", str(prog_id)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    return int(prog.get("run_time_ns", 0)), int(prog.get("run_cnt", 0))


def cpu_seconds(pid: int) -> float:
    """utime + stime of pid and its children threads (mediad is the child of ip netns exec)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


RX_CODE = r"""
import socket, sys, threading
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind((sys.argv[1], 0))
count = 0
def control():
    for line in sys.stdin:
        print(count, flush=True)
    s.close()
print(s.getsockname()[1], flush=True)
threading.Thread(target=control, daemon=True).start()
buf = bytearray(2048)
recv = s.recv_into
try:
    while True:
        recv(buf)
        count += 1
except OSError:
    pass
"""


class Receiver:
    """A counting UDP receiver in namespace `ns`, in its own process (no GIL shared with the
    sender). `count()` returns the packets received so far."""

    def __init__(self, ns: str, addr: str) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", RX_CODE, addr],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.port = int(self.proc.stdout.readline())

    def count(self) -> int:
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def paced_send(sock: Any, pkts: list[bytes], dest: tuple[str, int], rate: float, n: int) -> float:
    """Send n packets at `rate` per second in 1 ms batches; returns the achieved rate."""
    batch = max(1, round(rate / 1000))
    interval = batch / rate
    send = sock.sendto
    start = time.perf_counter()
    due = start
    i = 0
    while i < n:
        for _ in range(min(batch, n - i)):
            send(pkts[i & 255], dest)
            i += 1
        due += interval
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    return n / (time.perf_counter() - start)


@dataclass
class Step:
    rate: float  # offered (target) pps
    achieved: float  # pps the sender reached
    sent: int
    received: int
    xdp_ns: int = 0  # run time delta (ns)
    xdp_runs: int = 0
    cpu_s: float = 0.0  # mediad CPU seconds

    @property
    def loss(self) -> float:
        return (self.sent - self.received) / self.sent

    @property
    def ok(self) -> bool:
        return self.loss < 0.001


def run_one(topo: Topology, tmp: Path, pin: Path, path: str, mode: int, args: Any) -> dict:
    sock = tmp / f"m-{path}-{mode}.sock"
    m = Mediad(
        sock,
        [
            *("--fast-path", path, "--interface", "ra", "--interface", "rb"),
            *("--port-range", "43000-43099", "--pin-dir", str(pin)),
            *("--state", str(tmp / "state.json")),
        ],
        tmp / "bench.log",
        netns=topo.r,
    )
    m.start()
    sa = ns_socket(topo.a, (topo.a_ip, 0))
    rx = Receiver(topo.b, topo.b_ip)
    try:
        offer = m.ok(
            {
                "command": "offer",
                "call-id": "bench",
                "from-tag": "a",
                "address": topo.a_ip,
                "port": sa.getsockname()[1],
                "encryption": mode > 0,
                "encryption-mode": mode,
                "encryption-key": KEYS[mode],
            }
        )
        answer = m.ok(
            {
                "command": "answer",
                "call-id": "bench",
                "from-tag": "a",
                "to-tag": "b",
                "address": topo.b_ip,
                "port": rx.port,
            }
        )
        relay = (offer["address"], answer["port"])
        key = KEYS[mode].encode()
        pkts = [
            reference.encrypt(mode, key, reference.rtp(i, i * 160, 0xB0B, os.urandom(160)))
            for i in range(256)
        ]
        sa.sendto(pkts[0], relay)  # latch
        deadline = time.monotonic() + 3
        while rx.count() < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.1)
        assert m.proc is not None
        pid = m.proc.pid  # "ip netns exec" execs mediad in place
        xdp = path.startswith("xdp")

        def step(rate: float) -> Step:
            n = int(min(150_000, max(2_000, rate * args.step_seconds)))
            x0 = prog_stats(topo.r, "ra") if xdp else (0, 0)
            c0, r0 = cpu_seconds(pid), rx.count()
            achieved = paced_send(sa, pkts, relay, rate, n)
            time.sleep(0.3)
            c1, r1 = cpu_seconds(pid), rx.count()
            x1 = prog_stats(topo.r, "ra") if xdp else (0, 0)
            st = Step(rate, achieved, n, r1 - r0, x1[0] - x0[0], x1[1] - x0[1], c1 - c0)
            print(
                f"  {path} {NAMES[mode]}: {rate:9.0f} pps offered, {achieved:9.0f} sent, "
                f"loss {100 * st.loss:6.3f} %",
                file=sys.stderr,
            )
            return st

        steps: list[Step] = []
        best: Step | None = None
        bad: float | None = None
        rate = 5_000.0
        sender_limited = False
        while rate <= args.max_rate:  # doubling: at most log2(max/5000) + 1 steps
            st = step(rate)
            steps.append(st)
            if not st.ok:
                bad = rate
                break
            best = st
            if st.achieved < 0.97 * rate:  # the sender cannot go faster
                sender_limited = True
                break
            rate *= 2
        if bad is not None and best is not None:
            low = best.rate
            for _ in range(args.bisect):
                mid = (low + bad) / 2
                st = step(mid)
                steps.append(st)
                if st.ok:
                    best, low = st, mid
                    if st.achieved < 0.97 * mid:
                        sender_limited = True
                        break
                else:
                    bad = mid
        q = m.ok({"command": "query", "call-id": "bench"})
        passing = [s for s in steps if s.ok]
        runs = sum(s.xdp_runs for s in passing)
        relayed = sum(s.received for s in passing)
        cpu = sum(s.cpu_s for s in passing)
        result = {
            "path": q["path"],
            "mode": NAMES[mode],
            "max_pps": round(min(best.achieved, best.rate)) if best else 0,
            "loss_pct_at_max": round(100 * best.loss, 4) if best else None,
            "sender_limited": sender_limited,
            "first_failing_rate": round(bad) if bad else None,
            "xdp_ns_per_packet": sum(s.xdp_ns for s in passing) / runs if runs else None,
            "mediad_cpu_us_per_packet": cpu / relayed * 1e6 if relayed else None,
            "steps": len(steps),
        }
        m.ok({"command": "delete", "call-id": "bench"})
        return result
    finally:
        sa.close()
        rx.close()
        m.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--paths", default="xdp-native,userspace")
    ap.add_argument("--modes", default="0,1,2,3")
    ap.add_argument("--step-seconds", type=float, default=1.0)
    ap.add_argument("--max-rate", type=float, default=200_000)
    ap.add_argument("--bisect", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("media_bench: needs root (namespaces, XDP)", file=sys.stderr)
        return 2
    args.step_seconds = min(max(args.step_seconds, 0.2), 5.0)
    args.max_rate = min(args.max_rate, 1_000_000)
    args.bisect = min(max(args.bisect, 0), 6)
    subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=1"], check=True)
    tmp = Path(tempfile.mkdtemp(prefix="se-m-bench-"))
    bpffs = tmp / "bpffs"
    mount_bpffs(bpffs)
    topo = Topology.create()
    rows = []
    started = time.monotonic()
    try:
        for path in args.paths.split(","):
            for mode in (int(x) for x in args.modes.split(",")):
                if path.startswith("xdp") and mode == 3:
                    continue  # AES128 always runs in userspace
                r = run_one(topo, tmp, bpffs / "pins", path, mode, args)
                rows.append(r)
                print(json.dumps(r), file=sys.stderr)
    finally:
        topo.destroy()
        umount(bpffs)
        subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=0"], check=False)
    user_ns = {
        r["mode"]: r["mediad_cpu_us_per_packet"] * 1000
        for r in rows
        if r["path"] == "userspace" and r["mediad_cpu_us_per_packet"]
    }
    print(
        f"{'mode':7} {'path':11} {'max pps <0.1% loss':>19} {'ns/pkt XDP':>11} "
        f"{'us CPU/pkt user':>16} {'XDP/user per CPU-s':>19}"
    )
    for r in rows:
        xdp_ns = r["xdp_ns_per_packet"]
        xdp = f"{xdp_ns:.0f}" if xdp_ns else "-"
        us = r["mediad_cpu_us_per_packet"] if r["path"] == "userspace" else None
        user = f"{us:.2f}" if us else "-"
        ratio = f"{user_ns[r['mode']] / xdp_ns:.1f}x" if xdp_ns and r["mode"] in user_ns else "-"
        pps = f"{r['max_pps']:,}" + (" (sender)" if r["sender_limited"] else "")
        print(f"{r['mode']:7} {r['path']:11} {pps:>19} {xdp:>11} {user:>16} {ratio:>19}")
    print(f"({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
