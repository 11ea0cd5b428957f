"""Which UDP socket dropped datagrams: the per-socket `drops` column of /proc/net/udp and udp6.

`/proc/net/snmp`'s `RcvbufErrors` (what tests/bench/sip_cps.py prints) counts drops machine
wide; it cannot tell sipd's socket from SIPp's. Each socket's row in /proc/net/udp{,6} has its
own `drops` (datagrams the kernel threw away because that socket's receive buffer was full)
and `rx_queue` (bytes waiting in it now), and its inode names the process that holds it.

    .venv/bin/python -m tests.bench.udp_drops 5060 5070          # those local ports
    .venv/bin/python -m tests.bench.udp_drops --all               # every socket with a drop

In a benchmark, read `drops_by_port` while the sockets are open (SIPp's go away with SIPp):
once before the load and again in the polling loop, keeping the last reading per port.
A row's counter belongs to one socket: a port reopened by a new process starts from 0.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

PROC_FILES = (Path("/proc/net/udp"), Path("/proc/net/udp6"))


@dataclass(frozen=True, slots=True)
class UdpSocket:
    local: tuple[str, int]
    remote: tuple[str, int]
    rx_queue: int  # bytes waiting to be read (what the kernel charges, not payload)
    inode: int
    drops: int


def _address(text: str) -> tuple[str, int]:
    """`0100007F:13C4` (the kernel prints each 32-bit word of the address in host byte
    order) -> ("127.0.0.1", 5060); 32 hex digits are IPv6."""
    host_hex, port_hex = text.split(":")
    words = [int(host_hex[i : i + 8], 16) for i in range(0, len(host_hex), 8)]
    packed = b"".join(struct.pack("=I", w) for w in words)
    family = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, packed), int(port_hex, 16)


def parse(text: str) -> list[UdpSocket]:
    """The rows of one /proc/net/udp or udp6 text (the header line is skipped)."""
    rows = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 13:
            continue
        rows.append(
            UdpSocket(
                local=_address(fields[1]),
                remote=_address(fields[2]),
                rx_queue=int(fields[4].split(":")[1], 16),
                inode=int(fields[9]),
                drops=int(fields[12]),
            )
        )
    return rows


def sockets(files: tuple[Path, ...] = PROC_FILES) -> list[UdpSocket]:
    """Every UDP socket of this network namespace, IPv4 and IPv6."""
    found: list[UdpSocket] = []
    for path in files:
        try:
            found += parse(path.read_text())
        except OSError:
            continue  # no IPv6 in this kernel or namespace
    return found


def drops_by_port(ports: list[int], rows: list[UdpSocket] | None = None) -> dict[int, int]:
    """Datagrams dropped so far by the sockets bound to each local port (0 when none is)."""
    rows = sockets() if rows is None else rows
    return {port: sum(r.drops for r in rows if r.local[1] == port) for port in ports}


def owners(inodes: set[int]) -> dict[int, str]:
    """inode -> "pid command" of the processes holding those sockets (as far as we may see)."""
    found: dict[int, str] = {}
    wanted = {f"socket:[{i}]": i for i in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                inode = wanted.get(os.readlink(fd))
                if inode is not None:
                    comm = (proc / "comm").read_text().strip()
                    found[inode] = f"{proc.name} {comm}"
        except OSError:
            continue  # gone, or not ours to look at
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("ports", nargs="*", type=int)
    parser.add_argument("--all", action="store_true", help="every socket with a drop")
    args = parser.parse_args()
    rows = [r for r in sockets() if (args.all and r.drops) or r.local[1] in args.ports]
    names = owners({r.inode for r in rows})
    print(f"{'local':<28} {'drops':>8} {'rx_queue':>9}  process")
    for r in sorted(rows, key=lambda r: r.local[1]):
        local = f"{r.local[0]}:{r.local[1]}"
        print(f"{local:<28} {r.drops:>8} {r.rx_queue:>9}  {names.get(r.inode, '?')}")


if __name__ == "__main__":
    main()
