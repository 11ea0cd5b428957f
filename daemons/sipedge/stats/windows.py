"""Sliding windows of fixed time buckets: counts and sums over the last 5 min, 1 h and 24 h.

Owns: `Window` (one ring of buckets: a fixed number of slots of a fixed width, each counting
settled attempts, answers, PDD and duration samples and the reasons of the attempts that did
not answer; summed by `totals` or listed slot by slot by `series`), `Totals` (a window summed,
with its ASR, ACD and PDD), and `WINDOWS`, the three windows every gateway keeps.
Must not: read the clock (every call takes `now`, in seconds of one monotonic clock), allocate
per event (a slot is reset and reused when time moves past it), or know what a gateway is.

Memory is bounded by construction: a window holds `slots` buckets, allocated at its first event,
and a bucket's reasons at most `MAX_REASONS` keys (the rest count as `OTHER`). A window of
`slots` buckets of `width` seconds covers between `(slots - 1) * width` and `slots * width`
seconds: the current bucket is partly filled, the oldest one drops out as a whole.
"""

from __future__ import annotations

from array import array
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


# A slot's counts and sums, at these offsets in `Window._counts` and `Window._sums`.
ATTEMPTS, ANSWERED, PDD_N, DURATION_N = range(4)
PDD_SUM, DURATION_SUM = range(2)
_COUNTS = 4
_SUMS = 2
_NEVER = -(2**63)  # the epoch of a slot not used yet


class Window:
    """A ring of `spec.slots` buckets of `spec.width` seconds.

    A bucket is a slot in flat arrays (`array` of machine integers and doubles), allocated at
    the window's first event: a count kept as a Python int was a new int object each time it
    passed 256, and after a peak of calls the latest one of each bucket (attempts, answered,
    the sums...) sat alone on a page of the peak's memory for up to a day (the 24 h window),
    some 200 pages after 100,000 calls (docs/performance.md)."""

    __slots__ = ("_counts", "_epochs", "_reasons", "_sums", "spec")

    def __init__(self, spec: WindowSpec) -> None:
        if spec.width <= 0 or spec.slots < 1:
            raise ValueError(f"window {spec.name}: width and slots must be positive")
        self.spec = spec
        self._epochs: array[int] | None = None  # the bucket number (time // width) of each slot
        self._counts: array[int] = array("q")
        self._sums: array[float] = array("d")
        self._reasons: list[dict[str, int] | None] = []

    def _slot(self, now: float) -> int:
        """The slot `now` falls in, reset first if it still holds an older time's counts."""
        epoch = int(now // self.spec.width)
        slots = self.spec.slots
        slot = epoch % slots
        epochs = self._epochs
        if epochs is None:
            epochs = self._epochs = array("q", [_NEVER]) * slots
            self._counts = array("q", [0]) * (slots * _COUNTS)
            self._sums = array("d", [0.0]) * (slots * _SUMS)
            self._reasons = [None] * slots
        if epochs[slot] != epoch:
            epochs[slot] = epoch
            c = slot * _COUNTS
            self._counts[c : c + _COUNTS] = _ZERO_COUNTS
            c = slot * _SUMS
            self._sums[c : c + _SUMS] = _ZERO_SUMS
            self._reasons[slot] = None
        return slot

    def settle(self, now: float, reason: str | None, pdd: float | None) -> None:
        """One attempt settled at `now`: answered when `reason` is None, else counted under it;
        `pdd` (seconds) is summed when known."""
        slot = self._slot(now)
        c = slot * _COUNTS
        counts = self._counts
        counts[c + ATTEMPTS] += 1
        if reason is None:
            counts[c + ANSWERED] += 1
        else:
            reasons = self._reasons[slot]
            if reasons is None:
                reasons = self._reasons[slot] = {}
            add_reason(reasons, reason, 1)
        if pdd is not None and pdd >= 0:
            counts[c + PDD_N] += 1
            self._sums[slot * _SUMS + PDD_SUM] += pdd

    def duration(self, now: float, seconds: float) -> None:
        """An answered call of `seconds` ended at `now`."""
        slot = self._slot(now)
        self._counts[slot * _COUNTS + DURATION_N] += 1
        self._sums[slot * _SUMS + DURATION_SUM] += max(0.0, seconds)

    def _live(self, now: float) -> list[tuple[int, int]]:
        """(slot, epoch) of each slot holding one of the last `slots` epochs up to `now`'s
        (older ones and those of a clock that went back left out)."""
        epochs = self._epochs
        if epochs is None:
            return []
        newest = int(now // self.spec.width)
        oldest = newest - self.spec.slots + 1
        return [(slot, e) for slot, e in enumerate(epochs) if oldest <= e <= newest]

    def totals(self, now: float) -> Totals:
        """The buckets of the last `slots` epochs up to `now`'s, summed."""
        out = Totals()
        counts, sums = self._counts, self._sums
        for slot, _ in self._live(now):
            c, f = slot * _COUNTS, slot * _SUMS
            out.attempts += counts[c + ATTEMPTS]
            out.answered += counts[c + ANSWERED]
            out.pdd_n += counts[c + PDD_N]
            out.duration_n += counts[c + DURATION_N]
            out.pdd_sum += sums[f + PDD_SUM]
            out.duration_sum += sums[f + DURATION_SUM]
            for reason, n in (self._reasons[slot] or {}).items():
                out.reasons[reason] = out.reasons.get(reason, 0) + n
        return out

    def series(self, now: float) -> list[tuple[int, int]]:
        """(attempts, answered) of each of the last `slots` epochs up to `now`'s, oldest first;
        a slot nothing happened in is (0, 0)."""
        newest = int(now // self.spec.width)
        slots = self.spec.slots
        out = [(0, 0)] * slots
        for slot, epoch in self._live(now):
            c = slot * _COUNTS
            out[slots - 1 - (newest - epoch)] = (
                self._counts[c + ATTEMPTS],
                self._counts[c + ANSWERED],
            )
        return out

    def reasons(self, now: float) -> dict[str, int]:
        """The reasons counted in `now`'s bucket (a copy; empty if nothing was counted in it)."""
        epoch = int(now // self.spec.width)
        slot = epoch % self.spec.slots
        if self._epochs is None or self._epochs[slot] != epoch:
            return {}
        return dict(self._reasons[slot] or {})


_ZERO_COUNTS = array("q", [0]) * _COUNTS
_ZERO_SUMS = array("d", [0.0]) * _SUMS


def add_reason(reasons: dict[str, int], reason: str, n: int) -> None:
    """`n` more for `reason` in `reasons`, bounded as a bucket's (past MAX_REASONS: OTHER)."""
    if reason not in reasons and len(reasons) >= MAX_REASONS - 1:
        reason = OTHER
    reasons[reason] = reasons.get(reason, 0) + n
