"""NAT keep-alive schedule benchmark: one or more cycles of natd's real sender for N devices.

The devices are N (address, port) entries that all point at a sink socket on 127.0.0.1 (the
kernel work per datagram is the same whatever the address). With the default parameters
(period 30 s, 3000 per batch, a batch every 500 ms) it reports: whether every device was
served within the cycle, the cycle duration (first to last batch), how long each batch took
to send, how late batches started against their planned time, and the spread of the interval
between two messages to the same device across cycles.

    .venv/bin/python -m tests.bench.keepalive_bench --devices 100000 --cycles 2
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import time

from sipedge.config import Parameters
from sipedge.natd import KeepAliveSettings, NatdStats, run_cycle


async def bench(devices: int, cycles: int, s: KeepAliveSettings) -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setblocking(False)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    addr = sink.getsockname()
    targets = [addr] * devices
    last = [0.0] * devices
    intervals: list[float] = []
    batch_times: list[float] = []
    stats = NatdStats()
    current: dict[str, float] = {}

    def on_sent(index: int, t: float) -> None:
        if last[index]:
            intervals.append(t - last[index])
        last[index] = t
        if index % s.one_time == 0:
            current["start"] = t
        if index % s.one_time == s.one_time - 1 or index == devices - 1:
            batch_times.append(t - current["start"])

    def send(data: bytes, dest: tuple[str, int]) -> None:
        try:
            sender.sendto(data, dest)
        except BlockingIOError:
            stats.send_errors += 1

    def drain() -> None:
        try:
            while True:
                sink.recv(64)
        except BlockingIOError:
            pass

    sink.setblocking(False)
    asyncio.get_running_loop().add_reader(sink.fileno(), drain)
    print(f"{devices} devices, period {s.period:g} s, batch {s.one_time}, every "
          f"{s.interval * 1000:g} ms: capacity {s.capacity} per cycle")  # fmt: skip
    for c in range(cycles):
        t0 = time.monotonic()
        await run_cycle(targets, s, send, stats, on_sent=on_sent)
        print(f"cycle {c + 1}: sent {stats.sent}, missed {stats.missed_last_cycle}, "
              f"cycle duration {stats.cycle_duration:.3f} s, worst batch lateness "
              f"{stats.batch_lag_max * 1000:.2f} ms, send errors {stats.send_errors}")  # fmt: skip
        if c + 1 < cycles:
            await asyncio.sleep(max(0.0, t0 + s.period - time.monotonic()))
    bt = sorted(batch_times)
    print(f"batch send time: median {statistics.median(bt) * 1000:.1f} ms, "
          f"max {bt[-1] * 1000:.1f} ms ({s.one_time} sendto each)")  # fmt: skip
    if intervals:
        iv = sorted(intervals)
        print(f"per-device interval between cycles: min {iv[0]:.4f} s, median "
              f"{statistics.median(iv):.4f} s, max {iv[-1]:.4f} s")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--cycles", type=int, default=2)
    args = ap.parse_args()
    s = KeepAliveSettings.from_parameters(Parameters())
    asyncio.run(bench(args.devices, args.cycles, s))


if __name__ == "__main__":
    main()
