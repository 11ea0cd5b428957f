"""Counter totals that only grow: retired counts (ended calls, earlier runs) plus live ones.

`Totals` is what the journal saves. `XdpTally` keeps, per live session, the XDP counters last
read from the kernel and their running sum, so a scrape adds numbers instead of reading every
port's per-CPU slot; a session's counts move to `Totals` when it ends. A counter that went
backwards (a slot zeroed when a session left the XDP path) counts from zero again: the sums
never decrease.

Owns: the arithmetic. Must not: read BPF maps or the clock (numbers and `now` come in).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sipedge.media.session import DROP_REASONS


@dataclass
class Totals:
    xdp_packets: int = 0
    xdp_bytes: int = 0
    xdp_dropped: int = 0  # foreign-source drops in the kernel
    expired: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "xdp_packets": self.xdp_packets,
            "xdp_bytes": self.xdp_bytes,
            "xdp_dropped": self.xdp_dropped,
            "expired": self.expired,
            "dropped": dict(self.dropped),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Totals:
        out = cls()
        for name in ("xdp_packets", "xdp_bytes", "xdp_dropped", "expired"):
            value = data.get(name, 0)
            if isinstance(value, int) and value >= 0:
                setattr(out, name, value)
        dropped = data.get("dropped")
        if isinstance(dropped, dict):
            for reason in DROP_REASONS:
                value = dropped.get(reason, 0)
                if isinstance(value, int) and value >= 0:
                    out.dropped[reason] = value
        return out


@dataclass
class Snapshot:
    raw: tuple[int, int, int] = (0, 0, 0)  # packets, bytes, dropped as last read
    total: tuple[int, int, int] = (0, 0, 0)  # what this session has counted (never less)
    last_seen: float = 0.0
    read_at: float = float("-inf")


class XdpTally:
    def __init__(self) -> None:
        self.sessions: dict[str, Snapshot] = {}
        self.live = [0, 0, 0]  # packets, bytes, dropped summed over the live sessions

    def get(self, call_id: str) -> Snapshot | None:
        return self.sessions.get(call_id)

    def update(
        self, call_id: str, raw: tuple[int, int, int], last_seen: float, now: float
    ) -> Snapshot:
        snap = self.sessions.setdefault(call_id, Snapshot())
        total = list(snap.total)
        for i, (new, old) in enumerate(zip(raw, snap.raw, strict=True)):
            delta = new - old if new >= old else new
            total[i] += delta
            self.live[i] += delta
        snap.raw = raw
        snap.total = (total[0], total[1], total[2])
        snap.last_seen = max(snap.last_seen, last_seen)
        snap.read_at = now
        return snap

    def retire(self, call_id: str, totals: Totals) -> None:
        snap = self.sessions.pop(call_id, None)
        if snap is None:
            return
        packets, bytes_, dropped = snap.total
        self.live[0] -= packets
        self.live[1] -= bytes_
        self.live[2] -= dropped
        totals.xdp_packets += packets
        totals.xdp_bytes += bytes_
        totals.xdp_dropped += dropped
