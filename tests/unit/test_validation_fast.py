"""The plain-shape shortcuts of sip/validation.py never accept what the full checks refuse.

`_address_ok`, `_via_ok` and the Request-URI check first try a compiled pattern and accept a
value of the plain shape without the full parse. These tests hold every shortcut against its
reference (`_address_ok_full`, `_via_ok_full`, `parse_uri`) on values built from the message
grammar of the fuzzer, on values stitched together from the characters that matter to the
grammar (quotes, brackets, separators, LWS, ports out of range), and on the torture messages of
RFC 4475; and check that the shortcut does take the values real traffic carries.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipedge.sip.headers import _TOKEN_CHARS
from sipedge.sip.message import ParseError, parse_message, parse_uri
from sipedge.sip.validation import (
    _PLAIN_ADDRESS,
    _PLAIN_URI,
    _PLAIN_VIA,
    _T,
    _address_ok_full,
    _plain,
    _via_ok_full,
)
from tests.conftest import RFC4475
from tests.fuzz import grammar

# Pieces that sit on the edges of the plain shapes: separators, quotes, LWS, escapes, ports
# that are too large, bracket halves, characters outside the token set.
PIECES = [
    *("sip:", "sips:", "SIP:", "tel:", "SIP/2.0/", "UDP", " ", "  ", "\t", '"', '\\"', "\\"),
    *("<", ">", ";", ";;", "=", "==", ",", "?", "&", "@", ":", "[", "]", "[::1]", "%41"),
    *("a", "Bob", "alice", "example.com", "192.0.2.1", "-", ".", "+", "~", "é", "\x00", "\x7f"),
    *("5060", "65535", "65536", "99999", "0", "00000", "123456", "tag=", "tag=x", "branch"),
    *(";rport", ";branch=z9hG4bK1", ";lr", ";tag=1", "=x", "(", ")", "$", "'", "`", "*"),
]
stitched = st.lists(st.sampled_from(PIECES), max_size=12).map("".join)


def uri_ok_full(value: str) -> bool:
    try:
        return not parse_uri(value).headers
    except ParseError:
        return False


def check(value: str) -> None:
    """Every shortcut that accepts `value` agrees with its reference."""
    if _PLAIN_ADDRESS.fullmatch(value) is not None:
        assert _address_ok_full(value), f"address shortcut accepts {value!r}"
    if _plain(_PLAIN_VIA, value):
        assert _via_ok_full(value), f"Via shortcut accepts {value!r}"
    if _plain(_PLAIN_URI, value):
        assert uri_ok_full(value), f"URI shortcut accepts {value!r}"


def test_the_token_class_is_the_token_set() -> None:
    for code in range(0x110):
        c = chr(code)
        assert (re.fullmatch(_T, c) is not None) == (c in _TOKEN_CHARS), repr(c)


@settings(max_examples=1000, deadline=None)
@given(st.one_of(grammar.name_addr(), grammar.name_addr(tag=True), grammar.via(), grammar.uri()))
def test_shortcuts_against_the_grammar(value: str) -> None:
    check(value)
    check(value.strip())


@settings(max_examples=2000, deadline=None)
@given(stitched)
def test_shortcuts_against_stitched_values(value: str) -> None:
    check(value)


@settings(max_examples=600, deadline=None)
@given(
    st.sampled_from(["", '"A" ', "Al Bo ", "A"]),
    st.sampled_from(["<", "< ", ""]),
    grammar.uri(),
    st.sampled_from([">", " >", ""]),
    stitched,
)
def test_shortcuts_against_name_addr_near_misses(
    display: str, open_: str, uri: str, close: str, tail: str
) -> None:
    check(f"{display}{open_}{uri}{close}{tail}")


def test_shortcuts_against_rfc4475() -> None:
    seen = 0
    for path in sorted(RFC4475.glob("*.dat")):
        try:
            msg = parse_message(path.read_bytes())
        except ParseError as err:
            if err.request is None:
                continue
            msg = err.request
        for _, value in msg.headers.items():
            check(value)
            seen += 1
        if hasattr(msg, "uri"):
            check(msg.uri)
    assert seen > 200


PLAIN = [
    '"Alice" <sip:+4930123456@198.51.100.7>;tag=as6f1e2d3c',
    "<sip:+4940987654@192.0.2.10>",
    "sipp <sip:sipp@127.0.0.1:5061>;tag=1234SIPpTag001",
    "sip:sipp@127.0.0.1:5061",
    '"" <sip:anonymous@anonymous.invalid>;tag=x',
]
PLAIN_VIAS = [
    "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK3e1f2a9c7d;rport",
    "SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1234-1-0",
    "SIP/2.0/TCP gw.example.com;branch=z9hG4bK1",
]
PLAIN_URIS = [
    "sip:+4940987654@192.0.2.10:5060",
    "sip:1000@127.0.0.1:5060;user=phone",
    "sips:gw.example.com",
]


@pytest.mark.parametrize(
    ("value", "pattern", "full"),
    [
        ("<sip:[2001:db8::1]:5060;transport=udp>", _PLAIN_ADDRESS, _address_ok_full),
        ("<sip:caller@[2001:db8::192.0.2.1]>", _PLAIN_ADDRESS, _address_ok_full),
        (
            "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKx;received=2001:db8::2;rport=5060",
            _PLAIN_VIA,
            _via_ok_full,
        ),
        (
            "SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bK1",
            _PLAIN_VIA,
            _via_ok_full,
        ),
        ("sip:[2001:db8::1]", _PLAIN_URI, uri_ok_full),
        ("sip:user@[2001:db8::10:5070]", _PLAIN_URI, uri_ok_full),
    ],
)
def test_ipv6_references_take_the_full_parse(value: str, pattern: Any, full: Any) -> None:
    """The brackets must hold an IPv6 address (RFC 5118 4.10), which only the full parse
    checks: no shortcut for them, and the full parse takes the good ones."""
    assert pattern.fullmatch(value) is None
    assert full(value)


@pytest.mark.parametrize(
    ("value", "full"),
    [
        ("<sip:caller@[2001:db8:::192.0.2.1]>", _address_ok_full),
        ("<sip:caller@[2001:db8::1%eth0]>", _address_ok_full),
        ("SIP/2.0/UDP [2001:db8:::9:1];branch=z9hG4bK1", _via_ok_full),
        ("SIP/2.0/UDP 2001:db8::9:1;branch=z9hG4bK1", _via_ok_full),
        ("sip:user@2001:db8::10", uri_ok_full),
        ("sip:[198.51.100.7]", uri_ok_full),
    ],
)
def test_bad_ipv6_references_are_refused(value: str, full: Any) -> None:
    """RFC 5118 4.2 (no brackets) and 4.10 (three colons), a zone id, IPv4 in brackets."""
    assert not full(value)


@pytest.mark.parametrize("value", PLAIN)
def test_plain_addresses_take_the_shortcut(value: str) -> None:
    assert _PLAIN_ADDRESS.fullmatch(value) is not None
    assert _address_ok_full(value)


@pytest.mark.parametrize("value", PLAIN_VIAS)
def test_plain_vias_take_the_shortcut(value: str) -> None:
    assert _plain(_PLAIN_VIA, value)
    assert _via_ok_full(value)


@pytest.mark.parametrize("value", PLAIN_URIS)
def test_plain_uris_take_the_shortcut(value: str) -> None:
    assert _plain(_PLAIN_URI, value)
    assert uri_ok_full(value)


@pytest.mark.parametrize(
    "value",
    [
        "SIP/2.0/UDP h:65536;branch=z9hG4bK1",  # the port: the pattern alone would take it
        "SIP/2.0/UDP h:99999",
        "sip:a@h:70000",
    ],
)
def test_a_port_over_65535_is_not_plain(value: str) -> None:
    assert not _plain(_PLAIN_VIA, value)
    assert not _plain(_PLAIN_URI, value)
