"""SIP message parser/serializer: RFC 3261 grammar, RFC 4475 torture-style inputs, round trips."""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipedge.sip.message import (
    _SINGLE,
    REASON_PHRASES,
    Headers,
    NameAddr,
    ParseError,
    Request,
    Response,
    SipUri,
    Via,
    canonical_name,
    make_response,
    new_branch,
    new_call_id,
    new_tag,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_via,
)
from tests.conftest import RFC4475

SDP = (
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    b"m=audio 20000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n"
)

BASE_HEADERS = [
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport",
    "Max-Forwards: 70",
    'From: "Alice" <sip:alice@example.com>;tag=1928301774',
    "To: <sip:bob@example.com>",
    "Call-ID: a84b4c76e66710@192.0.2.1",
    "CSeq: 314159 INVITE",
    "Contact: <sip:alice@192.0.2.1:5060>",
]


def build(
    start: str = "INVITE sip:bob@example.com SIP/2.0",
    headers: list[str] | None = None,
    body: bytes = b"",
    *,
    content_length: bool = True,
    eol: str = "\r\n",
) -> bytes:
    lines = [start, *(BASE_HEADERS if headers is None else headers)]
    if content_length:
        lines.append(f"Content-Length: {len(body)}")
    return (eol.join(lines) + eol + eol).encode() + body


def without(name: str) -> list[str]:
    return [h for h in BASE_HEADERS if not h.startswith(name + ":")]


def parse_request(data: bytes) -> Request:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


# -- well-formed messages -----------------------------------------------------------------------


def test_basic_invite() -> None:
    req = parse_request(build(body=SDP, headers=[*BASE_HEADERS, "Content-Type: application/sdp"]))
    assert req.method == "INVITE" and req.uri == "sip:bob@example.com"
    assert req.body == SDP
    assert req.call_id == "a84b4c76e66710@192.0.2.1"
    assert req.cseq == (314159, "INVITE")
    assert req.from_tag == "1928301774" and req.to_tag is None
    assert req.branch == "z9hG4bK776asdhds"
    assert req.top_via == Via(
        "UDP", "192.0.2.1", 5060, {"branch": "z9hG4bK776asdhds", "rport": None}
    )
    assert req.headers.get("content-type") == "application/sdp"


def test_basic_response() -> None:
    data = build("SIP/2.0 180 Ringing", body=b"")
    resp = parse_message(data)
    assert isinstance(resp, Response)
    assert (resp.status, resp.reason, resp.body) == (180, "Ringing", b"")


# RFC 4475 3.1.1.1 "wsinv": folding, odd spacing, case games, compact forms, multi-value Via.
WSINV = (
    b"INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\r\n"
    b"TO :\r\n"
    b" sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\r\n"
    b'from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>\r\n'
    b"  ;\r\n"
    b"  tag = 98asjd8\r\n"
    b"MaX-fOrWaRdS: 0068\r\n"
    b"Call-ID: wsinv.ndaksdj@192.0.2.1\r\n"
    b"Content-Length   : 4\r\n"
    b"cseq: 0009\r\n"
    b"  INVITE\r\n"
    b"Via  : SIP  /   2.0\r\n"
    b" /UDP\r\n"
    b"    192.0.2.2;branch=390skdjuw\r\n"
    b"s :\r\n"
    b"NewFangledHeader:   newfangled value\r\n"
    b" continued newfangled value\r\n"
    b"UnknownHeaderWithUnusualValue: ;;,,;;,;\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Route:\r\n"
    b" <sip:services.example.com;lr;unknownwith=value;unknown-no-value>\r\n"
    b"v:  SIP  / 2.0  / TCP     spindle.example.com   ;\r\n"
    b"  branch  =   z9hG4bK9ikj8  ,\r\n"
    b" SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n"
    b" z9hG4bK30239\r\n"
    b'm:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =\r\n'
    b"      newvalue ;\r\n"
    b"  secondparam ; q = 0.33\r\n"
    b"\r\n"
    b"v=0\r\n"
)


def test_rfc4475_wsinv() -> None:
    req = parse_request(WSINV)
    h = req.headers
    assert req.uri == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    assert req.to_tag == "1918181833n"
    assert req.from_tag == "98asjd8"
    assert parse_name_addr(h.get("From") or "").display == 'J Rosenberg \\"'
    assert h.get("Max-Forwards") == "0068"
    assert req.cseq == (9, "INVITE")
    assert h.get("Subject") == ""
    assert h.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert h.get("unknownheaderwithunusualvalue") == ";;,,;;,;"
    assert h.get("Route") == "<sip:services.example.com;lr;unknownwith=value;unknown-no-value>"
    vias = [parse_via(v) for v in h.get_all("Via")]
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    contact = parse_name_addr(h.get("Contact") or "")
    assert contact.display == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert req.body == b"v=0\r"  # exactly Content-Length bytes


def test_rfc4475_intmeth_unusual_method_and_uri() -> None:
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    uri = (
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too."
        "(doesn't-it)@example.com"
    )
    headers = [h for h in BASE_HEADERS if not h.startswith("CSeq")] + [f"CSeq: 139122385 {method}"]
    req = parse_request(build(f"{method} {uri} SIP/2.0", headers))
    assert req.method == method and req.cseq == (139122385, method)
    parsed = parse_uri(req.uri)
    assert parsed.host == "example.com"
    assert parsed.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert parsed.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert str(parsed) == uri


@pytest.mark.parametrize(
    ("raw", "name", "expected"),
    [
        ("v: SIP/2.0/UDP h;branch=z9hG4bK1", "Via", ["SIP/2.0/UDP h;branch=z9hG4bK1"]),
        ("f: <sip:a@b>;tag=1", "From", ["<sip:a@b>;tag=1"]),
        ("t: <sip:c@d>", "To", ["<sip:c@d>"]),
        ("i: abc@host", "Call-ID", ["abc@host"]),
        ("m: <sip:a@h1>, <sip:a@h2>", "Contact", ["<sip:a@h1>", "<sip:a@h2>"]),
        ("c: text/plain", "Content-Type", ["text/plain"]),
        ("k: 100rel, timer", "Supported", ["100rel, timer"]),  # not a split header
        ("s: hello, world", "Subject", ["hello, world"]),
        ("e: gzip", "Content-Encoding", ["gzip"]),
        ("o: presence", "Event", ["presence"]),
        ("r: <sip:x@y>", "Refer-To", ["<sip:x@y>"]),
        ("b: <sip:x@y>", "Referred-By", ["<sip:x@y>"]),
        ("u: dialog", "Allow-Events", ["dialog"]),
        ("x: 1800;refresher=uac", "Session-Expires", ["1800;refresher=uac"]),
        ("a: *;audio", "Accept-Contact", ["*;audio"]),
        ("j: *;video", "Reject-Contact", ["*;video"]),
        ("d: proxy", "Request-Disposition", ["proxy"]),
        ("y: abc", "Identity", ["abc"]),
        ("n: <https://x>", "Identity-Info", ["<https://x>"]),
        ("CALL-ID: x@y", "Call-ID", ["x@y"]),
        ('www-authenticate: Digest realm="a"', "WWW-Authenticate", ['Digest realm="a"']),
        ("p-asserted-identity: <sip:1@h>", "P-Asserted-Identity", ["<sip:1@h>"]),
        ("MIN-SE: 90", "Min-SE", ["90"]),
        ("rseq: 1", "RSeq", ["1"]),
        ("RACK: 1 1 INVITE", "RAck", ["1 1 INVITE"]),
        ("mime-version: 1.0", "MIME-Version", ["1.0"]),
        ("x-my-HEADER: v", "X-My-Header", ["v"]),
        ("Record-Route: <sip:p1;lr>,<sip:p2;lr>", "Record-Route", ["<sip:p1;lr>", "<sip:p2;lr>"]),
        ("Route: <sip:p1;lr>, <sip:p2;lr>", "Route", ["<sip:p1;lr>", "<sip:p2;lr>"]),
        ("Contact: *", "Contact", ["*"]),
        (
            'Contact: "Smith, John" <sip:j@h>;+sip.instance="<urn:a,b>", <sip:k@h>',
            "Contact",
            ['"Smith, John" <sip:j@h>;+sip.instance="<urn:a,b>"', "<sip:k@h>"],
        ),
        ("Contact: <sip:a@h;x=1,2>", "Contact", ["<sip:a@h;x=1,2>"]),
        (
            "Via: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/TCP b:5061;branch=z9hG4bK2",
            "Via",
            [
                "SIP/2.0/UDP a;branch=z9hG4bK1",
                "SIP/2.0/TCP b:5061;branch=z9hG4bK2",
            ],
        ),
        ("Subject:no-space", "Subject", ["no-space"]),
        ("Subject  :   spaced   ", "Subject", ["spaced"]),
        ("Subject:\tvalue\t", "Subject", ["value"]),
        ("Subject: caf\u00e9 \u2603", "Subject", ["caf\u00e9 \u2603"]),
        ("Subject: a %41 escaped", "Subject", ["a %41 escaped"]),
    ],
)
def test_header_forms(raw: str, name: str, expected: list[str]) -> None:
    req = parse_request(build(headers=[*without(name), raw]))
    assert req.headers.get_all(name) == expected
    assert name in req.headers
    assert name in {n for n, _ in req.headers.items()}  # canonical spelling on output


@pytest.mark.parametrize("eol", ["\r\n", "\n"])
def test_line_endings_and_leading_crlf(eol: str) -> None:
    data = b"\r\n\r\n" + build(body=SDP, eol=eol)
    req = parse_request(data)
    assert req.body == SDP and req.cseq == (314159, "INVITE")


def test_mixed_line_endings() -> None:
    data = b"OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\n"
    data += b"To: <sip:c@d>\r\nCall-ID: x\nCSeq: 1 OPTIONS\r\n\nbody"
    req = parse_request(data)
    assert req.headers.get("Call-ID") == "x" and req.body == b"body"


def test_missing_content_length_takes_rest_of_datagram() -> None:
    req = parse_request(build(body=SDP, content_length=False))
    assert req.body == SDP


def test_extra_bytes_after_content_length_are_ignored() -> None:
    data = build(body=b"abc") + b"GARBAGE after the message"
    assert parse_request(data).body == b"abc"


def test_binary_body_with_blank_lines_and_nul() -> None:
    body = bytes(range(256)) + b"\r\n\r\n\x00\xff"
    req = parse_request(build(body=body))
    assert req.body == body


def test_status_lines() -> None:
    for line, status, reason in [
        ("SIP/2.0 200 OK", 200, "OK"),
        ("SIP/2.0 100 ", 100, ""),
        ("SIP/2.0 100", 100, ""),
        ("SIP/2.0 486 Busy  Here  Now", 486, "Busy  Here  Now"),
        ("SIP/2.0 699 \u00e7a ne va pas", 699, "\u00e7a ne va pas"),
        ("sip/2.0 183 Session Progress", 183, "Session Progress"),
    ]:
        resp = parse_message(build(line))
        assert isinstance(resp, Response)
        assert (resp.status, resp.reason) == (status, reason)


def test_response_cseq_method_need_not_match_anything() -> None:
    resp = parse_message(build("SIP/2.0 200 OK"))
    assert isinstance(resp, Response) and resp.cseq == (314159, "INVITE")


def test_max_forwards_not_mandatory() -> None:
    req = parse_request(build(headers=without("Max-Forwards")))
    assert req.headers.get("Max-Forwards") is None


# -- malformed messages -------------------------------------------------------------------------

MALFORMED: list[tuple[str, bytes, str, bool]] = [
    ("empty", b"", "Empty message", False),
    ("keepalive", b"\r\n\r\n", "Keep-alive", False),
    ("bare lf keepalive", b"\n", "Keep-alive", False),
    ("garbage text", b"hello world\r\n\r\n", "Bad request line", False),
    ("binary", b"\x00\x01\x02\x03\r\n\r\n", "Binary data in header", False),
    (
        "not utf-8",
        build(headers=[*BASE_HEADERS]).replace(b"Alice", b"\xffAl"),
        "Bad encoding",
        False,
    ),
    (
        "request line extra space",
        build("INVITE  sip:b@h SIP/2.0"),
        "Extra whitespace in request line",
        True,
    ),
    (
        "request line trailing space",
        build("INVITE sip:b@h SIP/2.0 "),
        "Extra whitespace in request line",
        True,
    ),
    ("uri with space", build("INVITE sip:b c@h SIP/2.0"), "LWS in Request-URI", True),
    ("uri without scheme", build("INVITE bob SIP/2.0"), "Bad Request-URI", True),
    ("uri in angle brackets", build("INVITE <sip:b@h> SIP/2.0"), "Request-URI in <>", True),
    ("only two words", build("INVITE SIP/2.0"), "Bad request line", False),
    ("bad method chars", build("INV@TE sip:b@h SIP/2.0"), "Bad request line", False),
    ("bad version", build("INVITE sip:b@h SIP/7.0"), "Version Not Supported", True),
    ("bad version word", build("INVITE sip:b@h HTTP/1.1"), "Bad request line", False),
    ("response bad version", build("SIP/3.0 200 OK"), "Unsupported SIP version", False),
    ("status too low", build("SIP/2.0 099 Low"), "Bad status code", False),
    ("status too high", build("SIP/2.0 700 High"), "Bad status code", False),
    ("status four digits", build("SIP/2.0 2000 OK"), "Bad status line", False),
    ("status missing", build("SIP/2.0"), "Bad status line", False),
    ("missing via", build(headers=without("Via")), "Missing Via", False),
    ("missing from", build(headers=without("From")), "Missing From", True),
    ("missing to", build(headers=without("To")), "Missing To", True),
    ("missing call-id", build(headers=without("Call-ID")), "Missing Call-ID", True),
    ("missing cseq", build(headers=without("CSeq")), "Missing CSeq", False),
    ("empty call-id", build(headers=[*without("Call-ID"), "Call-ID:"]), "Missing Call-ID", True),
    ("response missing via", build("SIP/2.0 200 OK", without("Via")), "Missing Via", False),
    ("cseq no number", build(headers=[*without("CSeq"), "CSeq: INVITE"]), "Bad CSeq", False),
    ("cseq negative", build(headers=[*without("CSeq"), "CSeq: -1 INVITE"]), "Bad CSeq", False),
    (
        "cseq too big",
        build(headers=[*without("CSeq"), "CSeq: 4294967296 INVITE"]),
        "Bad CSeq",
        True,  # answerable (RFC 4475 scalar02): the sender matches on branch and method
    ),
    ("bad via", build(headers=["Via: garbage", *without("Via")]), "Bad Via", False),
    (
        "via without host",
        build(headers=["Via: SIP/2.0/UDP ;branch=z9hG4bK1", *without("Via")]),
        "Bad Via",
        False,
    ),
    ("bare cr", build(headers=[*BASE_HEADERS, "Subject: a\rb"]), "Bare CR in header", False),
    # Answerable: the 400 can be addressed.
    (
        "cseq mismatch",
        build(headers=[*without("CSeq"), "CSeq: 1 BYE"]),
        "CSeq method mismatch",
        True,
    ),
    (
        "header without colon",
        build(headers=[*BASE_HEADERS, "NoColonHere"]),
        "Bad header line",
        True,
    ),
    ("bad header name", build(headers=[*BASE_HEADERS, "Bad Name: x"]), "Bad header line", True),
    (
        "content-length too big",
        build(body=b"abc").replace(b"Length: 3", b"Length: 300"),
        "Content-Length too large",
        True,
    ),
    (
        "content-length negative",
        build(body=b"abc").replace(b"Length: 3", b"Length: -999"),
        "Bad Content-Length",
        True,
    ),
    (
        "content-length text",
        build(body=b"abc").replace(b"Length: 3", b"Length: three"),
        "Bad Content-Length",
        True,
    ),
    ("body truncated", build(body=SDP)[:-10], "Content-Length too large", True),
    (
        "content-length of 5000 digits",
        build(body=b"abc").replace(b"Length: 3", b"Length: " + b"9" * 5000),
        "Bad Content-Length",
        True,
    ),
    (
        "two content-lengths",
        build(headers=[*BASE_HEADERS, "l: 3"], body=b"abc"),
        "Multiple Content-Length headers",
        True,
    ),
    (
        "two to headers",
        build(headers=[*BASE_HEADERS, "To: <sip:x@y>"]),
        "Multiple To headers",
        True,
    ),
    (
        "empty via entry",
        build(headers=[*without("Via"), "Via: SIP/2.0/UDP h;branch=z9hG4bK1,,"]),
        "Bad Via",
        True,
    ),
    ("no blank line", build().rstrip(b"\r\n"), "Truncated message", True),
]


@pytest.mark.parametrize(
    ("data", "reason", "answerable"),
    [pytest.param(d, r, a, id=i) for i, d, r, a in MALFORMED],
)
def test_malformed(data: bytes, reason: str, answerable: bool) -> None:
    with pytest.raises(ParseError) as info:
        parse_message(data)
    assert info.value.reason == reason
    assert (info.value.request is not None) == answerable
    if info.value.request is not None and not reason.startswith(("Missing", "Bad CSeq")):
        answer = make_response(info.value.request, 400, info.value.reason)
        back = parse_message(answer.to_bytes())
        assert isinstance(back, Response) and back.reason == reason


def test_truncated_mid_header_is_unanswerable() -> None:
    data = build()
    with pytest.raises(ParseError) as info:
        parse_message(data[: data.index(b"Call-ID") + 4])
    assert info.value.request is None


def test_random_65k_datagram() -> None:
    data = random.Random(3261).randbytes(65_000)
    with pytest.raises(ParseError) as info:
        parse_message(data)
    assert info.value.request is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_only_raise_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_message(data)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.binary(min_size=0, max_size=4)), max_size=6))
def test_mutated_messages_only_raise_parse_error(edits: list[tuple[int, bytes]]) -> None:
    data = bytearray(WSINV)
    for pos, replacement in edits:
        pos %= len(data) + 1
        data[pos : pos + len(replacement)] = replacement
    try:
        msg = parse_message(bytes(data))
    except ParseError as err:
        if err.request is not None:
            make_response(err.request, 400, err.reason).to_bytes()
        return
    msg.to_bytes()


# -- headers ------------------------------------------------------------------------------------


def test_headers_api() -> None:
    h = Headers([("via", "SIP/2.0/UDP a"), ("Call-Id", "x"), ("Route", "<sip:r1>")])
    h.add("Via", "SIP/2.0/UDP top", first=True)
    h.add("v", "SIP/2.0/UDP bottom")
    assert h.get_all("VIA") == ["SIP/2.0/UDP top", "SIP/2.0/UDP a", "SIP/2.0/UDP bottom"]
    assert h.get("i") == "x" and "CALL-ID" in h and "Nope" not in h and 3 not in h
    assert h.get("Bad Name") is None and h.get_all("Missing") == []
    h.add("Record-Route", "<sip:rr>", first=True)  # none yet: goes to the very top
    assert next(h.items()) == ("Record-Route", "<sip:rr>")
    h.replace_first("Via", "SIP/2.0/UDP new")
    assert h.get_all("Via")[0] == "SIP/2.0/UDP new"
    h.set("Via", "SIP/2.0/UDP only")
    assert h.get_all("Via") == ["SIP/2.0/UDP only"]
    assert [n for n, _ in h.items()] == ["Record-Route", "Via", "Call-ID", "Route"]
    h.replace_first("Subject", "hi")  # absent: appended
    assert h.get("Subject") == "hi"
    c = h.copy()
    c.remove("route")
    assert "Route" in h and "Route" not in c and c != h
    h.remove("Route")
    assert c == h
    with pytest.raises(ValueError):
        h.add("X-Evil", "a\r\nVia: injected")
    with pytest.raises(ValueError):
        h.set("Bad Name", "x")


def test_content_length_always_rewritten() -> None:
    h = Headers([("Via", "SIP/2.0/UDP h;branch=z9hG4bK1"), ("Content-Length", "999")])
    req = Request("MESSAGE", "sip:a@b", h, b"hello")
    data = req.to_bytes()
    assert data.count(b"Content-Length") == 1
    assert data.endswith(b"Content-Length: 5\r\n\r\nhello")
    assert data.startswith(b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n")


def test_round_trip_of_torture_message() -> None:
    req = parse_request(WSINV)
    again = parse_request(req.to_bytes())
    assert again.method == req.method and again.uri == req.uri and again.body == req.body
    req.headers.set("Content-Length", str(len(req.body)))
    again.headers.set("Content-Length", str(len(req.body)))
    assert again == req


# -- Via ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "via", "rendered"),
    [
        (
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport;received=1.2.3.4",
            Via(
                "UDP",
                "10.0.0.1",
                5060,
                {"branch": "z9hG4bKabc", "rport": None, "received": "1.2.3.4"},
            ),
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport;received=1.2.3.4",
        ),
        (
            "SIP/2.0/tcp host.example",
            Via("TCP", "host.example", None, {}),
            "SIP/2.0/TCP host.example",
        ),
        (
            "SIP/2.0/UDP [::1]:5060;branch=z9hG4bK1;rport=5070",
            Via("UDP", "::1", 5060, {"branch": "z9hG4bK1", "rport": "5070"}),
            "SIP/2.0/UDP [::1]:5060;branch=z9hG4bK1;rport=5070",
        ),
        (
            "SIP/2.0/UDP [2001:db8::9]",
            Via("UDP", "2001:db8::9", None, {}),
            "SIP/2.0/UDP [2001:db8::9]",
        ),
        (
            " SIP / 2.0 / UDP  h : 5060 ; Branch = z9hG4bK9 ; maddr=224.2.0.1 ;ttl=16",
            Via("UDP", "h", 5060, {"branch": "z9hG4bK9", "maddr": "224.2.0.1", "ttl": "16"}),
            "SIP/2.0/UDP h:5060;branch=z9hG4bK9;maddr=224.2.0.1;ttl=16",
        ),
    ],
)
def test_parse_via(raw: str, via: Via, rendered: str) -> None:
    parsed = parse_via(raw)
    assert parsed == via
    assert str(parsed) == rendered
    assert parse_via(str(parsed)) == parsed


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "garbage",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP h:port",
        "SIP/2.0/UDP h:70000",
        "SIP/2.0/UDP [::1",
        "SIP/2.0/UDP h;=x",
        "HTTP/1.1/TCP h",
    ],
)
def test_parse_via_errors(raw: str) -> None:
    with pytest.raises(ParseError):
        parse_via(raw)


def test_branch_fast_path_agrees_with_full_parse() -> None:
    for via in [
        "SIP/2.0/UDP h;BRANCH=z9hG4bKa;rport",
        "SIP/2.0/UDP h;rport;branch = z9hG4bKb",
        "SIP/2.0/UDP h;rport",
    ]:
        req = parse_request(build(headers=[f"Via: {via}", *without("Via")]))
        assert req.branch == parse_via(via).branch


# -- name-addr ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected", "rendered"),
    [
        (
            '"Display" <sip:u@h>;tag=x',
            NameAddr("Display", "sip:u@h", {"tag": "x"}),
            '"Display" <sip:u@h>;tag=x',
        ),
        (
            "Display Name <sip:u@h:5060;transport=udp>",
            NameAddr("Display Name", "sip:u@h:5060;transport=udp", {}),
            '"Display Name" <sip:u@h:5060;transport=udp>',
        ),
        ("<sip:u@h>", NameAddr(None, "sip:u@h", {}), "<sip:u@h>"),
        ("sip:u@h;tag=x", NameAddr(None, "sip:u@h", {"tag": "x"}), "<sip:u@h>;tag=x"),
        (
            "tel:+15551234;tag=1",
            NameAddr(None, "tel:+15551234", {"tag": "1"}),
            "<tel:+15551234>;tag=1",
        ),
        (
            '"A \\"quoted\\" \\\\ name" <sip:a@b>',
            NameAddr('A "quoted" \\ name', "sip:a@b", {}),
            '"A \\"quoted\\" \\\\ name" <sip:a@b>',
        ),
        ('"" <sip:a@b>', NameAddr("", "sip:a@b", {}), "<sip:a@b>"),
        (
            '<sip:a@b>;expires=60;+sip.instance="<urn:uuid:1;x>";q=0.5',
            NameAddr(
                None, "sip:a@b", {"expires": "60", "+sip.instance": '"<urn:uuid:1;x>"', "q": "0.5"}
            ),
            '<sip:a@b>;expires=60;+sip.instance="<urn:uuid:1;x>";q=0.5',
        ),
        ("*", NameAddr(None, "*", {}), "*"),
        (
            '"J\u00fcrgen" <sip:j@h>',
            NameAddr("J\u00fcrgen", "sip:j@h", {}),
            '"J\u00fcrgen" <sip:j@h>',
        ),
    ],
)
def test_parse_name_addr(raw: str, expected: NameAddr, rendered: str) -> None:
    parsed = parse_name_addr(raw)
    assert parsed == expected
    assert str(parsed) == rendered
    assert parse_name_addr(str(parsed)) == parsed or parsed.display == ""


@pytest.mark.parametrize(
    "raw",
    [
        "",
        '"unterminated <sip:a@b>',
        "<sip:a@b",
        "<>",
        "<sip:a@b> junk",
        "Bob sip:a@b",
        '"x" y <sip:a@b>',
        "<sip:a@b>;tag=1;=bad",
    ],
)
def test_parse_name_addr_errors(raw: str) -> None:
    with pytest.raises(ParseError):
        parse_name_addr(raw)


def test_tags_with_quotes_and_odd_forms() -> None:
    cases = {
        '"x;tag=fake" <sip:a@b>;tag=real': "real",
        "<sip:a@b;tag=uri-param>": None,  # inside <>: a URI param, not the header's tag
        "<sip:a@b>;TAG=up": "up",
        '<sip:a@b>;foo="q>";tag=t2': "t2",
        "sip:a@b": None,
        "<sip:a@b>;x=\u0130\u0130;tag=after-dotted-i": "after-dotted-i",  # lower() grows it
    }
    for value, tag in cases.items():
        req = parse_request(build(headers=[*without("From"), f"From: {value}"]))
        assert req.from_tag == tag, value
        assert parse_name_addr(value).tag == tag


# -- URIs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("sip:alice@example.com", SipUri("sip", "alice", "example.com", None, {}, {})),
        (
            "sips:alice@example.com:5061;transport=tls;lr",
            SipUri("sips", "alice", "example.com", 5061, {"transport": "tls", "lr": None}, {}),
        ),
        (
            "sip:+15551234;npdi;rn=+1555@gw.example;user=phone",
            SipUri("sip", "+15551234;npdi;rn=+1555", "gw.example", None, {"user": "phone"}, {}),
        ),
        ("sip:example.com", SipUri("sip", None, "example.com", None, {}, {})),
        ("sip:[2001:db8::1]:5060", SipUri("sip", None, "2001:db8::1", 5060, {}, {})),
        ("sip:u:secret@h", SipUri("sip", "u", "h", None, {}, {}, "secret")),
        (
            "sip:u@h?subject=project%20x&priority=urgent",
            SipUri("sip", "u", "h", None, {}, {"subject": "project%20x", "priority": "urgent"}),
        ),
        (
            "sip:sips%3Auser%40example.com@example.net",
            SipUri("sip", "sips%3Auser%40example.com", "example.net", None, {}, {}),
        ),
        (
            "sip:user@host?Route=%3Csip:sip.example.com%3E",
            SipUri("sip", "user", "host", None, {}, {"Route": "%3Csip:sip.example.com%3E"}),
        ),
        (
            "tel:+1-555-123;phone-context=example.com",
            SipUri("tel", "+1-555-123", "", None, {"phone-context": "example.com"}, {}),
        ),
        ("SIP:Bob@Example.COM", SipUri("sip", "Bob", "Example.COM", None, {}, {})),
    ],
)
def test_parse_uri(raw: str, expected: SipUri) -> None:
    parsed = parse_uri(raw)
    assert parsed == expected
    assert parse_uri(str(parsed)) == parsed


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "http://x",
        "sip:",
        "sip:u@",
        "sip:u@h:99999",
        "sip:u@h:x",
        "sip:a b@h",
        "tel:",
        "urn:service:sos",
        "sip:[::1",
    ],
)
def test_parse_uri_errors(raw: str) -> None:
    with pytest.raises(ParseError):
        parse_uri(raw)


def test_parse_uri_of_name_addr_uri() -> None:
    assert parse_uri(parse_name_addr('"A" <sip:100@10.0.0.1:5060>;tag=1').uri).user == "100"


# -- make_response ------------------------------------------------------------------------------


def _multi_via_invite() -> Request:
    headers = [
        "Via: SIP/2.0/UDP p1.example;branch=z9hG4bKp1, SIP/2.0/UDP p2.example;branch=z9hG4bKp2",
        "Via: SIP/2.0/UDP ua.example;branch=z9hG4bKua",
        *without("Via"),
        "Record-Route: <sip:p1.example;lr>",
        "Timestamp: 54.2",
        "Content-Type: application/sdp",
    ]
    return parse_request(build(headers=headers, body=SDP))


def test_make_response_copies_rfc3261_8_2_6_headers() -> None:
    req = _multi_via_invite()
    resp = make_response(req, 486, to_tag="t1")
    assert (resp.status, resp.reason, resp.body) == (486, "Busy Here", b"")
    assert resp.headers.get_all("Via") == req.headers.get_all("Via")
    assert len(resp.headers.get_all("Via")) == 3
    assert resp.headers.get("From") == req.headers.get("From")
    assert resp.headers.get("To") == "<sip:bob@example.com>;tag=t1"
    assert resp.call_id == req.call_id and resp.cseq == req.cseq
    assert resp.to_tag == "t1" and resp.from_tag == req.from_tag and resp.branch == req.branch
    for absent in ("Record-Route", "Contact", "Content-Type", "Max-Forwards", "Timestamp"):
        assert absent not in resp.headers
    back = parse_message(resp.to_bytes())
    assert back == resp.__class__(486, "Busy Here", _with_cl(resp.headers, 0))


def _with_cl(h: Headers, n: int) -> Headers:
    out = h.copy()
    out.add("Content-Length", str(n))
    return out


def test_make_response_keeps_existing_to_tag_and_custom_reason() -> None:
    req = parse_request(build(headers=[*without("To"), "To: <sip:bob@example.com>;tag=dlg"]))
    resp = make_response(req, 200, "Fine Thanks", to_tag="other")
    assert resp.to_tag == "dlg" and resp.reason == "Fine Thanks"


def test_make_response_100_echoes_timestamp() -> None:
    resp = make_response(_multi_via_invite(), 100)
    assert resp.reason == "Trying" and resp.headers.get("Timestamp") == "54.2"
    assert resp.to_tag is None


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (180, "Ringing"),
        (422, "Session Interval Too Small"),
        (423, "Interval Too Brief"),
        (489, "Bad Event"),
        (491, "Request Pending"),
        (494, "Security Agreement Required"),
        (580, "Precondition Failure"),
        (481, "Call/Transaction Does Not Exist"),
        (499, "Client Error"),
        (299, "OK"),
        (650, "Global Failure"),
    ],
)
def test_default_reasons(status: int, reason: str) -> None:
    assert make_response(_multi_via_invite(), status).reason == reason


def test_reason_table_covers_rfc3261() -> None:
    rfc3261 = {
        100,
        180,
        181,
        182,
        183,
        200,
        300,
        301,
        302,
        305,
        380,
        400,
        401,
        402,
        403,
        404,
        405,
        406,
        407,
        408,
        410,
        413,
        414,
        415,
        416,
        420,
        421,
        423,
        480,
        481,
        482,
        483,
        484,
        485,
        486,
        487,
        488,
        491,
        493,
        500,
        501,
        502,
        503,
        504,
        505,
        513,
        600,
        603,
        604,
        606,
    }
    assert rfc3261 <= REASON_PHRASES.keys()


def test_identifiers() -> None:
    branches = {new_branch() for _ in range(100)}
    assert len(branches) == 100 and all(b.startswith("z9hG4bK") for b in branches)
    assert new_tag() != new_tag() and new_call_id() != new_call_id()


# -- round-trip property -----------------------------------------------------------------------

_token = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~",
    min_size=1,
    max_size=12,
)
_value = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=40).map(
    str.strip
)
_plain_value = _value.filter(lambda v: "," not in v)
_extra_name = _token.filter(
    lambda n: (
        n.lower() not in {"via", "v", "route", "record-route", "contact", "m"}
        and canonical_name(n) not in _SINGLE
    )
)


@st.composite
def messages(draw: st.DrawFn) -> Request | Response:
    method = draw(_token)
    h = Headers()
    for _ in range(draw(st.integers(1, 3))):
        h.add("Via", f"SIP/2.0/UDP {draw(_token)}.example:5060;branch=z9hG4bK{draw(_token)}")
    h.add("From", f"<sip:{draw(_token)}@a.example>;tag={draw(_token)}")
    h.add("To", f"<sip:{draw(_token)}@b.example>")
    h.add("Call-ID", draw(_token))
    h.add("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}")
    for name, value in draw(st.lists(st.tuples(_extra_name, _value), max_size=8)):
        h.add(name, value)
    for value in draw(st.lists(_plain_value.filter(bool), max_size=3)):
        h.add("Contact", value)
    body = draw(st.binary(max_size=300))
    if draw(st.booleans()):
        return Request(method, f"sip:{draw(_token)}@c.example", h, body)
    return Response(draw(st.integers(100, 699)), draw(_value), h, body)


@settings(max_examples=300, deadline=None)
@given(messages())
def test_round_trip(msg: Request | Response) -> None:
    back = parse_message(msg.to_bytes())
    expected_headers = _with_cl(msg.headers, len(msg.body))
    expected: Request | Response
    if isinstance(msg, Request):
        expected = Request(msg.method, msg.uri, expected_headers, msg.body)
    else:
        expected = Response(msg.status, msg.reason, expected_headers, msg.body)
    assert back == expected
    assert back.to_bytes() == msg.to_bytes()


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["UDP", "TCP", "TLS"]),
    st.sampled_from(["h.example", "10.0.0.1", "::1", "2001:db8::7"]),
    st.none() | st.integers(0, 65535),
    st.dictionaries(_token.map(str.lower), st.none() | _token, max_size=4),
)
def test_via_round_trip(
    transport: str, host: str, port: int | None, params: dict[str, str | None]
) -> None:
    via = Via(transport, host, port, params)
    assert parse_via(str(via)) == via


def test_rfc4475_intmeth_file_with_nul_as_a_quoted_pair() -> None:
    data = (RFC4475 / "intmeth.dat").read_bytes()
    req = parse_message(data)
    assert isinstance(req, Request)
    assert "\\\x00" in (req.headers.get("To") or "")
    answer = parse_message(make_response(req, 405).to_bytes())
    assert isinstance(answer, Response) and answer.status == 405
    bare = data.replace(b"NUL:\\\x00", b"NUL:\x00")
    with pytest.raises(ParseError):
        parse_message(bare)
