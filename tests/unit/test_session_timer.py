"""RFC 4028 session timers, the pure decisions (daemons/sipedge/calls/session_timer.py)."""

from __future__ import annotations

import pytest

from sipedge.calls.session_timer import (
    MAX_INTERVAL,
    RFC_MIN_SE,
    LegTimer,
    Reject422,
    SessionExpires,
    TimerSettings,
    UasAnswer,
    has_option,
    negotiate_uac,
    negotiate_uas,
    parse_min_se,
    parse_session_expires,
    retry_after_422,
    uac_headers,
)

DEFAULT = TimerSettings()
OFF = TimerSettings(enabled=False)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("1800", SessionExpires(1800, None)),
        ("1800;refresher=uac", SessionExpires(1800, "uac")),
        ("90 ; Refresher = UAS", SessionExpires(90, "uas")),
        ("300;refresher=proxy", SessionExpires(300, None)),
        ("300;foo=bar;refresher=uas", SessionExpires(300, "uas")),
        ("abc", None),
        ("", None),
        ("0", None),
        ("-5", None),
    ],
)
def test_parse_session_expires(value: str | None, expected: SessionExpires | None) -> None:
    assert parse_session_expires(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("90", 90), (" 120 ", 120), ("300;x=y", 300), ("x", None), ("0", None)],
)
def test_parse_min_se(value: str | None, expected: int | None) -> None:
    assert parse_min_se(value) == expected


def test_has_option() -> None:
    assert has_option(["100rel, Timer"], "timer")
    assert has_option(["path", "timer"], "TIMER")
    assert not has_option(["100rel"], "timer")
    assert not has_option([], "timer")
    assert not has_option(["timers"], "timer")


def test_settings_floor_and_interval() -> None:
    assert (DEFAULT.floor, DEFAULT.interval) == (90, 1800)
    # our Min-SE above our Session-Expires: we ask for the Min-SE
    s = TimerSettings(session_expires=100, min_se=600)
    assert (s.floor, s.interval) == (600, 600)
    # a Min-SE below the RFC floor (not configurable, but the rule holds) is raised to 90
    assert TimerSettings(min_se=10).floor == RFC_MIN_SE


@pytest.mark.parametrize(
    ("interval", "refresh", "expire"),
    [
        (90, 45, 60),  # 90 - min(32, 30)
        (96, 48, 64),  # 96 - 32
        (1800, 900, 1768),
        (86400, 43200, 86368),
    ],
)
def test_leg_timer_times(interval: int, refresh: float, expire: float) -> None:
    timer = LegTimer(interval, we_refresh=True)
    assert timer.refresh_after == refresh
    assert timer.expire_after == expire
    assert timer.refresh_after < timer.expire_after < interval


@pytest.mark.parametrize(
    ("we_refresh", "we_are_uac", "param"),
    [(True, True, "uac"), (True, False, "uas"), (False, True, "uas"), (False, False, "uac")],
)
def test_refresher_param(we_refresh: bool, we_are_uac: bool, param: str) -> None:
    timer = LegTimer(600, we_refresh)
    assert timer.refresher_param(we_are_uac) == param
    assert timer.header(we_are_uac) == f"600;refresher={param}"


# -- UAS: the caller's INVITE (and any refresh we answer) -------------------------------------


def uas(
    se: str | None,
    min_se: str | None = None,
    supported: list[str] | None = None,
    settings: TimerSettings = DEFAULT,
) -> Reject422 | UasAnswer | None:
    return negotiate_uas(settings, se, min_se, supported or [])


def test_uas_off_does_nothing() -> None:
    assert uas("30", supported=["timer"], settings=OFF) is None
    assert uas("1800", settings=OFF) is None


@pytest.mark.parametrize("se", ["1", "30", "89"])
def test_uas_too_small_is_422_with_our_min_se(se: str) -> None:
    assert uas(se, supported=["timer"]) == Reject422(90)


def test_uas_too_small_for_our_configured_min_se() -> None:
    settings = TimerSettings(min_se=300)
    assert uas("299", settings=settings) == Reject422(300)
    assert isinstance(uas("300", settings=settings), UasAnswer)


def test_uas_exactly_the_floor_is_accepted() -> None:
    answer = uas("90", supported=["timer"])
    assert isinstance(answer, UasAnswer)
    assert answer.timer == LegTimer(90, we_refresh=False)
    assert answer.session_expires == "90;refresher=uac"
    assert answer.require_timer


def test_uas_caller_supports_timer_refreshes_itself() -> None:
    answer = uas("600", supported=["100rel, timer"])
    assert answer == UasAnswer(LegTimer(600, False), "600;refresher=uac", True)


def test_uas_caller_without_support_we_refresh() -> None:
    answer = uas("600")
    assert answer == UasAnswer(LegTimer(600, True), "600;refresher=uas", False)


def test_uas_refresher_asked_by_the_caller_wins() -> None:
    assert uas("600;refresher=uas", supported=["timer"]) == UasAnswer(
        LegTimer(600, True), "600;refresher=uas", True
    )
    # refresher=uac without Supported: the caller still said it will refresh; Require it
    assert uas("600;refresher=uac") == UasAnswer(LegTimer(600, False), "600;refresher=uac", True)


def test_uas_lowers_a_long_interval_to_ours() -> None:
    answer = uas("7200", supported=["timer"])
    assert isinstance(answer, UasAnswer)
    assert answer.timer.interval == 1800


def test_uas_never_lowers_below_the_callers_min_se() -> None:
    answer = uas("7200", min_se="3600", supported=["timer"])
    assert isinstance(answer, UasAnswer)
    assert answer.timer.interval == 3600


def test_uas_never_raises_above_the_callers_request() -> None:
    answer = uas("120", supported=["timer"])
    assert isinstance(answer, UasAnswer)
    assert answer.timer.interval == 120


def test_uas_no_session_expires_we_insert_ours() -> None:
    assert uas(None) == UasAnswer(LegTimer(1800, True), "1800;refresher=uas", False)
    assert uas(None, supported=["timer"]) == UasAnswer(
        LegTimer(1800, False), "1800;refresher=uac", True
    )


def test_uas_no_session_expires_but_a_larger_min_se() -> None:
    answer = uas(None, min_se="4000")
    assert isinstance(answer, UasAnswer)
    assert answer.timer.interval == 4000


def test_uas_min_se_below_rfc_floor_is_ignored() -> None:
    answer = uas(None, min_se="10")
    assert isinstance(answer, UasAnswer)
    assert answer.timer.interval == 1800


def test_uas_malformed_session_expires_is_treated_as_absent() -> None:
    assert uas("soon") == uas(None)


def test_uas_interval_capped() -> None:
    answer = uas(None, min_se=str(MAX_INTERVAL * 2))
    assert isinstance(answer, UasAnswer)
    assert answer.timer.interval == MAX_INTERVAL


# -- UAC: the gateway leg ---------------------------------------------------------------------


def test_uac_headers() -> None:
    assert uac_headers(DEFAULT) == [
        ("Supported", "timer"),
        ("Session-Expires", "1800"),
        ("Min-SE", "90"),
    ]
    assert uac_headers(TimerSettings(session_expires=600, min_se=120)) == [
        ("Supported", "timer"),
        ("Session-Expires", "600"),
        ("Min-SE", "120"),
    ]
    assert uac_headers(OFF) == []


@pytest.mark.parametrize(
    ("se", "expected"),
    [
        ("1800;refresher=uac", LegTimer(1800, True)),
        ("1800;refresher=uas", LegTimer(1800, False)),
        ("900", LegTimer(900, True)),  # no refresher: the UAC (us)
        ("30;refresher=uas", LegTimer(90, False)),  # below the RFC floor: 90
        (str(MAX_INTERVAL + 1), LegTimer(MAX_INTERVAL, True)),
        (None, LegTimer(1800, True)),  # the gateway has no timers: we refresh anyway
        ("junk", LegTimer(1800, True)),
    ],
)
def test_negotiate_uac(se: str | None, expected: LegTimer) -> None:
    assert negotiate_uac(DEFAULT, se) == expected


def test_negotiate_uac_off() -> None:
    assert negotiate_uac(OFF, "1800;refresher=uac") is None
    assert negotiate_uac(OFF, None) is None


@pytest.mark.parametrize(
    ("min_se", "expected"),
    [
        ("3600", 3600),
        ("1801", 1801),
        ("1800", None),  # not larger than what we asked: nothing to gain
        ("600", None),
        (None, None),
        ("bad", None),
        (str(MAX_INTERVAL + 1), None),
    ],
)
def test_retry_after_422(min_se: str | None, expected: int | None) -> None:
    assert retry_after_422(DEFAULT, min_se) == expected
