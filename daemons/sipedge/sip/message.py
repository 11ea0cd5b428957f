"""RFC 3261 SIP message parsing and serialization.

Built for throughput on the signaling hot path: a datagram is decoded once, split into lines
once, and its headers are kept as raw strings in two parallel lists. Structured views (Via,
name-addr, URI) are parsed only when someone asks for them. Regular expressions appear only in
rarely taken slow paths.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

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
    "make_response",
    "new_branch",
    "new_call_id",
    "new_tag",
    "parse_message",
    "parse_name_addr",
    "parse_uri",
    "parse_via",
]


class ParseError(ValueError):
    """A message (or header value) that cannot be understood.

    `reason` doubles as the reason phrase of the 400 the transport sends back; `request` is set
    only when enough of a request was understood to address that 400 (RFC 3261 8.2.6).
    """

    def __init__(self, reason: str, request: Request | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.request = request


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

# -- header names ---------------------------------------------------------------------------

_COMPACT = {
    "v": "Via",
    "f": "From",
    "t": "To",
    "i": "Call-ID",
    "m": "Contact",
    "l": "Content-Length",
    "c": "Content-Type",
    "k": "Supported",
    "s": "Subject",
    "e": "Content-Encoding",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
    "u": "Allow-Events",
    "x": "Session-Expires",
    "a": "Accept-Contact",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
    "y": "Identity",
    "n": "Identity-Info",
}

# Names whose canonical spelling is not plain Title-Case.
_SPECIAL = {
    n.lower(): n
    for n in (
        "Call-ID",
        "CSeq",
        "WWW-Authenticate",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "P-Asserted-Identity",
        "P-Preferred-Identity",
        "Min-SE",
        "RSeq",
        "RAck",
        "MIME-Version",
        "SIP-ETag",
        "SIP-If-Match",
        "P-Charging-Vector",
        "P-Charging-Function-Addresses",
    )
}

_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")

# Raw spelling -> canonical name. Filled lazily; bounded so a flood of random names from the
# network cannot grow it without limit.
_CANON: dict[str, str] = {}
_CANON_LIMIT = 4096

# Headers whose comma-separated values are separate entries (RFC 3261 7.3.1).
_SPLIT = frozenset(("Via", "Route", "Record-Route", "Contact"))
_MANDATORY = ("Via", "From", "To", "Call-ID", "CSeq")


def _canonical_or_none(raw: str) -> str | None:
    """Canonical spelling of a header name, or None if it is not a token."""
    cached = _CANON.get(raw)
    if cached is not None:
        return cached
    name = raw.strip(" \t")
    if not name or not _TOKEN_CHARS.issuperset(name):
        return None
    low = name.lower()
    canon = _COMPACT.get(low) or _SPECIAL.get(low)
    if canon is None:
        canon = "-".join(part.capitalize() for part in low.split("-"))
    if len(_CANON) < _CANON_LIMIT:
        _CANON[raw] = canon
    return canon


def canonical_name(name: str) -> str:
    """Canonical spelling of a header name (compact forms expanded)."""
    canon = _canonical_or_none(name)
    if canon is None:
        raise ValueError(f"bad header name {name!r}")
    return canon


for _n in (
    *_COMPACT.values(),
    *_SPECIAL.values(),
    "Max-Forwards",
    "Record-Route",
    "Route",
    "User-Agent",
    "Server",
    "Allow",
    "Accept",
    "Require",
    "Expires",
    "Authorization",
    "Date",
    "Timestamp",
    "Organization",
    "Privacy",
    "Reason",
    "Diversion",
):
    canonical_name(_n)
    canonical_name(_n.lower())
for _c in _COMPACT:
    canonical_name(_c)
    canonical_name(_c.upper())


class Headers:
    """Ordered, case-insensitive header list; one entry per value (comma lists split)."""

    __slots__ = ("_names", "_values")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._names: list[str] = []
        self._values: list[str] = []
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _from_lists(cls, names: list[str], values: list[str]) -> Headers:
        # Parser fast path: the lists are already canonical and clean.
        h = cls.__new__(cls)
        h._names = names
        h._values = values
        return h

    def get(self, name: str) -> str | None:
        """First value of `name`, or None."""
        canon = _CANON.get(name) or _canonical_or_none(name)
        if canon is None:
            return None
        try:
            return self._values[self._names.index(canon)]
        except ValueError:
            return None

    def get_all(self, name: str) -> list[str]:
        """Every value of `name`, in order."""
        canon = _CANON.get(name) or _canonical_or_none(name)
        return [v for n, v in zip(self._names, self._values, strict=True) if n == canon]

    def set(self, name: str, value: str) -> None:
        """Replace all values of `name` by one (kept at the first one's position)."""
        canon = canonical_name(name)
        value = _clean(value)
        names = self._names
        if canon not in names:
            names.append(canon)
            self._values.append(value)
            return
        first = names.index(canon)
        self._values[first] = value
        self._drop(canon, start=first + 1)

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        """Append a value; `first=True` puts it before the existing values of `name`
        (at the very top if there are none), as a proxy does with Via."""
        canon = canonical_name(name)
        value = _clean(value)
        if not first:
            self._names.append(canon)
            self._values.append(value)
            return
        pos = self._names.index(canon) if canon in self._names else 0
        self._names.insert(pos, canon)
        self._values.insert(pos, value)

    def remove(self, name: str) -> None:
        """Drop every value of `name` (no error if absent)."""
        self._drop(canonical_name(name), start=0)

    def replace_first(self, name: str, value: str) -> None:
        """Replace the first value of `name` (append if absent)."""
        canon = canonical_name(name)
        value = _clean(value)
        if canon in self._names:
            self._values[self._names.index(canon)] = value
        else:
            self._names.append(canon)
            self._values.append(value)

    def _drop(self, canon: str, start: int) -> None:
        keep = [i for i, n in enumerate(self._names) if n != canon or i < start]
        if len(keep) != len(self._names):
            self._names = [self._names[i] for i in keep]
            self._values = [self._values[i] for i in keep]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        canon = _canonical_or_none(name)
        return canon is not None and canon in self._names

    def items(self) -> Iterator[tuple[str, str]]:
        """(canonical name, value) pairs in order."""
        return iter(list(zip(self._names, self._values, strict=True)))

    def copy(self) -> Headers:
        return Headers._from_lists(list(self._names), list(self._values))

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return self.items()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._names == other._names and self._values == other._values

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Headers({list(self.items())!r})"


def _clean(value: str) -> str:
    # A CR or LF in a value would let application data inject header lines on the wire.
    if "\r" in value or "\n" in value:
        raise ValueError("header value contains CR/LF")
    return value.strip()


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
        cl = f"Content-Length: {len(self.body)}"
        parts = [self._start_line()]
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
        return "\r\n".join(parts).encode() + self.body

    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        value = self.headers.get("CSeq")
        if value is None:
            raise ParseError("Missing CSeq")
        parsed = _parse_cseq(value)
        if parsed is None:
            raise ParseError("Bad CSeq")
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
        """A fresh parse of the first Via; edit it and write back with replace_first."""
        value = self.headers.get("Via")
        if value is None:
            raise ParseError("Missing Via")
        return parse_via(value)

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


def _parse_cseq(value: str) -> tuple[int, str] | None:
    parts = value.split()
    if len(parts) != 2:
        return None
    num, method = parts
    if not (num.isascii() and num.isdigit()) or len(num) > 10:
        return None
    n = int(num)
    if n >= 2**31 or not _TOKEN_CHARS.issuperset(method):
        return None
    return n, method


def _tag_of(value: str) -> str | None:
    """The tag parameter of a From/To value, without a full parse in the common case."""
    gt = value.rfind(">")
    tail = value[gt + 1 :].lower() if gt >= 0 else value.lower()
    # A quote after the last '>' may hide a fake ";tag="; non-ASCII may change length when
    # lower-cased, breaking the offsets below. Both are rare: full parse.
    if '"' in tail or not tail.isascii():
        return parse_name_addr(value).tag
    i = tail.find(";tag=")
    if i < 0:
        return parse_name_addr(value).tag if "tag" in tail else None
    start = len(value) - len(tail) + i + 5
    end = value.find(";", start)
    return (value[start:] if end < 0 else value[start:end]).strip() or None


# -- parser ------------------------------------------------------------------------------------


def parse_message(data: bytes) -> Request | Response:
    """Parse one datagram. Raises ParseError; see its docstring for when `.request` is set."""
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
    if "\x00" in text:
        raise ParseError("Binary data in header")
    if error is not None:
        text = text.rstrip("\r\n")

    if "\r" in text:
        n_crlf = text.count("\r\n")
        if text.count("\r") != n_crlf:
            # A lone CR inside a value would come back out as a broken line on the wire.
            raise ParseError("Bare CR in header")
        if n_crlf == text.count("\n"):
            lines = text.split("\r\n")
        else:
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
        parts = first.split(" ")
        if len(parts) != 3:
            raise ParseError("Bad request line")
        method, uri, version = parts
        if not method or not _TOKEN_CHARS.issuperset(method) or ":" not in uri:
            raise ParseError("Bad request line")
        if version != "SIP/2.0" and version.upper() != "SIP/2.0":
            raise ParseError("Unsupported SIP version")

    # Header lines: unfold, canonicalize names, keep raw values.
    names: list[str] = []
    values: list[str] = []
    split_at: list[int] = []
    canon_cache = _CANON
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t":
            if values:
                values[-1] = f"{values[-1]} {line.strip()}".lstrip()
            else:
                error = error or "Bad header folding"
            continue
        name, sep, value = line.partition(":")
        canon = canon_cache.get(name) or (_canonical_or_none(name) if sep else None)
        if canon is None:
            error = error or "Bad header line"
            continue
        if canon in _SPLIT:
            split_at.append(len(names))
        names.append(canon)
        values.append(value.strip())

    # Split comma lists; back to front so earlier indexes stay valid.
    for i in reversed(split_at):
        value = values[i]
        if "," in value:
            pieces = _split_commas(value)
            if len(pieces) != 1:
                if not pieces:
                    error = error or f"Bad {names[i]}"
                    pieces = [""]
                names[i : i + 1] = [names[i]] * len(pieces)
                values[i : i + 1] = pieces

    # Mandatory headers; a request is answerable only if all of them are usable.
    answerable = True
    for h in _MANDATORY:
        if h not in names or not values[names.index(h)]:
            error = f"Missing {h}"
            answerable = False
            break
    if answerable:
        cseq = _parse_cseq(values[names.index("CSeq")])
        if cseq is None:
            error = "Bad CSeq"
            answerable = False
        elif status == 0 and cseq[1] != method:
            error = error or "CSeq method mismatch"
        if answerable and not _via_ok(values[names.index("Via")]):
            error = "Bad Via"
            answerable = False

    if "Content-Length" in names:
        cl = values[names.index("Content-Length")]
        if not (cl.isascii() and cl.isdigit()):
            error = error or "Bad Content-Length"
            body = b""
        else:
            end = body_start + int(cl)
            if end > len(data):
                error = error or "Bad Content-Length"
                body = b""
            else:
                body = data[body_start:end]  # bytes past Content-Length: ignored (18.3)
    else:
        body = data[body_start:]

    headers = Headers._from_lists(names, values)
    if error is not None:
        if status == 0 and answerable:
            raise ParseError(error, Request(method, uri, headers, body))
        raise ParseError(error)
    if status:
        return Response(status, reason, headers, body)
    return Request(method, uri, headers, body)


def _via_ok(value: str) -> bool:
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


def _split_commas(value: str) -> list[str]:
    """Split a header value at commas outside quoted strings and <...>."""
    if '"' not in value and "<" not in value:
        return [p.strip() for p in value.split(",") if p.strip()]
    out: list[str] = []
    start = 0
    quoted = angle = False
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == "<":
            angle = True
        elif c == ">":
            angle = False
        elif c == "," and not angle:
            out.append(value[start:i].strip())
            start = i + 1
        i += 1
    out.append(value[start:].strip())
    return [p for p in out if p]


def _split_params(s: str) -> list[str]:
    """Split `;a=b;c="x;y"` at semicolons outside quoted strings."""
    if '"' not in s:
        return s.split(";")
    out: list[str] = []
    start = 0
    quoted = False
    i = 0
    while i < len(s):
        c = s[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == ";":
            out.append(s[start:i])
            start = i + 1
        i += 1
    if quoted:
        raise ParseError("Unterminated quoted string")
    out.append(s[start:])
    return out


def _parse_params(s: str) -> dict[str, str | None]:
    """`;k=v;flag` -> {"k": "v", "flag": None}; names lower-cased, quoted values kept quoted."""
    params: dict[str, str | None] = {}
    for part in _split_params(s):
        key, eq, val = part.partition("=")
        key = key.strip()
        if not key:
            if eq or part.strip():
                raise ParseError("Bad parameter")
            continue
        if not _TOKEN_CHARS.issuperset(key):
            raise ParseError("Bad parameter")
        params[key.lower()] = val.strip() if eq else None
    return params


def _render_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def _split_hostport(s: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]`, `[v6]:port` -> (host without brackets, port)."""
    s = s.strip()
    if s.startswith("["):
        close = s.find("]")
        if close < 0:
            raise ParseError("Bad host")
        host, rest = s[1:close], s[close + 1 :]
        if rest and not rest.startswith(":"):
            raise ParseError("Bad host")
        port_s = rest[1:] if rest else None
    else:
        host, colon, port_s_ = s.partition(":")
        port_s = port_s_ if colon else None
    host = host.strip()
    if not host or " " in host:
        raise ParseError("Bad host")
    if port_s is None:
        return host, None
    port_s = port_s.strip()
    if not (port_s.isascii() and port_s.isdigit()) or len(port_s) > 5 or int(port_s) > 65535:
        raise ParseError("Bad port")
    return host, int(port_s)


def _render_host(host: str, port: int | None) -> str:
    h = f"[{host}]" if ":" in host else host
    return h if port is None else f"{h}:{port}"


# -- Via ---------------------------------------------------------------------------------------

_VIA_SLOW = re.compile(r"\s*SIP\s*/\s*2\.0\s*/\s*([^\s/]+)\s+(.*)", re.IGNORECASE | re.DOTALL)


@dataclass(slots=True)
class Via:
    """One Via entry. `host` has no IPv6 brackets (so it compares with socket addresses)."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    def __str__(self) -> str:
        return f"SIP/2.0/{self.transport} {_render_host(self.host, self.port)}" + _render_params(
            self.params
        )


def parse_via(value: str) -> Via:
    """Parse one Via entry (not a comma list); tolerates LWS around `/`, `:`, `;` and `=`."""
    value = value.strip()
    if value[:8].upper() == "SIP/2.0/":
        transport, sp, rest = value[8:].partition(" ")
        if not sp:
            raise ParseError("Bad Via")
    else:
        m = _VIA_SLOW.fullmatch(value)
        if m is None:
            raise ParseError("Bad Via")
        transport, rest = m.group(1), m.group(2)
    if not transport or not _TOKEN_CHARS.issuperset(transport):
        raise ParseError("Bad Via")
    sent_by, _, params = rest.partition(";")
    try:
        host, port = _split_hostport(sent_by)
        parsed = _parse_params(params) if params else {}
    except ParseError:
        raise ParseError("Bad Via") from None
    return Via(transport.upper(), host, port, parsed)


# -- name-addr ---------------------------------------------------------------------------------


@dataclass(slots=True)
class NameAddr:
    """From/To/Contact/Route value. `display` is unquoted; `uri` is the raw URI text."""

    display: str | None
    uri: str
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        if self.uri == "*":
            return "*"
        head = ""
        if self.display:
            escaped = self.display.replace("\\", "\\\\").replace('"', '\\"')
            head = f'"{escaped}" '
        return f"{head}<{self.uri}>{_render_params(self.params)}"


def _scan_quoted(s: str, start: int) -> tuple[str, int]:
    """Unescape the quoted string opening at s[start]; return (text, index after it)."""
    out: list[str] = []
    i = start + 1
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\" and i + 1 < n:
            out.append(s[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise ParseError("Unterminated quoted string")


def parse_name_addr(value: str) -> NameAddr:
    """`"Display" <uri>;p=v`, `Display <uri>`, `<uri>`, or bare `uri;p=v` (params belong to
    the header in the bare form, RFC 3261 20.10)."""
    s = value.strip()
    if not s:
        raise ParseError("Empty address")
    display: str | None
    if s[0] == '"':
        display, i = _scan_quoted(s, 0)
        lt = s.find("<", i)
        if lt < 0 or s[i:lt].strip():
            raise ParseError("Bad address")
    else:
        lt = s.find("<")
        if lt < 0:
            uri, _, params = s.partition(";")
            uri = uri.strip()
            if not uri or " " in uri or "\t" in uri or (":" not in uri and uri != "*"):
                raise ParseError("Bad address")
            return NameAddr(None, uri, _parse_params(params) if params else {})
        display = s[:lt].strip() or None
    gt = s.find(">", lt)
    if gt < 0:
        raise ParseError("Bad address")
    uri = s[lt + 1 : gt].strip()
    if not uri:
        raise ParseError("Bad address")
    rest = s[gt + 1 :].strip()
    if rest and rest[0] != ";":
        raise ParseError("Bad address")
    return NameAddr(display, uri, _parse_params(rest) if rest else {})


# -- URI ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class SipUri:
    """sip:/sips:/tel: URI. For tel:, `user` holds the number and `host` is ""."""

    scheme: str
    user: str | None
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    password: str | None = None  # extra: kept so __str__ round-trips user:password@host

    def __str__(self) -> str:
        params = _render_params(self.params)
        if self.scheme == "tel":
            return f"tel:{self.user or ''}{params}"
        userinfo = ""
        if self.user is not None:
            userinfo = self.user
            if self.password is not None:
                userinfo += f":{self.password}"
            userinfo += "@"
        hdrs = "&".join(f"{k}={v}" for k, v in self.headers.items())
        return f"{self.scheme}:{userinfo}{_render_host(self.host, self.port)}{params}" + (
            f"?{hdrs}" if hdrs else ""
        )


def parse_uri(value: str) -> SipUri:
    """Parse a sip:, sips: or tel: URI (also accepts it wrapped in <...>)."""
    s = value.strip()
    if s.startswith("<") and s.endswith(">"):
        s = s[1:-1].strip()
    scheme, colon, rest = s.partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in ("sip", "sips", "tel"):
        raise ParseError("Unsupported URI scheme")
    if not rest or " " in rest:
        raise ParseError("Bad URI")
    if scheme == "tel":
        number, _, params = rest.partition(";")
        if not number:
            raise ParseError("Bad URI")
        return SipUri("tel", number, "", None, _parse_params(params) if params else {})
    # No unescaped '@' may follow the host (RFC 3261 25.1), but the user part may hold '?' and
    # ';', so find the userinfo first and only then the ?headers.
    at = rest.rfind("@")
    user: str | None = None
    password: str | None = None
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, pcolon, pw = userinfo.partition(":")
        if pcolon:
            password = pw
    rest, _, hdr_text = rest.partition("?")
    headers: dict[str, str] = {}
    if hdr_text:
        for pair in hdr_text.split("&"):
            k, _, v = pair.partition("=")
            if k:
                headers[k] = v
    hostport, _, params = rest.partition(";")
    host, port = _split_hostport(hostport)
    return SipUri(
        scheme, user, host, port, _parse_params(params) if params else {}, headers, password
    )


# -- building responses and identifiers ----------------------------------------------------------


def make_response(
    request: Request, status: int, reason: str | None = None, to_tag: str | None = None
) -> Response:
    """A response per RFC 3261 8.2.6: Via (all, in order), From, To (+tag), Call-ID, CSeq."""
    if reason is None:
        reason = REASON_PHRASES.get(status) or _CLASS_PHRASES.get(status // 100, "Unknown")
    src = request.headers
    names: list[str] = []
    values: list[str] = []
    for name, value in zip(src._names, src._values, strict=True):
        if name == "To" and to_tag and "To" not in names and _tag_of_safe(value) is None:
            value = f"{value};tag={to_tag}"
        if name in _RESPONSE_COPY and (name == "Via" or name not in names):
            names.append(name)
            values.append(value)
        elif name == "Timestamp" and status == 100 and name not in names:
            names.append(name)  # 8.2.6.1: a 100 echoes Timestamp
            values.append(value)
    return Response(status, reason, Headers._from_lists(names, values))


_RESPONSE_COPY = frozenset(("Via", "From", "To", "Call-ID", "CSeq"))


def _tag_of_safe(value: str) -> str | None:
    try:
        return _tag_of(value)
    except ParseError:
        # An unparseable To (we may be answering it with 400): look for the tag textually.
        return "?" if ";tag=" in value.lower() else None


def new_branch() -> str:
    """A fresh RFC 3261 branch (magic cookie + 64 random bits)."""
    return "z9hG4bK" + os.urandom(8).hex()


def new_tag() -> str:
    """A fresh From/To tag; random so other parties cannot guess dialog identifiers."""
    return os.urandom(6).hex()


def new_call_id() -> str:
    return os.urandom(12).hex()
