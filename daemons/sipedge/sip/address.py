"""The SIP address grammar: Via, name-addr and URI values (RFC 3261 19.1, 20.10, 20.42, 25.1).

Owns: `;name=value` parameter splitting and rendering, host[:port] with IPv6 brackets, `Via` /
`parse_via`, `NameAddr` / `parse_name_addr` (and the From/To tag shortcut the message accessors
use), `SipUri` / `parse_uri`. These parse the raw header values that `Headers` keeps, only when
someone asks for the structured view. A Via of the plain shape (`_PLAIN_VIA`, nearly all of
them) is taken apart from one pattern match; the general parse stays the reference, and
tests/unit/test_message_fastpaths.py holds the two against each other. The pattern pieces
(`_T`, `_PARAMS`) are shared with validation.py's shortcuts.
Must not: open sockets, read the clock, or import from sipedge outside sip/. Within sip/ it
imports only errors.py and headers.py: message.py builds on it, never the reverse.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from sipedge.sip.errors import ParseError
from sipedge.sip.headers import _TOKEN_CHARS

__all__ = [
    "NameAddr",
    "SipUri",
    "Via",
    "host_text",
    "hostport",
    "parse_name_addr",
    "parse_uri",
    "parse_via",
]


# -- parameters and host:port ------------------------------------------------------------------


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
        # RFC 5118 4.10 / RFC 5954: only a real IPv6 address goes in brackets (not
        # 2001:db8:::192.0.2.1, which RFC 3261's ABNF let through); no zone id either
        try:
            if "%" in host:  # ipaddress takes a zone id; a SIP URI has none (RFC 3261 25.1)
                raise ValueError(host)
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ParseError("Bad IPv6 reference") from None
    elif s.count(":") > 1:
        raise ParseError("IPv6 address without brackets")  # RFC 5118 4.2
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


def host_text(host: str) -> str:
    """`host` as it goes into a header: an IPv6 address in brackets (RFC 3261 25.1,
    RFC 5118), anything else as it is (also a host already in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def hostport(host: str, port: int | None) -> str:
    """`host:port` for a Via sent-by or a URI, an IPv6 host in brackets."""
    h = host_text(host)
    return h if port is None else f"{h}:{port}"


# -- Via ---------------------------------------------------------------------------------------

_VIA_SLOW = re.compile(r"\s*SIP\s*/\s*2\.0\s*/\s*([^\s/]+)\s+(.*)", re.IGNORECASE | re.DOTALL)
# The pieces of the plain shapes (validation.py builds its patterns from them too).
_T = r"[A-Za-z0-9.!%*_+`'~-]"  # RFC 3261 token: the same set as headers._TOKEN_CHARS
_VALUE = r"[A-Za-z0-9.!%*_+`'~:\[\]-]"  # a parameter value: a token, or an IPv6 address
_PARAMS = rf"(?:;{_T}+(?:={_VALUE}+)?)*"  # no empty parameter, no quotes, no LWS
# The shape of nearly every Via: token transport, hostname or IPv4, port, parameters of the
# plain shape. parse_via takes it apart from the match instead of piece by piece; anything else
# goes the general way.
_PLAIN_VIA = re.compile(rf"SIP/2\.0/({_T}+) ([A-Za-z0-9.-]+)(?::([0-9]{{1,5}}))?({_PARAMS})")


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

    def copy(self) -> Via:
        """A Via of its own (params too): cheaper than parsing the value again."""
        return Via(self.transport, self.host, self.port, dict(self.params))

    def __str__(self) -> str:
        return f"SIP/2.0/{self.transport} {_render_host(self.host, self.port)}" + _render_params(
            self.params
        )


def parse_via(value: str) -> Via:
    """Parse one Via entry (not a comma list); tolerates LWS around `/`, `:`, `;` and `=`."""
    return _parse_plain_via(value) or _parse_via(value)


def _parse_plain_via(value: str) -> Via | None:
    """parse_via of a Via of the plain shape, or None for any other (tests/unit/
    test_message_fastpaths.py holds it against _parse_via)."""
    m = _PLAIN_VIA.fullmatch(value)
    if m is None:
        return None
    transport, host, port_text, params = m.groups()
    port = None if port_text is None else int(port_text)
    if port is not None and port > 65535:
        return None  # _parse_via says why
    parsed: dict[str, str | None] = {}
    for part in params.split(";")[1:]:  # params is "" or starts with ";"
        key, eq, val = part.partition("=")
        parsed[key.lower()] = val if eq else None
    return Via(transport.upper(), host, port, parsed)


def _parse_via(value: str) -> Via:
    """parse_via of any Via: the reference."""
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
