"""The guard in front of the transaction layer: classifies each datagram's source, applies
`GuardRules`' decision, counts and logs it, and serves the ban list to the API.

Owns: `GuardService` (the clock, the counters, the rate-limited log lines, the periodic sweep
of the tables), `GuardStats`, and `Peers`, the Protocol through which it learns who the
gateways and the registered endpoints are (`sipedge.sipd.SipDaemon` implements it).
Must not: send anything (a dropped datagram gets no answer at all), import registrar/ or
anything of calls/ but its `SourceTable` (trusted networks), or keep anything per datagram
beyond the bounded tables of `rules.py`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from sipedge.calls import SourceTable
from sipedge.guard.rules import (
    BAN_REASONS,
    DROP_REASONS,
    Decision,
    GuardRules,
    GuardSettings,
    Standing,
    source_key,
)
from sipedge.ratelog import RateLimitedLog
from sipedge.sip.message import Request, Response
from sipedge.typedefs import Addr

if TYPE_CHECKING:
    from sipedge.config import SecurityConfig

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 1.0  # seconds between two sweeps of the tables (done on a datagram)


class Peers(Protocol):
    """Who the source of a datagram is, beyond the trusted networks."""

    def is_gateway(self, address: str) -> bool:
        """A mapping gateway, a routing gateway or a carrier we register to."""
        ...

    def is_endpoint(self, address: str) -> bool:
        """The source address of a live registration."""
        ...


@dataclass
class GuardStats:
    drops: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    bans: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BAN_REASONS, 0))
    cleared: int = 0  # bans lifted through the API


def settings_from(security: SecurityConfig, register_open: bool) -> GuardSettings:
    rate = security.rate_limit
    return GuardSettings(
        requests=rate.requests,
        window=rate.window,
        ban=float(rate.ban),
        scanner_user_agents=tuple(ua.lower() for ua in security.scanner_user_agents),
        drop_unknown=security.unknown_sources == "drop",
        register_open=register_open,
        max_tracked_sources=security.max_tracked_sources,
    )


class GuardService:
    def __init__(
        self,
        security: SecurityConfig,
        peers: Peers,
        register_open: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.peers = peers
        self.clock = clock
        self.stats = GuardStats()
        self.rules = GuardRules(settings_from(security, register_open))
        self.log = RateLimitedLog(log, security.log_interval, clock)
        self.trusted = SourceTable([("trusted", security.trusted)])
        self.has_trusted = bool(security.trusted)
        # address -> TRUSTED, GATEWAY or UNKNOWN (neither): both come from the config only, so
        # they are looked up once per address and forgotten on reload (or when the cache is
        # full: a spoofed flood only makes it no faster than no cache)
        self._fixed: dict[str, Standing] = {}
        self._next_sweep = 0.0

    def apply_config(self, security: SecurityConfig, register_open: bool) -> None:
        self.rules.configure(settings_from(security, register_open))
        self.trusted = SourceTable([("trusted", security.trusted)])
        self.has_trusted = bool(security.trusted)
        self.log.interval = security.log_interval
        self.peers_changed()

    def peers_changed(self) -> None:
        """Who is a gateway may have changed (a reload, or a gateway's host name resolved to
        new addresses): classify every source again, and lift the bans of those that are now
        trusted or gateways (they are never banned)."""
        self._fixed.clear()
        for ban in self.rules.bans.active(self.clock()):
            if "/" in ban.address:
                continue  # an IPv6 /64: its gateways and trusted hosts pass it anyway
            if self.standing(ban.address) in (Standing.TRUSTED, Standing.GATEWAY):
                self.rules.bans.remove(ban.address)

    # -- per datagram -----------------------------------------------------------------------
    def standing(self, address: str) -> Standing:
        fixed = self._fixed.get(address)
        if fixed is None:
            if self.has_trusted and self.trusted.lookup(address) is not None:
                fixed = Standing.TRUSTED
            elif self.peers.is_gateway(address):
                fixed = Standing.GATEWAY
            else:
                fixed = Standing.UNKNOWN
            if len(self._fixed) >= self.rules.settings.max_tracked_sources:
                self._fixed.clear()
            self._fixed[address] = fixed
        if fixed is not Standing.UNKNOWN:
            return fixed
        return Standing.ENDPOINT if self.peers.is_endpoint(address) else Standing.UNKNOWN

    def admit(self, msg: Request | Response, source: Addr) -> bool:
        """Whether `msg` from `source` goes on to the transaction layer; False: dropped,
        silently (counted, and logged once per class and interval). Both stages at once."""
        now = self._now()
        address = source[0]
        standing = self.standing(address)
        if isinstance(msg, Request):
            decision = self.rules.check(
                address, standing, now, msg.method, msg.headers.get("User-Agent")
            )
        else:
            decision = self.rules.check(address, standing, now)
        return self._carry_out(decision, address)

    def admit_source(self, source: Addr) -> bool:
        """The first stage alone (trusted, gateway, banned, rate), before the datagram is
        parsed: for a transport that can ask before it parses or answers a broken request."""
        address = source[0]
        decision = self.rules.check_source(address, self.standing(address), self._now())
        return self._carry_out(decision, address)

    def admit_request(self, request: Request, source: Addr) -> bool:
        """The second stage alone (scanner, unknown source), after `admit_source` passed."""
        address = source[0]
        decision = self.rules.check_request(
            address,
            self.standing(address),
            self._now(),
            request.method,
            request.headers.get("User-Agent"),
        )
        return self._carry_out(decision, address)

    def _now(self) -> float:
        now = self.clock()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_INTERVAL
            self.rules.sweep(now)
        return now

    def _carry_out(self, decision: Decision, address: str) -> bool:
        if decision.drop is None:
            return True
        self.stats.drops[decision.drop] += 1
        ban = decision.ban
        if ban is not None:
            self.stats.bans[ban.reason] += 1
            self.log.event(
                "ban " + ban.reason,
                "banned %s for %d s (%s)",
                ban.address,
                round(ban.until - ban.since),
                "over the request rate" if ban.reason == "rate" else "scanner User-Agent",
            )
        elif decision.drop == "unknown":
            self.log.event("drop unknown", "dropped a request from unknown source %s", address)
        return False

    # -- API --------------------------------------------------------------------------------
    def bans(self) -> list[dict[str, object]]:
        now = self.clock()
        return [ban.to_json(now) for ban in self.rules.bans.active(now)]

    def clear(self, address: str | None = None) -> int:
        """Lift the ban of `address` (None: all bans); how many were lifted."""
        if address is None:
            count = self.rules.bans.clear()
        else:
            key = address if "/" in address else source_key(address)  # an address in a /64
            count = 1 if self.rules.bans.remove(key) else 0
            self.rules.rates.forget(key)
        self.stats.cleared += count
        return count

    def bans_active(self) -> int:
        return len(self.rules.bans)

    def tracked_sources(self) -> int:
        return len(self.rules.rates)

    def evictions(self) -> int:
        return self.rules.rates.evicted + self.rules.bans.evicted

    def metrics(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        drops = CounterMetricFamily(
            "sipedge_guard_drops", "Datagrams dropped by the guard, by reason", labels=["reason"]
        )
        for reason, count in self.stats.drops.items():
            drops.add_metric([reason], count)
        yield drops
        bans = CounterMetricFamily(
            "sipedge_guard_bans", "Sources banned, by reason", labels=["reason"]
        )
        for reason, count in self.stats.bans.items():
            bans.add_metric([reason], count)
        yield bans
        yield GaugeMetricFamily(
            "sipedge_guard_bans_active", "Sources banned now", value=self.bans_active()
        )
        yield CounterMetricFamily(
            "sipedge_guard_bans_cleared", "Bans lifted through the API", value=self.stats.cleared
        )
        yield GaugeMetricFamily(
            "sipedge_guard_tracked_sources",
            "Sources in the request-rate table",
            value=self.tracked_sources(),
        )
        yield CounterMetricFamily(
            "sipedge_guard_evictions",
            "Rate or ban entries evicted because the table was full",
            value=self.evictions(),
        )
