"""RFC 4028 session timers, the pure part: negotiation, and when to refresh or give up.

A B2BUA keeps one session timer per dialog, independently: toward the caller we are the UAS
of the initial INVITE (`negotiate_uas`), toward the gateway we are the UAC (`uac_headers`,
`negotiate_uac`). The caller's Session-Expires never reaches the gateway, nor the other way
round. `LegTimer` says, for one leg, when we must send a refresh (if we are the refresher) and
when the session is dead (no refresh for `interval - min(32, interval / 3)` seconds, RFC 4028
section 10). `refresh.py` arms the event-loop timers from it; docs/session-timers.md has the rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# RFC 4028 section 4: no Min-SE may be lower than 90 seconds.
RFC_MIN_SE = 90
MAX_INTERVAL = 86400
EXPIRED = "session timer expired"


@dataclass(frozen=True)
class TimerSettings:
    """SS_SIP_SESSION_TIMER / SS_SIP_SESSION_EXPIRES / SS_SIP_MIN_SE."""

    enabled: bool = True
    session_expires: int = 1800
    min_se: int = RFC_MIN_SE

    @property
    def floor(self) -> int:
        """The smallest interval we accept from a peer (never below the RFC's 90 s)."""
        return max(RFC_MIN_SE, self.min_se)

    @property
    def interval(self) -> int:
        """The interval we ask for (never below our own Min-SE)."""
        return max(self.session_expires, self.floor)


@dataclass(frozen=True)
class SessionExpires:
    delta: int
    refresher: str | None  # "uac", "uas" or None (not given)


@dataclass(frozen=True)
class LegTimer:
    """The negotiated session timer of one leg."""

    interval: int
    we_refresh: bool

    @property
    def refresh_after(self) -> float:
        """Seconds after the last refresh (or the answer) at which we send the next one."""
        return self.interval / 2

    @property
    def expire_after(self) -> float:
        """Seconds without a successful refresh after which the session is dead."""
        return self.interval - min(32.0, self.interval / 3)

    def refresher_param(self, we_are_uac: bool) -> str:
        """The refresher= value for a request or response in which we play UAC/UAS."""
        if self.we_refresh:
            return "uac" if we_are_uac else "uas"
        return "uas" if we_are_uac else "uac"

    def header(self, we_are_uac: bool) -> str:
        return f"{self.interval};refresher={self.refresher_param(we_are_uac)}"


@dataclass(frozen=True)
class Reject422:
    """Answer the request with 422 Session Interval Too Small and this Min-SE."""

    min_se: int


@dataclass(frozen=True)
class UasAnswer:
    """What the 2xx toward the requester carries, and the leg's timer."""

    timer: LegTimer
    session_expires: str  # the Session-Expires value of our 2xx
    require_timer: bool  # add Require: timer to the 2xx


def parse_session_expires(value: str | None) -> SessionExpires | None:
    """`1800;refresher=uac` -> SessionExpires(1800, "uac"); None when absent or malformed."""
    if value is None:
        return None
    parts = [p.strip() for p in value.split(";")]
    try:
        delta = int(parts[0])
    except ValueError:
        return None
    if delta <= 0:
        return None
    refresher = None
    for param in parts[1:]:
        name, _, val = param.partition("=")
        if name.strip().lower() == "refresher":
            val = val.strip().lower()
            if val in ("uac", "uas"):
                refresher = val
    return SessionExpires(delta, refresher)


def parse_min_se(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        delta = int(value.split(";")[0].strip())
    except ValueError:
        return None
    return delta if delta > 0 else None


def has_option(values: Iterable[str], option: str) -> bool:
    """Whether a Supported/Require/Allow-style header list names `option` (any case)."""
    return any(
        token.strip().lower() == option.lower() for value in values for token in value.split(",")
    )


def negotiate_uas(
    settings: TimerSettings,
    session_expires: str | None,
    min_se: str | None,
    supported: Iterable[str],
) -> Reject422 | UasAnswer | None:
    """We answer an INVITE/UPDATE (initial or refresh) from the peer (RFC 4028 section 9).

    None: session timers are off, the 2xx carries nothing. Too small an interval: 422.
    Otherwise we run a timer on the leg: the peer's interval, lowered toward ours but never
    below its Min-SE or ours; without one, ours (raised to its Min-SE). The refresher is what
    the peer asked for; if it did not say, the peer when it supports timers, else us.
    """
    if not settings.enabled:
        return None
    peer_supports = has_option(supported, "timer")
    requested = parse_session_expires(session_expires)
    peer_min = max(parse_min_se(min_se) or RFC_MIN_SE, RFC_MIN_SE)
    floor = max(settings.floor, peer_min)
    if requested is not None:
        if requested.delta < settings.floor:
            return Reject422(settings.floor)
        # we may lower it toward ours, never below either Min-SE (RFC 4028 section 9)
        interval = min(requested.delta, max(settings.interval, floor))
        refresher = requested.refresher
    else:
        interval = max(settings.interval, peer_min)
        refresher = None
    interval = min(interval, MAX_INTERVAL)
    if refresher is None:
        refresher = "uac" if peer_supports else "uas"
    timer = LegTimer(interval, we_refresh=refresher == "uas")
    return UasAnswer(
        timer=timer,
        session_expires=f"{interval};refresher={refresher}",
        require_timer=peer_supports or refresher == "uac",
    )


def uac_headers(settings: TimerSettings) -> list[tuple[str, str]]:
    """Headers of an INVITE we originate (the gateway leg): none when the timer is off."""
    if not settings.enabled:
        return []
    return [
        ("Supported", "timer"),
        ("Session-Expires", str(settings.interval)),
        ("Min-SE", str(settings.floor)),
    ]


def negotiate_uac(settings: TimerSettings, session_expires: str | None) -> LegTimer | None:
    """The gateway's 2xx to our INVITE or refresh (RFC 4028 section 7.2).

    With Session-Expires: its interval (not below the RFC floor) and its refresher (uac = us,
    the default when absent). Without: the gateway does not do session timers; we still run
    ours with our interval and refresh ourselves (RFC 4028 section 7.4 lets the UAC keep
    refreshing; a refresh that fails is how we learn the gateway is gone).
    """
    if not settings.enabled:
        return None
    answered = parse_session_expires(session_expires)
    if answered is None:
        return LegTimer(settings.interval, we_refresh=True)
    interval = min(max(answered.delta, RFC_MIN_SE), MAX_INTERVAL)
    return LegTimer(interval, we_refresh=answered.refresher != "uas")


def retry_after_422(settings: TimerSettings, min_se: str | None) -> int | None:
    """The interval for our one retry after a 422, or None when we should not retry
    (no usable Min-SE, not larger than what we asked, or beyond the maximum)."""
    wanted = parse_min_se(min_se)
    if wanted is None or wanted <= settings.interval or wanted > MAX_INTERVAL:
        return None
    return wanted


__all__ = [
    "EXPIRED",
    "MAX_INTERVAL",
    "RFC_MIN_SE",
    "LegTimer",
    "Reject422",
    "SessionExpires",
    "TimerSettings",
    "UasAnswer",
    "has_option",
    "negotiate_uac",
    "negotiate_uas",
    "parse_min_se",
    "parse_session_expires",
    "retry_after_422",
    "uac_headers",
]
