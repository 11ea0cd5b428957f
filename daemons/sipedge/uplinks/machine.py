"""Outbound registration, the pure half: the state machine of one registration to a carrier.

Events in (start, response, transaction timeout, timer), a `Step` out (what to send, how long
to wait). It carries the rules of parameters.md: Auto asks for 3600 and uses the grant, a fixed
value asks for exactly that (per entry ``register_period`` over ``SS_SIP_USER_AGENT_EXPIRE``);
refresh at half the grant; one 401/407 is answered with credentials, a second challenge for the
same request is a failure (``stale=true`` excepted, once); 423 is retried at once with the
server's Min-Expires; any failure (timeout, 403, 5xx, 4xx, refused credentials) waits exactly
``SS_SIP_USER_AGENT_RETRY_DELAY`` and starts again, forever, no backoff.

Owns: `RegistrationMachine`, its events and steps (`RegState`, `Send`, `Step`,
`ResponseInfo`), `asked_expires` and `response_info` (what the machine needs of a response).
Must not: send, arm timers, read the clock, resolve names or import config/ or the transaction
layer. Driven by: client.py, which applies each Step.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sipedge.sip.digest import DigestError, parse_auth_header, pick_challenge
from sipedge.sip.message import ParseError, Response, parse_name_addr, parse_uri

AUTO_EXPIRES = 3600


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

    def on_unresolved(self, why: str) -> Step:
        """The proxy's name did not resolve: nothing was sent; a failure like a timeout."""
        return self._fail(why)

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
