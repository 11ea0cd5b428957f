"""XDP program size and load time: what mediad's start (and the appliance's boot) pays for it.

    sudo .venv/bin/python -m tests.bench.xdp_load [--runs 3]

For each run: a fresh network namespace with a veth pair and a private bpffs, then, in a child
process inside it (`ip netns exec`), `XdpPath.load()` timed: bcc compiles ebpf/media_relay.c,
the kernel verifies it, it is attached natively to the veth. Reports the wall time of that call,
the program's size in instructions as bcc compiled it (`dump_func`) and as the kernel holds it
after its rewrites (`bpftool prog show`: xlated bytes / 8).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.media.netns import mount_bpffs, sh, umount


def child(pin: str) -> None:
    """Inside the namespace: load, measure, print one JSON line."""
    from sipedge.media.xdp import XdpPath

    path = XdpPath(["xl0"], mode="native", pin_dir=Path(pin), max_sessions=1024)
    start = time.perf_counter()
    path.load()
    seconds = time.perf_counter() - start
    insns = len(path._bpf.dump_func("xdp_media_relay")) // 8  # as bcc handed it over
    link = json.loads(sh("ip", "-j", "-d", "link", "show", "xl0"))[0]
    prog = json.loads(sh("bpftool", "-j", "prog", "show", "id", str(link["xdp"]["prog"]["id"])))
    path.detach()
    xlated = int(prog["bytes_xlated"]) // 8
    print(json.dumps({"seconds": seconds, "insns": insns, "xlated": xlated}))


def one_run(tmp: Path, n: int) -> dict[str, float]:
    ns = f"se-xl-{os.getpid()}-{n}"
    pin = tmp / f"bpffs{n}"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "add", "xl0", "type", "veth", "peer", "name", "xl1")
        sh("ip", "-n", ns, "link", "set", "xl0", "up")
        sh("ip", "-n", ns, "link", "set", "xl1", "up")
        mount_bpffs(pin)
        out = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-m", __spec__.name, "--child", str(pin)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if out.returncode != 0:
            raise SystemExit(f"load failed:\n{out.stdout}{out.stderr[-4000:]}")
        result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
        return result
    finally:
        umount(pin)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", metavar="PIN", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    if os.geteuid() != 0:
        raise SystemExit("needs root (namespaces, XDP)")
    with tempfile.TemporaryDirectory(prefix="sipedge-xl-") as tmp:
        runs = [one_run(Path(tmp), n) for n in range(args.runs)]
    times = [r["seconds"] for r in runs]
    print(
        f"instructions {int(runs[0]['insns'])} (xlated {int(runs[0]['xlated'])}); "
        "compile+verify+attach "
        f"median {statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f}, "
        f"{len(times)} runs)"
    )


if __name__ == "__main__":
    main()
