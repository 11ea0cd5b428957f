"""XDP program size and load time: what mediad's start (and the appliance's boot) pays for it.

    sudo .venv/bin/python -m tests.bench.xdp_load [--runs 3]

For each run: a fresh network namespace with a veth pair and a private bpffs, then, in a child
process inside it (`ip netns exec`), `XdpPath.load()` timed: bcc compiles ebpf/media_relay.c,
the kernel verifies it, it is attached natively to the veth. Reports the wall time of that call,
the program's size in instructions as bcc compiled it (`dump_func`) and as the kernel holds it
after its rewrites (`bpftool prog show`: xlated bytes / 8), and the instructions the verifier
processed and its time (the same bytecode loaded once more with the verifier's statistics, log
level 4; the kernel refuses a program at 1,000,000 processed instructions).
`SIPEDGE_EBPF_DIR=DIR` measures DIR/media_relay.c instead.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.media.netns import mount_bpffs, sh, umount

SYS_BPF = 321  # x86_64
BPF_PROG_LOAD = 5
BPF_PROG_TYPE_XDP = 6


class _ProgLoad(ctypes.Structure):
    """The head of union bpf_attr for BPF_PROG_LOAD (the rest stays zero)."""

    _fields_ = [
        ("prog_type", ctypes.c_uint32),
        ("insn_cnt", ctypes.c_uint32),
        ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64),
        ("rest", ctypes.c_char * 96),
    ]


def verifier_processed(code: bytes) -> tuple[int, int]:
    """(instructions the verifier processed, its time in µs) for `code` (its map references
    must be open)."""
    libc = ctypes.CDLL(None, use_errno=True)
    insns = ctypes.create_string_buffer(code, len(code))
    licence = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(1 << 16)
    attr = _ProgLoad(
        BPF_PROG_TYPE_XDP,
        len(code) // 8,
        ctypes.addressof(insns),
        ctypes.addressof(licence),
        4,  # BPF_LOG_STATS
        len(log),
        ctypes.addressof(log),
    )
    fd = libc.syscall(SYS_BPF, BPF_PROG_LOAD, ctypes.byref(attr), ctypes.sizeof(attr))
    if fd >= 0:
        os.close(fd)
    text = log.value.decode(errors="replace")
    processed = re.search(r"processed (\d+) insns", text)
    usec = re.search(r"verification time (\d+) usec", text)
    return (int(processed.group(1)) if processed else -1, int(usec.group(1)) if usec else -1)


def child(pin: str) -> None:
    """Inside the namespace: load, measure, print one JSON line."""
    from sipedge.media.xdp import XdpPath

    path = XdpPath(["xl0"], mode="native", pin_dir=Path(pin), max_sessions=1024)
    start = time.perf_counter()
    path.load()
    seconds = time.perf_counter() - start
    code = path._bpf.dump_func("xdp_media_relay")  # as bcc handed it over
    insns = len(code) // 8
    link = json.loads(sh("ip", "-j", "-d", "link", "show", "xl0"))[0]
    prog = json.loads(sh("bpftool", "-j", "prog", "show", "id", str(link["xdp"]["prog"]["id"])))
    verified, verify_usec = verifier_processed(code)  # while the maps it names are open
    path.detach()
    xlated = int(prog["bytes_xlated"]) // 8
    result = {"seconds": seconds, "insns": insns, "xlated": xlated}
    print(json.dumps(result | {"verified": verified, "verify_seconds": verify_usec / 1e6}))


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
    verify = [r["verify_seconds"] for r in runs]
    print(
        f"instructions {int(runs[0]['insns'])} (xlated {int(runs[0]['xlated'])}), verifier "
        f"processed {int(runs[0]['verified'])}; "
        "compile+verify+attach "
        f"median {statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f}, "
        f"{len(times)} runs); of which verification median {statistics.median(verify):.2f} s"
    )


if __name__ == "__main__":
    main()
