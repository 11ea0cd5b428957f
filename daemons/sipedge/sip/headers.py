"""SIP header names and the ordered header list (RFC 3261 7.3).

Owns: header-name canonicalisation (compact forms expanded, names whose canonical spelling is
not plain Title-Case, a bounded cache of the spellings seen on the wire), `Headers`, and the
header-value helpers that the parser and the message accessors share: the CR/LF guard, the
comma-list split and the CSeq check.
Must not: open sockets, read the clock, or import from sipedge outside sip/. Within sip/ it
imports nothing: address.py and message.py build on it, never the reverse.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

__all__ = ["Headers", "canonical_name"]

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

# RFC 3261 25.1 token; address.py and message.py check parameter names and methods with it.
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")

# Raw spelling -> canonical name. Filled lazily; bounded so a flood of random names from the
# network cannot grow it without limit.
_CANON: dict[str, str] = {}
_CANON_LIMIT = 4096


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


# -- the header list ------------------------------------------------------------------------


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
        # Parser fast path: the lists are already canonical and clean. (Not cls.__new__:
        # mypyc, which compiles this module, does not build that call.)
        h = cls()
        h._names = names
        h._values = values
        return h

    def get(self, name: str) -> str | None:
        """First value of `name`, or None."""
        canon = _CANON.get(name) or _canonical_or_none(name)
        names = self._names
        # `in` before index(): an absent header (Expires, Require...) is common, and a raised
        # ValueError costs more than a second scan of a short list.
        if canon is None or canon not in names:
            return None
        return self._values[names.index(canon)]

    def get_all(self, name: str) -> list[str]:
        """Every value of `name`, in order."""
        canon = _CANON.get(name) or _canonical_or_none(name)
        names = self._names
        # Mostly asked of headers that are absent or there once (Via of a response, Contact,
        # Require): two list scans in C instead of a loop in Python.
        if canon is None:
            return []
        count = names.count(canon)
        if count <= 1:
            return [self._values[names.index(canon)]] if count else []
        return [v for n, v in zip(names, self._values, strict=True) if n == canon]

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


# -- header values ----------------------------------------------------------------------------


def _clean(value: str) -> str:
    # A CR or LF in a value would let application data inject header lines on the wire.
    if "\r" in value or "\n" in value:
        raise ValueError("header value contains CR/LF")
    return value.strip()


def _parse_cseq(value: str) -> tuple[int, str] | None:
    return _cseq_of(value.split())


def _cseq_of(parts: list[str]) -> tuple[int, str] | None:
    """(number, method) from a CSeq value already split at whitespace, or None."""
    if len(parts) != 2:
        return None
    num, method = parts
    if not (num.isascii() and num.isdigit()) or len(num) > 10:
        return None
    n = int(num)
    if n >= 2**31 or not _TOKEN_CHARS.issuperset(method):
        return None
    return n, method


def _split_commas(value: str, keep_empty: bool = False) -> list[str]:
    """Split a header value at commas outside quoted strings and <...>; empty pieces are
    dropped unless `keep_empty` (the parser reports them: `Via: a,,b` is a syntax error)."""
    if '"' not in value and "<" not in value:
        pieces = [p.strip() for p in value.split(",")]
        return pieces if keep_empty else [p for p in pieces if p]
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
    return out if keep_empty else [p for p in out if p]
