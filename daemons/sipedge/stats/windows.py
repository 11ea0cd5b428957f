"""Sliding windows of fixed time buckets: counts and sums over the last 5 min, 1 h and 24 h.

Owns: `Window` (one ring of buckets: a fixed number of slots of a fixed width, summed by
`totals` or listed slot by slot by `series`), `Bucket` (what one slot counts) and `Totals` (a
window summed, with its ASR, ACD and PDD), and `WINDOWS`, the three windows every gateway
keeps.
Must not: read the clock (every call takes `now`, in seconds of one monotonic clock), allocate
per event (a slot is reset and reused when time moves past it), or know what a gateway is.

Memory is bounded by construction: a window holds at most `slots` buckets, created on first use,
and a bucket's reasons at most `MAX_REASONS` keys (the rest count as `OTHER`). A window of
`slots` buckets of `width` seconds covers between `(slots - 1) * width` and `slots * width`
seconds: the current bucket is partly filled, the oldest one drops out as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_REASONS = 32  # distinct switch reasons per bucket; calls/ sends a fixed set, this is a fuse
OTHER = "other"


@dataclass(frozen=True)
class WindowSpec:
    """A window's name (the API key and the metric label), bucket width and bucket count."""

    name: str
    width: float
    slots: int

    @property
    def seconds(self) -> float:
        return self.width * self.slots


WINDOWS: tuple[WindowSpec, ...] = (
    WindowSpec("5m", 10.0, 30),
    WindowSpec("1h", 60.0, 60),
    WindowSpec("24h", 600.0, 144),
)


class Bucket:
    """What happened in one slot: settled attempts, answers, PDD and duration samples and the
    reasons of the attempts that did not answer."""

    __slots__ = (
        "answered",
        "attempts",
        "duration_n",
        "duration_sum",
        "epoch",
        "pdd_n",
        "pdd_sum",
        "reasons",
    )

    def __init__(self, epoch: int) -> None:
        self.reset(epoch)

    def reset(self, epoch: int) -> None:
        self.epoch = epoch  # the bucket number (time // width) the slot holds now
        self.attempts = 0
        self.answered = 0
        self.pdd_sum = 0.0
        self.pdd_n = 0
        self.duration_sum = 0.0
        self.duration_n = 0
        self.reasons: dict[str, int] = {}


@dataclass
class Totals:
    """A window summed. The ratios are None when there is nothing to divide by (no attempt, no
    answered call ended, no PDD measured): "no data" is not 0 %."""

    attempts: int = 0
    answered: int = 0
    pdd_sum: float = 0.0
    pdd_n: int = 0
    duration_sum: float = 0.0
    duration_n: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def asr(self) -> float | None:
        """Answer-seizure ratio: answered / attempts, 0.0 to 1.0."""
        return self.answered / self.attempts if self.attempts else None

    @property
    def acd(self) -> float | None:
        """Average call duration, seconds, of the answered calls that ended in the window."""
        return self.duration_sum / self.duration_n if self.duration_n else None

    @property
    def pdd(self) -> float | None:
        """Average post-dial delay, seconds: INVITE to the first 18x or 2xx."""
        return self.pdd_sum / self.pdd_n if self.pdd_n else None

    def as_dict(self) -> dict[str, object]:
        return {
            "attempts": self.attempts,
            "answered": self.answered,
            "asr": self.asr,
            "acd_seconds": self.acd,
            "pdd_seconds": self.pdd,
            "switch_reasons": dict(sorted(self.reasons.items())),
        }


class Window:
    """A ring of `spec.slots` buckets of `spec.width` seconds."""

    __slots__ = ("_ring", "spec")

    def __init__(self, spec: WindowSpec) -> None:
        if spec.width <= 0 or spec.slots < 1:
            raise ValueError(f"window {spec.name}: width and slots must be positive")
        self.spec = spec
        self._ring: list[Bucket | None] = [None] * spec.slots

    def bucket(self, now: float) -> Bucket:
        """The bucket `now` falls in, reset first if it still holds an older time's counts."""
        epoch = int(now // self.spec.width)
        slot = epoch % self.spec.slots
        found = self._ring[slot]
        if found is None:
            found = self._ring[slot] = Bucket(epoch)
        elif found.epoch != epoch:
            found.reset(epoch)
        return found

    def totals(self, now: float) -> Totals:
        """The buckets of the last `slots` epochs up to `now`'s, summed (older ones and buckets
        from a clock that went back are left out)."""
        newest = int(now // self.spec.width)
        oldest = newest - self.spec.slots + 1
        out = Totals()
        for b in self._ring:
            if b is None or not oldest <= b.epoch <= newest:
                continue
            out.attempts += b.attempts
            out.answered += b.answered
            out.pdd_sum += b.pdd_sum
            out.pdd_n += b.pdd_n
            out.duration_sum += b.duration_sum
            out.duration_n += b.duration_n
            for reason, n in b.reasons.items():
                out.reasons[reason] = out.reasons.get(reason, 0) + n
        return out

    def series(self, now: float) -> list[tuple[int, int]]:
        """(attempts, answered) of each of the last `slots` epochs up to `now`'s, oldest first;
        a slot nothing happened in is (0, 0)."""
        newest = int(now // self.spec.width)
        out = [(0, 0)] * self.spec.slots
        for b in self._ring:
            if b is not None and newest - self.spec.slots < b.epoch <= newest:
                out[self.spec.slots - 1 - (newest - b.epoch)] = (b.attempts, b.answered)
        return out


def count_reason(bucket: Bucket, reason: str) -> None:
    """One more attempt that moved on for `reason` (a new reason past MAX_REASONS: OTHER)."""
    add_reason(bucket.reasons, reason, 1)


def add_reason(reasons: dict[str, int], reason: str, n: int) -> None:
    """`n` more for `reason` in `reasons`, bounded as a bucket's (past MAX_REASONS: OTHER)."""
    if reason not in reasons and len(reasons) >= MAX_REASONS - 1:
        reason = OTHER
    reasons[reason] = reasons.get(reason, 0) + n
