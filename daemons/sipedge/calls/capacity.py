"""Call admission limits: calls in progress overall and per mapping gateway, new calls per
second per mapping gateway (VOS3000's per-gateway line limits), and load shedding while sipd is
behind on its SIP sockets.

Owns: `CallCaps` (the counts and the decision: which limit, if any, a new call is over),
`TokenBucket`, `Backlog` and `OVER_CAPACITY`, the closed set of limit names (metric labels).
Must not: read the clock (time comes in as `now`) or sockets (the daemon samples the receive
queues and hands `Backlog` the figure), answer requests, or import sip/ or config/:
`calls/service.py` asks before admitting a call, answers 503 with Retry-After, and reports
each call's start and end.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Which limit refused a call: "overload" (sipd behind on its SIP sockets: `Backlog`), "calls"
# (sip_max_calls), "gateway_calls" (a mapping gateway's max_calls), "gateway_cps" (its max_cps).
OVER_CAPACITY = ("overload", "calls", "gateway_calls", "gateway_cps")


class Backlog:
    """Whether sipd is behind: the bytes of datagrams waiting in its SIP sockets' receive
    queues (the kernel's accounting, about 1.3 KB for a 600-byte datagram), sampled by the
    daemon, against `limit` (0: never behind).

    Why: a B2BUA that falls behind gets every INVITE it has not answered within 500 ms again
    (the caller's timer A), so the work grows as the backlog grows, and every call fails late
    (congestion collapse, docs/performance.md). Refusing new calls at once while the queue is
    long costs a parse and a 503 each, and lets the calls already admitted finish.
    Behind from a sample above `limit` until one at or below half of it, so that admission
    does not flap at the line."""

    __slots__ = ("behind", "episodes", "limit", "queued")

    def __init__(self, limit: int = 0) -> None:
        self.limit = limit
        self.queued = 0  # the last sample, bytes
        self.behind = False
        self.episodes = 0  # times it fell behind

    def observe(self, queued: int) -> bool:
        """A new sample; True when it changed `behind`."""
        self.queued = queued
        if self.behind:
            behind = self.limit > 0 and queued > self.limit // 2
        else:
            behind = self.limit > 0 and queued > self.limit
        if behind == self.behind:
            return False
        self.behind = behind
        self.episodes += behind
        return True


class TokenBucket:
    """`rate` tokens a second, holding at most `burst` (at least one)."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, now: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self.tokens = self.burst
        self.stamp = now

    def take(self, now: float) -> bool:
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(frozen=True)
class GatewayLimits:
    max_calls: int | None = None  # calls in progress (None: no limit)
    max_cps: float | None = None  # new calls per second (None: no limit)


class CallCaps:
    def __init__(
        self,
        max_calls: int,
        gateways: Mapping[str, GatewayLimits],
        now: float,
    ) -> None:
        self.max_calls = max_calls
        self.backlog = Backlog()  # its limit comes from `configure`, its samples from the daemon
        self.limits: dict[str, GatewayLimits] = {}
        self.buckets: dict[str, TokenBucket] = {}
        self.active: dict[str, int] = {}  # calls in progress per mapping gateway (configured)
        self.rejected: dict[str, int] = dict.fromkeys(OVER_CAPACITY, 0)
        self.configure(max_calls, gateways, now)

    def configure(
        self,
        max_calls: int,
        gateways: Mapping[str, GatewayLimits],
        now: float,
        backlog_limit: int = 0,
    ) -> None:
        """New limits (reload): counts of calls in progress stay; a bucket whose rate changed
        starts full; `backlog_limit` is `Backlog.limit` (bytes, 0: no shedding)."""
        self.max_calls = max_calls
        self.backlog.limit = backlog_limit
        buckets: dict[str, TokenBucket] = {}
        for name, limits in gateways.items():
            if limits.max_cps is None:
                continue
            old = self.buckets.get(name)
            keep = old is not None and old.rate == limits.max_cps
            buckets[name] = old if old is not None and keep else TokenBucket(limits.max_cps, now)
        self.buckets = buckets
        self.limits = dict(gateways)

    def over_total(self, in_progress: int) -> str | None:
        """Checked first, before any work on a new INVITE."""
        if self.backlog.behind:
            self.rejected["overload"] += 1
            return "overload"
        if in_progress >= self.max_calls:
            self.rejected["calls"] += 1
            return "calls"
        return None

    def over_gateway(self, gateway: str, now: float) -> str | None:
        """The limit a new call from mapping gateway `gateway` is over, or None (then it has
        taken one of the gateway's tokens; report `started` once it is admitted)."""
        limits = self.limits.get(gateway)
        if limits is None:
            return None
        if limits.max_calls is not None and self.active.get(gateway, 0) >= limits.max_calls:
            self.rejected["gateway_calls"] += 1
            return "gateway_calls"
        bucket = self.buckets.get(gateway)
        if bucket is not None and not bucket.take(now):
            self.rejected["gateway_cps"] += 1
            return "gateway_cps"
        return None

    def started(self, gateway: str) -> None:
        if gateway in self.limits:
            self.active[gateway] = self.active.get(gateway, 0) + 1

    def ended(self, gateway: str) -> None:
        count = self.active.get(gateway)
        if count is None:
            return
        if count <= 1:
            del self.active[gateway]
        else:
            self.active[gateway] = count - 1
