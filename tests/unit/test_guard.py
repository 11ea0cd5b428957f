"""The guard: its tables (bounded, O(1)), its rules in order, and the glue on a fake clock."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from sipedge.config import RateLimit, SecurityConfig
from sipedge.guard import (
    BAN_REASONS,
    DROP_REASONS,
    BanTable,
    GuardRules,
    GuardService,
    GuardSettings,
    RateTable,
    Standing,
)
from sipedge.guard.tables import SWEEP_MAX
from sipedge.sip.message import Request, Response, parse_message

SETTINGS = GuardSettings(requests=5, window=1.0, ban=60.0, scanner_user_agents=("sipvicious",))


# -- tables --------------------------------------------------------------------------------------
def test_rate_table_counts_a_sliding_window() -> None:
    table = RateTable(window=1.0, capacity=10)
    assert [table.hit("a", 0.1 * i) for i in range(5)] == [1, 2, 3, 4, 5]
    # half-way through the next window, half of the previous window still counts
    assert table.hit("a", 1.5) == pytest.approx(1 + 5 * 0.5)
    # two windows of silence: nothing left
    assert table.hit("a", 4.0) == 1


def test_rate_table_is_bounded_and_evicts_the_oldest() -> None:
    table = RateTable(window=1.0, capacity=3)
    for i, source in enumerate("abcd"):
        table.hit(source, i * 0.01)
    assert len(table) == 3 and table.evicted == 1
    assert table.hit("a", 0.05) == 1  # "a" was evicted, it starts again
    assert table.sweep(10.0) == 3 and len(table) == 0


def test_ban_table_expires_evicts_and_clears() -> None:
    bans = BanTable(capacity=2)
    bans.add("a", "rate", 0.0, 10.0)
    bans.add("b", "scanner", 1.0, 10.0)
    bans.add("c", "rate", 2.0, 10.0)  # full: "a" goes
    assert bans.get("a", 3.0) is None and bans.evicted == 1
    ban = bans.get("b", 3.0)
    assert ban is not None and ban.reason == "scanner"
    assert ban.to_json(3.0) == {
        "address": "b",
        "reason": "scanner",
        "age": 2.0,
        "expires_in": 8.0,
        "dropped": 0,
    }
    assert bans.get("b", 11.0) is None  # ended
    assert bans.sweep(12.5) == 1 and len(bans) == 0
    bans.add("d", "rate", 0.0, 10.0)
    assert bans.remove("d") and not bans.remove("d")
    bans.add("e", "rate", 0.0, 10.0)
    assert bans.clear() == 1 and bans.active(0.0) == []


# -- rules ---------------------------------------------------------------------------------------
def flood(rules: GuardRules, address: str, standing: Standing, count: int) -> list[str | None]:
    return [rules.check(address, standing, i * 0.01, "INVITE", "x").drop for i in range(count)]


def test_over_the_rate_bans_then_drops_as_banned() -> None:
    rules = GuardRules(SETTINGS)
    drops = flood(rules, "198.51.100.7", Standing.UNKNOWN, 8)
    assert drops == [None] * 5 + ["rate", "banned", "banned"]
    ban = rules.bans.get("198.51.100.7", 1.0)
    assert ban is not None and ban.reason == "rate" and ban.until == pytest.approx(60.05)
    assert ban.dropped == 2
    # the ban ends: the source starts with a clean count
    assert rules.check("198.51.100.7", Standing.UNKNOWN, 61.0, "INVITE").drop is None


@pytest.mark.parametrize("standing", [Standing.TRUSTED, Standing.GATEWAY])
def test_trusted_and_gateways_are_never_limited_or_banned(standing: Standing) -> None:
    rules = GuardRules(SETTINGS)
    assert set(flood(rules, "192.0.2.1", standing, 100)) == {None}
    decision = rules.check("192.0.2.1", standing, 2.0, "OPTIONS", "friendly-scanner sipvicious")
    assert decision.drop is None and len(rules.bans) == 0 and len(rules.rates) == 0


def test_endpoints_are_rate_limited() -> None:
    rules = GuardRules(SETTINGS)
    assert "rate" in flood(rules, "203.0.113.5", Standing.ENDPOINT, 10)


def test_scanner_user_agent_bans_at_once_case_insensitively() -> None:
    rules = GuardRules(SETTINGS)
    decision = rules.check("203.0.113.9", Standing.UNKNOWN, 0.0, "OPTIONS", "SIPVicious 0.3")
    assert decision.drop == "scanner" and decision.ban is not None
    assert decision.ban.reason == "scanner"
    assert rules.check("203.0.113.9", Standing.UNKNOWN, 1.0, "OPTIONS", "other").drop == "banned"


def test_responses_are_counted_but_never_screened_by_user_agent() -> None:
    rules = GuardRules(SETTINGS)
    drops = [rules.check("203.0.113.1", Standing.UNKNOWN, i * 0.01).drop for i in range(6)]
    assert drops == [None] * 5 + ["rate"]


def test_ban_zero_drops_what_is_over_the_rate_but_bans_nobody() -> None:
    rules = GuardRules(GuardSettings(requests=2, window=1.0, ban=0.0))
    assert flood(rules, "203.0.113.2", Standing.UNKNOWN, 4) == [None, None, "rate", "rate"]
    assert len(rules.bans) == 0
    assert rules.check("203.0.113.2", Standing.UNKNOWN, 3.0, "INVITE").drop is None


def test_unknown_sources_dropped_when_configured_but_register_stays_open() -> None:
    closed = GuardRules(GuardSettings(drop_unknown=True))
    assert closed.check("203.0.113.3", Standing.UNKNOWN, 0.0, "INVITE").drop == "unknown"
    assert closed.check("203.0.113.3", Standing.UNKNOWN, 0.0, "REGISTER").drop == "unknown"
    assert closed.check("203.0.113.3", Standing.ENDPOINT, 0.0, "INVITE").drop is None
    assert closed.check("203.0.113.3", Standing.UNKNOWN, 0.0).drop is None  # a response
    accounts = GuardRules(GuardSettings(drop_unknown=True, register_open=True))
    assert accounts.check("203.0.113.3", Standing.UNKNOWN, 0.0, "REGISTER").drop is None
    assert accounts.check("203.0.113.3", Standing.UNKNOWN, 0.0, "OPTIONS").drop == "unknown"
    answer = GuardRules(GuardSettings(drop_unknown=False))
    assert answer.check("203.0.113.3", Standing.UNKNOWN, 0.0, "INVITE").drop is None


def test_reconfigure_keeps_bans() -> None:
    rules = GuardRules(SETTINGS)
    flood(rules, "198.51.100.8", Standing.UNKNOWN, 6)
    rules.configure(GuardSettings(requests=100, window=5.0, ban=10.0))
    assert rules.check("198.51.100.8", Standing.UNKNOWN, 1.0, "INVITE").drop == "banned"


def test_a_spoofed_flood_stays_within_the_bound() -> None:
    rules = GuardRules(GuardSettings(requests=1, window=1.0, ban=60.0, max_tracked_sources=100))
    for i in range(5000):
        address = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
        rules.check(address, Standing.UNKNOWN, 0.0, "INVITE")
        rules.check(address, Standing.UNKNOWN, 0.0, "INVITE")  # over: banned
    assert len(rules.rates) <= 100 and len(rules.bans) <= 100
    assert rules.bans.evicted > 0


def test_one_sweep_does_bounded_work() -> None:
    table = RateTable(window=1.0, capacity=10 * SWEEP_MAX)
    bans = BanTable(capacity=10 * SWEEP_MAX)
    for i in range(3 * SWEEP_MAX):
        table.hit(str(i), 0.0)
        bans.add(str(i), "rate", 0.0, 1.0)
    assert table.sweep(10.0) == SWEEP_MAX and bans.sweep(10.0) == SWEEP_MAX
    assert len(table) == len(bans) == 2 * SWEEP_MAX


# -- the glue ------------------------------------------------------------------------------------
class FakePeers:
    def __init__(self) -> None:
        self.gateways = {"192.0.2.10"}
        self.endpoints = {"192.0.2.20"}

    def is_gateway(self, address: str) -> bool:
        return address in self.gateways

    def is_endpoint(self, address: str) -> bool:
        return address in self.endpoints


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def request(method: str = "INVITE", user_agent: str | None = None) -> Request:
    ua = f"User-Agent: {user_agent}\r\n" if user_agent else ""
    msg = parse_message(
        (
            f"{method} sip:100@192.0.2.1 SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bK-g1\r\n"
            "From: <sip:a@192.0.2.99>;tag=f\r\nTo: <sip:100@192.0.2.1>\r\n"
            f"Call-ID: g1\r\nCSeq: 1 {method}\r\n{ua}Content-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(msg, Request)
    return msg


def response() -> Response:
    msg = parse_message(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-r\r\n"
        b"From: <sip:a@x>;tag=f\r\nTo: <sip:b@x>;tag=t\r\nCall-ID: r\r\nCSeq: 1 OPTIONS\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert isinstance(msg, Response)
    return msg


def security(**kw: object) -> SecurityConfig:
    base: dict[str, object] = {
        "trusted": (ip_network("10.1.0.0/16"),),
        "rate_limit": RateLimit(requests=3, window=1.0, ban=30),
    }
    base.update(kw)
    return SecurityConfig(**base)  # type: ignore[arg-type]


def test_service_classifies_sources() -> None:
    peers = FakePeers()
    guard = GuardService(security(), peers, clock=Clock())
    assert guard.standing("10.1.2.3") is Standing.TRUSTED
    assert guard.standing("::ffff:10.1.2.3") is Standing.TRUSTED
    assert guard.standing("192.0.2.10") is Standing.GATEWAY
    assert guard.standing("192.0.2.20") is Standing.ENDPOINT
    assert guard.standing("192.0.2.30") is Standing.UNKNOWN
    assert guard.standing("not an address") is Standing.UNKNOWN
    # gateways and trusted networks come from the config (cached until a reload); endpoints
    # come and go with their registrations (asked every time)
    peers.endpoints.discard("192.0.2.20")
    peers.endpoints.add("192.0.2.30")
    assert guard.standing("192.0.2.20") is Standing.UNKNOWN
    assert guard.standing("192.0.2.30") is Standing.ENDPOINT
    peers.gateways.add("192.0.2.31")
    assert guard.standing("192.0.2.31") is Standing.GATEWAY  # never looked up before


def test_service_counts_drops_and_bans_and_serves_the_ban_list() -> None:
    clock = Clock()
    guard = GuardService(security(), FakePeers(), clock=clock)
    source = ("198.51.100.1", 5060)
    admitted = [guard.admit(request(), source) for _ in range(6)]
    assert admitted == [True, True, True, False, False, False]
    assert guard.stats.drops == {"banned": 2, "rate": 1, "scanner": 0, "unknown": 0}
    assert guard.stats.bans == {"rate": 1, "scanner": 0}
    assert set(guard.stats.drops) == set(DROP_REASONS)
    assert set(guard.stats.bans) == set(BAN_REASONS)
    assert not guard.admit(request("OPTIONS", "friendly-scanner"), ("198.51.100.2", 1))
    assert not guard.admit(response(), ("198.51.100.2", 1))  # banned: responses too
    listed = {b["address"]: b for b in guard.bans()}
    assert listed["198.51.100.1"]["reason"] == "rate"
    assert listed["198.51.100.2"]["reason"] == "scanner"
    assert guard.bans_active() == 2
    metrics = {m.name: m for m in guard.metrics()}
    assert {s.labels["reason"] for s in metrics["sipedge_guard_drops"].samples} >= {"banned"}
    assert guard.clear("198.51.100.1") == 1 and guard.clear("198.51.100.1") == 0
    assert guard.admit(request(), source)  # and its count starts again
    assert guard.clear() == 1 and guard.bans() == [] and guard.stats.cleared == 2
    # bans end on their own; the sweep runs on the next datagram
    guard.admit(request("OPTIONS", "sipcli/1"), ("198.51.100.3", 1))
    clock.now += 31
    guard.admit(request(), ("192.0.2.10", 1))
    assert guard.bans_active() == 0


def test_service_reload_lifts_bans_of_new_gateways() -> None:
    peers = FakePeers()
    guard = GuardService(security(), peers, clock=Clock())
    guard.admit(request("OPTIONS", "sipvicious"), ("198.51.100.4", 1))
    assert guard.bans_active() == 1
    peers.gateways.add("198.51.100.4")
    guard.apply_config(security(unknown_sources="drop"), register_open=False)
    assert guard.bans_active() == 0
    assert guard.admit(request(), ("198.51.100.4", 1))
    assert not guard.admit(request(), ("198.51.100.5", 1))
    assert guard.stats.drops["unknown"] == 1


def test_service_in_two_stages_counts_each_datagram_once() -> None:
    guard = GuardService(security(), FakePeers(), clock=Clock())
    source = ("198.51.100.9", 5060)
    # before parsing: trusted, gateway, banned, rate; garbage counts toward the rate too
    assert [guard.admit_source(source) for _ in range(4)] == [True, True, True, False]
    assert guard.stats.drops["rate"] == 1 and not guard.admit_source(source)
    assert guard.admit_source(("192.0.2.10", 1)) and guard.admit_source(("10.1.0.1", 1))
    # after parsing: the scanner and unknown-source checks, no second count
    other = ("198.51.100.10", 5060)
    assert guard.admit_source(other) and guard.admit_request(request(), other)
    assert guard.admit_source(other) and not guard.admit_request(request("OPTIONS", "smap"), other)
    assert guard.stats.bans == {"rate": 1, "scanner": 1}
