"""The resolver's pure half: RFC 3263 steps, RFC 2782 SRV order, TTLs, the cache, hosts."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from sipedge.resolver.cache import TtlCache
from sipedge.resolver.hosts import hosts_lookup, parse_hosts
from sipedge.resolver.targets import (
    FAILURE_TTL,
    IPV6_ONLY,
    NEGATIVE_TTL,
    NO_SERVICE,
    NXDOMAIN,
    TIMEOUT,
    Answer,
    Entry,
    Lookup,
    NaptrRecord,
    Query,
    Resolution,
    SrvRecord,
    failure_label,
    literal,
    naptr_services,
    srv_order,
)


def run(lookup: Lookup, answers: dict[tuple[str, str], Answer]) -> tuple[Resolution, list[Query]]:
    """Drive a lookup with canned answers (a question not in `answers` gets NODATA)."""
    asked: list[Query] = []
    step = lookup.start()
    while isinstance(step, Query):
        asked.append(step)
        step = lookup.on_answer(step, answers.get((step.name, step.rdtype), Answer()))
    return step, asked


# -- RFC 2782 order -------------------------------------------------------------------------


def test_srv_order_takes_lower_priority_first_whatever_the_weights() -> None:
    entries = [Entry(20, 100, 5060, ("b",)), Entry(10, 1, 5060, ("a",)), Entry(30, 0, 1, ("c",))]
    for seed in range(20):
        order = srv_order(entries, random.Random(seed).random)
        assert [e.hosts[0] for e in order] == ["a", "b", "c"]


def test_srv_order_follows_the_weights_within_a_priority() -> None:
    entries = [Entry(10, 60, 1, ("a",)), Entry(10, 30, 2, ("b",)), Entry(10, 10, 3, ("c",))]
    rng = random.Random(7)
    first = Counter(srv_order(entries, rng.random)[0].hosts[0] for _ in range(20000))
    assert abs(first["a"] / 20000 - 0.6) < 0.02
    assert abs(first["b"] / 20000 - 0.3) < 0.02
    assert abs(first["c"] / 20000 - 0.1) < 0.02


def test_srv_order_is_the_running_sum_rule_of_rfc_2782() -> None:
    entries = [Entry(10, 0, 1, ("zero",)), Entry(10, 3, 2, ("three",)), Entry(10, 1, 3, ("one",))]
    # total 4: an integer in [0, 4] is drawn; running sums zero:0, three:3, one:4
    draws = iter([0.0, 0.99, 0.0])
    order = srv_order(entries, lambda: next(draws))
    # 0 -> "zero" (running 0 >= 0); then [three, one], total 4, 0.99*5 -> 4 -> "one"; "three"
    assert [e.hosts[0] for e in order] == ["zero", "one", "three"]


def test_srv_order_weight_zero_has_a_small_chance_only() -> None:
    entries = [Entry(10, 0, 1, ("zero",)), Entry(10, 50, 2, ("fifty",))]
    rng = random.Random(3)
    first = Counter(srv_order(entries, rng.random)[0].hosts[0] for _ in range(5000))
    assert first["zero"] / 5000 < 0.05  # 1 in 51
    all_zero = [Entry(10, 0, 1, ("a",)), Entry(10, 0, 2, ("b",))]
    assert [e.hosts[0] for e in srv_order(all_zero, rng.random)] == ["a", "b"]


def test_resolution_orders_targets_by_srv_then_the_addresses_of_each() -> None:
    resolution = Resolution(
        "gw.test",
        (
            Entry(20, 0, 5070, ("192.0.2.3",)),
            Entry(10, 0, 5060, ("192.0.2.1", "192.0.2.2")),
        ),
        None,
        60,
    )
    targets = resolution.ordered(random.random)
    assert targets.addresses == (("192.0.2.1", 5060), ("192.0.2.2", 5060), ("192.0.2.3", 5070))
    assert targets.error is None
    assert resolution.addresses == frozenset({"192.0.2.1", "192.0.2.2", "192.0.2.3"})


def test_a_failed_resolution_has_no_target_and_a_cdr_text() -> None:
    targets = Resolution("nx.test", (), NXDOMAIN, 5).ordered(random.random)
    assert targets.addresses == ()
    assert targets.failure == "dns-failure: nx.test: NXDOMAIN"
    assert failure_label(NXDOMAIN) == "nxdomain" and failure_label("odd") == "error"


# -- NAPTR ------------------------------------------------------------------------------------


def test_naptr_keeps_sip_over_udp_with_flag_s_in_order_and_preference() -> None:
    records = [
        NaptrRecord(20, 10, "s", "SIP+D2U", "_sip._udp.late.test"),
        NaptrRecord(10, 20, "S", "sip+d2u", "_sip._udp.second.test"),
        NaptrRecord(10, 10, "s", "SIP+D2U", "_sip._udp.first.test"),
        NaptrRecord(5, 10, "s", "SIP+D2T", "_sip._tcp.tcp.test"),
        NaptrRecord(5, 10, "s", "SIPS+D2T", "_sips._tcp.tls.test"),
        NaptrRecord(5, 10, "a", "SIP+D2U", "no-srv.test"),
    ]
    assert naptr_services(records) == [
        "_sip._udp.first.test",
        "_sip._udp.second.test",
        "_sip._udp.late.test",
    ]


# -- the RFC 3263 steps ------------------------------------------------------------------------


def test_an_explicit_port_asks_a_only() -> None:
    result, asked = run(Lookup("GW.test.", 5080), {("gw.test", "A"): Answer(("192.0.2.1",), 120.0)})
    assert asked == [Query("gw.test", "A")]
    assert result.entries == (Entry(0, 0, 5080, ("192.0.2.1",)),)
    assert result.ttl == 120.0 and result.error is None


def test_no_port_naptr_then_srv_then_a_of_each_target() -> None:
    answers = {
        ("gw.test", "NAPTR"): Answer(
            (NaptrRecord(10, 10, "s", "SIP+D2U", "_sip._udp.pool.test"),), 300.0
        ),
        ("_sip._udp.pool.test", "SRV"): Answer(
            (SrvRecord(10, 1, 5070, "a.test"), SrvRecord(20, 1, 5071, "b.test")), 200.0
        ),
        ("a.test", "A"): Answer(("192.0.2.1",), 100.0),
        ("b.test", "A"): Answer(("192.0.2.2",), 50.0),
    }
    result, asked = run(Lookup("gw.test", None), answers)
    assert [(q.name, q.rdtype) for q in asked] == [
        ("gw.test", "NAPTR"),
        ("_sip._udp.pool.test", "SRV"),
        ("a.test", "A"),
        ("b.test", "A"),
    ]
    assert result.ttl == 50.0  # the smallest TTL used
    assert result.ordered(random.random).addresses == (("192.0.2.1", 5070), ("192.0.2.2", 5071))


def test_no_naptr_asks_sip_udp_srv_and_no_srv_falls_back_to_a_on_5060() -> None:
    answers = {("gw.test", "A"): Answer(("192.0.2.9",), 60.0)}
    result, asked = run(Lookup("gw.test", None), answers)
    assert [(q.name, q.rdtype) for q in asked] == [
        ("gw.test", "NAPTR"),
        ("_sip._udp.gw.test", "SRV"),
        ("gw.test", "A"),
    ]
    assert result.entries == (Entry(0, 0, 5060, ("192.0.2.9",)),)


def test_nxdomain_of_the_name_fails_at_once_with_a_brief_negative_ttl() -> None:
    result, asked = run(Lookup("nx.test", None), {("nx.test", "NAPTR"): Answer((), 900, NXDOMAIN)})
    assert len(asked) == 1 and result.error == NXDOMAIN
    assert result.ttl == NEGATIVE_TTL  # the SOA said 900: capped
    result, _ = run(Lookup("nx.test", 5060), {("nx.test", "A"): Answer((), 4, NXDOMAIN)})
    assert result.error == NXDOMAIN and result.ttl == 4


def test_a_timeout_fails_at_once_and_is_kept_for_the_failure_ttl() -> None:
    result, asked = run(
        Lookup("silent.test", None), {("silent.test", "NAPTR"): Answer(error=TIMEOUT)}
    )
    assert len(asked) == 1
    assert result.error == TIMEOUT and result.ttl == FAILURE_TTL


def test_srv_target_dot_means_no_sip_service() -> None:
    answers = {("_sip._udp.gw.test", "SRV"): Answer((SrvRecord(0, 0, 0, "."),), 60)}
    result, _ = run(Lookup("gw.test", None), answers)
    assert result.error == NO_SERVICE


def test_srv_targets_from_the_hosts_file_need_no_query() -> None:
    answers = {
        ("_sip._udp.gw.test", "SRV"): Answer(
            (SrvRecord(10, 0, 5070, "localhost"), SrvRecord(20, 0, 5071, "b.test")), 60
        ),
        ("b.test", "A"): Answer(error=TIMEOUT),
    }
    hosts = {"localhost": ("127.0.0.1",)}
    result, asked = run(Lookup("gw.test", None, hosts.get), answers)
    assert Query("localhost", "A") not in asked and Query("b.test", "A") in asked
    # a target that did not resolve is left out; the others remain
    assert result.ordered(random.random).addresses == (("127.0.0.1", 5070),)


def test_aaaa_only_is_a_failure_that_says_so() -> None:
    answers = {("v6.test", "AAAA"): Answer(("2001:db8::1",), 60)}
    result, asked = run(Lookup("v6.test", 5060), answers)
    assert asked == [Query("v6.test", "A"), Query("v6.test", "AAAA")]
    assert result.error == IPV6_ONLY
    result, _ = run(Lookup("empty.test", 5060), {})
    assert result.error == "no answer"


def test_literals_are_their_own_target() -> None:
    found = literal("192.0.2.1", None)
    assert found is not None and found.entries == (Entry(0, 0, 5060, ("192.0.2.1",)),)
    assert literal("gw.test", 5060) is None


# -- the cache --------------------------------------------------------------------------------


def test_cache_entries_expire_after_their_own_ttl() -> None:
    cache: TtlCache[str, int] = TtlCache(10)
    cache.put("a", 1, 30, now=100.0)
    cache.put("b", 2, 5, now=100.0)
    assert cache.get("a", 104.9) == 1 and cache.get("b", 104.9) == 2
    assert cache.get("b", 105.0) is None and len(cache) == 1
    assert cache.get("a", 129.9) == 1 and cache.get("a", 130.0) is None
    cache.put("c", 3, 0, now=0.0)
    assert cache.get("c", 0.0) is None


def test_cache_is_bounded_and_evicts_expired_then_oldest() -> None:
    cache: TtlCache[int, int] = TtlCache(3)
    cache.put(1, 1, 10, now=0.0)
    cache.put(2, 2, 1, now=0.0)
    cache.put(3, 3, 10, now=0.0)
    cache.put(4, 4, 10, now=5.0)  # 2 has expired: it goes, 1 stays
    assert cache.get(1, 5.0) == 1 and cache.get(2, 5.0) is None
    cache.put(5, 5, 10, now=5.0)  # full, nothing expired: the oldest (1) goes
    assert len(cache) == 3 and cache.get(1, 5.0) is None
    assert [cache.get(k, 5.0) for k in (3, 4, 5)] == [3, 4, 5]
    with pytest.raises(ValueError):
        TtlCache(0)


# -- the hosts file ---------------------------------------------------------------------------


def test_hosts_file_names_and_aliases_ipv4_only() -> None:
    hosts = parse_hosts(
        "# comment\n127.0.0.1 localhost\n::1 localhost ip6-localhost\n"
        "192.0.2.5  GW.Example gw  # trailing\n192.0.2.6 gw\nnonsense line\n"
    )
    assert hosts["localhost"] == ("127.0.0.1",)
    assert hosts["gw.example"] == ("192.0.2.5",) and hosts["gw"] == ("192.0.2.5", "192.0.2.6")
    assert "ip6-localhost" not in hosts
    assert hosts_lookup({}, "localhost") == ("127.0.0.1",)  # RFC 6761, even without the file
    assert hosts_lookup({}, "a.localhost.") == ("127.0.0.1",)
    assert hosts_lookup(hosts, "GW.example.") == ("192.0.2.5",)
    assert hosts_lookup(hosts, "other.test") is None


# -- TCP and TLS (RFC 3263 4.1, 4.2) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("transport", "service", "srv_name"),
    [
        ("tcp", "SIP+D2T", "_sip._tcp.gw.test"),
        ("tls", "SIPS+D2T", "_sips._tcp.gw.test"),
        ("udp", "SIP+D2U", "_sip._udp.gw.test"),
    ],
)
def test_the_transport_picks_the_naptr_service_and_the_srv_name(
    transport: str, service: str, srv_name: str
) -> None:
    naptr = (
        NaptrRecord(10, 10, "s", "SIP+D2U", "_sip._udp.gw.test"),
        NaptrRecord(20, 10, "s", "SIP+D2T", "_sip._tcp.gw.test"),
        NaptrRecord(30, 10, "s", "SIPS+D2T", "_sips._tcp.gw.test"),
    )
    assert naptr_services(naptr, transport) == [srv_name]
    answers = {
        ("gw.test", "NAPTR"): Answer(naptr, 300.0),
        (srv_name, "SRV"): Answer(
            (SrvRecord(20, 1, 5081, "b.test"), SrvRecord(10, 1, 5080, "a.test")), 300.0
        ),
        ("a.test", "A"): Answer(("192.0.2.1",), 100.0),
        ("b.test", "A"): Answer(("192.0.2.2",), 100.0),
    }
    result, asked = run(Lookup("gw.test", None, transport=transport), answers)
    assert (srv_name, "SRV") in [(q.name, q.rdtype) for q in asked]
    assert result.ordered(random.random).addresses == (("192.0.2.1", 5080), ("192.0.2.2", 5081))


@pytest.mark.parametrize(
    ("transport", "srv_name", "port"),
    [("tcp", "_sip._tcp.gw.test", 5060), ("tls", "_sips._tcp.gw.test", 5061)],
)
def test_no_naptr_asks_the_transport_srv_then_a_on_its_default_port(
    transport: str, srv_name: str, port: int
) -> None:
    answers = {("gw.test", "A"): Answer(("192.0.2.9",), 60.0)}
    result, asked = run(Lookup("gw.test", None, transport=transport), answers)
    assert [(q.name, q.rdtype) for q in asked] == [
        ("gw.test", "NAPTR"),
        (srv_name, "SRV"),
        ("gw.test", "A"),
    ]
    assert result.ordered(random.random).addresses == (("192.0.2.9", port),)
    # a UDP-only NAPTR does not serve TCP or TLS: the transport's SRV name is asked instead
    udp_only = {
        ("gw.test", "NAPTR"): Answer(
            (NaptrRecord(10, 10, "s", "SIP+D2U", "_sip._udp.gw.test"),), 60.0
        ),
        **answers,
    }
    _, asked = run(Lookup("gw.test", None, transport=transport), udp_only)
    assert (srv_name, "SRV") in [(q.name, q.rdtype) for q in asked]
    assert ("_sip._udp.gw.test", "SRV") not in [(q.name, q.rdtype) for q in asked]
    assert literal("192.0.2.9", None, transport) == Resolution(
        "192.0.2.9", (Entry(0, 0, port, ("192.0.2.9",)),), None, 3600.0, "literal"
    )
