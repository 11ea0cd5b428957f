"""The message layer's shortcuts give what the plain way gives (sip/message.py, sip/address.py).

* `parse_via` takes a Via of the plain shape apart from one pattern match: the same Via as the
  general parse gives.
* `top_via` and `cseq` parse each value once (a small module-wide memo: `top_via` hands out
  copies, `cseq` finds the parser's reading); both follow every change of their header, and
  a message keeps no parse of its own alive.
* `replace_top_via` remembers the Via it wrote as that value's parse, which holds because
  parse_via(str(via)) == via for every Via parse_via made, whatever its parameters became.
* `to_bytes` and `make_response` write what the straightforward versions below write (the ones
  they replaced), on grammar-built messages.
* Branches, tags and Call-IDs come from a pool of random bytes that a forked child never
  shares with its parent.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipedge.sip import message
from sipedge.sip.address import _parse_plain_via, _parse_via
from sipedge.sip.message import (
    _CLASS_PHRASES,
    REASON_PHRASES,
    Headers,
    ParseError,
    Request,
    Response,
    make_response,
    new_branch,
    new_call_id,
    new_tag,
    parse_message,
    parse_via,
)
from sipedge.sip.message import _tag_of_safe as tag_of_safe
from tests.fuzz import grammar
from tests.unit.test_validation_fast import stitched

INVITE = (
    b"INVITE sip:bob@192.0.2.10 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1;rport\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK0\r\n"
    b"From: <sip:alice@198.51.100.7>;tag=a\r\nTo: <sip:bob@192.0.2.10>\r\n"
    b"Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
)


def request() -> Request:
    msg = parse_message(INVITE)
    assert isinstance(msg, Request)
    return msg


def test_top_via_hands_out_copies() -> None:
    msg = request()
    via = msg.top_via
    via.params["received"] = "192.0.2.99"
    via.host = "elsewhere"
    again = msg.top_via
    assert again.host == "198.51.100.7"
    assert "received" not in again.params
    assert again is not msg.top_via


def test_top_via_follows_the_header() -> None:
    msg = request()
    assert msg.top_via.branch == "z9hG4bK1"
    msg.headers.replace_first("Via", "SIP/2.0/UDP 192.0.2.5;branch=z9hG4bK9")
    assert msg.top_via.branch == "z9hG4bK9"
    msg.headers.add("Via", "SIP/2.0/TCP 192.0.2.6;branch=z9hG4bK8", first=True)
    assert msg.top_via.transport == "TCP"
    msg.headers.remove("Via")
    with pytest.raises(ParseError):
        _ = msg.top_via
    msg.headers = Headers([("Via", "SIP/2.0/UDP h;branch=z9hG4bK7")])
    assert msg.top_via.branch == "z9hG4bK7"


def test_the_memo_is_bounded_and_messages_carry_no_parse() -> None:
    for n in range(100):
        msg = parse_message(INVITE.replace(b"z9hG4bK1", b"z9hG4bK1%d" % n))
        assert msg.top_via.branch == f"z9hG4bK1{n}"
        assert msg.cseq == (1, "INVITE")
    assert len(message._via_memo) <= message._MEMO_SIZE
    assert len(message._cseq_memo) <= message._MEMO_SIZE
    # the fields only, nowhere to keep a parse (compiled by mypyc or not: __slots__ is the
    # pure class's way, a C struct the compiled one's)
    assert not hasattr(msg, "__dict__")
    with pytest.raises(AttributeError):
        msg.parsed_via = msg.top_via  # type: ignore[attr-defined]


def test_cseq_follows_the_header() -> None:
    msg = request()
    assert msg.cseq == (1, "INVITE")
    msg.headers.set("CSeq", "2 BYE")
    assert msg.cseq == (2, "BYE")
    msg.headers.set("CSeq", "x BYE")
    with pytest.raises(ParseError):
        _ = msg.cseq
    msg.headers.remove("CSeq")
    with pytest.raises(ParseError):
        _ = msg.cseq
    built = Request("BYE", "sip:a@b", Headers([("CSeq", "7  BYE")]))
    assert built.cseq == built.cseq == (7, "BYE")


def test_replace_top_via_writes_and_remembers() -> None:
    msg = request()
    via = msg.top_via
    via.params["rport"] = "4242"
    via.params["received"] = "192.0.2.77"
    msg.replace_top_via(via)
    assert msg.headers.get("Via") == (
        "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK1;rport=4242;received=192.0.2.77"
    )
    assert msg.headers.get_all("Via")[1] == "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK0"
    assert msg.top_via == via == parse_via(msg.headers.get("Via") or "")
    via.params["rport"] = "1"  # the caller's object: not the one remembered
    assert msg.top_via.params["rport"] == "4242"


def _round_trip(value: str) -> None:
    try:
        via = parse_via(value)
    except ParseError:
        return
    assert parse_via(str(via)) == via, value
    # what the transport sets (RFC 3261 18.2.1, RFC 3581), with v4 and v6 sources
    for host, port in (("192.0.2.77", 4242), ("2001:db8::7", 5060)):
        edited = via.copy()
        edited.params["received"] = host
        if "rport" in edited.params:
            edited.params["rport"] = str(port)
        assert parse_via(str(edited)) == edited, value


def _plain_parse_agrees(value: str) -> None:
    plain = _parse_plain_via(value)
    if plain is None:
        return
    assert plain == _parse_via(value), value
    assert type(plain.port) is type(_parse_via(value).port)


@settings(max_examples=500, deadline=None)
@given(grammar.via())
def test_a_via_survives_writing_and_parsing_again(value: str) -> None:
    _plain_parse_agrees(value)
    _round_trip(value)


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(["SIP/2.0/UDP ", "SIP/2.0/tcp ", "SIP/2.0/", "sip/2.0/UDP "]), stitched)
def test_the_plain_parse_of_a_via_is_the_general_one(start: str, rest: str) -> None:
    _plain_parse_agrees(start + rest)
    _plain_parse_agrees(rest)


@pytest.mark.parametrize(
    "value",
    [
        "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK3e1f2a9c7d;rport",
        "SIP/2.0/udp h;BRANCH=z9hG4bKx;Branch=y;received=2001:db8::1;rport=1",
        "SIP/2.0/UDP h:00080",
    ],
)
def test_plain_vias_are_parsed_the_short_way(value: str) -> None:
    assert _parse_plain_via(value) is not None
    _plain_parse_agrees(value)


@settings(max_examples=500, deadline=None)
@given(stitched)
def test_a_stitched_via_survives_writing_and_parsing_again(value: str) -> None:
    _round_trip("SIP/2.0/UDP " + value)
    _round_trip(value)


# -- the straightforward versions that to_bytes and make_response replaced -------------------


def reference_to_bytes(msg: Request | Response) -> bytes:
    h = msg.headers
    start = (
        f"{msg.method} {msg.uri} SIP/2.0"
        if isinstance(msg, Request)
        else f"SIP/2.0 {msg.status} {msg.reason}"
    )
    cl = f"Content-Length: {len(msg.body)}"
    parts = [start]
    if "Content-Length" in h._names:
        for name, value in zip(h._names, h._values, strict=True):
            if name != "Content-Length":
                parts.append(f"{name}: {value}")
            elif cl:
                parts.append(cl)
                cl = ""
        parts.append("\r\n")
    else:
        parts += [f"{n}: {v}" for n, v in zip(h._names, h._values, strict=True)]
        parts.append(cl + "\r\n\r\n")
    return "\r\n".join(parts).encode() + msg.body


def reference_make_response(
    req: Request, status: int, reason: str | None = None, to_tag: str | None = None
) -> Response:
    if reason is None:
        reason = REASON_PHRASES.get(status) or _CLASS_PHRASES.get(status // 100, "Unknown")
    names: list[str] = []
    values: list[str] = []
    for name, value in zip(req.headers._names, req.headers._values, strict=True):
        if name == "To" and to_tag and "To" not in names and tag_of_safe(value) is None:
            value = f"{value};tag={to_tag}"
        copied = name in ("Via", "From", "To", "Call-ID", "CSeq")
        if (copied and (name == "Via" or name not in names)) or (
            name == "Timestamp" and status == 100 and name not in names
        ):
            names.append(name)
            values.append(value)
    return Response(status, reason, Headers._from_lists(names, values))


def _messages(data: bytes) -> list[Request | Response]:
    try:
        return [parse_message(data)]
    except ParseError as err:
        return [err.request] if err.request is not None else []


@settings(max_examples=300, deadline=None)
@given(grammar.messages(), st.integers(0, 2**32))
def test_writing_and_answering_match_the_straightforward_versions(data: bytes, seed: int) -> None:
    for mutant in [data, *grammar.mutants(data, seed, 5)]:
        for msg in _messages(mutant):
            assert msg.to_bytes() == reference_to_bytes(msg)
            if isinstance(msg, Request):
                for status, tag in ((100, None), (180, "t9"), (200, "t9"), (487, None)):
                    ours = make_response(msg, status, to_tag=tag)
                    assert ours == reference_make_response(msg, status, to_tag=tag)
                    assert ours.to_bytes() == reference_to_bytes(ours)


def test_writing_edge_cases() -> None:
    empty = Request("OPTIONS", "sip:a@b")
    assert (
        empty.to_bytes()
        == reference_to_bytes(empty)
        == (b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n")
    )
    twice = Response(
        200,
        "OK",
        Headers([("Content-Length", "9"), ("To", "<sip:x@y>"), ("Content-Length", "1")]),
        b"abc",
    )
    assert (
        twice.to_bytes()
        == reference_to_bytes(twice)
        == (b"SIP/2.0 200 OK\r\nContent-Length: 3\r\nTo: <sip:x@y>\r\n\r\nabc")
    )
    stamped = Request("INVITE", "sip:a@b", Headers([("Timestamp", "1"), ("Timestamp", "2")]))
    assert make_response(stamped, 100).headers.get_all("Timestamp") == ["1"]
    assert make_response(stamped, 180).headers.get_all("Timestamp") == []


# -- identifiers from the random pool ------------------------------------------------------------


def test_identifiers_are_fresh_and_shaped() -> None:
    branches = [new_branch() for _ in range(2000)]  # several refills of the pool
    assert len(set(branches)) == len(branches)
    assert all(b.startswith("z9hG4bK") and len(b) == 7 + 16 for b in branches)
    assert len(new_tag()) == 12 and len(new_call_id()) == 24
    int(new_call_id(), 16)


def test_a_forked_child_does_not_reuse_the_parents_pool() -> None:
    new_tag()  # the pool now holds bytes the parent will use next
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next tag, leave at once
        os.write(write, new_tag().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 12
    assert child != new_tag()
