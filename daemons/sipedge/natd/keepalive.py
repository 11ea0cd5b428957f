"""The NAT keep-alive schedule: which devices each batch of a cycle reaches, and when.

Every ``SS_SIP_NAT_KEEP_ALIVE_PERIOD`` seconds a cycle starts; its devices are sent the
message in batches of ``SS_SIP_NAT_KEEP_ALIVE_SEND_ONE_TIME``, one batch every
``SS_SIP_NAT_KEEP_ALIVE_SEND_INTERVAL`` ms. The batches that do not fit in the period are not
planned: those devices are missed this cycle.

Owns: `KeepAliveSettings` (the four parameters), `plan_cycle` and its `CyclePlan`.
Must not: send, sleep, read the clock or import config/ (the parameters come in as any object
with the four `sip_nat_keep_alive_*` attributes). Driven by: sender.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol


class _Parameters(Protocol):
    @property
    def sip_nat_keep_alive_message(self) -> str: ...

    @property
    def sip_nat_keep_alive_period(self) -> int: ...

    @property
    def sip_nat_keep_alive_send_interval(self) -> int: ...

    @property
    def sip_nat_keep_alive_send_one_time(self) -> int: ...


@dataclass(frozen=True)
class KeepAliveSettings:
    message: bytes
    period: float  # seconds
    interval: float  # seconds between batches
    one_time: int  # devices per batch

    @property
    def enabled(self) -> bool:
        return bool(self.message)

    @property
    def slots(self) -> int:
        """Batches that fit in one cycle (offsets 0, interval, ... < period)."""
        return max(1, math.ceil(self.period / self.interval - 1e-9))

    @property
    def capacity(self) -> int:
        return self.slots * self.one_time

    @classmethod
    def from_parameters(cls, p: _Parameters) -> KeepAliveSettings:
        return cls(
            message=p.sip_nat_keep_alive_message.encode(),
            period=float(p.sip_nat_keep_alive_period),
            interval=p.sip_nat_keep_alive_send_interval / 1000.0,
            one_time=p.sip_nat_keep_alive_send_one_time,
        )


@dataclass(frozen=True)
class Batch:
    offset: float  # seconds after the cycle start
    start: int  # device index range [start, end)
    end: int


@dataclass(frozen=True)
class CyclePlan:
    batches: tuple[Batch, ...]
    missed: int  # devices this cycle cannot reach (capacity exceeded)


def plan_cycle(devices: int, s: KeepAliveSettings) -> CyclePlan:
    batches: list[Batch] = []
    start = 0
    k = 0
    while start < devices and k < s.slots:
        end = min(devices, start + s.one_time)
        batches.append(Batch(round(k * s.interval, 6), start, end))
        start = end
        k += 1
    return CyclePlan(tuple(batches), devices - start)
