"""The guard's decision per datagram: pass it on, or drop it (and perhaps ban its source).

Owns: `GuardRules` (the checks, in order, and the two tables they use), `GuardSettings`,
`Standing` (what the source is to us) and the closed sets of drop and ban reasons.
Must not: read the clock, log, send, parse SIP, or import config/, calls/ or sip/: the glue
(`service.py`) classifies the source, reads the request's method and User-Agent, and carries
out the decision (counting, logging).
Driven by: `guard/service.py`, once per datagram, before the transaction layer.

The checks, in this order (docs/security.md):

1. a trusted source passes (never counted, never banned);
2. a gateway (mapping gateway, routing gateway, carrier we register to) passes: gateways are
   not rate-limited here, their calls are bounded by `max_calls`/`max_cps` instead;
3. a banned source is dropped (`banned`);
4. every datagram of any other source counts toward its rate; over `requests` per `window`
   the source is banned for `ban` seconds and the datagram dropped (`rate`);
5. a request whose User-Agent holds a scanner's name bans its source at once (`scanner`);
6. with `unknown_sources: drop`, a request from an unknown source is dropped (`unknown`),
   except a REGISTER while endpoint accounts exist (how an endpoint becomes known).

Rates and bans count by `source_key`: an IPv4 address itself, an IPv6 address by its /64 (a
host is normally given a whole /64 and may pick any address in it, RFC 4941/8981: counting per
address would let one host rotate past every limit and fill the tables; docs/ipv6.md). Who is
trusted or a gateway is still decided by the whole address.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from dataclasses import dataclass
from typing import NamedTuple

from sipedge.guard.tables import Ban, BanTable, RateTable

# Closed label sets for the metrics: nothing taken from the input becomes a label.
DROP_REASONS = ("banned", "rate", "scanner", "unknown")
BAN_REASONS = ("rate", "scanner")


class Standing(enum.Enum):
    TRUSTED = "trusted"  # in security.trusted
    GATEWAY = "gateway"  # a mapping or routing gateway, or a carrier we register to
    ENDPOINT = "endpoint"  # the source of a live registration
    UNKNOWN = "unknown"  # none of these


@dataclass(frozen=True)
class GuardSettings:
    requests: int = 40  # per window, per source
    window: float = 2.0
    ban: float = 300.0  # 0: drop what is over the rate, ban nobody
    scanner_user_agents: tuple[str, ...] = ()  # lower-case substrings
    drop_unknown: bool = False
    register_open: bool = False  # endpoint accounts exist: an unknown source may REGISTER
    max_tracked_sources: int = 65536


def source_key(address: str) -> str:
    """What rates and bans count by: an IPv4 address as it is, an IPv6 address as its /64
    (`2001:db8:1:2::/64`), an IPv4-mapped IPv6 address as the IPv4 address it maps."""
    return address if ":" not in address else _v6_key(address)


@functools.lru_cache(maxsize=4096)  # a flood from one /64 costs one parse, not one per datagram
def _v6_key(address: str) -> str:
    try:
        ip = ipaddress.IPv6Address(address)
    except ValueError:
        return address  # not ours to judge here: counted as written
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))


class Decision(NamedTuple):
    drop: str | None  # a member of DROP_REASONS, or None: pass it on
    ban: Ban | None = None  # a ban this datagram started


PASS = Decision(None)


class GuardRules:
    def __init__(self, settings: GuardSettings) -> None:
        self.settings = settings
        self.rates = RateTable(settings.window, settings.max_tracked_sources)
        self.bans = BanTable(settings.max_tracked_sources)

    def configure(self, settings: GuardSettings) -> None:
        """New settings (reload); the bans stay, the counts restart if the window changed."""
        if settings.window != self.settings.window:
            self.rates = RateTable(settings.window, settings.max_tracked_sources)
        self.rates.capacity = settings.max_tracked_sources
        self.bans.capacity = settings.max_tracked_sources
        self.settings = settings

    def check(
        self,
        address: str,
        standing: Standing,
        now: float,
        method: str | None = None,
        user_agent: str | None = None,
    ) -> Decision:
        """One datagram from `address`: a request (`method`, its User-Agent) or a response
        (`method` None). `check_source` then `check_request`."""
        decision = self.check_source(address, standing, now)
        if decision.drop is not None or method is None:
            return decision
        return self.check_request(address, standing, now, method, user_agent)

    def check_source(self, address: str, standing: Standing, now: float) -> Decision:
        """Checks 1-4, which need only the source: fit to run before the datagram is parsed."""
        if standing is Standing.TRUSTED or standing is Standing.GATEWAY:
            return PASS
        key = source_key(address)
        ban = self.bans.get(key, now)
        if ban is not None:
            ban.dropped += 1
            return Decision("banned")
        if self.rates.hit(key, now) > self.settings.requests:
            return Decision("rate", self._ban(key, "rate", now))
        return PASS

    def check_request(
        self, address: str, standing: Standing, now: float, method: str, user_agent: str | None
    ) -> Decision:
        """Checks 5-6, on a parsed request that passed `check_source`."""
        if standing is Standing.TRUSTED or standing is Standing.GATEWAY:
            return PASS
        s = self.settings
        if user_agent and s.scanner_user_agents:
            agent = user_agent.lower()
            for name in s.scanner_user_agents:
                if name in agent:
                    key = source_key(address)
                    return Decision("scanner", self._ban(key, "scanner", now, always=True))
        if (
            s.drop_unknown
            and standing is Standing.UNKNOWN
            and not (method == "REGISTER" and s.register_open)
        ):
            return Decision("unknown")
        return PASS

    def _ban(self, address: str, reason: str, now: float, always: bool = False) -> Ban | None:
        duration = self.settings.ban
        if duration <= 0 and not always:
            return None  # no bans configured: only what is over the rate is dropped
        # a scanner is banned even with ban: 0 (for one window: it would be back at once)
        ban = self.bans.add(address, reason, now, max(duration, self.settings.window))
        self.rates.forget(address)  # the count restarts when the ban ends
        return ban

    def sweep(self, now: float) -> None:
        self.rates.sweep(now)
        self.bans.sweep(now)
