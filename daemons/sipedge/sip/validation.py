"""What a request must satisfy before a transaction is made for it (RFC 3261 8.2, RFC 4475).

Owns: `check_request`, the checks the parser leaves to later (it only frames the message and
checks the start line, the mandatory headers and Content-Length), and `Refusal`, the answer to
a request that fails one: 400 naming the problem, 414, 416, 420 with `Unsupported`, 415, 483
and 513. Each check is linear in the size of the message.

Nearly every value on the wire has one plain shape (`"Name" <sip:user@host>;tag=x`,
`SIP/2.0/UDP host:port;branch=z9hG4bK...`). A compiled pattern recognises that shape in one C
call and accepts the value without the full parse; every other value takes the full check, which
stays the reference. Each pattern accepts only values that the full check accepts too
(tests/unit/test_validation_fast.py holds them against each other), so no verdict changes.
Must not: send, keep state, read the clock, or import from sipedge outside sip/. Deciding how
a refusal goes out (statelessly, counted, logged) is the transaction layer's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sipedge.sip.address import _PARAMS, _T, _scan_quoted, _split_params
from sipedge.sip.headers import _TOKEN_CHARS
from sipedge.sip.limits import SipLimits
from sipedge.sip.message import (
    MAX_VIA_PARAMS,
    ParseError,
    Request,
    Response,
    parse_name_addr,
    parse_uri,
    parse_via,
)

__all__ = ["LOCAL_METHODS", "Refusal", "check_request", "check_response"]

# Requests a B2BUA answers itself rather than forwarding: Max-Forwards 0 does not stop them
# (RFC 3261 11 and 16.3 item 2: 483 is for requests that would be forwarded).
LOCAL_METHODS = frozenset(("OPTIONS", "REGISTER", "ACK", "CANCEL"))
URI_SCHEMES = frozenset(("sip", "sips", "tel"))
# Body types a call leg can use (media anchoring reads SDP); anything else on an INVITE is 415.
BODY_TYPES = frozenset(("application/sdp",))


# -- the plain shapes (see the module docstring) --------------------------------------------------

# hostname or IPv4: an [IPv6] reference takes the full parse, which checks it is one (RFC 5118)
_HOST = r"[A-Za-z0-9.-]+"
_PORT = r"(?::([0-9]{1,5}))?"  # group 1; the caller checks <= 65535
# name-addr with an optional quoted (no escapes) or token display name, or a bare addr-spec
# without `?` and `,` (RFC 3261 20.10 wants those inside <>).
_PLAIN_ADDRESS = re.compile(
    rf'(?:"[^"\\\x00-\x1f\x7f]*" ?|{_T}+(?: {_T}+)* ?)?<[^<>"\s\[]+>{_PARAMS}'
    rf'|[A-Za-z][A-Za-z0-9+.-]*:[^<>"\s;?,\[]+{_PARAMS}'
)
_PLAIN_VIA = re.compile(rf"SIP/2\.0/{_T}+ {_HOST}{_PORT}{_PARAMS}")
# A sip: or sips: Request-URI in its plain shape: no password, no ?headers, no quotes.
_PLAIN_URI = re.compile(rf"sips?:(?:[A-Za-z0-9_.!~*'()&=+$,%-]+@)?{_HOST}{_PORT}{_PARAMS}")


def _plain(pattern: re.Pattern[str], value: str) -> bool:
    """True when `value` has the plain shape `pattern` describes, port included."""
    m = pattern.fullmatch(value)
    return m is not None and (m[1] is None or int(m[1]) <= 65535)


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    reason: str | None = None  # None: the standard phrase
    headers: tuple[tuple[str, str], ...] = ()
    # The class the refusal is counted and logged under (a closed set: never input-derived).
    label: str = ""


def check_request(request: Request, limits: SipLimits, supported: frozenset[str]) -> Refusal | None:
    """The first problem of `request`, or None if it may go on to a transaction."""
    if len(request.uri) > limits.max_uri_length:
        return Refusal(414, label="414 Request-URI too long")
    if len(request.headers) > limits.max_headers:
        return Refusal(513, "Too Many Headers", label="513 too many headers")
    problem = _syntax(request)
    if problem is not None:
        return Refusal(400, problem, label=f"400 {problem}")
    scheme = request.uri.partition(":")[0].lower()
    if scheme not in URI_SCHEMES:
        return Refusal(416, label="416 unsupported URI scheme")
    if not _plain(_PLAIN_URI, request.uri):
        try:
            uri = parse_uri(request.uri)
        except ParseError:
            return Refusal(400, "Bad Request-URI", label="400 Bad Request-URI")
        if uri.headers:
            return Refusal(400, "Headers in Request-URI", label="400 Headers in Request-URI")
    method = request.method
    max_forwards = request.headers.get("Max-Forwards")
    if max_forwards is not None and int(max_forwards) == 0 and method not in LOCAL_METHODS:
        return Refusal(483, label="483 Max-Forwards 0")
    if method not in ("ACK", "CANCEL"):
        unsupported = _unsupported(request, supported)
        if unsupported:
            return Refusal(420, None, (("Unsupported", unsupported),), "420 unsupported Require")
    if method == "INVITE" and request.body:
        ctype = (request.headers.get("Content-Type") or "").partition(";")[0].strip().lower()
        if ctype not in BODY_TYPES:
            accept = (("Accept", ", ".join(sorted(BODY_TYPES))),)
            return Refusal(415, None, accept, "415 unsupported body type")
    return None


def check_response(response: Response) -> str | None:
    """The first problem of a response that would trip its reader (From/To/Call-ID), or None.
    A response is never answered: one with a problem is dropped."""
    return _syntax(response, full=False)


def _syntax(request: Request | Response, full: bool = True) -> str | None:
    h = request.headers
    for name in ("From", "To"):
        if not _address_ok(h.get(name) or ""):
            return f"Bad {name}"
    call_id = h.get("Call-ID") or ""
    if " " in call_id or "\t" in call_id or not call_id.isprintable():
        return "Bad Call-ID"
    if not full:
        return None
    for via in h.get_all("Via"):
        if not _via_ok(via):
            return "Bad Via"
    max_forwards = h.get("Max-Forwards")
    if max_forwards is not None and not (
        max_forwards.isascii()
        and max_forwards.isdigit()
        and len(max_forwards) <= 4
        and int(max_forwards) <= 255
    ):
        return "Bad Max-Forwards"
    expires = h.get("Expires")
    if expires is not None and not (expires.isascii() and expires.isdigit() and len(expires) <= 10):
        return "Bad Expires"
    for contact in h.get_all("Contact"):
        if contact != "*" and not _address_ok(contact):
            return "Bad Contact"
    return None


def _address_ok(value: str) -> bool:
    """name-addr / addr-spec as RFC 3261 25.1 has them, stricter than parse_name_addr: an
    unquoted display name is tokens, no LWS just inside <>, no empty parameter."""
    if _PLAIN_ADDRESS.fullmatch(value) is not None:
        return True
    return _address_ok_full(value)


def _address_ok_full(value: str) -> bool:
    """`_address_ok` without the plain-shape shortcut: the reference."""
    try:
        addr = parse_name_addr(value)
    except ParseError:
        return False
    s = value.strip()
    if s[:1] == '"':
        lt = s.find("<", _scan_quoted(s, 0)[1])
    else:
        lt = s.find("<")
        if lt > 0 and not _TOKEN_CHARS.issuperset(s[:lt].replace(" ", "").replace("\t", "")):
            return False
    if lt >= 0:
        gt = s.find(">", lt)
        if s[lt + 1 : lt + 2].isspace() or s[gt - 1 : gt].isspace():
            return False
        tail = s[gt + 1 :]
    else:
        spec, _, tail = s.partition(";")
        if "?" in spec or "," in spec:
            return False  # RFC 3261 20.10: such a URI needs the name-addr form (<...>)
        tail = ";" + tail if tail else ""
    if tail and _has_empty_param(tail):
        return False
    if "[" in addr.uri:  # an IPv6 reference must be one (RFC 5118 4.10: no three colons)
        try:
            parse_uri(addr.uri)
        except ParseError:
            return False
    return bool(addr.uri)


def _via_ok(value: str) -> bool:
    if value.count(";") > MAX_VIA_PARAMS:
        return False
    return _plain(_PLAIN_VIA, value) or _via_ok_full(value)


def _via_ok_full(value: str) -> bool:
    """`_via_ok` without the parameter count and the plain-shape shortcut: the reference."""
    try:
        parse_via(value)
    except ParseError:
        return False
    params = value.partition(";")[2]
    return not params or not _has_empty_param(";" + params)


def _has_empty_param(tail: str) -> bool:
    """`;a;;b` or a trailing `;`: RFC 3261's `*( SEMI param )` has no empty parameter."""
    try:
        parts = _split_params(tail.strip())
    except ParseError:
        return True
    return any(not p.strip() for p in parts[1:]) or bool(parts[0].strip())


def _unsupported(request: Request, supported: frozenset[str]) -> str:
    if "Require" not in request.headers:
        return ""
    tags = {
        token.strip()
        for value in request.headers.get_all("Require")
        for token in value.split(",")
        if token.strip()
    }
    return ", ".join(sorted(tags - supported))
