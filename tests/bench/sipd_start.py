"""sipd's start to READY, natively or under QEMU's TCG: a quick stand-in for the appliance's boot.

The appliance's boot is measured by the `vm` Molecule scenario under QEMU's TCG (this machine
has no KVM): a boot takes minutes and spreads by several seconds. This starts sipd from one or
more builds of the package in turn, each with a demo config on loopback, and times it from
its start (the config written, then exec: well under a millisecond apart) to its systemd
readiness (`READY=1` on `NOTIFY_SOCKET`, as its unit waits for), either
natively or under `qemu-x86_64-static` (QEMU's user mode: the same translator as the VM's,
without the emulated machine around it). So a change to what sipd does at start, such as a
compiled module, can be compared in seconds, several times, in alternation.

    .venv/bin/python -m tests.bench.sipd_start --runs 4 --tcg
    .venv/bin/python -m tests.bench.sipd_start --tcg --build a=daemons --build b=/tmp/b/daemons

`--build NAME=PATH` puts PATH first on sipd's PYTHONPATH (default: this checkout's `daemons`).
Under `--tcg` expect some 8x the native time (2.8-3.7 s for 0.4 s here); the VM's boot adds
its emulated kernel and disk on top. `--tcg` needs Debian's `qemu-user-static`
(`apt-get install qemu-user-static`; `make setup` leaves it out: 370 MB for this bench alone).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.sip_cps import stop_process
from tests.conftest import REPO, free_port, gateway, make_config, spawn_sipd

# Debian's qemu-user-static: not installed by `make setup` (370 MB for a measurement tool).
QEMU = "qemu-x86_64-static"
READY_TIMEOUT = 120.0  # seconds: a start that takes longer is a failure, not a figure


def start_to_ready(pythonpath: str, tcg: bool) -> float:
    """Seconds from starting one sipd run from `pythonpath` to its READY=1 (stopped after)."""
    with tempfile.TemporaryDirectory(prefix="sipedge-start-") as name:
        tmp = Path(name)
        config = make_config(
            tmp, free_port(), free_port(socket.SOCK_STREAM), [gateway("gw1", 5090)]
        )
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(tmp / "notify"))
        notify.settimeout(READY_TIMEOUT)
        env = {"PYTHONPATH": pythonpath, "NOTIFY_SOCKET": str(tmp / "notify")}
        began = time.monotonic()
        proc, _, _ = spawn_sipd(tmp, config, env=env, wrapper=[QEMU, sys.executable] if tcg else [])
        try:
            while True:
                try:
                    message = notify.recv(4096).decode(errors="replace")
                except TimeoutError:
                    raise SystemExit(f"sipd not READY in {READY_TIMEOUT:.0f} s") from None
                if "READY=1" in message.split("\n"):
                    return time.monotonic() - began
        finally:
            stop_process(proc, timeout=30)
            notify.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="starts of each build, in turn")
    parser.add_argument("--tcg", action="store_true", help=f"under {QEMU} (QEMU's TCG)")
    parser.add_argument(
        "--build",
        action="append",
        metavar="NAME=PATH",
        help="a build to start: PATH goes first on PYTHONPATH (repeat to compare)",
    )
    args = parser.parse_args()
    if args.tcg and shutil.which(QEMU) is None:
        raise SystemExit(f"{QEMU} not found: apt-get install qemu-user-static")
    builds = dict(b.split("=", 1) for b in args.build or [f"checkout={REPO / 'daemons'}"])
    times: dict[str, list[float]] = {name: [] for name in builds}
    print(f"sipd exec -> READY=1, {'under ' + QEMU if args.tcg else 'native'}, {args.runs} runs")
    for _ in range(args.runs):
        for name, path in builds.items():
            times[name].append(start_to_ready(str(Path(path).resolve()), args.tcg))
            print(f"  {name:12} {times[name][-1]:6.2f} s", flush=True)
    for name, seconds in times.items():
        print(
            f"{name:12} median {statistics.median(seconds):6.2f} s"
            f" (min {min(seconds):.2f}, max {max(seconds):.2f})"
        )


if __name__ == "__main__":
    main()
