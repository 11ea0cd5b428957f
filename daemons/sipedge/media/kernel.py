"""Keeping the XDP table in step with mediad's sessions, and reading its counters cheaply.

Every key is (bind address, relay port): packets to an address the box does not own at a relay
port match nothing. With IPv6, each direction has one entry, under the bind address of the
family its packets arrive in (the latched peer's, else the family of the relay address the leg
was given); the key of the other family is removed. Packets leave in the family of the
destination, from the bind address of that family: a cross-family direction (IPv4 in, IPv6
out or back) is an entry like any other, and the program rewrites the IP header. A direction
whose family has no bind address (no media.bind_address_v6) has no entry.
Each entry carries the bind address as source of the relayed packet and,
once the leg is latched (or with latching off, from the start), the peer its packets must come
from; an unlatched entry carries F_LATCH so packets go up to the userspace relay, which applies
the source rule and then calls `sync` again.

Counters: `refresh(session)` reads the four ports' per-CPU slots into `tally.XdpTally`; the
daemon calls it at a sweep (at most every few seconds per session), when a session ends, and
before a session leaves the XDP path (its slots are zeroed then). Scrapes only add up the tally.

`cleanup(settings)` is `sipedge-mediad --cleanup` (ExecStopPost, as root): detach XDP and unpin
the maps when the journal holds no live session.

Owns: the mapping from sessions to `xdp.Entry` values. Must not: decide latching (session.py),
or load/attach the program (daemon.py and xdp.py do).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from sipedge.appliance.privileges import PrivilegeError, lookup_user
from sipedge.media import journal
from sipedge.media.journal import JournalError
from sipedge.media.session import Leg, Route, Session, family
from sipedge.media.settings import MediaSettings
from sipedge.media.tally import XdpTally
from sipedge.media.xdp import Entry, Stats, XdpPath

log = logging.getLogger("sipedge.media")


class KernelTable:
    def __init__(
        self,
        xdp: XdpPath,
        bind: str,
        tally: XdpTally,
        clock: Callable[[], float],
        bind6: str | None = None,
    ) -> None:
        self.xdp = xdp
        self.bind = bind
        self.binds = {4: bind} | ({6: bind6} if bind6 else {})
        self.tally = tally
        self.clock = clock

    def in_family(self, route: Route) -> int:
        """The family packets to the route's port arrive in (the key's address)."""
        peer = route.peer
        return family(peer[0]) if peer else route.src_leg.af

    def out_family(self, route: Route) -> int:
        """The family packets from the route's port leave in (the destination's; the
        incoming one while the destination is unknown)."""
        dest = route.destination
        return family(dest[0]) if dest else self.in_family(route)

    def entry(self, route: Route) -> Entry:
        af = self.in_family(route)
        none = "::" if af == 6 else "0.0.0.0"
        dest = route.destination or (none, 0)
        peer = route.peer
        dec, enc = route.transforms
        return Entry(
            dst_addr=dest[0],
            dst_port=dest[1],
            src_port=route.out_port,
            src_addr=self.binds[self.out_family(route)],
            peer_addr=peer[0] if peer else none,
            peer_port=peer[1] if peer else 0,
            latch=peer is None,
            rtcp=route.rtcp,
            in_mode=int(dec.mode) if dec else 0,
            in_key=dec.key if dec else b"",
            out_mode=int(enc.mode) if enc else 0,
            out_key=enc.key if enc else b"",
        )

    def sync(self, session: Session) -> None:
        """Write the session's four directions (AES128 sessions: take them out)."""
        if session.needs_userspace:
            self.refresh(session)  # count what XDP relayed before its slots are zeroed
        for src in session.legs:
            dst = session.other(src)
            for rtcp in (False, True):
                route = Route(session, src, dst, rtcp)
                af = self.in_family(route)
                put = (
                    not session.needs_userspace
                    and af in self.binds
                    and self.out_family(route) in self.binds
                )
                for other, bind in self.binds.items():
                    if other != af or not put:
                        self.xdp.remove(bind, route.in_port)
                if put:
                    self.xdp.put(self.binds[af], route.in_port, self.entry(route))

    def remove(self, session: Session) -> None:
        for leg in session.legs:
            for bind in self.binds.values():
                self.xdp.remove(bind, leg.port)
                self.xdp.remove(bind, leg.rtcp_port)

    def prune(self, sessions: list[Session]) -> None:
        """Remove entries and counter slots no live session owns (after a restart)."""
        live: set[int] = set()
        for session in sessions:
            for leg in session.legs:
                live.update((leg.port, leg.rtcp_port))
        for addr, port in list(self.xdp.keys()) + list(self.xdp.stat_keys()):
            if port not in live or addr not in self.binds.values():
                self.xdp.remove(addr, port)

    def leg_stats(self, leg: Leg) -> tuple[Stats, Stats]:
        """(RTP, RTCP) counters of the leg's ports in both families, read now."""
        rtp, rtcp = Stats(), Stats()
        for bind in self.binds.values():
            for total, port in ((rtp, leg.port), (rtcp, leg.rtcp_port)):
                st = self.xdp.stats(bind, port)
                total.packets += st.packets
                total.bytes += st.bytes
                total.dropped += st.dropped
                total.last_seen = max(total.last_seen, st.last_seen)
        return rtp, rtcp

    def refresh(self, session: Session) -> float:
        """Read the session's counters into the tally; returns their last_seen."""
        packets = bytes_ = dropped = 0
        last = 0.0
        for leg in session.legs:
            for st in self.leg_stats(leg):
                packets += st.packets
                bytes_ += st.bytes
                dropped += st.dropped
                last = max(last, st.last_seen)
        snap = self.tally.update(session.call_id, (packets, bytes_, dropped), last, self.clock())
        return snap.last_seen


def unload_xdp(interfaces: tuple[str, ...], pin_dir: Path) -> None:
    """Detach whatever XDP program (native or generic) is on the interfaces and unpin the maps
    in mediad's pin folder, without loading anything (no bcc): `mediad --cleanup`."""
    for dev in interfaces:
        for mode in ("xdpdrv", "xdpgeneric"):
            subprocess.run(
                ["ip", "link", "set", "dev", dev, mode, "off"], capture_output=True, check=False
            )
    if pin_dir.is_dir() and not pin_dir.is_symlink():
        for pin in pin_dir.iterdir():
            if pin.is_file() and not pin.is_symlink():
                pin.unlink()
        with contextlib.suppress(OSError):
            pin_dir.rmdir()


def cleanup(settings: MediaSettings) -> int:
    """`--cleanup` (ExecStopPost, as root): with no live session in the journal, detach XDP
    from media.interfaces and remove the pinned maps; otherwise leave everything."""
    try:
        replayed = journal.read(settings.state_path, {0, os.geteuid()} | _run_as_uid(settings))
    except JournalError as exc:
        log.warning("cleanup: %s: leaving XDP attached", exc)
        return 0
    if replayed.sessions:
        log.info("cleanup: %d calls live in the journal: XDP stays", len(replayed.sessions))
        return 0
    unload_xdp(settings.interfaces, settings.pin_dir)
    log.info("cleanup: no calls: XDP detached from %s, pins removed", ",".join(settings.interfaces))
    return 0


def _run_as_uid(settings: MediaSettings) -> set[int]:
    if not settings.run_as:
        return set()
    try:
        return {lookup_user(settings.run_as).uid}
    except PrivilegeError:
        return set()
