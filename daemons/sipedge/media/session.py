"""Relay sessions and legs: pure state, no sockets and no BPF.

A session (one call id) has two legs. Leg A is the caller (offer, `from-tag`), leg B the callee
(answer, `to-tag`). Each leg owns a relay port pair (RTP even, RTCP = RTP + 1): the port its
peer sends to and the port we send to that peer from. A packet that reaches leg X's port is
sent out of the other leg Y's port to Y's peer; it is decrypted with X's cipher and encrypted
with Y's (nothing happens when both legs share one cipher, or neither has one). RTCP is relayed
the same way and never transformed.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sipedge.media.crypto import KeyError_, Mode, Transform, check_key, parse_mode
from sipedge.media.ports import PortAllocator, PortsExhausted
from sipedge.typedefs import Addr


class ControlError(Exception):
    """A control request that cannot be done; carries a code and an HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def to_json(self) -> dict[str, Any]:
        return {"result": "error", "error-code": self.code, "error-reason": self.message}


@dataclass
class Counters:
    packets: int = 0
    bytes: int = 0
    last_seen: float = 0.0  # wall clock, 0 when never

    def add(self, size: int, now: float) -> None:
        self.packets += 1
        self.bytes += size
        self.last_seen = now


@dataclass
class Leg:
    tag: str
    port: int  # relay RTP port; RTCP is port + 1
    transform: Transform
    remote: Addr | None = None  # RTP peer (from SDP, then latched)
    rtcp_remote: Addr | None = None
    latched: bool = False
    rtcp_latched: bool = False
    rtp: Counters = field(default_factory=Counters)  # packets received from this leg's peer
    rtcp: Counters = field(default_factory=Counters)

    @property
    def rtcp_port(self) -> int:
        return self.port + 1

    def set_sdp(self, address: str, port: int) -> None:
        self.remote = (address, port)
        self.rtcp_remote = (address, port + 1)
        # a new SDP address re-opens latching
        self.latched = False
        self.rtcp_latched = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "port": self.port,
            "mode": int(self.transform.mode),
            "key": self.transform.key.hex(),
            "remote": list(self.remote) if self.remote else None,
            "rtcp_remote": list(self.rtcp_remote) if self.rtcp_remote else None,
            "latched": self.latched,
            "rtcp_latched": self.rtcp_latched,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Leg:
        leg = cls(
            tag=str(data["tag"]),
            port=int(data["port"]),
            transform=Transform(Mode(int(data["mode"])), bytes.fromhex(data["key"])),
        )
        if data.get("remote"):
            leg.remote = (str(data["remote"][0]), int(data["remote"][1]))
        if data.get("rtcp_remote"):
            leg.rtcp_remote = (str(data["rtcp_remote"][0]), int(data["rtcp_remote"][1]))
        leg.latched = bool(data.get("latched"))
        leg.rtcp_latched = bool(data.get("rtcp_latched"))
        return leg


@dataclass
class Session:
    call_id: str
    a: Leg
    b: Leg
    created: float = field(default_factory=time.time)
    answered: bool = False

    @property
    def legs(self) -> tuple[Leg, Leg]:
        return (self.a, self.b)

    @property
    def ports(self) -> tuple[int, int]:
        return (self.a.port, self.b.port)

    @property
    def needs_userspace(self) -> bool:
        """AES128 runs only in the userspace relay."""
        return any(leg.transform.mode == Mode.AES128 for leg in self.legs)

    def other(self, leg: Leg) -> Leg:
        return self.b if leg is self.a else self.a

    def leg_by_tag(self, tag: str) -> Leg | None:
        for leg in self.legs:
            if leg.tag == tag:
                return leg
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
            "created": self.created,
            "answered": self.answered,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Session:
        return cls(
            call_id=str(data["call_id"]),
            a=Leg.from_dict(data["a"]),
            b=Leg.from_dict(data["b"]),
            created=float(data.get("created", time.time())),
            answered=bool(data.get("answered")),
        )


@dataclass(frozen=True)
class Route:
    """Where a packet arriving at one relay port goes (one direction of one stream)."""

    session: Session
    src_leg: Leg  # the leg whose port received it
    dst_leg: Leg
    rtcp: bool

    @property
    def in_port(self) -> int:
        return self.src_leg.rtcp_port if self.rtcp else self.src_leg.port

    @property
    def out_port(self) -> int:
        return self.dst_leg.rtcp_port if self.rtcp else self.dst_leg.port

    @property
    def destination(self) -> Addr | None:
        return self.dst_leg.rtcp_remote if self.rtcp else self.dst_leg.remote

    @property
    def transforms(self) -> tuple[Transform | None, Transform | None]:
        """(decrypt, encrypt) to apply; None when the step is a no-op."""
        if self.rtcp:
            return (None, None)
        dec, enc = self.src_leg.transform, self.dst_leg.transform
        if dec == enc:
            return (None, None)
        return (dec if dec.active else None, enc if enc.active else None)

    @property
    def latch_pending(self) -> bool:
        return not (self.src_leg.rtcp_latched if self.rtcp else self.src_leg.latched)

    def counters(self) -> Counters:
        return self.src_leg.rtcp if self.rtcp else self.src_leg.rtp


def _text(req: dict[str, Any], name: str, required: bool = True) -> str:
    value = req.get(name)
    if value is None:
        if required:
            raise ControlError("bad-request", f"'{name}' is required")
        return ""
    if not isinstance(value, str) or not value or len(value) > 256:
        raise ControlError("bad-request", f"'{name}' must be a non-empty string (max 256)")
    return value


def _address(req: dict[str, Any]) -> str:
    value = req.get("address")
    if not isinstance(value, str):
        raise ControlError("bad-address", "'address' (the SDP c= address) is required")
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        raise ControlError("bad-address", f"'address' {value!r} is not an IP address") from None
    if addr.version != 4:
        raise ControlError("bad-address", f"'address' {value} is not IPv4 (IPv6 not supported)")
    return str(addr)


def _port(req: dict[str, Any]) -> int:
    value = req.get("port")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ControlError("bad-port", f"'port' must be a whole number 1-65534, got {value!r}")
    if not 1 <= value <= 65534:
        raise ControlError("bad-port", f"'port' must be 1-65534 (RTCP is port + 1), got {value}")
    return value


class SessionTable:
    """Sessions keyed by call id, with the port allocator. Raises ControlError."""

    def __init__(
        self,
        ports: PortAllocator,
        default_mode: Mode,
        default_key: bytes,
        latching: bool,
        probe: Callable[[int], bool] | None = None,
    ) -> None:
        self.ports = ports
        self.default_mode = default_mode
        self.default_key = default_key
        self.latching = latching
        self.probe = probe
        self.sessions: dict[str, Session] = {}
        self.by_port: dict[int, Route] = {}

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self.sessions.values()))

    def __len__(self) -> int:
        return len(self.sessions)

    # -- request parsing -------------------------------------------------------------------

    def _transform(self, req: dict[str, Any]) -> Transform:
        enc = req.get("encryption", False)
        if isinstance(enc, str):
            if enc.lower() not in ("on", "off", "true", "false", "yes", "no"):
                raise ControlError("bad-request", f"'encryption' must be On/Off, got {enc!r}")
            enc = enc.lower() in ("on", "true", "yes")
        if not isinstance(enc, bool):
            raise ControlError("bad-request", f"'encryption' must be On/Off, got {enc!r}")
        if not enc:
            return Transform(Mode.NONE, b"")
        mode = self.default_mode
        key = self.default_key
        if "encryption-mode" in req:
            try:
                mode = parse_mode(req["encryption-mode"])
            except ValueError as exc:
                raise ControlError("bad-mode", str(exc)) from None
        if "encryption-key" in req:
            raw = req["encryption-key"]
            if not isinstance(raw, str):
                raise ControlError("bad-key", "'encryption-key' must be a string")
            key = raw.encode()
        if mode == Mode.NONE:
            return Transform(Mode.NONE, b"")
        try:
            check_key(mode, key)
        except KeyError_ as exc:
            raise ControlError("bad-key", f"invalid key for {mode.name}: {exc}") from None
        return Transform(mode, key)

    # -- commands --------------------------------------------------------------------------

    def _allocate(self) -> int:
        try:
            return self.ports.allocate(self.probe)
        except PortsExhausted as exc:
            raise ControlError("ports-exhausted", str(exc), status=503) from None

    def _index(self, session: Session) -> None:
        for src in session.legs:
            dst = session.other(src)
            for rtcp in (False, True):
                route = Route(session, src, dst, rtcp)
                self.by_port[route.in_port] = route

    def _initial_latch(self, leg: Leg) -> None:
        if not self.latching:
            leg.latched = leg.rtcp_latched = True

    def offer(self, req: dict[str, Any]) -> tuple[Session, Leg]:
        """Returns the session and the leg whose relay port goes into the SDP sent on."""
        call_id = _text(req, "call-id")
        from_tag = _text(req, "from-tag")
        address, port = _address(req), _port(req)
        transform = self._transform(req)
        session = self.sessions.get(call_id)
        if session is not None:
            leg = session.leg_by_tag(from_tag)
            if leg is None:
                raise ControlError(
                    "unknown-leg", f"call {call_id!r} has no leg with tag {from_tag!r}", 404
                )
            leg.transform = transform
            leg.set_sdp(address, port)
            self._initial_latch(leg)
            return session, session.other(leg)
        a_port = self._allocate()
        try:
            b_port = self._allocate()
        except ControlError:
            self.ports.release(a_port)
            raise
        a = Leg(tag=from_tag, port=a_port, transform=transform)
        a.set_sdp(address, port)
        self._initial_latch(a)
        b = Leg(tag="", port=b_port, transform=Transform(Mode.NONE, b""))
        self._initial_latch(b)
        session = Session(call_id=call_id, a=a, b=b)
        self.sessions[call_id] = session
        self._index(session)
        return session, b

    def answer(self, req: dict[str, Any]) -> tuple[Session, Leg]:
        call_id = _text(req, "call-id")
        from_tag = _text(req, "from-tag")
        to_tag = _text(req, "to-tag")
        address, port = _address(req), _port(req)
        transform = self._transform(req)
        session = self.get(call_id)
        if session.a.tag == from_tag:
            caller, callee = session.a, session.b
        elif session.b.tag == from_tag:  # answer to a re-offer sent by the callee
            caller, callee = session.b, session.a
        else:
            raise ControlError(
                "unknown-leg", f"call {call_id!r} has no leg with from-tag {from_tag!r}", 404
            )
        if callee.tag and callee.tag != to_tag:
            raise ControlError(
                "unknown-leg",
                f"call {call_id!r} was answered with to-tag {callee.tag!r}, not {to_tag!r}",
                409,
            )
        callee.tag = to_tag
        callee.transform = transform
        callee.set_sdp(address, port)
        self._initial_latch(callee)
        session.answered = True
        return session, caller

    def get(self, call_id: str) -> Session:
        session = self.sessions.get(call_id)
        if session is None:
            raise ControlError("unknown-call", f"no call with call-id {call_id!r}", 404)
        return session

    def delete(self, call_id: str) -> Session:
        session = self.get(call_id)
        del self.sessions[call_id]
        for leg in session.legs:
            self.by_port.pop(leg.port, None)
            self.by_port.pop(leg.rtcp_port, None)
            self.ports.release(leg.port)
        return session

    def adopt(self, session: Session) -> None:
        """Take back a session saved before a restart (ports reserved, routes indexed)."""
        for leg in session.legs:
            self.ports.reserve(leg.port)
        self.sessions[session.call_id] = session
        self._index(session)

    def latch(self, route: Route, source: Addr) -> bool:
        """Learn the peer address of route.src_leg from a packet; True when it changed."""
        if not self.latching or not route.latch_pending:
            return False
        leg = route.src_leg
        if route.rtcp:
            leg.rtcp_remote = source
            leg.rtcp_latched = True
        else:
            leg.remote = source
            leg.latched = True
            if leg.rtcp_remote is None:
                leg.rtcp_remote = (source[0], source[1] + 1)
        return True
