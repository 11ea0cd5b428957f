"""RFC 3261 SIP message parsing and serialization.

Built for throughput on the signaling hot path: a datagram is decoded once, split into lines
once, and its headers are kept as raw strings in two parallel lists. Structured views (Via,
name-addr, URI) are parsed only when someone asks for them; the top Via and the CSeq, which the
transport, the transaction layer and the calls all ask for, are parsed once per value (a small
module-wide memo keyed by the raw value). This module matches no regular expression; address.py
and validation.py recognise a value of the plain shape with one compiled pattern before the
general parse.

Owns: `Request` / `Response` and their wire form, `parse_message`, `make_response` and the
reason phrases. Header names and `Headers` live in headers.py, Via / name-addr / URI values in
address.py, `ParseError` in errors.py, fresh branch / tag / Call-ID values in identifiers.py;
this module re-exports them all, and other code imports them from here.
Must not: open sockets, read the clock, or import from sipedge outside sip/ (the transports,
transactions and dialogs build on it, never the reverse).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from sipedge.sip.address import (
    NameAddr,
    SipUri,
    Via,
    _tag_of,
    host_text,
    hostport,
    parse_name_addr,
    parse_uri,
    parse_via,
)
from sipedge.sip.errors import ParseError
from sipedge.sip.headers import (
    _CANON,
    _TOKEN_CHARS,
    Headers,
    _canonical_or_none,
    _cseq_of,
    _parse_cseq,
    _split_commas,
    canonical_name,
)
from sipedge.sip.identifiers import new_branch, new_call_id, new_tag

__all__ = [
    "REASON_PHRASES",
    "Headers",
    "NameAddr",
    "ParseError",
    "Request",
    "Response",
    "SipUri",
    "Via",
    "canonical_name",
    "host_text",
    "hostport",
    "make_response",
    "new_branch",
    "new_call_id",
    "new_tag",
    "parse_message",
    "parse_name_addr",
    "parse_uri",
    "parse_via",
]


REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    417: "Unknown Resource-Priority",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    424: "Bad Location Information",
    428: "Use Identity Header",
    429: "Provide Referrer Identity",
    430: "Flow Failed",
    433: "Anonymity Disallowed",
    436: "Bad Identity-Info",
    437: "Unsupported Certificate",
    438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded",
    469: "Bad Info Package",
    470: "Consent Needed",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
    607: "Unwanted",
    608: "Rejected",
}

# Fallback for codes missing from the table (RFC 3261 8.1.3.2: treat as x00 of the class).
_CLASS_PHRASES = {
    1: "Session Progress",
    2: "OK",
    3: "Redirection",
    4: "Client Error",
    5: "Server Error",
    6: "Global Failure",
}


# -- values parsed lately ----------------------------------------------------------------------

# The top Via and the CSeq are read by the transport, the transaction layer and the calls, mostly
# while one datagram is handled. Parsing is a function of the raw value alone, so a value found
# here gives exactly what parsing it again would. Module-wide and bounded, not per message: a
# finished transaction lingering 32 s keeps no parse alive. Only ever copies of a Via go out.
_MEMO_SIZE = 16
_via_memo: dict[str, Via] = {}
_cseq_memo: dict[str, tuple[int, str]] = {}
_T = TypeVar("_T")


def _remember(memo: dict[str, _T], value: str, parsed: _T) -> None:
    if len(memo) >= _MEMO_SIZE:
        memo.pop(next(iter(memo), ""), None)  # the oldest
    memo[value] = parsed


# -- messages --------------------------------------------------------------------------------


class _Message:
    """Accessors shared by requests and responses."""

    __slots__ = ()
    headers: Headers
    body: bytes

    def _start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Wire form. Content-Length is always written from len(body): in place of the first
        existing one (later duplicates dropped), else last."""
        h = self.headers
        names = h._names
        # One list, one join: ": ".join maps over the (name, value) pairs in C, no f-string
        # per header line. No strict= for zip: Headers keeps the two lists the same length, and
        # a keyword argument alone costs ~5 % of this call.
        lines = [self._start_line(), *map(": ".join, zip(names, h._values))]  # noqa: B905
        cl = f"Content-Length: {len(self.body)}"
        if "Content-Length" in names:
            first = names.index("Content-Length")
            lines[first + 1] = cl
            if names.count("Content-Length") > 1:
                lines = lines[:1] + [
                    line
                    for i, (name, line) in enumerate(zip(names, lines[1:], strict=True))
                    if name != "Content-Length" or i == first
                ]
        else:
            lines.append(cl)
        lines.append("\r\n")
        return "\r\n".join(lines).encode() + self.body

    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        value = self.headers.get("CSeq")
        if value is None:
            raise ParseError("Missing CSeq")
        parsed = _cseq_memo.get(value)
        if parsed is None:
            parsed = _parse_cseq(value)
            if parsed is None:
                raise ParseError("Bad CSeq")
            _remember(_cseq_memo, value, parsed)
        return parsed

    @property
    def from_tag(self) -> str | None:
        value = self.headers.get("From")
        return None if value is None else _tag_of(value)

    @property
    def to_tag(self) -> str | None:
        value = self.headers.get("To")
        return None if value is None else _tag_of(value)

    @property
    def top_via(self) -> Via:
        """The first Via, parsed, as a copy of its own; edit it and write it back with
        `replace_top_via`. Parsed once per value (see _via_memo)."""
        value = self.headers.get("Via")
        if value is None:
            raise ParseError("Missing Via")
        via = _via_memo.get(value)
        if via is None:
            via = parse_via(value)
            _remember(_via_memo, value, via)
        return via.copy()

    def replace_top_via(self, via: Via) -> None:
        """Write `via` back as the first Via (appended if there is none) and remember it as
        that value's parse: parse_via(str(via)) == via for every Via that parse_via made,
        whatever its parameters were set to since (tests/unit/test_message_fastpaths.py)."""
        self.headers.replace_first("Via", str(via))
        value = self.headers.get("Via")
        if value is not None:
            _remember(_via_memo, value, via.copy())

    @property
    def branch(self) -> str | None:
        value = self.headers.get("Via")
        if value is None:
            return None
        if not value.isascii():  # lower() could shift offsets
            return parse_via(value).branch
        low = value.lower()
        i = low.find(";branch=")
        if i < 0:
            return parse_via(value).branch if "branch" in low else None
        i += 8
        end = value.find(";", i)
        return (value[i:] if end < 0 else value[i:end]).strip() or None


@dataclass(slots=True, eq=True)
class Request(_Message):
    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"


@dataclass(slots=True, eq=True)
class Response(_Message):
    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def _start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"


# -- parser ------------------------------------------------------------------------------------

# Headers whose comma-separated values are separate entries (RFC 3261 7.3.1).
_SPLIT = frozenset(("Via", "Route", "Record-Route", "Contact"))
_MANDATORY = ("Via", "From", "To", "Call-ID", "CSeq")
# Headers that carry one value (RFC 3261 20): a second one makes the message a 400.
_SINGLE = frozenset(
    (
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Max-Forwards",
        "Content-Length",
        "Content-Type",
        "Expires",
        "Min-Expires",
        "MIME-Version",
        "Session-Expires",
        "Min-SE",
        "RSeq",
        "RAck",
        "Date",
        "Timestamp",
        "Retry-After",
    )
)
_MAX_LENGTH_DIGITS = 9  # covers any datagram; more is a 400, never int() of thousands of digits


def parse_message(data: bytes) -> Request | Response:
    """Parse one datagram. Raises ParseError; see its docstring for when `.request` is set.

    Linear in the size of the datagram: every line is visited once, folded lines are joined
    once, comma lists are split in one pass.
    """
    if not data:
        raise ParseError("Empty message")
    if data[0] in (13, 10):  # leading CRLFs (RFC 3261 7.5), or a bare keep-alive
        data = data.lstrip(b"\r\n")
        if not data:
            raise ParseError("Keep-alive")

    # End of the header block: the first empty line, tolerating bare LF line ends.
    k1 = data.find(b"\n\r\n")
    k2 = data.find(b"\n\n", 0, k1 if k1 >= 0 else len(data))
    error: str | None = None
    error_status = 400
    if k2 >= 0:
        head_end, body_start = k2, k2 + 2
    elif k1 >= 0:
        head_end, body_start = k1, k1 + 3
    else:
        error = "Truncated message"
        head_end = body_start = len(data)
    if head_end and data[head_end - 1] == 13:
        head_end -= 1

    try:
        text = data[:head_end].decode()
    except UnicodeDecodeError:
        raise ParseError("Bad encoding") from None
    if "\x00" in text and text.count("\x00") != text.count("\\\x00"):
        # NUL only as an escaped quoted-pair (RFC 3261 25.1 allows "\" %x00, RFC 4475 intmeth)
        raise ParseError("Binary data in header")
    if error is not None:
        text = text.rstrip("\r\n")

    if "\r" in text:
        # Split first: the number of CRLFs is then known, and counting single characters is
        # cheaper than counting "\r\n".
        lines = text.split("\r\n")
        n_crlf = len(lines) - 1
        if text.count("\r") != n_crlf:
            # A lone CR inside a value would come back out as a broken line on the wire.
            raise ParseError("Bare CR in header")
        if text.count("\n") != n_crlf:
            lines = [line.rstrip("\r") for line in text.split("\n")]
    else:
        lines = text.split("\n")

    # Start line. Single spaces only: RFC 4475 3.1.2.x says extra LWS here is an error.
    first = lines[0]
    status = 0
    reason = method = uri = ""
    if first[:4].upper() == "SIP/":
        parts = first.split(" ", 2)
        code = parts[1] if len(parts) > 1 else ""
        if parts[0].upper() != "SIP/2.0":
            raise ParseError("Unsupported SIP version")
        if len(code) != 3 or not (code.isascii() and code.isdigit()):
            raise ParseError("Bad status line")
        status = int(code)
        if not 100 <= status <= 699:
            raise ParseError("Bad status code")
        reason = parts[2] if len(parts) == 3 else ""
    else:
        method, uri, line_error, error_status = _request_line(first)
        error = error or line_error

    # Header lines: unfold, canonicalize names, keep raw values.
    names: list[str] = []
    values: list[str] = []
    folded: list[str] = []  # continuation lines of the last header, joined once at its end
    # A comma list to split, or a folded line that may have brought one: _split_lists then
    # looks at every header (it passes the others through); most messages need neither.
    maybe_lists = False
    canon_cache = _CANON
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t":
            if values:
                folded.append(line.strip())
                maybe_lists = True
            else:
                error = error or "Bad header folding"
            continue
        if folded:
            values[-1] = " ".join((values[-1], *folded)).lstrip()
            folded.clear()
        name, sep, value = line.partition(":")
        canon = canon_cache.get(name) or (_canonical_or_none(name) if sep else None)
        if canon is None:
            error = error or "Bad header line"
            continue
        value = value.strip()
        names.append(canon)
        values.append(value)
        if "," in value and canon in _SPLIT:
            maybe_lists = True
    if folded:
        values[-1] = " ".join((values[-1], *folded)).lstrip()
    if maybe_lists:
        names, values, split_error = _split_lists(names, values)
        error = error or split_error

    # Mandatory headers. A request is answerable if its top Via and CSeq are usable (RFC 3261
    # 8.2.6, 17.1.3): the response then reaches the sender and matches its transaction.
    missing: str | None = None
    for h in _MANDATORY:
        if h not in names or not values[names.index(h)]:
            missing = h
            break
    top_via = values[names.index("Via")] if "Via" in names else ""
    via_ok = bool(top_via) and _via_ok(top_via)
    if not via_ok and error_status == 505 and top_via[:4].upper() == "SIP/":
        via_ok = _via_ok("SIP/2.0/" + top_via.split("/", 2)[-1])  # answer 505 to SIP/7.0
    cseq_raw = values[names.index("CSeq")].split() if "CSeq" in names else []
    cseq = _cseq_of(cseq_raw)
    # An out-of-range CSeq number is still a CSeq the sender can match our 400 with.
    answerable = via_ok and len(cseq_raw) == 2 and cseq_raw[0].isdigit()
    if missing is not None:
        error, error_status = f"Missing {missing}", 400
    elif cseq is None:
        error, error_status = "Bad CSeq", 400
    elif not via_ok:
        error, error_status = "Bad Via", 400
    elif status == 0 and cseq[1] != method:
        error = error or "CSeq method mismatch"
    if error is None and len(set(names)) != len(names):  # no name twice: no single one twice
        error = _duplicate_single(names)

    body = data[body_start:]
    if "Content-Length" in names:
        cl = values[names.index("Content-Length")]
        if not (cl.isascii() and cl.isdigit()) or len(cl) > _MAX_LENGTH_DIGITS:
            error = error or "Bad Content-Length"
            body = b""
        elif (body_end := body_start + int(cl)) > len(data):
            error = error or "Content-Length too large"
            body = b""
        else:
            body = data[body_start:body_end]  # bytes past it: ignored (18.3)

    headers = Headers._from_lists(names, values)
    if error is not None:
        if status == 0 and answerable:
            raise ParseError(error, Request(method, uri, headers, body), error_status)
        raise ParseError(error)
    if cseq is not None:  # what msg.cseq would parse again: the first CSeq, split
        _remember(_cseq_memo, values[names.index("CSeq")], cseq)
    if status:
        return Response(status, reason, headers, body)
    return Request(method, uri, headers, body)


def _request_line(line: str) -> tuple[str, str, str | None, int]:
    """(method, Request-URI, problem or None, status for the problem). Raises ParseError when
    not even a method and a version can be told apart (nothing to answer)."""
    parts = line.split(" ")
    problem: str | None = None
    if len(parts) != 3 or not parts[1]:
        parts = line.split()
        if len(parts) < 3:
            raise ParseError("Bad request line")
        problem = "LWS in Request-URI" if len(parts) > 3 else "Extra whitespace in request line"
        parts = [parts[0], " ".join(parts[1:-1]), parts[-1]]
    method, uri, version = parts
    if not method or not _TOKEN_CHARS.issuperset(method):
        raise ParseError("Bad request line")
    if version != "SIP/2.0" and version.upper() != "SIP/2.0":
        if version[:4].upper() != "SIP/":
            raise ParseError("Bad request line")
        return method, uri, "Version Not Supported", 505
    if problem is None:
        if uri[:1] == "<":
            problem = "Request-URI in <>"
        elif ":" not in uri:
            problem = "Bad Request-URI"
    return method, uri, problem, 400


def _split_lists(names: list[str], values: list[str]) -> tuple[list[str], list[str], str | None]:
    """Split the comma lists of _SPLIT headers into one entry each, in one pass."""
    out_names: list[str] = []
    out_values: list[str] = []
    error: str | None = None
    for name, value in zip(names, values, strict=True):
        if name not in _SPLIT or "," not in value:
            out_names.append(name)
            out_values.append(value)
            continue
        pieces = _split_commas(value, keep_empty=True)
        if "" in pieces:
            if name == "Via" or len(pieces) == pieces.count(""):
                error = error or f"Bad {name}"
            pieces = [p for p in pieces if p] or [""]
        out_names.extend([name] * len(pieces))
        out_values.extend(pieces)
    return out_names, out_values, error


def _duplicate_single(names: list[str]) -> str | None:
    seen: set[str] = set()
    for name in names:
        if name in _SINGLE:
            if name in seen:
                return f"Multiple {name} headers"
            seen.add(name)
    return None


# More Via parameters than this: not a Via we work with (a top Via: dropped; a lower one: 400).
MAX_VIA_PARAMS = 32


def _via_ok(value: str) -> bool:
    if value.count(";") > MAX_VIA_PARAMS:
        return False
    # Cheap sanity check for the common form; anything else gets a full parse.
    if value[:8].upper() == "SIP/2.0/" and "," not in value:
        sp = value.find(" ", 9)
        if sp > 0 and value[sp + 1 : sp + 2] not in ("", ";", ":", " "):
            return True
    try:
        parse_via(value)
    except ParseError:
        return False
    return True


# -- building responses -----------------------------------------------------------------------


def make_response(
    request: Request, status: int, reason: str | None = None, to_tag: str | None = None
) -> Response:
    """A response per RFC 3261 8.2.6: Via (all, in order), From, To (+tag), Call-ID, CSeq."""
    if reason is None:
        reason = REASON_PHRASES.get(status) or _CLASS_PHRASES.get(status // 100, "Unknown")
    src = request.headers
    names: list[str] = []
    values: list[str] = []
    # No strict= for zip: Headers keeps the lists the same length (see _Message.to_bytes).
    for name, value in zip(src._names, src._values):  # noqa: B905
        if name not in _RESPONSE_COPY:
            continue  # most headers: one set lookup
        if name != "Via":  # every Via, in order; of the others only the first
            if name in names:
                continue
            if name == "Timestamp":
                if status != 100:
                    continue  # 8.2.6.1: only a 100 echoes Timestamp
            elif name == "To" and to_tag and _tag_of_safe(value) is None:
                value = f"{value};tag={to_tag}"
        names.append(name)
        values.append(value)
    return Response(status, reason, Headers._from_lists(names, values))


_RESPONSE_COPY = frozenset(("Via", "From", "To", "Call-ID", "CSeq", "Timestamp"))


def _tag_of_safe(value: str) -> str | None:
    try:
        return _tag_of(value)
    except ParseError:
        # An unparseable To (we may be answering it with 400): look for the tag textually.
        return "?" if ";tag=" in value.lower() else None
