"""The NAT keep-alive schedule (pure) and one cycle on a fake clock."""

from __future__ import annotations

import asyncio

from sipedge.config import Parameters
from sipedge.natd import KeepAliveSettings, NatdStats, plan_cycle, run_cycle


def settings(period: float = 30, interval_ms: int = 500, one_time: int = 3000) -> KeepAliveSettings:
    return KeepAliveSettings(b"HELLO", period, interval_ms / 1000, one_time)


def test_defaults_reach_180000_devices_per_cycle() -> None:
    s = KeepAliveSettings.from_parameters(Parameters())
    assert (s.message, s.period, s.interval, s.one_time) == (b"HELLO", 30.0, 0.5, 3000)
    assert s.slots == 60 and s.capacity == 180_000


def test_plan_100000_devices_with_defaults() -> None:
    plan = plan_cycle(100_000, settings())
    assert plan.missed == 0 and len(plan.batches) == 34
    assert plan.batches[0].offset == 0 and plan.batches[-1].offset == 16.5
    assert plan.batches[-1].end == 100_000
    covered = [i for b in plan.batches for i in range(b.start, b.end)]
    assert covered == list(range(100_000))


def test_plan_too_many_devices_misses_the_rest() -> None:
    plan = plan_cycle(10, settings(period=10, interval_ms=5000, one_time=3))
    assert [(b.offset, b.start, b.end) for b in plan.batches] == [(0, 0, 3), (5, 3, 6)]
    assert plan.missed == 4


def test_empty_message_is_off() -> None:
    assert not KeepAliveSettings(b"", 30, 0.5, 10).enabled


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_run_cycle_sends_each_batch_at_its_offset(monkeypatch: object) -> None:
    clock = FakeClock()

    async def fake_sleep(delay: float) -> None:
        clock.now += delay

    sent: list[tuple[float, tuple[str, int]]] = []
    devices = [("10.0.0.1", 5000 + i) for i in range(7)]
    stats = NatdStats()
    original = asyncio.sleep
    asyncio.sleep = fake_sleep  # type: ignore[assignment]
    try:
        asyncio.run(
            run_cycle(
                devices,
                settings(period=10, interval_ms=1000, one_time=3),
                lambda data, addr: sent.append((clock.now, addr)),
                stats,
                clock,
            )
        )
    finally:
        asyncio.sleep = original
    assert [t for t, _ in sent] == [0, 0, 0, 1, 1, 1, 2]
    assert [a for _, a in sent] == devices
    assert stats.sent == 7 and stats.missed_last_cycle == 0 and stats.cycle_duration == 2
