"""Outbound registration, the driver: registrations to carriers on the event loop.

`OutboundRegistration` drives one `RegistrationMachine` (machine.py) through the transaction
layer: it builds the REGISTERs, arms the timers and feeds responses and timeouts back.
`RegistrationManager` holds them all, applies config reloads (a removed entry is un-registered
when ``SS_SIP_USER_AGENT_SEND_UNREGISTER`` is On), un-registers everything at shutdown (bounded,
2 s total) and recognises calls that arrive through a registration.

The proxy may be a host name: every REGISTER looks it up first through `NameResolver` (RFC 3263:
NAPTR/SRV when no port was given, else A; at once while the answer is within its TTL). A name
that does not resolve is a failure like a timeout (retried after the retry delay); after a
timeout the next REGISTER goes to the name's next address.

Owns: the REGISTER requests (headers, credentials), timers, the history and summaries, and
`NameResolver`, what it needs of the resolver.
Must not: decide the next step of a registration (machine.py does), block on a name lookup, or
import calls' state (only `calls.identity.ua_privacy_header`), registrar/ or sipd.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sipedge import __version__
from sipedge.calls.identity import ua_privacy_header
from sipedge.resolver import DnsResolver, Targets
from sipedge.sip.digest import answer_challenge
from sipedge.sip.message import (
    Headers,
    ParseError,
    Request,
    Response,
    host_text,
    hostport,
    new_branch,
    new_call_id,
    new_tag,
    parse_uri,
)
from sipedge.typedefs import Addr
from sipedge.uplinks.machine import (
    RegistrationMachine,
    RegState,
    Send,
    Step,
    asked_expires,
    response_info,
)

if TYPE_CHECKING:
    from sipedge.config import Parameters, Registration
    from sipedge.sip.transaction import ClientTransaction, TimerHandle, TransactionLayer

log = logging.getLogger(__name__)

UNREGISTER_WAIT = 2.0


class NameResolver(Protocol):
    """The proxy's name to addresses (`sipedge.resolver.DnsResolver` implements it)."""

    def resolve(self, host: str, port: int | None, done: Callable[[Targets], None]) -> None: ...


@dataclass
class RegistrationStats:
    sent: int = 0
    registered: int = 0
    failures: int = 0
    unregisters: int = 0


@dataclass
class OutboundRegistration:
    entry: Registration
    params: Parameters
    layer: TransactionLayer
    local_host_for: Callable[[str], str]
    local_port: int
    stats: RegistrationStats
    resolver: NameResolver = field(default_factory=DnsResolver)
    machine: RegistrationMachine = field(init=False)
    call_id: str = field(default_factory=new_call_id)
    from_tag: str = field(default_factory=new_tag)
    line: str = field(default_factory=lambda: os.urandom(5).hex())
    cseq: int = 0
    destination: Addr = ("", 0)
    timer: TimerHandle | None = None
    tx: ClientTransaction | None = None
    registered_at: float | None = None
    next_at: float | None = None
    last_status: int | None = None
    history: list[tuple[float, str]] = field(default_factory=list)
    on_unregistered: Callable[[], None] | None = None
    _sending: Send | None = None  # a REGISTER waiting for the proxy's name to resolve
    _moved_on: bool = False  # the last REGISTER timed out: the next goes to the next address

    def __post_init__(self) -> None:
        asked, auto = asked_expires(self.entry.register_period, self.params.sip_user_agent_expire)
        self.machine = RegistrationMachine(
            asked, auto, float(self.params.sip_user_agent_retry_delay), self.entry.realm
        )

    # addresses
    @property
    def domain(self) -> str:
        return self.entry.proxy

    def contact_uri(self) -> str:
        host = self.local_host_for(self.destination[0])
        return f"sip:{self.entry.user}@{hostport(host, self.local_port)};line={self.line}"

    # lifecycle
    def start(self) -> None:
        self._apply(self.machine.start())

    def unregister(self) -> bool:
        """Send REGISTER Expires: 0 (if we are registered); False when there is nothing to do."""
        self._cancel_timer()
        self._sending = None
        was = self.machine.state
        if self.tx is not None:
            self.tx.stop_retransmitting()
            self.tx = None
        if was is not RegState.REGISTERED and not (
            was is RegState.REGISTERING and self.machine.successes
        ):
            self.machine.state = RegState.UNREGISTERED
            return False
        self.stats.unregisters += 1
        self._apply(self.machine.unregister())
        return True

    def cancel(self) -> None:
        self._cancel_timer()
        self._sending = None
        if self.tx is not None:
            self.tx.stop_retransmitting()
            self.tx = None
        self.machine.state = RegState.UNREGISTERED

    @property
    def done(self) -> bool:
        return self.machine.state is RegState.UNREGISTERED

    # machine steps
    def _apply(self, step: Step) -> None:
        now = time.time()
        if step.reason:
            self.history.append((now, step.reason))
            del self.history[:-20]
            log.info("registration %s: %s", self.entry.name, step.reason)
        if self.machine.state is RegState.REGISTERED and step.wait is not None:
            self.registered_at = now
        if step.wait is not None:
            self._cancel_timer()
            self.next_at = now + step.wait
            self.timer = self.layer.scheduler.call_later(step.wait, self._on_timer)
        if step.send is not None:
            self._send(step.send)
        if self.machine.state is RegState.UNREGISTERED and self.on_unregistered is not None:
            self.on_unregistered()

    def _on_timer(self) -> None:
        self.timer = None
        self.next_at = None
        self._apply(self.machine.on_timer())

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
            self.next_at = None

    def _send(self, send: Send) -> None:
        """Every REGISTER looks the proxy's name up first (at once while its answer is within
        its TTL): a name that stopped resolving fails the registration, a new address is
        used at the next REGISTER."""
        self._sending = send
        port = self.entry.port if self.entry.port_given else None
        self.resolver.resolve(self.entry.proxy, port, lambda found: self._resolved(send, found))

    def _resolved(self, send: Send, found: Targets) -> None:
        if self._sending is not send:
            return  # cancelled, or another REGISTER replaced it, while the name was looked up
        self._sending = None
        if not found.addresses:
            self.tx = None
            log.warning("registration %s: %s", self.entry.name, found.failure)
            if send.expires == 0:  # un-registering: nothing to send it to
                self.machine.state = RegState.UNREGISTERED
                self._apply(Step(reason=found.failure))
                return
            self.stats.failures += 1
            self._apply(self.machine.on_unresolved(found.failure))
            return
        self.destination = _pick(found.addresses, self.destination, self._moved_on)
        self._moved_on = False
        request = self.build_request(send)
        self.stats.sent += 1
        self.tx = self.layer.start_client(
            request, self.destination, self._on_response, self._on_tx_timeout
        )

    def build_request(self, send: Send) -> Request:
        self.cseq += 1
        host = self.local_host_for(self.destination[0])
        domain = host_text(self.domain)
        uri = f"sip:{domain}" + (f":{self.entry.port}" if self.entry.port != 5060 else "")
        aor = f"<sip:{self.entry.user}@{domain}>"
        h = Headers()
        h.add("Via", f"SIP/2.0/UDP {hostport(host, self.local_port)};branch={new_branch()};rport")
        h.add("Max-Forwards", "70")
        h.add("From", f"{aor};tag={self.from_tag}")
        h.add("To", aor)
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{self.cseq} REGISTER")
        h.add("Contact", f"<{self.contact_uri()}>")
        h.add("Expires", str(send.expires))
        privacy = ua_privacy_header(self.params.sip_user_agent_privacy)
        if privacy:
            h.add("Privacy", privacy)
        h.add("User-Agent", f"sipedge/{__version__}")
        if send.challenge is not None:
            value = answer_challenge(
                send.challenge,
                user=self.entry.user,
                password=self.entry.password,
                method="REGISTER",
                uri=uri,
            )
            h.add("Proxy-Authorization" if send.proxy_auth else "Authorization", value)
        return Request("REGISTER", uri, h, b"")

    def _on_response(self, tx: ClientTransaction, response: Response) -> None:
        if tx is not self.tx or response.status < 200:
            return
        self.tx = None
        self.last_status = response.status
        before = self.machine.state
        step = self.machine.on_response(response_info(response, self.contact_uri()))
        if self.machine.state is RegState.REGISTERED and before is RegState.REGISTERING:
            self.stats.registered += 1
        if self.machine.state is RegState.FAILED:
            self.stats.failures += 1
        self._apply(step)

    def _on_tx_timeout(self, tx: ClientTransaction) -> None:
        if tx is not self.tx:
            return
        self.tx = None
        self.last_status = None
        self._moved_on = True  # RFC 3263 4.3: the next REGISTER tries the next address
        step = self.machine.on_timeout()
        if self.machine.state is RegState.FAILED:
            self.stats.failures += 1
        self._apply(step)

    def summary(self) -> dict[str, Any]:
        m = self.machine
        return {
            "name": self.entry.name,
            "proxy": f"{self.entry.proxy}:{self.entry.port}",
            "user": self.entry.user,
            "state": m.state.value,
            "asked": m.asked,
            "auto": m.auto,
            "granted": m.granted,
            "registered_at": self.registered_at,
            "next_at": self.next_at,
            "last_status": self.last_status,
            "last_failure": m.last_failure or None,
            "successes": m.successes,
            "failures": m.failures,
            "contact": self.contact_uri() if self.destination[0] else None,
            "history": [{"time": t, "event": e} for t, e in self.history],
        }


class RegistrationManager:
    """All outbound registrations of the daemon."""

    def __init__(
        self,
        layer: TransactionLayer,
        local_host_for: Callable[[str], str],
        local_port: int,
        resolver: NameResolver | None = None,
    ) -> None:
        self.resolver: NameResolver = resolver or DnsResolver()
        self.layer = layer
        self.local_host_for = local_host_for
        self.local_port = local_port
        self.stats = RegistrationStats()
        self.entries: dict[str, OutboundRegistration] = {}
        self._leaving: list[OutboundRegistration] = []
        self.params: Parameters | None = None

    def apply_config(self, registrations: tuple[Registration, ...], params: Parameters) -> None:
        old_params = self.params
        self.params = params
        wanted = {r.name: r for r in registrations}
        for name, reg in list(self.entries.items()):
            if wanted.get(name) != reg.entry or old_params != params:
                if wanted.get(name) == reg.entry and _same_reg_params(old_params, params):
                    continue
                del self.entries[name]
                self._retire(reg, send_unregister=params.sip_user_agent_send_unregister)
        for name, entry in wanted.items():
            if name not in self.entries:
                reg = OutboundRegistration(
                    entry,
                    params,
                    self.layer,
                    self.local_host_for,
                    self.local_port,
                    self.stats,
                    self.resolver,
                )
                self.entries[name] = reg
                reg.start()

    def _retire(self, reg: OutboundRegistration, send_unregister: bool) -> None:
        if send_unregister and reg.unregister():
            self._leaving.append(reg)
            reg.on_unregistered = lambda: (
                self._leaving.remove(reg) if reg in self._leaving else None
            )
        else:
            reg.cancel()

    def _left(self, reg: OutboundRegistration) -> None:
        if reg in self._leaving:
            self._leaving.remove(reg)

    async def stop(self, send_unregister: bool, wait: float = UNREGISTER_WAIT) -> None:
        """Shutdown: un-register everything registered and wait (bounded) for the answers."""
        for reg in list(self.entries.values()):
            self._retire(reg, send_unregister)
        self.entries.clear()
        deadline = time.monotonic() + wait
        while self._leaving and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for reg in self._leaving:
            reg.cancel()
        self._leaving.clear()

    def match(self, request: Request, source: Addr) -> str | None:
        """The registration a call arrives through: its Request-URI is our contact (by its
        ``line`` parameter, or by user part when it comes from that registration's proxy)."""
        try:
            uri = parse_uri(request.uri)
        except ParseError:
            return None
        line = uri.params.get("line")
        for reg in self.entries.values():
            if line and line == reg.line:
                return reg.entry.name
        for reg in self.entries.values():
            if uri.user == reg.entry.user and source[0] == reg.destination[0]:
                return reg.entry.name
        return None

    def summaries(self) -> list[dict[str, Any]]:
        return [reg.summary() for reg in self.entries.values()]


def _pick(addresses: tuple[Addr, ...], current: Addr, moved_on: bool) -> Addr:
    """Stay with the address in use while the name still resolves to it; after a timeout, the
    one after it; else the first."""
    if current in addresses:
        i = addresses.index(current)
        return addresses[(i + 1) % len(addresses)] if moved_on else current
    return addresses[0]


def _same_reg_params(a: Parameters | None, b: Parameters) -> bool:
    if a is None:
        return False
    return (a.sip_user_agent_expire, a.sip_user_agent_retry_delay, a.sip_user_agent_privacy) == (
        b.sip_user_agent_expire,
        b.sip_user_agent_retry_delay,
        b.sip_user_agent_privacy,
    )
