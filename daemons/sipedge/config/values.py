"""Value parsers: one YAML value in, the parsed value out, or `_Bad(allowed)`.

Owns: the parsers and parser factories (`_number`, `_integer`, `_word_or`, `_on_off`,
`_default_on_off`, `_words`, `_string`, `_host`, `_host_port`, `_listen_uri`, `_network`,
`_checked_name`, `_user`, `_absolute_path`, `_dns_server`, `_port_range`, `_ifname`, ...) and
the texts saying what each allows (`HOST_ALLOWED`, `LISTEN_ALLOWED`, `NAME_ALLOWED`, ...),
which end up verbatim in `ConfigProblem.allowed`.

Must not: know where a value sits in the file or collect problems (the collector does both),
open files, or import anything from sipedge outside config/ (here: `errors` and `schema` only).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import TypeVar

from sipedge.config.errors import _Bad
from sipedge.config.schema import ListenAddress

T = TypeVar("T")


_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_INT_RE = re.compile(r"^[+-]?\d+$")


def _as_number(value: object) -> float | None:
    """int/float/numeric string -> float; None when it is not a number (bools are not)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return float(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and _NUMBER_RE.match(value.strip()):
        return float(value.strip())
    return None


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INT_RE.match(value.strip()):
        return int(value.strip())
    return None


def _fmt(n: float) -> str:
    return str(int(n)) if float(n).is_integer() else str(n)


def _number(lo: float, hi: float) -> Callable[[object], float]:
    allowed = f"{_fmt(lo)}-{_fmt(hi)}"

    def parse(value: object) -> float:
        n = _as_number(value)
        if n is None or not lo <= n <= hi:
            raise _Bad(allowed)
        return n

    return parse


def _integer(lo: int, hi: int, allowed: str | None = None) -> Callable[[object], int]:
    text = allowed or f"{lo}-{hi}"

    def parse(value: object) -> int:
        n = _as_int(value)
        if n is None or not lo <= n <= hi:
            raise _Bad(text)
        return n

    return parse


def _word_or(word: str, inner: Callable[[object], T], allowed: str) -> Callable[[object], T | None]:
    """`word` (any case) -> None, else `inner`; `allowed` replaces inner's text on error."""

    def parse(value: object) -> T | None:
        if isinstance(value, str) and value.strip().lower() == word.lower():
            return None
        try:
            return inner(value)
        except _Bad:
            raise _Bad(allowed) from None

    return parse


def _off_or(inner: Callable[[object], T], allowed: str) -> Callable[[object], T | None]:
    """Off (the word in any case, or YAML false: an unquoted `Off` is a boolean) -> None."""
    word = _word_or("Off", inner, allowed)

    def parse(value: object) -> T | None:
        return None if value is False else word(value)

    return parse


_TRUE_WORDS = {"on", "true", "yes"}
_FALSE_WORDS = {"off", "false", "no"}


def _on_off(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    raise _Bad("On/Off")


def _default_on_off(value: object) -> bool | None:
    if value is None or (isinstance(value, str) and value.strip().lower() == "default"):
        return None
    try:
        return _on_off(value)
    except _Bad:
        raise _Bad("Default/On/Off") from None


def _words(*choices: str) -> Callable[[object], str]:
    by_lower = {c.lower(): c for c in choices}
    allowed = "/".join(choices)

    def parse(value: object) -> str:
        # YAML null is accepted as the word None where None is one of the words.
        if value is None and "none" in by_lower:
            return by_lower["none"]
        if isinstance(value, str) and value.strip().lower() in by_lower:
            return by_lower[value.strip().lower()]
        raise _Bad(allowed)

    return parse


def _string(allowed: str, *, empty: bool = True) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if not isinstance(value, str) or (not empty and not value):
            raise _Bad(allowed)
        return value

    return parse


def _optional_string(allowed: str) -> Callable[[object], str | None]:
    def parse(value: object) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise _Bad(allowed)
        return value

    return parse


_HOST_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
HOST_ALLOWED = "an IP address or a host name"


def _host(value: object) -> str:
    if not isinstance(value, str):
        raise _Bad(HOST_ALLOWED)
    host = value.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            raise _Bad(HOST_ALLOWED) from None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:  # IPv6 as the kernel writes it (2001:db8::5), so it compares with source addresses
        return str(ip) if ip.version == 6 else host
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_HOST_LABEL_RE.match(label) for label in labels):
        raise _Bad(HOST_ALLOWED)
    if re.fullmatch(r"[0-9.]+", name):  # looks like a broken IPv4 address, e.g. 10.0.0.256
        raise _Bad(HOST_ALLOWED)
    return host


_port = _integer(1, 65535)


def _optional_host(value: object) -> str | None:
    if value is None:
        return None
    try:
        return _host(value)
    except _Bad:
        raise _Bad("null or " + HOST_ALLOWED) from None


_HOSTPORT_RE = re.compile(r"^(\[[^\]]*\]|[^:\[\]/]+):([^:]+)$")


def _host_port(value: object, allowed: str) -> tuple[str, int]:
    if not isinstance(value, str):
        raise _Bad(allowed)
    m = _HOSTPORT_RE.match(value.strip())
    if not m:
        raise _Bad(allowed)
    try:
        return _host(m.group(1)), _port(m.group(2))
    except _Bad:
        raise _Bad(allowed) from None


DNS_SERVER_ALLOWED = "an IP address, or IP:port (IPv6 in brackets), port 1-65535"


def _dns_server(value: object) -> tuple[str, int]:
    """A DNS server to ask (sip.dns_servers): an IP address, port 53 unless one is given. Not
    a name: the resolver cannot look up its own server."""
    if isinstance(value, str):
        text = value.strip()
        try:
            return str(ipaddress.ip_address(text)), 53
        except ValueError:
            pass
        try:
            host, port = _host_port(text, DNS_SERVER_ALLOWED)
            return str(ipaddress.ip_address(host)), port
        except (_Bad, ValueError):
            pass
    raise _Bad(DNS_SERVER_ALLOWED)


LISTEN_ALLOWED = "udp://, tcp:// or tls://host:port (IPv6 in brackets), port 1-65535"


def _listen_uri(value: object) -> ListenAddress:
    if not isinstance(value, str):
        raise _Bad(LISTEN_ALLOWED)
    m = re.match(r"^(udp|tcp|tls)://(.*)$", value.strip(), re.IGNORECASE)
    if not m:
        raise _Bad(LISTEN_ALLOWED)
    host, port = _host_port(m.group(2), LISTEN_ALLOWED)
    return ListenAddress(m.group(1).lower(), host, port)


ADDRESS_ALLOWED = "a CIDR network (host bits zero, e.g. 198.51.100.0/24) or a single IP address"


def _network(value: object) -> IPv4Network | IPv6Network:
    if not isinstance(value, str):
        raise _Bad(ADDRESS_ALLOWED)
    try:
        return ipaddress.ip_network(value.strip(), strict=True)
    except ValueError:
        raise _Bad(ADDRESS_ALLOWED) from None


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")
NAME_ALLOWED = "a name of 1-64 letters, digits, '.', '_', '-', '@', '+' (first a letter or digit)"
_name = _string(NAME_ALLOWED, empty=False)


def _checked_name(value: object) -> str:
    name = _name(value)
    if not _NAME_RE.match(name):
        raise _Bad(NAME_ALLOWED)
    return name


_USER_RE = re.compile(r"^[^\s@:<>\"]+$")
USER_ALLOWED = "a non-empty quoted string without spaces, '@', ':', '<', '>', '\"'"


def _user(value: object) -> str:
    if not isinstance(value, str) or not _USER_RE.match(value):
        raise _Bad(USER_ALLOWED)
    return value


PASSWORD_ALLOWED = "a non-empty quoted string"


def _absolute_path(value: object) -> Path:
    if not isinstance(value, str) or not value.startswith("/"):
        raise _Bad("an absolute path")
    return Path(value)


REGEX_ALLOWED = "a regular expression (Python re syntax)"
REPLACE_ALLOWED = "a replacement string (\\1 or \\g<name> for groups)"
RESEND_ALLOWED = "a list of 1-20 numbers, each 0.1-60"
_resend_entry = _number(0.1, 60)


PORT_RANGE_ALLOWED = (
    "[low, high]: whole numbers within 1024-65535, low even, low < high "
    "(room for at least one RTP/RTCP pair)"
)


def _port_range(value: object) -> tuple[int, int]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise _Bad(PORT_RANGE_ALLOWED)
    lo, hi = _as_int(value[0]), _as_int(value[1])
    if lo is None or hi is None or lo % 2 or not 1024 <= lo < hi <= 65535:
        raise _Bad(PORT_RANGE_ALLOWED)
    return lo, hi


_IFNAME_RE = re.compile(r"^[^\s/:]{1,15}$")


def _ifname(value: object) -> str:
    if not isinstance(value, str) or not _IFNAME_RE.match(value) or value in (".", ".."):
        raise _Bad("a network interface name (1-15 characters, no spaces, '/' or ':')")
    return value


DIGEST_ALLOWED = "MD5 or SHA-256"


def _digest_algorithm(value: object) -> str:
    """MD5 / SHA-256 (any case, SHA256 too), in the spelling of RFC 7616."""
    if isinstance(value, str):
        word = value.strip().upper().replace("SHA256", "SHA-256")
        if word in ("MD5", "SHA-256"):
            return word
    raise _Bad(DIGEST_ALLOWED)


SCANNER_ALLOWED = "a non-empty User-Agent substring"


def _scanner(value: object) -> str:
    """A User-Agent substring, kept lower case (matching is case-insensitive)."""
    if isinstance(value, str) and value.strip():
        return value.strip().lower()
    raise _Bad(SCANNER_ALLOWED)


IPV4_ALLOWED = "null or an IPv4 address of this host (not 0.0.0.0)"


def _optional_ipv4(value: object) -> str | None:
    """null, or one unicast IPv4 address (media.bind_address, media.advertise_address)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Bad(IPV4_ALLOWED)
    try:
        address = ipaddress.IPv4Address(value.strip())
    except ValueError:
        raise _Bad(IPV4_ALLOWED) from None
    if (
        address.is_unspecified
        or address.is_multicast
        or address == ipaddress.IPv4Address("255.255.255.255")
    ):
        raise _Bad(IPV4_ALLOWED)
    return str(address)


FINGERPRINT_ALLOWED = "null or sha256: and 64 hex digits (colons between bytes allowed)"


def _fingerprint(value: object) -> bytes | None:
    """tls_fingerprint: `sha256:` and the certificate's SHA-256, as `openssl x509 -fingerprint
    -sha256` prints it or in plain hex; the 32-byte digest."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Bad(FINGERPRINT_ALLOWED)
    algorithm, colon, digits = value.strip().partition(":")
    digits = digits.replace(":", "")
    if not colon or algorithm.lower() != "sha256" or not re.fullmatch(r"[0-9A-Fa-f]{64}", digits):
        raise _Bad(FINGERPRINT_ALLOWED)
    return bytes.fromhex(digits)


def _optional_absolute_path(value: object) -> Path | None:
    if value is None:
        return None
    try:
        return _absolute_path(value)
    except _Bad:
        raise _Bad("null or an absolute path") from None


LISTEN_HOST_PORT_ALLOWED = "null or host:port (IPv6 in brackets), port 1-65535"


def _optional_listen(value: object) -> str | None:
    """null, or host:port kept as written (IPv6 in brackets), e.g. media.metrics_listen."""
    if value is None:
        return None
    host, port = _host_port(value, LISTEN_HOST_PORT_ALLOWED)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_UNIX_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
UNIX_USER_ALLOWED = "null or a user name (lower-case letters, digits, '_', '-'; up to 32)"


def _optional_unix_user(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _UNIX_USER_RE.match(value) or value == "root":
        raise _Bad(UNIX_USER_ALLOWED + ", not root")
    return value
