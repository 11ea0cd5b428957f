"""Media relay benchmark: packets per second and cost per packet, per mode and path.

    sudo .venv/bin/python -m tests.bench.media_bench [--packets N] [--paths xdp-native,userspace]

Builds the namespace topology of the tests (A -- R -- B over veth), runs sipedge-mediad in R,
sends RTP (172-byte packets, G.711 20 ms) from A through the relay to B as fast as one Python
sender can (paced in bursts), and prints per mode and path: packets relayed per second, loss,
and cost per packet: for XDP the kernel's own run time / run count of the program
(kernel.bpf_stats_enabled=1), for userspace mediad's CPU seconds / packets.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

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


def mediad_pid(netns_proc_pid: int) -> int:
    # "ip netns exec" execs the command in place, so the pid is mediad's own
    return netns_proc_pid


def run_one(topo: Topology, tmp: Path, pin: Path, path: str, mode: int, packets: int) -> dict:
    sock = tmp / f"m-{path}-{mode}.sock"
    m = Mediad(
        sock,
        [
            "--fast-path",
            path,
            "--interface",
            "ra",
            "--interface",
            "rb",
            "--port-range",
            "43000-43099",
            "--pin-dir",
            str(pin),
            "--state",
            str(tmp / "state.json"),
        ],
        tmp / "bench.log",
        netns=topo.r,
    )
    m.start()
    sa = ns_socket(topo.a, (topo.a_ip, 0))
    sb = ns_socket(topo.b, (topo.b_ip, 0))
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
                "port": sb.getsockname()[1],
            }
        )
        relay = (offer["address"], answer["port"])
        key = KEYS[mode].encode()
        pkts = [
            reference.encrypt(mode, key, reference.rtp(i, i * 160, 0xB0B, os.urandom(160)))
            for i in range(256)
        ]
        sa.sendto(pkts[0], relay)  # latch
        sb.settimeout(2)
        sb.recvfrom(2048)
        received = 0
        stop = threading.Event()

        def rx() -> None:
            nonlocal received
            sb.settimeout(0.5)
            while not stop.is_set():
                try:
                    sb.recv(2048)
                    received += 1
                except TimeoutError:
                    if stop.is_set():
                        break

        t = threading.Thread(target=rx, daemon=True)
        t.start()
        xdp_before = prog_stats(topo.r, "ra") if path.startswith("xdp") else (0, 0)
        assert m.proc is not None
        cpu_before = cpu_seconds(mediad_pid(m.proc.pid))
        start = time.perf_counter()
        send = sa.sendto
        for i in range(packets):
            send(pkts[i & 255], relay)
            if i & 63 == 63:
                time.sleep(0)  # let the receiver thread run
        send_time = time.perf_counter() - start
        time.sleep(1.0)
        stop.set()
        t.join(2)
        cpu = cpu_seconds(mediad_pid(m.proc.pid)) - cpu_before
        xdp_after = prog_stats(topo.r, "ra") if path.startswith("xdp") else (0, 0)
        q = m.ok({"command": "query", "call-id": "bench"})
        session_path = q["path"]
        runs = xdp_after[1] - xdp_before[1]
        ns_per_pkt = (xdp_after[0] - xdp_before[0]) / runs if runs else None
        result = {
            "path": session_path,
            "mode": NAMES[mode],
            "sent": packets,
            "received": received,
            "loss_pct": 100.0 * (packets - received) / packets,
            "offered_pps": packets / send_time,
            "relayed_pps": received / send_time,
            "xdp_ns_per_packet": ns_per_pkt,
            "mediad_cpu_s": cpu,
            "userspace_us_per_packet": (cpu / received * 1e6)
            if received and session_path == "userspace"
            else None,
        }
        m.ok({"command": "delete", "call-id": "bench"})
        return result
    finally:
        sa.close()
        sb.close()
        m.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--packets", type=int, default=200_000)
    ap.add_argument("--paths", default="xdp-native,userspace")
    ap.add_argument("--modes", default="0,1,2,3")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("media_bench: needs root (namespaces, XDP)", file=sys.stderr)
        return 2
    packets = min(args.packets, 5_000_000)
    subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=1"], check=True)
    tmp = Path(tempfile.mkdtemp(prefix="se-m-bench-"))
    bpffs = tmp / "bpffs"
    mount_bpffs(bpffs)
    topo = Topology.create()
    rows = []
    try:
        for path in args.paths.split(","):
            for mode in (int(x) for x in args.modes.split(",")):
                if path.startswith("xdp") and mode == 3:
                    continue  # AES128 always runs in userspace
                r = run_one(topo, tmp, bpffs / "pins", path, mode, packets)
                rows.append(r)
                print(json.dumps(r), file=sys.stderr)
    finally:
        topo.destroy()
        umount(bpffs)
        subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=0"], check=False)
    print(
        f"{'path':12} {'mode':7} {'relayed pps':>12} {'loss %':>7} {'ns/pkt (XDP)':>13} "
        f"{'us CPU/pkt (user)':>18}"
    )
    for r in rows:
        xdp = f"{r['xdp_ns_per_packet']:.0f}" if r["xdp_ns_per_packet"] else "-"
        us = f"{r['userspace_us_per_packet']:.2f}" if r["userspace_us_per_packet"] else "-"
        print(
            f"{r['path']:12} {r['mode']:7} {r['relayed_pps']:12.0f} {r['loss_pct']:7.2f} "
            f"{xdp:>13} {us:>18}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
