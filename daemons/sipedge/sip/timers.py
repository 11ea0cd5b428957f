"""The timers of the SIP stack: what they are armed on, and how retransmissions are spaced.

Owns: the `Scheduler` / `TimerHandle` Protocols (an asyncio loop satisfies them, a fake clock
does in tests), `RetransmitSchedule` (the gaps of SS_SIP_RESEND_INTERVAL and the transaction
timeout they imply, pure) and RFC 3261's `T4` and the floor of its "64*T1" timers.
Must not: arm a timer, read the clock, or import from sipedge; `transaction` drives these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

# RFC 3261 Timer T4 (how long a completed non-INVITE client waits for retransmitted finals).
T4 = 5.0
# Lower bound of every "64*T1" timer (B, D, F, H, J): 32 s as RFC 3261 gives for UDP.
MIN_TRANSACTION_TIMEOUT = 32.0


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle: ...


class RetransmitSchedule:
    """The gaps of SS_SIP_RESEND_INTERVAL. Entry i is the wait before retransmission i+1."""

    def __init__(self, gaps: Sequence[float]) -> None:
        if not gaps:
            raise ValueError("the resend interval list is empty")
        self.gaps = tuple(float(g) for g in gaps)
        # Transaction timeout (Timer B/F/H): long enough for the whole list to play out.
        self.timeout = max(MIN_TRANSACTION_TIMEOUT, sum(self.gaps))

    def gap(self, sent: int) -> float | None:
        """Wait after the `sent`-th transmission (1-based) before the next, or None: stop."""
        return self.gaps[sent - 1] if sent <= len(self.gaps) else None
