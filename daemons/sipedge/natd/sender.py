"""One keep-alive cycle on the event loop: the planned batches, sent at their offsets.

Owns: `run_cycle` and `NatdStats`, the counters of natd that the cycles (and the daemon's link
handling) update.
Must not: open sockets, or know where the devices or the socket come from: the devices come
in as a list, sending through the `send` callable, the time through `clock`.
Driven by: daemon.py (and tests/bench/keepalive_bench.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sipedge.natd.keepalive import KeepAliveSettings, plan_cycle
from sipedge.typedefs import Addr

Send = Callable[[bytes, Addr], None]


@dataclass
class NatdStats:
    devices: int = 0
    sent: int = 0
    send_errors: int = 0
    cycles: int = 0
    incomplete_cycles: int = 0
    missed_last_cycle: int = 0
    missed_total: int = 0
    cycle_duration: float = 0.0  # first batch to last batch of the last cycle
    batch_lag_max: float = 0.0  # worst lateness of a batch against its planned time
    link_up: bool = False
    link_connects: int = 0
    last_cycle_start: float = 0.0


async def run_cycle(
    devices: Sequence[Addr],
    s: KeepAliveSettings,
    send: Send,
    stats: NatdStats,
    clock: Callable[[], float] = time.monotonic,
    on_sent: Callable[[int, float], None] | None = None,
) -> None:
    """One cycle: the batches at their offsets; stops (missing the rest) at the period's end.
    `on_sent(index, time)` is for the benchmark."""
    t0 = clock()
    plan = plan_cycle(len(devices), s)
    missed = plan.missed
    first = last = None
    for i, batch in enumerate(plan.batches):
        due = t0 + batch.offset
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        now = clock()
        if now - t0 >= s.period:
            missed += sum(b.end - b.start for b in plan.batches[i:])
            break
        stats.batch_lag_max = max(stats.batch_lag_max, now - due)
        first = now if first is None else first
        for index in range(batch.start, batch.end):
            try:
                send(s.message, devices[index])
                stats.sent += 1
            except OSError:
                stats.send_errors += 1
            if on_sent is not None:
                on_sent(index, clock())
        last = clock()
    stats.cycles += 1
    stats.missed_last_cycle = missed
    stats.missed_total += missed
    if missed:
        stats.incomplete_cycles += 1
    stats.cycle_duration = (last - first) if first is not None and last is not None else 0.0
