"""Relay sessions and legs, and who may send to them: pure state, no sockets and no BPF.

A session (one call id) has two legs. Leg A is the caller (offer, `from-tag`), leg B the callee
(answer, `to-tag`). Each leg owns a relay port pair (RTP even, RTCP = RTP + 1): the port its
peer sends to and the port we send to that peer from. A packet that reaches leg X's port is
sent out of the other leg Y's port to Y's peer; it is decrypted with X's cipher and encrypted
with Y's (nothing happens when both legs share one cipher, or neither has one). RTCP is relayed
the same way and never transformed.

Strict source (the same rule the XDP program applies once a leg is latched): a leg's *peer*
is where its packets must come from. Each leg knows its `sdp` address (offer/answer) and its
`signal` IP (`signal-address`: where the SIP carrying that SDP came from).

* latching on: until latched, a packet to the RTP port whose source IP is the SDP IP or the
  signal IP latches the leg to that exact (ip, port); any other source is dropped
  (`unlearned-source`). RTCP latches the same way on the RTCP port, its candidates being the
  SDP IP, the signal IP and the IP RTP latched to. Once latched, only packets from exactly the
  latched (ip, port) pass; others are dropped (`foreign-source`).
* latching off: the leg counts as latched from the start to its SDP address (RTP) and SDP
  port + 1 (RTCP).
* latching re-opens only when a new offer/answer changes the leg's SDP address/port or its
  signal address; an unchanged re-offer (a session refresh) keeps the latch.

IPv6: addresses are IPv4 or IPv6 strings in one normal form (`normal_ip`; an IPv4-mapped
IPv6 address becomes its IPv4 form), so the source rule compares exact (address, port) pairs
whatever the family. A leg's `af` is the family of the relay address its peer was given (the
ng `address-family`); its peer (SDP, signal, latched source) may be of either family, so one
session can bridge an IPv4 peer to an IPv6 peer (`Route.cross_family`).

Owns: sessions, legs, routes, the source rule (`admit`), per-leg drop counters, the caps on
sessions. Must not: open sockets, read the clock except through the injected `clock`, or
import anything of media/ but ports, crypto and request (the fields of a request).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sipedge.media.crypto import KeyError_, Mode, Transform, check_key, parse_mode
from sipedge.media.ports import PortAllocator, PortsExhausted
from sipedge.media.request import (
    ControlError,
    address_family,
    call_ids,
    family,
    normal_ip,
    parse_address,
    parse_port,
    parse_signal,
    text,
)
from sipedge.typedefs import Addr

ACCEPT = "accept"
LATCH = "latch"
FOREIGN = "foreign-source"
UNLEARNED = "unlearned-source"
NO_SESSION = "no-session"
DROP_REASONS = (FOREIGN, UNLEARNED, NO_SESSION)


@dataclass
class Counters:
    packets: int = 0
    bytes: int = 0
    last_seen: float = 0.0  # wall clock, 0 when never

    def add(self, size: int, now: float) -> None:
        self.packets += 1
        self.bytes += size
        self.last_seen = now


def _addr(value: Any) -> Addr | None:
    if not value:
        return None
    return (str(value[0]), int(value[1]))


@dataclass
class Leg:
    tag: str
    port: int  # relay RTP port; RTCP is port + 1
    transform: Transform
    af: int = 4  # family of the relay address given to this leg's peer (4 or 6)
    sdp: Addr | None = None  # RTP address of this leg's SDP
    signal: str | None = None  # source IP of the SIP message that carried that SDP
    rtp_peer: Addr | None = None  # latched RTP source (None: not latched)
    rtcp_peer: Addr | None = None
    dropped: dict[str, int] = field(default_factory=lambda: {FOREIGN: 0, UNLEARNED: 0})
    rtp: Counters = field(default_factory=Counters)  # packets received from this leg's peer
    rtcp: Counters = field(default_factory=Counters)

    @property
    def rtcp_port(self) -> int:
        return self.port + 1

    @property
    def latched(self) -> bool:
        return self.rtp_peer is not None

    @property
    def rtcp_latched(self) -> bool:
        return self.rtcp_peer is not None

    @property
    def remote(self) -> Addr | None:
        """Where RTP toward this leg goes: the latched source, else the SDP address."""
        return self.rtp_peer or self.sdp

    @property
    def rtcp_remote(self) -> Addr | None:
        """Where RTCP toward this leg goes: the latched RTCP source, else RTP's + 1."""
        if self.rtcp_peer is not None:
            return self.rtcp_peer
        base = self.rtp_peer or self.sdp
        return (base[0], base[1] + 1) if base else None

    def set_sdp(self, address: str, port: int, signal: str | None, latching: bool) -> bool:
        """A new offer/answer for this leg; True when latching (re)opened."""
        if self.sdp == (address, port) and self.signal == signal:
            return False  # an unchanged re-offer (session refresh) keeps the latch
        self.sdp = (address, port)
        self.signal = signal
        self.reset_latch(latching)
        return latching

    def reset_latch(self, latching: bool) -> None:
        if latching or self.sdp is None:
            self.rtp_peer = self.rtcp_peer = None
        else:  # latched from the start to the SDP address
            self.rtp_peer = self.sdp
            self.rtcp_peer = (self.sdp[0], self.sdp[1] + 1)

    def candidates(self, rtcp: bool) -> set[str]:
        """Source IPs allowed to latch this leg's RTP (or RTCP) port."""
        out: set[str] = set()
        if self.sdp is not None:
            out.add(self.sdp[0])
        if self.signal:
            out.add(self.signal)
        if rtcp and self.rtp_peer is not None:
            out.add(self.rtp_peer[0])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "port": self.port,
            "af": self.af,
            "mode": int(self.transform.mode),
            "key": self.transform.key.hex(),
            "sdp": list(self.sdp) if self.sdp else None,
            "signal": self.signal,
            "rtp_peer": list(self.rtp_peer) if self.rtp_peer else None,
            "rtcp_peer": list(self.rtcp_peer) if self.rtcp_peer else None,
            "dropped": dict(self.dropped),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Leg:
        leg = cls(
            tag=str(data["tag"]),
            port=int(data["port"]),
            af=6 if data.get("af") == 6 else 4,
            transform=Transform(Mode(int(data["mode"])), bytes.fromhex(data["key"])),
        )
        leg.sdp = _addr(data.get("sdp"))
        leg.signal = str(data["signal"]) if data.get("signal") else None
        leg.rtp_peer = _addr(data.get("rtp_peer"))
        leg.rtcp_peer = _addr(data.get("rtcp_peer"))
        for reason, n in dict(data.get("dropped") or {}).items():
            if reason in (FOREIGN, UNLEARNED):
                leg.dropped[reason] = int(n)
        return leg


def admit(leg: Leg, rtcp: bool, source: Addr, latching: bool) -> str:
    """The source rule for one packet from `source` to leg's RTP (or RTCP) port: ACCEPT,
    LATCH (accept and learn `source` as the peer) or the drop reason."""
    peer = leg.rtcp_peer if rtcp else leg.rtp_peer
    if peer is not None:
        return ACCEPT if source == peer else FOREIGN
    if latching and source[0] in leg.candidates(rtcp):
        return LATCH
    return UNLEARNED


@dataclass
class Session:
    call_id: str
    a: Leg
    b: Leg
    created: float = field(default_factory=time.time)
    answered: bool = False
    touched: float = 0.0  # clock time of the last command naming it (not saved)

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

    @property
    def cross_family(self) -> bool:
        """A leg's packets arrive over IPv4 and leave over IPv6 or back."""
        return any(Route(self, src, self.other(src), False).cross_family for src in self.legs)

    def other(self, leg: Leg) -> Leg:
        return self.b if leg is self.a else self.a

    def leg_by_tag(self, tag: str) -> Leg | None:
        for leg in self.legs:
            if leg.tag == tag:
                return leg
        return None

    def last_packet(self) -> float:
        """Wall-clock time of the last packet userspace accepted for it (0 when none)."""
        return max(c.last_seen for leg in self.legs for c in (leg.rtp, leg.rtcp))

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
    def peer(self) -> Addr | None:
        """The source packets to in_port must come from (None: not latched yet)."""
        return self.src_leg.rtcp_peer if self.rtcp else self.src_leg.rtp_peer

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
    def cross_family(self) -> bool:
        """The packets arrive over one IP family and leave over the other (4 <-> 6)."""
        dest = self.destination
        src = self.peer
        src_family = family(src[0]) if src else self.src_leg.af
        return dest is not None and family(dest[0]) != src_family

    @property
    def latch_pending(self) -> bool:
        return self.peer is None

    def counters(self) -> Counters:
        return self.src_leg.rtcp if self.rtcp else self.src_leg.rtp


class SessionTable:
    """Sessions keyed by call id, with the port allocator. Raises ControlError.

    `drops` counts every packet dropped by the source rule (and to ports without a session)
    since `drops` was set: the daemon seeds it from the journal so it only grows.
    """

    def __init__(
        self,
        ports: PortAllocator,
        default_mode: Mode,
        default_key: bytes,
        latching: bool,
        probe: Callable[[int], bool] | None = None,
        max_sessions: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ports = ports
        self.default_mode = default_mode
        self.default_key = default_key
        self.latching = latching
        self.probe = probe
        self.max_sessions = max_sessions or max(1, ports.capacity // 2)
        self.clock = clock
        self.sessions: dict[str, Session] = {}
        self.by_port: dict[int, Route] = {}
        self.drops: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)

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

    def offer(self, req: dict[str, Any]) -> tuple[Session, Leg]:
        """Returns the session and the leg whose relay port goes into the SDP sent on."""
        call_id = text(req, "call-id")
        from_tag = text(req, "from-tag")
        address, port, signal = parse_address(req), parse_port(req), parse_signal(req)
        af = address_family(req)
        transform = self._transform(req)
        session = self.sessions.get(call_id)
        if session is not None:
            leg = session.leg_by_tag(from_tag)
            if leg is None:
                raise ControlError(
                    "unknown-leg", f"call {call_id!r} has no leg with tag {from_tag!r}", 404
                )
            leg.transform = transform
            leg.set_sdp(address, port, signal, self.latching)
            session.touched = self.clock()
            session.other(leg).af = af
            return session, session.other(leg)
        if len(self.sessions) >= self.max_sessions:
            raise ControlError(
                "too-many-sessions",
                f"{len(self.sessions)} relay sessions, the most media.max_sessions allows",
                status=503,
            )
        a_port = self._allocate()
        try:
            b_port = self._allocate()
        except ControlError:
            self.ports.release(a_port)
            raise
        a = Leg(tag=from_tag, port=a_port, transform=transform)
        a.set_sdp(address, port, signal, self.latching)
        # the caller's relay family is only known at the answer: its own family until then
        a.af = family(address)
        b = Leg(tag="", port=b_port, transform=Transform(Mode.NONE, b""), af=af)
        session = Session(call_id=call_id, a=a, b=b, touched=self.clock())
        self.sessions[call_id] = session
        self._index(session)
        return session, b

    def answer(self, req: dict[str, Any]) -> tuple[Session, Leg]:
        call_id = text(req, "call-id")
        from_tag = text(req, "from-tag")
        to_tag = text(req, "to-tag")
        address, port, signal = parse_address(req), parse_port(req), parse_signal(req)
        af = address_family(req)
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
        callee.set_sdp(address, port, signal, self.latching)
        caller.af = af
        session.answered = True
        session.touched = self.clock()
        return session, caller

    def get(self, call_id: str) -> Session:
        session = self.sessions.get(call_id)
        if session is None:
            raise ControlError("unknown-call", f"no call with call-id {call_id!r}", 404)
        return session

    def touch(self, ids: list[str]) -> tuple[int, list[str]]:
        """Reset the idle clock of each known call; (how many, the unknown ids)."""
        now = self.clock()
        touched = 0
        unknown: list[str] = []
        for call_id in ids:
            session = self.sessions.get(call_id)
            if session is None:
                unknown.append(call_id)
            else:
                session.touched = now
                touched += 1
        return touched, unknown

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
        if session.call_id in self.sessions:
            raise ValueError(f"call {session.call_id!r} adopted twice")
        reserved: list[int] = []
        try:
            for leg in session.legs:
                self.ports.reserve(leg.port)
                reserved.append(leg.port)
        except ValueError:
            self.ports.release_all(reserved)
            raise
        for leg in session.legs:
            if not self.latching and leg.rtp_peer is None:
                leg.reset_latch(False)
        session.touched = self.clock()
        self.sessions[session.call_id] = session
        self._index(session)

    # -- the source rule -------------------------------------------------------------------

    def receive(self, route: Route, source: Addr) -> str:
        """Apply the source rule to one packet: ACCEPT, LATCH (the leg learned `source`; the
        caller rewrites the kernel entries and saves) or the drop reason (counted)."""
        leg = route.src_leg
        verdict = admit(leg, route.rtcp, source, self.latching)
        if verdict == LATCH:
            if route.rtcp:
                leg.rtcp_peer = source
            else:
                leg.rtp_peer = source
        elif verdict != ACCEPT:
            leg.dropped[verdict] += 1
            self.drops[verdict] += 1
        return verdict

    def no_session(self, count: int = 1) -> None:
        self.drops[NO_SESSION] += count


__all__ = [
    "ACCEPT",
    "DROP_REASONS",
    "FOREIGN",
    "LATCH",
    "NO_SESSION",
    "UNLEARNED",
    "ControlError",
    "Leg",
    "Route",
    "Session",
    "SessionTable",
    "address_family",
    "admit",
    "call_ids",
    "family",
    "normal_ip",
]
