"""SDP (RFC 4566 / 3264) as far as media anchoring needs it: read the connection address, port
and direction of every media stream, and rewrite them to the relay's. Pure: bytes in, bytes out.

Only the lines that matter are touched (`c=`, the port of `m=`, `a=rtcp`, the address of `o=`);
everything else (codecs, fmtp, ptime, unknown attributes) passes through byte for byte, with the
body's own line ending (CRLF, or LF from sloppy peers).

`parse` remembers its last few results (`Sdp` is immutable, so they are shared safely): a call
reads the same body up to three times (the media policy's check, anchoring, the rewrite).

Hold (RFC 3264 section 8.4, and the older RFC 2543 form): a stream is held when its direction is
`sendonly`, `recvonly` or `inactive`, or its connection address is `0.0.0.0` (`::` in IPv6). A
held `c=` stays a hold address when rewriting, so the far side still sees "hold", not a relay
address.

IPv6 (RFC 4566 `IN IP6`, RFC 5118 4.6-4.9): `c=` and `o=` of either family are read; a
rewritten `c=`, `o=` and `a=rtcp` carry the family of the relay address (`IP6` when it is an
IPv6 address), so a call can bridge an IPv4 leg and an IPv6 leg: each side gets the relay
address of its own family (calls/media_link.py asks mediad for it, docs/ipv6.md).
"""

from __future__ import annotations

from dataclasses import dataclass

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_DIRECTIONS = frozenset(DIRECTIONS)
HOLD_ADDRESS = "0.0.0.0"
HOLD_ADDRESSES = frozenset({HOLD_ADDRESS, "::"})
# How many bodies parse() remembers: the offer and the answer of a few calls in flight. Bounded,
# so a stream of distinct bodies costs nothing but the misses.
_REMEMBER = 8


class SdpError(ValueError):
    """The body is not an SDP we can anchor (no v= line, an m= line without a port, ...)."""


@dataclass(frozen=True, slots=True)
class Stream:
    """One m= line."""

    index: int
    media: str  # audio / video / image ...
    port: int  # 0: rejected / disabled stream
    proto: str  # RTP/AVP, udptl ...
    address: str | None  # effective c= address (stream level, else session level)
    address_type: str  # IP4 / IP6
    direction: str  # effective: stream level, else session level, else sendrecv
    rtcp_port: int | None  # a=rtcp:PORT, None when absent
    own_connection: bool = False  # a c= line of its own (not the session-level one)

    @property
    def disabled(self) -> bool:
        return self.port == 0

    @property
    def on_hold(self) -> bool:
        return self.direction != "sendrecv" or self.address in HOLD_ADDRESSES


@dataclass(frozen=True, slots=True)
class Sdp:
    session_address: str | None
    streams: tuple[Stream, ...]

    @property
    def on_hold(self) -> bool:
        """Any enabled stream held (the RTP timeout does not run then)."""
        return any(s.on_hold for s in self.streams if not s.disabled)


@dataclass(frozen=True, slots=True)
class RelayEndpoint:
    """Where a peer must send one stream: the relay's address and ports."""

    address: str
    port: int
    rtcp_port: int


def is_sdp(content_type: str | None, body: bytes) -> bool:
    """A body we should treat as SDP (no Content-Type but a body starting v= counts too)."""
    if not body:
        return False
    if content_type is not None:
        return content_type.split(";", 1)[0].strip().lower() == "application/sdp"
    return body.lstrip()[:2] == b"v="


def _lines(body: bytes) -> tuple[list[str], str]:
    text = body.decode("utf-8", errors="surrogateescape")
    eol = "\r\n" if "\r\n" in text else "\n"
    lines = text.split(eol)
    if lines and lines[-1] == "":
        lines.pop()
    return lines, eol


def _join(lines: list[str], eol: str) -> bytes:
    return (eol.join(lines) + eol).encode("utf-8", errors="surrogateescape")


def _connection(value: str) -> tuple[str, str]:
    """c=IN IP4 192.0.2.1[/ttl[/n]] -> (address type, address)."""
    parts = value.split()
    if len(parts) < 3 or parts[0] != "IN":
        raise SdpError(f"bad c= line {value!r}")
    return parts[1].upper(), parts[2].split("/", 1)[0]


_parsed: dict[bytes, Sdp] = {}


def parse(body: bytes) -> Sdp:
    """The streams of `body`. Raises SdpError (never remembered: each try raises again)."""
    sdp = _parsed.get(body)
    if sdp is None:
        sdp = _parse(body)
        if len(_parsed) >= _REMEMBER:
            del _parsed[next(iter(_parsed))]  # the oldest
        _parsed[body] = sdp
    return sdp


def _parse(body: bytes) -> Sdp:
    lines, _eol = _lines(body)
    if not lines or not lines[0].strip().startswith("v="):
        raise SdpError("SDP must start with v=")
    session_addr: tuple[str, str] | None = None
    session_dir = "sendrecv"
    raw_streams: list[dict[str, object]] = []
    current: dict[str, object] | None = None  # the last m= line's
    for line in lines:
        line = line.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:]
        if kind == "a":  # most lines: codecs and attributes, looked at by name only
            name, _, arg = value.partition(":")
            if name in _DIRECTIONS:
                if current is None:
                    session_dir = name
                else:
                    current["dir"] = name
            elif name == "rtcp" and current is not None:
                try:
                    current["rtcp"] = int(arg.split()[0])
                except (ValueError, IndexError):
                    raise SdpError(f"bad a=rtcp line {value!r}") from None
        elif kind == "m":
            parts = value.split()
            if len(parts) < 3:
                raise SdpError(f"bad m= line {value!r}")
            try:
                port = int(parts[1].split("/", 1)[0])
            except ValueError:
                raise SdpError(f"bad port in m= line {value!r}") from None
            if not 0 <= port <= 65535:
                raise SdpError(f"bad port in m= line {value!r}")
            current = {"media": parts[0], "port": port, "proto": parts[2]}
            raw_streams.append(current)
        elif kind == "c":
            addr = _connection(value)
            if current is None:
                session_addr = addr
            else:
                current["c"] = addr
    streams = []
    for i, raw in enumerate(raw_streams):
        own = raw.get("c")
        conn: tuple[str, str] | None = (
            (str(own[0]), str(own[1])) if isinstance(own, tuple) else session_addr
        )
        rtcp = raw.get("rtcp")
        streams.append(
            Stream(
                index=i,
                media=str(raw["media"]),
                port=int(str(raw["port"])),
                proto=str(raw["proto"]),
                address=conn[1] if conn else None,
                address_type=conn[0] if conn else "IP4",
                direction=str(raw.get("dir", session_dir)),
                rtcp_port=int(str(rtcp)) if rtcp is not None else None,
                own_connection="c" in raw,
            )
        )
    return Sdp(session_addr[1] if session_addr else None, tuple(streams))


def family(address: str) -> str:
    """The SDP address type of a literal address: IP6 or IP4."""
    return "IP6" if ":" in address else "IP4"


def _hold(address: str) -> str:
    """The hold address of `address`'s family."""
    return "::" if ":" in address else HOLD_ADDRESS


def _c_line(value: str, address: str) -> str:
    parts = value.split()
    if len(parts) >= 3 and parts[2].split("/", 1)[0] in HOLD_ADDRESSES:
        if family(parts[2]) == family(address):
            return "c=" + value  # keep RFC 2543 hold as it is
        return f"c=IN {family(address)} {_hold(address)}"  # hold, in the other leg's family
    return f"c=IN {family(address)} {address}"


def rewrite(body: bytes, relays: dict[int, RelayEndpoint]) -> bytes:
    """The same SDP with stream i pointing at relays[i]: the port of m=, c=, a=rtcp, and the
    o= address. Streams not in `relays` (disabled ones, say) are left as they are: when some
    enabled stream is not relayed the session-level c= stays and each relayed stream gets a c=
    of its own; otherwise the session-level c= is rewritten too."""
    if not relays:
        return body
    sdp = parse(body)
    lines, eol = _lines(body)
    relay_address = next(iter(relays.values())).address
    enabled = [s for s in sdp.streams if not s.disabled]
    rewrite_session = sdp.session_address is not None and all(s.index in relays for s in enabled)
    out: list[str] = []
    index = -1
    for line in lines:
        stripped = line.strip()
        kind = stripped[:2]
        relay = relays.get(index)
        if kind == "m=":
            index += 1
            relay = relays.get(index)
            if relay is None:
                out.append(line)
                continue
            parts = stripped[2:].split(" ")
            parts[1] = str(relay.port)
            out.append("m=" + " ".join(parts))
            stream = sdp.streams[index]
            if not stream.own_connection and not rewrite_session:
                held = stream.address in HOLD_ADDRESSES
                address = _hold(relay.address) if held else relay.address
                out.append(f"c=IN {family(relay.address)} {address}")
            continue
        if kind == "c=":
            if index < 0 and rewrite_session:
                out.append(_c_line(stripped[2:], relay_address))
                continue
            if index >= 0 and relay is not None:
                out.append(_c_line(stripped[2:], relay.address))
                continue
        elif kind == "o=" and index < 0:
            parts = stripped[2:].split(" ")
            if len(parts) == 6 and parts[4] in ("IP4", "IP6"):
                parts[4] = family(relay_address)
                parts[5] = relay_address
                out.append("o=" + " ".join(parts))
                continue
        elif stripped.startswith("a=rtcp:") and relay is not None:
            arg = stripped[len("a=rtcp:") :].split()
            if len(arg) >= 4:
                out.append(f"a=rtcp:{relay.rtcp_port} IN {family(relay.address)} {relay.address}")
            else:
                out.append(f"a=rtcp:{relay.rtcp_port}")
            continue
        out.append(line)
    return _join(out, eol)


__all__ = [
    "HOLD_ADDRESSES",
    "RelayEndpoint",
    "Sdp",
    "SdpError",
    "Stream",
    "family",
    "is_sdp",
    "parse",
    "rewrite",
]
