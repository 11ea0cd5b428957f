"""Route (dialled prefix) and source (mapping gateway) lookups."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipedge.calls.routing import (
    SOURCE_ANSWERS,
    RouteTable,
    SourceTable,
    longest_prefix_route,
    match_source,
)

ROUTES: list[tuple[str, list[str]]] = [
    ("", ["default"]),
    ("44", ["uk-a", "uk-b"]),
    ("4420", ["london"]),
    ("+1", ["plus-one"]),
    ("1", ["nanp"]),
    ("00", []),
]


@pytest.mark.parametrize(
    ("number", "want"),
    [
        ("4420123", ("london",)),
        ("4421", ("uk-a", "uk-b")),
        ("44", ("uk-a", "uk-b")),
        ("4", ("default",)),
        ("", ("default",)),
        ("33123", ("default",)),
        ("+4420123", ("london",)),  # '+' stripped for matching
        ("+44", ("uk-a", "uk-b")),
        ("+1555", ("plus-one",)),  # same length: the number as given wins over stripped
        ("1555", ("nanp",)),
        ("++44", ("default",)),  # only one '+' is stripped
        ("0044", ()),  # a route with no gateways is still a route
    ],
)
def test_longest_prefix(number: str, want: tuple[str, ...]) -> None:
    table = RouteTable(ROUTES)
    assert table.lookup(number) == want
    assert longest_prefix_route(ROUTES, number) == want


def test_longer_stripped_match_beats_shorter_literal_match() -> None:
    table = RouteTable([("+", ["plus"]), ("4420", ["london"])])
    assert table.lookup("+4420") == ("london",)
    assert table.lookup("+33") == ("plus",)


def test_no_route() -> None:
    table = RouteTable([("44", ["uk"])])
    assert table.lookup("33") is None
    assert table.lookup("4") is None
    assert RouteTable([]).lookup("44") is None
    assert len(table) == 1


def test_bad_route_tables() -> None:
    with pytest.raises(ValueError, match="'44'"):
        RouteTable([("44", ["a"]), ("44", ["b"])])
    with pytest.raises(TypeError):
        RouteTable([("44", "gw")])


@settings(max_examples=300, deadline=None)
@given(
    prefixes=st.sets(st.text("0123+", max_size=5), max_size=12),
    number=st.text("0123+", max_size=8),
)
def test_lookup_matches_brute_force(prefixes: set[str], number: str) -> None:
    routes = [(p, [f"gw-{p}"]) for p in sorted(prefixes)]
    forms = [number] + ([number[1:]] if number.startswith("+") else [])
    # brute force: every (length, form order) that matches; longest, then the literal form
    matches = [
        (-len(p), i, p) for i, form in enumerate(forms) for p in prefixes if form.startswith(p)
    ]
    want = (f"gw-{min(matches)[2]}",) if matches else None
    assert RouteTable(routes).lookup(number) == want


NETWORKS: list[tuple[str, list[IPv4Network | IPv6Network | str]]] = [
    ("wide", [ip_network("10.0.0.0/8"), ip_network("2001:db8::/32")]),
    ("narrow", [ip_network("10.1.0.0/16"), "2001:db8:1::/48"]),
    ("host", [ip_network("10.1.2.3/32")]),
    ("dup", [ip_network("10.0.0.0/8")]),  # same as "wide": the first listed wins
    ("any6", [ip_network("::/0")]),
]


@pytest.mark.parametrize(
    ("ip", "want"),
    [
        ("10.9.9.9", "wide"),
        ("10.1.9.9", "narrow"),
        ("10.1.2.3", "host"),
        ("10.1.2.4", "narrow"),
        ("192.0.2.1", None),
        ("2001:db8::1", "wide"),
        ("2001:db8:1::5", "narrow"),
        ("2001:db9::1", "any6"),
        ("::ffff:10.1.2.3", "host"),  # IPv4-mapped, as a dual-stack socket reports it
        ("fe80::1%eth0", "any6"),
        ("not an address", None),
        ("", None),
    ],
)
def test_match_source(ip: str, want: str | None) -> None:
    assert SourceTable(NETWORKS).lookup(ip) == want
    assert match_source(NETWORKS, ip) == want


def test_bad_source_tables() -> None:
    with pytest.raises(ValueError):
        SourceTable([("a", ["10.0.0.1/8"])])  # host bits set
    with pytest.raises(TypeError):
        SourceTable([("a", "10.0.0.0/8")])  # a str is a Sequence too
    assert SourceTable([]).lookup("10.0.0.1") is None


@settings(max_examples=300, deadline=None)
@given(
    nets=st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)), max_size=10),
    ip=st.integers(0, 2**32 - 1),
)
def test_source_matches_brute_force(nets: list[tuple[int, int]], ip: int) -> None:
    networks = [
        (f"gw{i}", [IPv4Network((addr, plen), strict=False)]) for i, (addr, plen) in enumerate(nets)
    ]
    address = ip_address(ip)
    containing = [
        (-net.prefixlen, i, name) for i, (name, [net]) in enumerate(networks) if address in net
    ]
    want = min(containing)[2] if containing else None
    assert SourceTable(networks).lookup(str(address)) == want


def test_source_answers_are_kept_bounded_and_the_same() -> None:
    table = SourceTable(NETWORKS)
    for _ in range(2):  # the second time from the kept answers
        assert [table.lookup(ip) for ip in ("10.1.2.3", "192.0.2.1", "bad")] == [
            "host",
            None,
            None,
        ]
    # a flood of distinct sources: the kept answers never pass the bound, answers stay right
    for n in range(SOURCE_ANSWERS * 2 + 10):
        source = str(ip_address(0x0A000000 + n))  # 10.0.x.y: "wide", or "narrow" in 10.1/16
        assert table.lookup(source) == ("narrow" if source.startswith("10.1.") else "wide")
        assert len(table._answers) <= SOURCE_ANSWERS
    assert table.lookup("10.1.2.3") == "host"
