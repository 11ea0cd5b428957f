"""The console's pure parts: the session table's bounds and lifetimes, the CDR search's
parameter checks, the sparkline geometry, and the per-bucket series of the carrier windows."""

from __future__ import annotations

import itertools

import pytest

from sipedge.api import AccessPolicy
from sipedge.api.console.charts import HEIGHT, sparkline
from sipedge.api.console.search import MAX_QUERY, Search, csv_row, parse_search
from sipedge.api.console.sessions import (
    ABSOLUTE_SECONDS,
    IDLE_SECONDS,
    MAX_SESSIONS,
    SessionTable,
    csrf_matches,
)
from sipedge.stats import CarrierStats

ADMIN, READ = "admin-" + "a" * 40, "read-" + "r" * 40
POLICY = AccessPolicy((ADMIN,), (READ,))


def counter_random() -> object:
    counter = itertools.count()
    return lambda n: f"{next(counter):0{43}d}"


def test_a_session_has_the_scope_of_its_token_and_only_a_digest_of_it() -> None:
    table = SessionTable()
    assert table.login(POLICY, "wrong", 0.0) is None
    assert table.login(POLICY, "", 0.0) is None
    admin = table.login(POLICY, f"  {ADMIN} ", 0.0)
    read = table.login(POLICY, READ, 0.0)
    assert admin is not None and read is not None
    assert admin.admin and not read.admin
    assert ADMIN not in repr(admin) and admin.sid not in repr(admin)
    assert table.lookup(POLICY, admin.sid, 10.0) is admin
    assert table.lookup(POLICY, "x" * 43, 10.0) is None
    assert table.lookup(POLICY, admin.sid + "x", 10.0) is None
    assert csrf_matches(admin, admin.csrf) and not csrf_matches(admin, read.csrf)
    assert not csrf_matches(admin, None) and not csrf_matches(admin, "x" * 1000)
    table.logout(admin.sid)
    assert table.lookup(POLICY, admin.sid, 10.0) is None


def test_sessions_expire_idle_and_absolute_and_with_their_token() -> None:
    table = SessionTable()
    s = table.login(POLICY, READ, 0.0)
    assert s is not None
    assert table.lookup(POLICY, s.sid, IDLE_SECONDS - 1) is s
    assert table.lookup(POLICY, s.sid, 2 * IDLE_SECONDS - 2) is s  # idle restarts on use
    assert table.lookup(POLICY, s.sid, 3 * IDLE_SECONDS) is None
    s = table.login(POLICY, READ, 0.0)
    assert s is not None
    now = 0.0
    while now < ABSOLUTE_SECONDS - IDLE_SECONDS:
        now += IDLE_SECONDS / 2
        assert table.lookup(POLICY, s.sid, now) is s
    assert table.lookup(POLICY, s.sid, ABSOLUTE_SECONDS) is None
    s = table.login(POLICY, READ, 0.0)
    assert s is not None
    rotated = AccessPolicy((ADMIN,), ("read-" + "n" * 40,))
    assert table.lookup(rotated, s.sid, 1.0) is None
    assert table.lookup(POLICY, s.sid, 1.0) is None  # gone, not just hidden


def test_the_table_is_bounded_and_evicts_the_least_recently_used() -> None:
    table = SessionTable(counter_random())  # type: ignore[arg-type]
    first = table.login(POLICY, READ, 0.0)
    assert first is not None
    sessions = [table.login(POLICY, READ, 1.0) for _ in range(MAX_SESSIONS - 1)]
    assert table.lookup(POLICY, first.sid, 2.0) is first  # now the most recently used
    table.login(POLICY, READ, 3.0)
    assert len(table) == MAX_SESSIONS and table.evicted == 1
    assert table.lookup(POLICY, first.sid, 4.0) is first
    assert sessions[0] is not None and table.lookup(POLICY, sessions[0].sid, 4.0) is None


def test_an_open_policy_is_one_admin_session_without_login() -> None:
    table = SessionTable()
    open_policy = AccessPolicy()
    assert table.lookup(open_policy, None, 0.0) is table.open_session
    assert table.open_session.admin and table.open_session.csrf


def test_the_search_accepts_bounded_values_and_says_what_is_wrong() -> None:
    search = parse_search(
        {"caller": "+49 30".replace(" ", ""), "until": "1700000000", "answered": "no"}, 40
    )
    assert isinstance(search, Search)
    assert search.filters == {"caller": "+4930", "until": 1700000000.0, "answered": False}
    assert search.limit == 50 and search.before is None
    assert "caller=%2B4930" in search.query(before=9) and "before=9" in search.query(before=9)
    zoned = parse_search({"since": "2026-01-01T01:00+01:00"}, 30)
    assert isinstance(zoned, Search) and zoned.filters["since"] == 1767225600.0
    errors = parse_search(
        {
            "callee": "1' OR 1=1 --",
            "since": "yesterday",
            "answered": "maybe",
            "limit": "99999",
            "before": "-1",
            "call_id": "a b",
        },
        100,
    )
    assert isinstance(errors, list) and len(errors) == 6
    assert parse_search({}, MAX_QUERY + 1) == [f"the query is longer than {MAX_QUERY} bytes"]
    assert isinstance(parse_search({"gateway": "g" * 65}, 80), list)
    assert isinstance(parse_search({"answered": "any", "gateway": ""}, 20), Search)


def test_a_csv_row_keeps_the_columns_and_the_attempts_as_json() -> None:
    row = csv_row({"id": 3, "call_id": "c", "attempts": [{"gateway": "g"}]})
    assert row[0] == 3 and row[1] == "c" and row[-1] == '[{"gateway":"g"}]'
    assert len(row) == 16 and row[2] is None


def test_a_sparkline_scales_bars_to_the_busiest_bucket_and_draws_the_asr() -> None:
    empty = sparkline([[0, 0]] * 60)
    assert empty.bars == () and empty.asr_points == "" and empty.peak == 0
    line = sparkline([[0, 0], [4, 3], [2, 0], [0, 0]])
    assert (line.attempts, line.answered, line.peak) == (6, 3, 4)
    assert [b.height for b in line.bars] == [HEIGHT, HEIGHT / 2]
    assert line.bars[0].x == 60.0 and line.bars[0].y == 0.0
    assert line.asr_points == "90.0,10.0 150.0,40.0"  # 75 % and 0 %
    assert len(sparkline([[1, 1]] * 5000).bars) == 512


def test_the_series_lists_each_bucket_of_a_window_oldest_first() -> None:
    now = [1000.0]
    stats = CarrierStats(lambda: now[0])
    stats.configure(["gw"], ["pbx"])
    stats.attempt_ended("gw", None, 0.1)
    now[0] += 125  # two 60 s buckets later
    stats.attempt_ended("gw", "5xx", None)
    stats.attempt_ended("gw", None, 0.1)
    series = stats.series("1h")
    assert series["bucket_seconds"] == 60.0
    buckets = series["routing_gateways"]["gw"]  # type: ignore[index]
    assert len(buckets) == 60 and buckets[-1] == [2, 1] and buckets[-3] == [1, 1]
    assert sum(b[0] for b in buckets) == 3
    assert series["mapping_gateways"] == {"pbx": [[0, 0]] * 60}  # type: ignore[comparison-overlap]
    now[0] += 3600
    assert stats.series("1h")["routing_gateways"] == {"gw": [[0, 0]] * 60}
    with pytest.raises(KeyError):
        stats.series("7d")
