"""Gateway switching, VOS3000 style: which routing gateway a call tries next, and when it stops.

Pure decision logic: no sockets, no clock, no event loop. The call layer (`call.py`) feeds in
what happened (responses, expired timers, RTP seen by the relay) and carries out the answers
(arm/cancel a timer, send the next INVITE, answer the caller).

Parameters (see ``parameters.md``, "Call setup and gateway switching") reach this module as one
`SwitchingPolicy` per routing gateway: the global values merged with that gateway's overrides by
`effective_policy`.

Timers of one attempt (`AttemptTracker`)
----------------------------------------
Exactly one switching timer runs per attempt; each `TimerChange` says what to do with it.

============================  ===========================================================
event                         timer
============================  ===========================================================
INVITE sent                   arm INVITE (``invite_timeout``): wait for *any* response
100 Trying (first response)   arm TRYING (``trying_timeout``), replacing INVITE
180 / 181 / 182               arm RINGING (``ringing_timeout``) when the attempt was not
                              already ringing; a repeated 18x of the ringing kind while
                              ringing does not re-arm it (see below)
183 and any other 101-199     arm SESSION_PROGRESS (``session_progress_timeout``), every
                              time: each one is "further progress"
100 after any 18x, repeated   nothing: the phase only moves forward, and 100 Trying is hop
100                           by hop, so it never extends a wait
============================  ===========================================================

Our readings, where the contract leaves a choice:

* "After 180 Ringing, wait this long for an answer" bounds the *ringing time*, so a repeated
  180 (RFC 3261 13.3.1.1 lets a UAS resend it every minute) does not restart the RINGING timer;
  otherwise a gateway that keeps refreshing 180 would ring forever. A change of kind (183 after
  180, or 180 after 183) is a new step and arms the timer of the new phase.
* "After 183 Session Progress, wait this long for the next step (answer or further progress)":
  every 183 (or other non-ringing provisional) restarts the SESSION_PROGRESS timer.
* SDP in any provisional response other than 100 marks the attempt ``sdp_seen``; a 100 Trying is
  generated hop by hop and never counts.

Switching decision (`CallSwitcher.on_failure`)
----------------------------------------------
A failure is a final response >= 300 from the gateway, or one of the four timers expiring. It
always ends the attempt. The rules, first match wins; the policy used is the policy of the
attempt that just failed (the tracker's):

====  =================================================  =======================  ============
rule  condition                                          decision                 reason
====  =================================================  =======================  ============
R2    a received status in the gateway's ``stop_codes``  stop                     STOP_CODE
R3    ``rtp_started`` and ``stop_after_rtp_start``       stop (even when          RTP_STARTED
                                                         ``until_connect``)
R4    ``until_connect``                                  go to R6 (skip R5)
R5a   status 486 or 600 and ``stop_after_user_busy``     stop                     USER_BUSY
R5b   ``sdp_seen`` and ``stop_after_sdp``                stop                     SDP_RECEIVED
R5c   INVITE timer expired and                           stop                     INVITE_TIMEOUT
      ``stop_after_invite_timeout``
R6a   the route has no further gateway                   stop                     NO_MORE_GATEWAYS
R6b   ``switch_limit`` attempts already made             stop                     SWITCH_LIMIT
R6c   otherwise                                          next gateway (`Next`)
====  =================================================  =======================  ============

R1: whenever switching stops on a failure, the caller gets the failure of that (last) attempt:
the gateway's status, or 408 when a timer expired (`caller_status_for_failure`). Stop codes
(R2) are "receiving one of these codes", so they match received statuses only, never a timeout.
When the route is exhausted and the limit is reached at the same time, the reason is
NO_MORE_GATEWAYS: the limit cut nothing off. ``switch_limit`` counts attempts in total,
including the first (None: every gateway the route offers).

A gateway given by host name may resolve to several targets (docs/call-control.md, "Gateways
by host name"). They are one attempt as far as switching goes: when the INVITE timer expires
with no response at all (`tries_next_target`), the call layer sends the INVITE to the gateway's
next target with a fresh tracker, and only the last target's failure reaches `on_failure`. A
name that does not resolve fails the attempt before any INVITE (`on_unresolved`): no status was
received and no timer ran, so R2-R5 cannot apply; R6 decides, and a stop gives the caller 503.

Other ends: `CallSwitcher.first` on an empty route stops with NO_GATEWAY and 503; an answer
stops with ANSWERED (200); the caller's CANCEL stops with CALLER_CANCELLED (487). The reason of
the stop is kept in `CallSwitcher.stop` so the CDR can record it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "USER_BUSY_STATUSES",
    "AttemptTracker",
    "CallSwitcher",
    "Next",
    "Phase",
    "Stop",
    "StopReason",
    "SwitchingPolicy",
    "Timer",
    "TimerChange",
    "caller_status_for_failure",
    "effective_policy",
    "tries_next_target",
]

USER_BUSY_STATUSES: frozenset[int] = frozenset({486, 600})
RINGING_STATUSES: frozenset[int] = frozenset({180, 181, 182})
TIMEOUT_STATUS = 408
NO_GATEWAY_STATUS = 503


@dataclass(frozen=True)
class SwitchingPolicy:
    """Effective switching values for one routing gateway (global merged with overrides)."""

    invite_timeout: float
    trying_timeout: float
    ringing_timeout: float
    session_progress_timeout: float
    stop_after_sdp: bool
    stop_after_invite_timeout: bool
    stop_after_user_busy: bool
    stop_after_rtp_start: bool
    until_connect: bool
    stop_codes: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        for name in (
            "invite_timeout",
            "trying_timeout",
            "ringing_timeout",
            "session_progress_timeout",
        ):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        for code in self.stop_codes:
            if not 300 <= code <= 699:
                raise ValueError(f"stop_codes: {code!r} is not a SIP failure code (300-699)")


def effective_policy(
    *,
    global_invite_timeout: float,
    trying: float,
    ringing: float,
    progress: float,
    stop_after_sdp: bool,
    stop_after_invite_timeout: bool,
    user_busy: bool,
    rtp_start: bool,
    until_connect: bool,
    gw_invite_timeout: float | None,
    gw_stop_after_sdp: bool | None,
    gw_stop_after_invite_timeout: bool | None,
    gw_stop_codes: Iterable[int] | None,
) -> SwitchingPolicy:
    """Merge the global parameters with one gateway's overrides (None: use the global value)."""
    return SwitchingPolicy(
        invite_timeout=global_invite_timeout if gw_invite_timeout is None else gw_invite_timeout,
        trying_timeout=trying,
        ringing_timeout=ringing,
        session_progress_timeout=progress,
        stop_after_sdp=stop_after_sdp if gw_stop_after_sdp is None else gw_stop_after_sdp,
        stop_after_invite_timeout=(
            stop_after_invite_timeout
            if gw_stop_after_invite_timeout is None
            else gw_stop_after_invite_timeout
        ),
        stop_after_user_busy=user_busy,
        stop_after_rtp_start=rtp_start,
        until_connect=until_connect,
        stop_codes=frozenset(gw_stop_codes or ()),
    )


class Timer(enum.Enum):
    """The switching timers of one attempt (at most one runs at a time)."""

    INVITE = "invite"
    TRYING = "trying"
    RINGING = "ringing"
    SESSION_PROGRESS = "session progress"


class Phase(enum.Enum):
    """How far one attempt has got."""

    IDLE = "idle"  # INVITE not sent yet
    CALLING = "calling"  # INVITE sent, no response
    TRYING = "trying"  # 100 Trying
    RINGING = "ringing"  # 180/181/182
    SESSION_PROGRESS = "session progress"  # 183 or another provisional


_RANK = {
    Phase.IDLE: 0,
    Phase.CALLING: 1,
    Phase.TRYING: 2,
    Phase.RINGING: 3,
    Phase.SESSION_PROGRESS: 3,
}


class StopReason(enum.Enum):
    """Why switching stopped; the value is what the CDR records."""

    ANSWERED = "answered"
    SDP_RECEIVED = "stop after SDP"
    RTP_STARTED = "stop after RTP start"
    USER_BUSY = "user busy"
    STOP_CODE = "stop-switching code"
    INVITE_TIMEOUT = "stop after INVITE timeout"
    SWITCH_LIMIT = "switch limit reached"
    NO_MORE_GATEWAYS = "no more gateways"
    CALLER_CANCELLED = "caller cancelled"
    NO_GATEWAY = "no usable gateway"


@dataclass(frozen=True)
class TimerChange:
    """What to do with the attempt's switching timer.

    ``cancel``: stop the timer that runs now. ``arm``/``seconds``: then start this one (``cancel``
    is always True when something is armed, as the new timer replaces the old one). Neither:
    leave the running timer alone.
    """

    cancel: bool
    arm: Timer | None
    seconds: float | None


KEEP = TimerChange(cancel=False, arm=None, seconds=None)


def _arm(timer: Timer, seconds: float) -> TimerChange:
    return TimerChange(cancel=True, arm=timer, seconds=seconds)


class AttemptTracker:
    """One attempt (one INVITE to one gateway): its phase, SDP/RTP flags and its timer."""

    __slots__ = ("_phase", "_rtp_started", "_sdp_seen", "_timer", "gateway", "policy")

    def __init__(self, gateway: str, policy: SwitchingPolicy) -> None:
        self.gateway = gateway
        self.policy = policy
        self._phase = Phase.IDLE
        self._sdp_seen = False
        self._rtp_started = False
        self._timer: Timer | None = None

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def sdp_seen(self) -> bool:
        return self._sdp_seen

    @property
    def rtp_started(self) -> bool:
        return self._rtp_started

    @property
    def timer(self) -> Timer | None:
        """The switching timer that should be running now (None before the INVITE)."""
        return self._timer

    def _go(self, phase: Phase, timer: Timer, seconds: float) -> TimerChange:
        self._phase = phase
        self._timer = timer
        return _arm(timer, seconds)

    def on_invite_sent(self) -> TimerChange:
        """The INVITE left: wait ``invite_timeout`` for any response."""
        if self._phase is not Phase.IDLE:
            return KEEP  # a retransmission, not a new INVITE
        return self._go(Phase.CALLING, Timer.INVITE, self.policy.invite_timeout)

    def on_provisional(self, status: int, has_sdp: bool) -> TimerChange:
        """A 1xx from the gateway; see the module docstring for the timer rules."""
        if not 100 <= status <= 199:
            raise ValueError(f"not a provisional status: {status!r}")
        if status == 100:
            if _RANK[self._phase] >= _RANK[Phase.TRYING]:
                return KEEP
            return self._go(Phase.TRYING, Timer.TRYING, self.policy.trying_timeout)
        if has_sdp:
            self._sdp_seen = True
        if status in RINGING_STATUSES:
            if self._phase is Phase.RINGING:
                return KEEP
            return self._go(Phase.RINGING, Timer.RINGING, self.policy.ringing_timeout)
        return self._go(
            Phase.SESSION_PROGRESS, Timer.SESSION_PROGRESS, self.policy.session_progress_timeout
        )

    def on_rtp_started(self) -> None:
        """The media relay saw RTP from the called side of this attempt."""
        self._rtp_started = True

    def __repr__(self) -> str:
        return (
            f"AttemptTracker({self.gateway!r}, phase={self._phase.value!r}, "
            f"sdp_seen={self._sdp_seen}, rtp_started={self._rtp_started})"
        )


@dataclass(frozen=True)
class Next:
    """Send an INVITE to this gateway; ``index`` counts attempts of the call from 0."""

    gateway: str
    policy: SwitchingPolicy
    index: int


@dataclass(frozen=True)
class Stop:
    """Switching is over: answer the caller with ``caller_status`` (``caller_reason`` None: the
    standard reason phrase)."""

    reason: StopReason
    caller_status: int
    caller_reason: str | None = None


def caller_facing(status: int, reason: str | None) -> tuple[int, str | None]:
    """A gateway's challenge (401/407) or redirect (3xx) is about our leg, not the caller's:
    the caller's credentials or a redirect would mean nothing to it, so it hears 503."""
    if status in (401, 407, 422) or 300 <= status < 400:
        return 503, f"Gateway Answered {status}"
    return status, reason


def caller_status_for_failure(status: int | None, timer: Timer | None) -> int:
    """The status the caller hears for a failed attempt: 408 if a timer expired, else its own."""
    if (status is None) == (timer is None):
        raise ValueError("a failure is either a final status or an expired timer, exactly one")
    if timer is not None:
        return TIMEOUT_STATUS
    assert status is not None
    if not 300 <= status <= 699:
        raise ValueError(f"not a SIP failure status: {status!r}")
    return status


def tries_next_target(timer: Timer, phase: Phase) -> bool:
    """Whether an expired `timer` moves the attempt on to the gateway's next resolved target
    (RFC 3263 4.3: a timeout with no response at all), rather than fail the attempt."""
    return timer is Timer.INVITE and phase in (Phase.IDLE, Phase.CALLING)


class CallSwitcher:
    """The switching state of one call: the route's gateways and the attempts made so far."""

    __slots__ = ("_attempts", "_gateways", "_limit", "_stop")

    def __init__(
        self, gateways: Sequence[tuple[str, SwitchingPolicy]], switch_limit: int | None
    ) -> None:
        if switch_limit is not None and switch_limit < 1:
            raise ValueError(f"switch_limit must be None or at least 1, not {switch_limit!r}")
        self._gateways = tuple(gateways)
        self._limit = switch_limit
        self._attempts = 0
        self._stop: Stop | None = None

    @property
    def attempts_made(self) -> int:
        """INVITEs sent so far (one per `Next` handed out)."""
        return self._attempts

    @property
    def stop(self) -> Stop | None:
        """The decision that ended switching, once there is one."""
        return self._stop

    @property
    def current_gateway(self) -> str | None:
        """The gateway of the attempt in progress (or the last one)."""
        return self._gateways[self._attempts - 1][0] if self._attempts else None

    def _stopped(self, stop: Stop) -> Stop:
        self._stop = stop
        return stop

    def _next(self) -> Next:
        name, policy = self._gateways[self._attempts]
        decision = Next(name, policy, self._attempts)
        self._attempts += 1
        return decision

    def first(self) -> Next | Stop:
        """The first attempt, or NO_GATEWAY (503) when the route offers none."""
        if self._attempts or self._stop is not None:
            raise RuntimeError("first() called twice")
        if not self._gateways:
            return self._stopped(
                Stop(StopReason.NO_GATEWAY, NO_GATEWAY_STATUS, "No Usable Gateway")
            )
        return self._next()

    def on_failure(
        self, tracker: AttemptTracker, status: int | None, timer: Timer | None
    ) -> Next | Stop:
        """The current attempt failed: a final ``status`` >= 300, or ``timer`` expired."""
        self._check(tracker)
        caller_status = caller_status_for_failure(status, timer)
        reason = self._decide(tracker, status, timer)
        if reason is None:
            return self._next()
        return self._stopped(Stop(reason, caller_status))

    def on_unresolved(self, tracker: AttemptTracker) -> Next | Stop:
        """The current gateway's name did not resolve: nothing was sent, so only R6 applies;
        switching stopped there answers the caller 503."""
        self._check(tracker)
        reason = self._exhausted()
        if reason is None:
            return self._next()
        return self._stopped(Stop(reason, NO_GATEWAY_STATUS))

    def _check(self, tracker: AttemptTracker) -> None:
        if self._stop is not None:
            raise RuntimeError(f"switching already stopped ({self._stop.reason.value})")
        if not self._attempts:
            raise RuntimeError("a failure before first()")
        if tracker.gateway != self.current_gateway:
            raise ValueError(
                f"failure of {tracker.gateway!r}, but the current attempt is to "
                f"{self.current_gateway!r}"
            )

    def _decide(
        self, tracker: AttemptTracker, status: int | None, timer: Timer | None
    ) -> StopReason | None:
        """The rule table of the module docstring; None means: switch to the next gateway."""
        policy = tracker.policy
        if status is not None and status in policy.stop_codes:  # R2
            return StopReason.STOP_CODE
        if tracker.rtp_started and policy.stop_after_rtp_start:  # R3
            return StopReason.RTP_STARTED
        if not policy.until_connect:  # R4 skips R5
            if status in USER_BUSY_STATUSES and policy.stop_after_user_busy:  # R5a
                return StopReason.USER_BUSY
            if tracker.sdp_seen and policy.stop_after_sdp:  # R5b
                return StopReason.SDP_RECEIVED
            if timer is Timer.INVITE and policy.stop_after_invite_timeout:  # R5c
                return StopReason.INVITE_TIMEOUT
        return self._exhausted()

    def _exhausted(self) -> StopReason | None:
        """R6: the route has no further gateway, or the limit is reached (None: switch)."""
        if self._attempts >= len(self._gateways):  # R6a
            return StopReason.NO_MORE_GATEWAYS
        if self._limit is not None and self._attempts >= self._limit:  # R6b
            return StopReason.SWITCH_LIMIT
        return None  # R6c

    def on_answer(self, tracker: AttemptTracker) -> Stop:
        """The current attempt was answered (2xx): the call is connected, switching is over."""
        return self._stopped(Stop(StopReason.ANSWERED, 200))

    def on_caller_cancel(self) -> Stop:
        """The caller gave up (CANCEL) while attempts were running."""
        return self._stopped(Stop(StopReason.CALLER_CANCELLED, 487))
