"""Gateway switching decisions: timers of one attempt, and when a call stops switching.

The exhaustive test walks every combination of the switching switches, failure kinds,
SDP/RTP flags, positions in the route and switch limits; its expected values come from the rule
table below (`STOP_RULES`), written from parameters.md, not from the code under test.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipedge.calls.switching import (
    AttemptTracker,
    CallSwitcher,
    Next,
    Phase,
    Stop,
    StopReason,
    SwitchingPolicy,
    Timer,
    TimerChange,
    caller_status_for_failure,
    effective_policy,
    tries_next_target,
)

INVITE_T, TRYING_T, RINGING_T, PROGRESS_T = 10.0, 20.0, 120.0, 30.0


def policy(
    *,
    sdp: bool = False,
    invite_timeout_stop: bool = False,
    busy: bool = False,
    rtp: bool = False,
    until_connect: bool = False,
    stop_codes: frozenset[int] = frozenset(),
) -> SwitchingPolicy:
    return SwitchingPolicy(
        invite_timeout=INVITE_T,
        trying_timeout=TRYING_T,
        ringing_timeout=RINGING_T,
        session_progress_timeout=PROGRESS_T,
        stop_after_sdp=sdp,
        stop_after_invite_timeout=invite_timeout_stop,
        stop_after_user_busy=busy,
        stop_after_rtp_start=rtp,
        until_connect=until_connect,
        stop_codes=stop_codes,
    )


# A policy that never stops switching, and one that stops on everything: around the gateway
# under test, so that a rule taken from the wrong gateway's policy shows up (rule 7).
SWITCH_ALWAYS = policy()
STOP_EVERYTHING = policy(
    sdp=True,
    invite_timeout_stop=True,
    busy=True,
    rtp=True,
    stop_codes=frozenset({403, 404, 486, 503, 600}),
)


# ---------------------------------------------------------------------------------------------
# The expected behaviour, as a table (parameters.md, "Call setup and gateway switching")
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    stop_after_sdp: bool
    stop_after_invite_timeout: bool
    user_busy: bool
    rtp_start: bool
    until_connect: bool
    stop_codes: frozenset[int]
    failure: int | Timer  # a final status, or the timer that expired
    sdp_seen: bool
    rtp_started: bool
    position: int  # index of the failing attempt in the route
    route_length: int
    limit: int | None

    @property
    def status(self) -> int | None:
        return self.failure if isinstance(self.failure, int) else None

    @property
    def timer(self) -> Timer | None:
        return self.failure if isinstance(self.failure, Timer) else None


# (rule, condition, reason) in priority order; the first row whose condition holds stops.
# Rules 5a-5c are suspended by until_connect (rule 4); rules 2 and 3 are not.
STOP_RULES: list[tuple[str, Callable[[Case], bool], StopReason]] = [
    ("2", lambda c: c.status is not None and c.status in c.stop_codes, StopReason.STOP_CODE),
    ("3", lambda c: c.rtp_started and c.rtp_start, StopReason.RTP_STARTED),
    (
        "5a",
        lambda c: not c.until_connect and c.status in (486, 600) and c.user_busy,
        StopReason.USER_BUSY,
    ),
    (
        "5b",
        lambda c: not c.until_connect and c.sdp_seen and c.stop_after_sdp,
        StopReason.SDP_RECEIVED,
    ),
    (
        "5c",
        lambda c: not c.until_connect and c.timer is Timer.INVITE and c.stop_after_invite_timeout,
        StopReason.INVITE_TIMEOUT,
    ),
    ("6a", lambda c: c.position + 1 == c.route_length, StopReason.NO_MORE_GATEWAYS),
    ("6b", lambda c: c.limit is not None and c.position + 1 >= c.limit, StopReason.SWITCH_LIMIT),
]


def expected(case: Case) -> tuple[StopReason, int] | int:
    """(reason, caller status) for a stop, or the index of the next attempt."""
    caller_status = 408 if case.timer is not None else case.status  # rule 1
    for _rule, condition, reason in STOP_RULES:
        if condition(case):
            assert caller_status is not None
            return reason, caller_status
    return case.position + 1


def run(case: Case) -> Next | Stop:
    """Drive a switcher to the failing attempt and report what it decides."""
    tested = policy(
        sdp=case.stop_after_sdp,
        invite_timeout_stop=case.stop_after_invite_timeout,
        busy=case.user_busy,
        rtp=case.rtp_start,
        until_connect=case.until_connect,
        stop_codes=case.stop_codes,
    )
    gateways = [
        (
            f"gw{i}",
            SWITCH_ALWAYS
            if i < case.position
            else tested
            if i == case.position
            else STOP_EVERYTHING,
        )
        for i in range(case.route_length)
    ]
    switcher = CallSwitcher(gateways, case.limit)
    decision = switcher.first()
    for i in range(case.position):
        assert isinstance(decision, Next) and decision.index == i
        tracker = AttemptTracker(decision.gateway, decision.policy)
        tracker.on_invite_sent()
        decision = switcher.on_failure(tracker, 503, None)
    assert isinstance(decision, Next)
    assert (decision.gateway, decision.policy, decision.index) == (
        f"gw{case.position}",
        tested,
        case.position,
    )
    tracker = AttemptTracker(decision.gateway, decision.policy)
    tracker.on_invite_sent()
    if case.sdp_seen:
        tracker.on_provisional(183, has_sdp=True)
    if case.rtp_started:
        tracker.on_rtp_started()
    result = switcher.on_failure(tracker, case.status, case.timer)
    assert switcher.attempts_made == case.position + 1 + isinstance(result, Next)
    return result


FAILURES: list[int | Timer] = [*Timer, 486, 600, 503, 403, 404]
STOP_CODE_SETS = [frozenset(), frozenset({403}), frozenset({403, 486, 600})]
ROUTE_LENGTH = 3
LIMITS = [None, 1, 2, 3, 5]
BOOLS = list(itertools.product([False, True], repeat=5))


@pytest.mark.parametrize(
    "flags", BOOLS, ids=["sdp{}-invto{}-busy{}-rtp{}-uc{}".format(*map(int, f)) for f in BOOLS]
)
def test_every_combination(flags: tuple[bool, bool, bool, bool, bool]) -> None:
    checked = 0
    mismatches: list[tuple[Case, object, object]] = []
    for stop_codes, failure, sdp_seen, rtp_started, position, limit in itertools.product(
        STOP_CODE_SETS, FAILURES, [False, True], [False, True], range(ROUTE_LENGTH), LIMITS
    ):
        if limit is not None and position >= limit:
            continue  # the limit never lets the call reach this attempt
        sdp, invite_to, busy, rtp, until_connect = flags
        case = Case(
            stop_after_sdp=sdp,
            stop_after_invite_timeout=invite_to,
            user_busy=busy,
            rtp_start=rtp,
            until_connect=until_connect,
            stop_codes=stop_codes,
            failure=failure,
            sdp_seen=sdp_seen,
            rtp_started=rtp_started,
            position=position,
            route_length=ROUTE_LENGTH,
            limit=limit,
        )
        result = run(case)
        got: tuple[StopReason, int] | int
        if isinstance(result, Stop):
            assert result.caller_reason is None
            got = (result.reason, result.caller_status)
        else:
            got = result.index
        want = expected(case)
        checked += 1
        if got != want:
            mismatches.append((case, got, want))
    assert not mismatches, mismatches[:5]
    # reachable (position, limit) pairs: None 3, 1 -> 1, 2 -> 2, 3 -> 3, 5 -> 3: 12 in all
    assert checked == len(STOP_CODE_SETS) * len(FAILURES) * 2 * 2 * 12


# ---------------------------------------------------------------------------------------------
# The rules one by one, readable
# ---------------------------------------------------------------------------------------------
def decide(
    pol: SwitchingPolicy,
    status: int | None = None,
    timer: Timer | None = None,
    *,
    sdp: bool = False,
    rtp: bool = False,
    gateways: int = 2,
    limit: int | None = None,
) -> Next | Stop:
    switcher = CallSwitcher([(f"gw{i}", pol) for i in range(gateways)], limit)
    first = switcher.first()
    assert isinstance(first, Next)
    tracker = AttemptTracker(first.gateway, first.policy)
    tracker.on_invite_sent()
    if sdp:
        tracker.on_provisional(183, True)
    if rtp:
        tracker.on_rtp_started()
    return switcher.on_failure(tracker, status, timer)


DEFAULTS = policy(sdp=True, invite_timeout_stop=False, busy=True, rtp=True)


@pytest.mark.parametrize("timer", list(Timer))
def test_a_timeout_gives_the_caller_408(timer: Timer) -> None:
    assert decide(DEFAULTS, timer=timer, gateways=1) == Stop(StopReason.NO_MORE_GATEWAYS, 408)
    assert caller_status_for_failure(None, timer) == 408


def test_defaults_switch_on_invite_timeout_and_503() -> None:
    assert decide(DEFAULTS, timer=Timer.INVITE) == Next("gw1", DEFAULTS, 1)
    assert decide(DEFAULTS, 503) == Next("gw1", DEFAULTS, 1)


def test_stop_code_wins_over_everything() -> None:
    pol = policy(until_connect=True, stop_codes=frozenset({404}))
    assert decide(pol, 404) == Stop(StopReason.STOP_CODE, 404)
    assert decide(pol, 486) == Next("gw1", pol, 1)


def test_stop_codes_match_received_statuses_not_timeouts() -> None:
    pol = policy(stop_codes=frozenset({408}))
    assert decide(pol, timer=Timer.INVITE) == Next("gw1", pol, 1)
    assert decide(pol, 408) == Stop(StopReason.STOP_CODE, 408)


def test_rtp_start_stops_even_with_until_connect() -> None:
    pol = policy(rtp=True, until_connect=True)
    assert decide(pol, 503, rtp=True) == Stop(StopReason.RTP_STARTED, 503)
    assert decide(policy(until_connect=True), 503, rtp=True).__class__ is Next


def test_until_connect_overrides_sdp_busy_and_invite_timeout() -> None:
    pol = policy(sdp=True, invite_timeout_stop=True, busy=True, until_connect=True)
    assert isinstance(decide(pol, 486, sdp=True), Next)
    assert isinstance(decide(pol, 600), Next)
    assert isinstance(decide(pol, timer=Timer.INVITE), Next)


@pytest.mark.parametrize("status", [486, 600])
def test_user_busy(status: int) -> None:
    assert decide(policy(busy=True), status) == Stop(StopReason.USER_BUSY, status)
    assert isinstance(decide(policy(busy=False), status), Next)


def test_sdp_commits_to_the_gateway() -> None:
    assert decide(policy(sdp=True), 503, sdp=True) == Stop(StopReason.SDP_RECEIVED, 503)
    assert decide(policy(sdp=True), timer=Timer.SESSION_PROGRESS, sdp=True) == Stop(
        StopReason.SDP_RECEIVED, 408
    )
    assert isinstance(decide(policy(sdp=False), 503, sdp=True), Next)


def test_stop_after_invite_timeout_only_for_the_invite_timer() -> None:
    pol = policy(invite_timeout_stop=True)
    assert decide(pol, timer=Timer.INVITE) == Stop(StopReason.INVITE_TIMEOUT, 408)
    for timer in (Timer.TRYING, Timer.RINGING, Timer.SESSION_PROGRESS):
        assert isinstance(decide(pol, timer=timer), Next)


def test_switch_limit_and_end_of_route() -> None:
    # the integration test's shape: 3 gateways, limit 2 -> stops after the second, with its 502
    pol = policy()
    switcher = CallSwitcher([("a", pol), ("b", pol), ("c", pol)], 2)
    first = switcher.first()
    assert first == Next("a", pol, 0)
    second = switcher.on_failure(AttemptTracker("a", pol), 503, None)
    assert second == Next("b", pol, 1)
    stop = switcher.on_failure(AttemptTracker("b", pol), 502, None)
    assert stop == Stop(StopReason.SWITCH_LIMIT, 502)
    assert switcher.stop == stop and switcher.attempts_made == 2
    # limit equal to the route length: the limit cut nothing off
    assert decide(pol, 503, gateways=1, limit=1) == Stop(StopReason.NO_MORE_GATEWAYS, 503)
    assert decide(pol, 503, gateways=2, limit=1) == Stop(StopReason.SWITCH_LIMIT, 503)


def test_policy_of_the_failed_attempt_applies() -> None:
    lenient, strict = policy(), policy(busy=True)
    switcher = CallSwitcher([("a", lenient), ("b", strict), ("c", lenient)], None)
    switcher.first()
    assert switcher.on_failure(AttemptTracker("a", lenient), 486, None) == Next("b", strict, 1)
    assert switcher.on_failure(AttemptTracker("b", strict), 486, None) == Stop(
        StopReason.USER_BUSY, 486
    )


def test_no_gateway() -> None:
    switcher = CallSwitcher([], None)
    assert switcher.first() == Stop(StopReason.NO_GATEWAY, 503, "No Usable Gateway")
    assert switcher.attempts_made == 0


def test_answer_and_cancel() -> None:
    pol = policy()
    switcher = CallSwitcher([("a", pol)], None)
    switcher.first()
    assert switcher.on_answer(AttemptTracker("a", pol)) == Stop(StopReason.ANSWERED, 200)
    switcher = CallSwitcher([("a", pol)], None)
    switcher.first()
    assert switcher.on_caller_cancel() == Stop(StopReason.CALLER_CANCELLED, 487)
    assert switcher.stop == Stop(StopReason.CALLER_CANCELLED, 487)


def test_misuse_is_refused() -> None:
    pol = policy()
    with pytest.raises(ValueError):
        CallSwitcher([("a", pol)], 0)
    switcher = CallSwitcher([("a", pol), ("b", pol)], None)
    with pytest.raises(RuntimeError):
        switcher.on_failure(AttemptTracker("a", pol), 503, None)
    switcher.first()
    with pytest.raises(RuntimeError):
        switcher.first()
    with pytest.raises(ValueError):  # not the current attempt
        switcher.on_failure(AttemptTracker("b", pol), 503, None)
    with pytest.raises(ValueError):  # both a status and a timer
        switcher.on_failure(AttemptTracker("a", pol), 503, Timer.INVITE)
    with pytest.raises(ValueError):  # neither
        switcher.on_failure(AttemptTracker("a", pol), None, None)
    with pytest.raises(ValueError):  # not a failure
        switcher.on_failure(AttemptTracker("a", pol), 200, None)
    switcher.on_failure(AttemptTracker("a", pol), 503, None)
    switcher.on_failure(AttemptTracker("b", pol), 503, None)
    with pytest.raises(RuntimeError):  # already stopped
        switcher.on_failure(AttemptTracker("b", pol), 503, None)


def test_caller_status_for_failure() -> None:
    assert caller_status_for_failure(503, None) == 503
    assert caller_status_for_failure(None, Timer.RINGING) == 408
    for bad in [(None, None), (486, Timer.TRYING), (180, None), (700, None)]:
        with pytest.raises(ValueError):
            caller_status_for_failure(*bad)


# ---------------------------------------------------------------------------------------------
# Merging global parameters with a gateway's overrides
# ---------------------------------------------------------------------------------------------
def merged(
    invite: float | None = None,
    sdp: bool | None = None,
    invite_stop: bool | None = None,
    codes: list[int] | None = None,
) -> SwitchingPolicy:
    """Global parameters at their defaults, with these gateway overrides."""
    return effective_policy(
        global_invite_timeout=10.0,
        trying=20.0,
        ringing=120.0,
        progress=20.0,
        stop_after_sdp=True,
        stop_after_invite_timeout=False,
        user_busy=True,
        rtp_start=True,
        until_connect=False,
        gw_invite_timeout=invite,
        gw_stop_after_sdp=sdp,
        gw_stop_after_invite_timeout=invite_stop,
        gw_stop_codes=codes,
    )


def test_effective_policy_defaults() -> None:
    assert merged() == SwitchingPolicy(
        10.0, 20.0, 120.0, 20.0, True, False, True, True, False, frozenset()
    )


def test_effective_policy_overrides() -> None:
    pol = merged(invite=3.0, sdp=False, invite_stop=True, codes=[404, 403, 404])
    assert (pol.invite_timeout, pol.stop_after_sdp, pol.stop_after_invite_timeout) == (
        3.0,
        False,
        True,
    )
    assert pol.stop_codes == frozenset({403, 404})
    assert merged(codes=[]).stop_codes == frozenset()


@pytest.mark.parametrize(
    "bad", [{"invite": 0.0}, {"invite": -1.0}, {"codes": [200]}, {"codes": [700]}]
)
def test_effective_policy_rejects_bad_values(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        merged(**bad)


# ---------------------------------------------------------------------------------------------
# Timers of one attempt
# ---------------------------------------------------------------------------------------------
KEEP = TimerChange(False, None, None)


def arm(timer: Timer, seconds: float) -> TimerChange:
    return TimerChange(True, timer, seconds)


# (events after the INVITE, then the expected (phase, change) after each event)
TIMER_SCRIPTS: list[tuple[str, list[tuple[int, Phase, TimerChange]]]] = [
    (
        "100 then 180 then 200",
        [
            (100, Phase.TRYING, arm(Timer.TRYING, TRYING_T)),
            (180, Phase.RINGING, arm(Timer.RINGING, RINGING_T)),
        ],
    ),
    ("straight to 183", [(183, Phase.SESSION_PROGRESS, arm(Timer.SESSION_PROGRESS, PROGRESS_T))]),
    (
        "repeated 100 does not extend",
        [
            (100, Phase.TRYING, arm(Timer.TRYING, TRYING_T)),
            (100, Phase.TRYING, KEEP),
        ],
    ),
    (
        "100 after 18x does not go back",
        [
            (180, Phase.RINGING, arm(Timer.RINGING, RINGING_T)),
            (100, Phase.RINGING, KEEP),
            (183, Phase.SESSION_PROGRESS, arm(Timer.SESSION_PROGRESS, PROGRESS_T)),
            (100, Phase.SESSION_PROGRESS, KEEP),
        ],
    ),
    (
        "repeated 180 does not extend ringing",
        [
            (180, Phase.RINGING, arm(Timer.RINGING, RINGING_T)),
            (180, Phase.RINGING, KEEP),
            (181, Phase.RINGING, KEEP),
            (182, Phase.RINGING, KEEP),
        ],
    ),
    (
        "every 183 restarts session progress",
        [
            (183, Phase.SESSION_PROGRESS, arm(Timer.SESSION_PROGRESS, PROGRESS_T)),
            (183, Phase.SESSION_PROGRESS, arm(Timer.SESSION_PROGRESS, PROGRESS_T)),
            (180, Phase.RINGING, arm(Timer.RINGING, RINGING_T)),
            (183, Phase.SESSION_PROGRESS, arm(Timer.SESSION_PROGRESS, PROGRESS_T)),
        ],
    ),
    ("181 and 182 are ringing", [(181, Phase.RINGING, arm(Timer.RINGING, RINGING_T))]),
    ("182 is ringing", [(182, Phase.RINGING, arm(Timer.RINGING, RINGING_T))]),
    (
        "other 1xx is progress",
        [
            (199, Phase.SESSION_PROGRESS, arm(Timer.SESSION_PROGRESS, PROGRESS_T)),
        ],
    ),
    ("101 is progress", [(101, Phase.SESSION_PROGRESS, arm(Timer.SESSION_PROGRESS, PROGRESS_T))]),
]


def state(tracker: AttemptTracker) -> tuple[Phase, Timer | None]:
    return tracker.phase, tracker.timer


@pytest.mark.parametrize("script", [s for _, s in TIMER_SCRIPTS], ids=[n for n, _ in TIMER_SCRIPTS])
def test_attempt_timers(script: list[tuple[int, Phase, TimerChange]]) -> None:
    tracker = AttemptTracker("gw", policy())
    assert state(tracker) == (Phase.IDLE, None)
    assert tracker.on_invite_sent() == arm(Timer.INVITE, INVITE_T)
    assert state(tracker) == (Phase.CALLING, Timer.INVITE)
    assert tracker.on_invite_sent() == KEEP  # not a second INVITE
    for status, phase, change in script:
        assert tracker.on_provisional(status, has_sdp=False) == change, status
        assert tracker.phase is phase
        if change.arm is not None:
            assert tracker.timer is change.arm


@pytest.mark.parametrize("status", [180, 181, 182, 183, 199])
def test_sdp_in_any_18x_is_seen(status: int) -> None:
    tracker = AttemptTracker("gw", policy())
    tracker.on_invite_sent()
    tracker.on_provisional(status, has_sdp=False)
    assert not tracker.sdp_seen
    tracker.on_provisional(status, has_sdp=True)
    assert tracker.sdp_seen
    tracker.on_provisional(status, has_sdp=False)
    assert tracker.sdp_seen  # it stays seen


def test_sdp_on_100_does_not_count_and_rtp_flag() -> None:
    tracker = AttemptTracker("gw", policy())
    tracker.on_invite_sent()
    tracker.on_provisional(100, has_sdp=True)
    assert not tracker.sdp_seen and not tracker.rtp_started
    tracker.on_rtp_started()
    assert tracker.rtp_started
    with pytest.raises(ValueError):
        tracker.on_provisional(200, has_sdp=False)
    assert "gw" in repr(tracker)


# ---------------------------------------------------------------------------------------------
# Properties: a call always stops, and never tries more gateways than allowed
# ---------------------------------------------------------------------------------------------
policies = st.builds(
    SwitchingPolicy,
    invite_timeout=st.just(1.0),
    trying_timeout=st.just(1.0),
    ringing_timeout=st.just(1.0),
    session_progress_timeout=st.just(1.0),
    stop_after_sdp=st.booleans(),
    stop_after_invite_timeout=st.booleans(),
    stop_after_user_busy=st.booleans(),
    stop_after_rtp_start=st.booleans(),
    until_connect=st.booleans(),
    stop_codes=st.frozensets(st.sampled_from([403, 404, 486, 503, 600])),
)
failures = st.one_of(st.sampled_from(list(Timer)), st.integers(300, 699))


@settings(max_examples=400, deadline=None)
@given(
    gateways=st.lists(policies, max_size=8),
    limit=st.one_of(st.none(), st.integers(1, 10)),
    events=st.lists(st.tuples(failures, st.booleans(), st.booleans()), min_size=9, max_size=9),
)
def test_always_stops_within_the_limit(
    gateways: list[SwitchingPolicy],
    limit: int | None,
    events: list[tuple[int | Timer, bool, bool]],
) -> None:
    route = [(f"gw{i}", pol) for i, pol in enumerate(gateways)]
    switcher = CallSwitcher(route, limit)
    bound = len(route) if limit is None else min(limit, len(route))
    decision = switcher.first()
    steps = iter(events)
    while isinstance(decision, Next):
        assert decision.index == switcher.attempts_made - 1
        assert (decision.gateway, decision.policy) == route[decision.index]
        assert switcher.attempts_made <= bound
        failure, sdp, rtp = next(steps)  # at most len(route) + 1 <= 9 failures are needed
        tracker = AttemptTracker(decision.gateway, decision.policy)
        tracker.on_invite_sent()
        if sdp:
            tracker.on_provisional(183, True)
        if rtp:
            tracker.on_rtp_started()
        if isinstance(failure, Timer):
            decision = switcher.on_failure(tracker, None, failure)
            assert isinstance(decision, Next) or decision.caller_status == 408
        else:
            decision = switcher.on_failure(tracker, failure, None)
            assert isinstance(decision, Next) or decision.caller_status == failure
    assert switcher.attempts_made <= bound
    assert switcher.stop is decision
    if not route:
        assert decision == Stop(StopReason.NO_GATEWAY, 503, "No Usable Gateway")
    elif decision.reason is StopReason.NO_MORE_GATEWAYS:
        assert switcher.attempts_made == len(route)
    elif decision.reason is StopReason.SWITCH_LIMIT:
        assert limit is not None and switcher.attempts_made == limit < len(route)


# ---------------------------------------------------------------------------------------------
# Gateways by host name: unresolved names and the targets of one name
# ---------------------------------------------------------------------------------------------
def test_an_unresolved_name_switches_whatever_the_stop_rules() -> None:
    switcher = CallSwitcher([("gw1", STOP_EVERYTHING), ("gw2", SWITCH_ALWAYS)], None)
    first = switcher.first()
    assert isinstance(first, Next)
    # nothing was received and no timer ran: R2-R5 cannot apply, even with 503 a stop code
    decision = switcher.on_unresolved(AttemptTracker("gw1", first.policy))
    assert decision == Next("gw2", SWITCH_ALWAYS, 1)
    stop = switcher.on_unresolved(AttemptTracker("gw2", SWITCH_ALWAYS))
    assert stop == Stop(StopReason.NO_MORE_GATEWAYS, 503)
    assert switcher.stop == stop


def test_an_unresolved_name_counts_toward_the_switch_limit() -> None:
    switcher = CallSwitcher([("gw1", SWITCH_ALWAYS), ("gw2", SWITCH_ALWAYS)], 1)
    switcher.first()
    stop = switcher.on_unresolved(AttemptTracker("gw1", SWITCH_ALWAYS))
    assert stop == Stop(StopReason.SWITCH_LIMIT, 503)
    with pytest.raises(RuntimeError):  # before first(): no gateway is being tried
        CallSwitcher([("gw1", SWITCH_ALWAYS)], None).on_unresolved(
            AttemptTracker("gw1", SWITCH_ALWAYS)
        )


@pytest.mark.parametrize(
    ("timer", "phase", "expected"),
    [
        (Timer.INVITE, Phase.CALLING, True),  # no response at all: the next target
        (Timer.TRYING, Phase.TRYING, False),  # the gateway answered: switching decides
        (Timer.RINGING, Phase.RINGING, False),
        (Timer.SESSION_PROGRESS, Phase.SESSION_PROGRESS, False),
        (Timer.INVITE, Phase.TRYING, False),
    ],
)
def test_only_silence_tries_the_next_target(timer: Timer, phase: Phase, expected: bool) -> None:
    assert tries_next_target(timer, phase) is expected
