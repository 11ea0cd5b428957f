"""The registrar's rules, pure: bindings, expiry, NAT detection, brute-force suspension.

No sockets and no SIP transactions here (that is `sipedge.registrar.service`), no storage (that is
`sipedge.store`): every function takes the time as an argument so the rules are
tested on a fake clock.

Rules (parameters.md, "Registration"):

* expiry: a REGISTER asking for 0 removes the binding; asking for 1-59 s gets 423 with
  ``Min-Expires: 60``; otherwise the grant is ``min(asked, maximum)``, or the maximum when it
  asks for nothing, the maximum being ``SS_ENDPOINT_NAT_EXPIRE`` for a device behind NAT and
  ``SS_ENDPOINT_EXPIRE`` for the others.
* NAT: the packet's source address differs from the Via sent-by or from the Contact host/port.
  The source address (the NAT's public side) is remembered: calls and keep-alives go there.
* one binding per account. ``SS_ENDPOINT_REGISTER_REPLACE`` On: a new registration (another
  device, i.e. another Call-ID and contact) replaces it; Off: refused while the old one lives.
  A refresh (same Call-ID, or same contact from the same source) is always accepted.
* suspension: ``SS_ENDPOINT_REGISTER_RETRY`` failed authentications in a row from one account,
  or from one source address, suspend it for ``SS_ENDPOINT_REGISTER_SUSPEND`` seconds; while
  suspended it gets 403 without a challenge. A success resets the count of the account and of
  the source.
"""

from __future__ import annotations

from dataclasses import dataclass

from sipedge.sip.transport.destination import is_reliable
from sipedge.store import Binding
from sipedge.typedefs import Addr

MIN_EXPIRES = 60


# -- expiry --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpiryDecision:
    granted: int | None  # None: refused with 423
    min_expires: int = MIN_EXPIRES

    @property
    def too_brief(self) -> bool:
        return self.granted is None


def decide_expiry(
    asked: int | None, nat: bool, endpoint_expire: int, endpoint_nat_expire: int
) -> ExpiryDecision:
    """`asked` > 0 or None (0 is an un-register, handled before)."""
    maximum = endpoint_nat_expire if nat else endpoint_expire
    if asked is None:
        return ExpiryDecision(maximum)
    if asked < MIN_EXPIRES:
        return ExpiryDecision(None)
    return ExpiryDecision(min(asked, maximum))


def parse_expires(contact_expires: str | None, header: str | None) -> int | None:
    """The expiry a REGISTER asks for: the Contact's ``expires`` param wins over ``Expires``.
    None when it asks for nothing; ValueError when it is not a number."""
    for raw in (contact_expires, header):
        if raw is not None and raw.strip() != "":
            value = int(raw.strip())
            if value < 0:
                raise ValueError("negative expires")
            return min(value, 2**31 - 1)
    return None


# -- NAT -----------------------------------------------------------------------------------------


def behind_nat(
    source: Addr,
    via_host: str,
    via_port: int | None,
    contact_host: str | None,
    contact_port: int | None,
) -> bool:
    """True when the device's own idea of its address (Via sent-by, Contact) is not the address
    its packets come from. Missing ports mean 5060."""
    if (via_host, via_port or 5060) != source:
        return True
    return contact_host is not None and (contact_host, contact_port or 5060) != source


# -- the binding table -------------------------------------------------------------------------


class Outcome:
    OK = "ok"
    REMOVED = "removed"
    REFUSED_EXISTS = "exists"  # replace Off and another device holds the account


class BindingTable:
    """Live bindings by account (one each). The store mirrors it (`sipedge.store.BindingStore`)."""

    def __init__(self) -> None:
        self.bindings: dict[str, Binding] = {}
        self.version = 0  # bumped on every change of the NAT device set (natd re-fetches)

    def get(self, account: str, now: float) -> Binding | None:
        binding = self.bindings.get(account)
        if binding is None or not binding.live(now):
            return None
        return binding

    def register(self, new: Binding, replace: bool, now: float) -> str:
        old = self.get(new.account, now)
        if old is not None and not replace and not _same_device(old, new):
            return Outcome.REFUSED_EXISTS
        if old is None or old.source != new.source or old.nat != new.nat:
            self.version += 1
        if old is not None and _same_device(old, new):
            new.registered_at = old.registered_at
        self.bindings[new.account] = new
        return Outcome.OK

    def remove(self, account: str) -> bool:
        binding = self.bindings.pop(account, None)
        if binding is not None:
            self.version += 1
        return binding is not None

    def expire(self, now: float) -> list[str]:
        gone = [a for a, b in self.bindings.items() if not b.live(now)]
        for account in gone:
            del self.bindings[account]
        if gone:
            self.version += 1
        return gone

    def nat_devices(self, now: float) -> list[Addr]:
        """The NAT devices' public addresses, in registration order (a stable keep-alive
        order: each device gets its message at the same offset in every cycle)."""
        # a binding over TCP or TLS is kept open by its connection, not by datagrams
        live = [
            b for b in self.bindings.values() if b.nat and b.live(now) and not is_reliable(b.source)
        ]
        live.sort(key=lambda b: (b.registered_at, b.account))
        seen: set[Addr] = set()
        out: list[Addr] = []
        for b in live:
            if b.source not in seen:
                seen.add(b.source)
                out.append(b.source)
        return out

    def __len__(self) -> int:
        return len(self.bindings)


def _same_device(old: Binding, new: Binding) -> bool:
    return old.call_id == new.call_id or (old.contact == new.contact and old.source == new.source)


# -- brute force -------------------------------------------------------------------------------


@dataclass
class _Strikes:
    failures: int = 0
    suspended_until: float = 0.0


class AuthGuard:
    """Failed authentications in a row per account and per source address; suspension."""

    def __init__(self, retry: int, suspend: float, max_tracked: int = 65536) -> None:
        self.retry = retry
        self.suspend = suspend
        self.max_tracked = max_tracked  # per table: bounds it under a flood of sources
        self._accounts: dict[str, _Strikes] = {}
        self._sources: dict[str, _Strikes] = {}
        self.suspensions = 0

    def configure(self, retry: int, suspend: float, max_tracked: int | None = None) -> None:
        self.retry, self.suspend = retry, suspend
        if max_tracked is not None:
            self.max_tracked = max_tracked

    def __len__(self) -> int:
        return len(self._accounts) + len(self._sources)

    def suspended(self, account: str | None, source_ip: str, now: float) -> bool:
        for table, key in ((self._accounts, account), (self._sources, source_ip)):
            if key is None:
                continue
            strikes = table.get(key)
            if strikes is not None and strikes.suspended_until > now:
                return True
        return False

    def failure(self, account: str | None, source_ip: str, now: float) -> bool:
        """Count one failure; True when it suspends the account or the source."""
        suspended = False
        for table, key in ((self._accounts, account), (self._sources, source_ip)):
            if key is None:
                continue
            strikes = table.get(key)
            if strikes is None:
                if len(table) >= self.max_tracked:
                    self._prune(table, now, self.max_tracked)
                strikes = table[key] = _Strikes()
            if strikes.suspended_until and strikes.suspended_until <= now:
                strikes.failures = 0  # the suspension is over: count again from zero
                strikes.suspended_until = 0.0
            strikes.failures += 1
            if strikes.failures >= self.retry:
                strikes.suspended_until = now + self.suspend
                strikes.failures = 0
                self.suspensions += 1
                suspended = True
        return suspended

    def success(self, account: str | None, source_ip: str) -> None:
        if account is not None:
            self._accounts.pop(account, None)
        self._sources.pop(source_ip, None)

    def suspended_now(self, now: float) -> dict[str, list[str]]:
        return {
            "accounts": sorted(k for k, s in self._accounts.items() if s.suspended_until > now),
            "sources": sorted(k for k, s in self._sources.items() if s.suspended_until > now),
        }

    @staticmethod
    def _prune(table: dict[str, _Strikes], now: float, limit: int) -> None:
        # Amortised: a full table is swept once, and refilling it takes `limit` new entries.
        for key in [k for k, s in table.items() if s.suspended_until <= now]:
            del table[key]
        while len(table) >= limit:  # all suspended: the oldest suspension goes first
            del table[next(iter(table))]
