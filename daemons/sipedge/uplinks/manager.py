"""Outbound registrations: we register to carriers as a user agent (`registrations:`).

Two halves:

* `RegistrationMachine` is pure: events in (start, response, transaction timeout, timer),
  a `Step` out (what to send, how long to wait). It carries the rules of parameters.md:
  Auto asks for 3600 and uses the grant, a fixed value asks for exactly that (per entry
  ``register_period`` over ``SS_SIP_USER_AGENT_EXPIRE``); refresh at half the grant; one
  401/407 is answered with credentials, a second challenge for the same request is a failure
  (``stale=true`` excepted, once); 423 is retried at once with the server's Min-Expires; any
  failure (timeout, 403, 5xx, 4xx, refused credentials) waits exactly
  ``SS_SIP_USER_AGENT_RETRY_DELAY`` and starts again, forever, no backoff.
* `OutboundRegistration` drives one machine on the event loop through the transaction layer;
  `RegistrationManager` holds them all, applies config reloads (a removed entry is
  un-registered when ``SS_SIP_USER_AGENT_SEND_UNREGISTER`` is On), un-registers everything at
  shutdown (bounded, 2 s total) and recognises calls that arrive through a registration.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sipedge import __version__
from sipedge.calls.identity import ua_privacy_header
from sipedge.sip.digest import DigestError, answer_challenge, parse_auth_header, pick_challenge
from sipedge.sip.message import (
    Headers,
    ParseError,
    Request,
    Response,
    new_branch,
    new_call_id,
    new_tag,
    parse_name_addr,
    parse_uri,
)

if TYPE_CHECKING:
    from sipedge.config import Parameters, Registration
    from sipedge.sip.transaction import ClientTransaction, TimerHandle, TransactionLayer

log = logging.getLogger(__name__)

Addr = tuple[str, int]
AUTO_EXPIRES = 3600
UNREGISTER_WAIT = 2.0


class RegState(enum.Enum):
    IDLE = "idle"
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"  # waiting SS_SIP_USER_AGENT_RETRY_DELAY
    UNREGISTERING = "unregistering"
    UNREGISTERED = "unregistered"


@dataclass(frozen=True)
class Send:
    expires: int
    challenge: dict[str, str] | None = None  # answer this challenge
    proxy_auth: bool = False  # Proxy-Authorization (407) rather than Authorization (401)


@dataclass(frozen=True)
class Step:
    send: Send | None = None
    wait: float | None = None  # arm the timer (None: no timer)
    reason: str = ""


@dataclass(frozen=True)
class ResponseInfo:
    """What the machine needs of a response to our REGISTER."""

    status: int
    granted: int | None = None  # expires granted for our contact (200)
    min_expires: int | None = None  # 423
    challenge: dict[str, str] | None = None  # 401/407, the usable digest challenge
    stale: bool = False


class RegistrationMachine:
    def __init__(self, asked: int, auto: bool, retry_delay: float, realm: str | None) -> None:
        self.asked = asked
        self.auto = auto
        self.retry_delay = retry_delay
        self.realm = realm
        self.state = RegState.IDLE
        self.granted: int | None = None
        self._authenticated = False  # the request in flight carries credentials
        self._stale_retries = 0
        self._min_expires_retries = 0
        self.last_failure = ""
        self.failures = 0
        self.successes = 0

    # events -------------------------------------------------------------------------------
    def start(self) -> Step:
        self.state = RegState.REGISTERING
        self._authenticated = False
        self._stale_retries = 0
        self._min_expires_retries = 0
        return Step(Send(self.asked), reason="register")

    def on_timer(self) -> Step:
        if self.state in (RegState.REGISTERED, RegState.FAILED):
            return self.start()
        return Step()

    def on_timeout(self) -> Step:
        if self.state is RegState.UNREGISTERING:
            self.state = RegState.UNREGISTERED
            return Step(reason="un-register timed out")
        return self._fail("timeout")

    def unregister(self) -> Step:
        self.state = RegState.UNREGISTERING
        self._authenticated = False
        return Step(Send(0), reason="un-register")

    def on_response(self, r: ResponseInfo) -> Step:
        if r.status < 200:
            return Step()
        if self.state is RegState.UNREGISTERING:
            if r.status in (401, 407) and not self._authenticated and r.challenge is not None:
                self._authenticated = True
                return Step(Send(0, r.challenge, r.status == 407), reason="un-register auth")
            self.state = RegState.UNREGISTERED
            return Step(reason=f"un-registered ({r.status})")
        if self.state is not RegState.REGISTERING:
            return Step()
        if 200 <= r.status < 300:
            granted = r.granted if r.granted else self.asked
            self.granted = granted
            self.state = RegState.REGISTERED
            self.successes += 1
            self.last_failure = ""
            return Step(wait=granted / 2, reason=f"registered for {granted}s")
        if r.status in (401, 407):
            if r.challenge is None:
                return self._fail(f"{r.status} without a usable challenge")
            if self.realm and r.challenge.get("realm") != self.realm:
                return self._fail(f"{r.status} for realm {r.challenge.get('realm')!r}")
            if self._authenticated:
                if not (r.stale and self._stale_retries < 1):
                    return self._fail(f"{r.status}: credentials refused")
                self._stale_retries += 1
            self._authenticated = True
            return Step(Send(self.asked, r.challenge, r.status == 407), reason="auth")
        if r.status == 423:
            if (
                r.min_expires is None
                or r.min_expires <= self.asked
                or self._min_expires_retries >= 1
            ):
                return self._fail("423 without a usable Min-Expires")
            self._min_expires_retries += 1
            self.asked = r.min_expires
            self._authenticated = False
            return Step(Send(self.asked), reason=f"423: Min-Expires {r.min_expires}")
        return self._fail(str(r.status))

    def _fail(self, why: str) -> Step:
        self.state = RegState.FAILED
        self.failures += 1
        self.last_failure = why
        self.granted = None
        return Step(wait=self.retry_delay, reason=f"failed: {why}")


def asked_expires(entry_period: int | None, global_expire: int | None) -> tuple[int, bool]:
    """(what to ask for, Auto?): the entry's register_period, else SS_SIP_USER_AGENT_EXPIRE,
    else Auto (3600, use the grant)."""
    if entry_period is not None:
        return entry_period, False
    if global_expire is not None:
        return global_expire, False
    return AUTO_EXPIRES, True


def response_info(response: Response, our_contact_uri: str) -> ResponseInfo:
    """Read status, grant, Min-Expires and the challenge out of a response."""
    granted: int | None = None
    min_expires: int | None = None
    challenge: dict[str, str] | None = None
    stale = False
    h = response.headers
    if 200 <= response.status < 300:
        ours = _uri_key(our_contact_uri)
        for value in h.get_all("Contact"):
            try:
                na = parse_name_addr(value)
            except ParseError:
                continue
            if _uri_key(na.uri) == ours and na.params.get("expires"):
                try:
                    granted = int(str(na.params["expires"]))
                except ValueError:
                    pass
                break
        if granted is None and h.get("Expires"):
            try:
                granted = int(str(h.get("Expires")))
            except ValueError:
                pass
    elif response.status == 423:
        try:
            min_expires = int(h.get("Min-Expires") or "")
        except ValueError:
            min_expires = None
    elif response.status in (401, 407):
        name = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        values = h.get_all(name)
        challenge = pick_challenge(values)
        for value in values:
            try:
                if parse_auth_header(value)[1].get("stale", "").lower() == "true":
                    stale = True
            except DigestError:
                pass
    return ResponseInfo(response.status, granted, min_expires, challenge, stale)


def _uri_key(uri: str) -> tuple[str, str, int]:
    try:
        u = parse_uri(uri)
    except ParseError:
        return ("", uri, 0)
    return (u.user or "", u.host.lower(), u.port or 5060)


# -- the driver ------------------------------------------------------------------------------


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
        return f"sip:{self.entry.user}@{host}:{self.local_port};line={self.line}"

    # lifecycle
    def start(self) -> None:
        try:
            ip = socket.gethostbyname(self.entry.proxy)
        except OSError as err:
            log.warning(
                "registration %s: cannot resolve %s: %s", self.entry.name, self.entry.proxy, err
            )
            self._apply(self.machine._fail(f"cannot resolve {self.entry.proxy}"))
            return
        self.destination = (ip, self.entry.port)
        self._apply(self.machine.start())

    def unregister(self) -> bool:
        """Send REGISTER Expires: 0 (if we are registered); False when there is nothing to do."""
        self._cancel_timer()
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
        request = self.build_request(send)
        self.stats.sent += 1
        self.tx = self.layer.start_client(
            request, self.destination, self._on_response, self._on_tx_timeout
        )

    def build_request(self, send: Send) -> Request:
        self.cseq += 1
        host = self.local_host_for(self.destination[0])
        uri = f"sip:{self.domain}" + (f":{self.entry.port}" if self.entry.port != 5060 else "")
        aor = f"<sip:{self.entry.user}@{self.domain}>"
        h = Headers()
        h.add("Via", f"SIP/2.0/UDP {host}:{self.local_port};branch={new_branch()};rport")
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
    ) -> None:
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
                    entry, params, self.layer, self.local_host_for, self.local_port, self.stats
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


def _same_reg_params(a: Parameters | None, b: Parameters) -> bool:
    if a is None:
        return False
    return (a.sip_user_agent_expire, a.sip_user_agent_retry_delay, a.sip_user_agent_privacy) == (
        b.sip_user_agent_expire,
        b.sip_user_agent_retry_delay,
        b.sip_user_agent_privacy,
    )
