"""Userspace relay: one non-blocking UDP socket per relay port, drained from the event loop.

It carries AES128 sessions, every session when XDP is not loaded, and whatever the XDP program
passes up (packets of legs not latched yet, unknown neighbours, non-RTP packets where a cipher
applies). Packets are read in bursts (up to BURST per wake-up) so AES128 keystream for a whole
burst is made with one ECB call.

Every socket is bound to the relay's bind address (never 0.0.0.0), so every packet of a leg
leaves from the address in the SDP, as on the XDP path. With an IPv6 bind address too, every
relay port is held in both families (an IPv4 and an IPv6 socket, IPV6_V6ONLY): a peer reaches
its leg over either, a packet leaves from the socket of its destination's family, and a leg
can move between families on a re-offer without a new port. Packets this relay sends from one
family to the other are counted (`cross_family`; with XDP loaded only those the program passes
up, e.g. a leg's latching packet). The source rule of session.py is applied to every packet of
a burst (`SessionTable.receive`); drops are counted per leg and
reason there.

Owns: the relay sockets and the packet loop. Must not: decide who may send (session.py does),
or touch BPF maps (a latch is reported through `on_latch`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable

from sipedge.media.session import ACCEPT, LATCH, Route, SessionTable, family

log = logging.getLogger("sipedge.media.relay")

BURST = 64
RCVBUF = 1 << 20
HOLD = ("0.0.0.0", "::")  # SDP addresses that mean "send nothing"


class Relay:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        bind_address: str,
        table: SessionTable,
        on_latch: Callable[[Route], None],
        bind_address_v6: str | None = None,
    ) -> None:
        if bind_address in ("", "0.0.0.0") or bind_address_v6 in ("", "::"):
            raise ValueError("the relay binds to one address (the SDP one), not a wildcard")
        self.loop = loop
        self.binds = {4: bind_address}
        if bind_address_v6 is not None:
            self.binds[6] = bind_address_v6
        self.bind_address = bind_address
        self.table = table
        self.on_latch = on_latch
        self.socks: dict[tuple[int, int], socket.socket] = {}  # (family, port) -> socket
        self.packets_in = 0
        self.packets_out = 0
        self.dropped = 0
        self.cross_family = 0  # packets relayed from IPv4 to IPv6 or back

    def _bind(self, af: int, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET6 if af == 6 else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if af == 6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, RCVBUF)
            sock.bind((self.binds[af], port))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        return sock

    def open_pair(self, port: int) -> bool:
        """Bind RTP `port` and RTCP `port + 1` in every family; False when one is taken."""
        opened: list[tuple[tuple[int, int], socket.socket]] = []
        try:
            for af in self.binds:
                for p in (port, port + 1):
                    opened.append(((af, p), self._bind(af, p)))
        except OSError as exc:
            log.debug("port %d not usable: %s", port, exc)
            for _, s in opened:
                s.close()
            return False
        for where, sock in opened:
            self.socks[where] = sock
            self.loop.add_reader(sock.fileno(), self._readable, where[1], sock)
        return True

    def close_pair(self, port: int) -> None:
        for af in self.binds:
            for p in (port, port + 1):
                sock = self.socks.pop((af, p), None)
                if sock is not None:
                    self.loop.remove_reader(sock.fileno())
                    sock.close()

    def close(self) -> None:
        for sock in self.socks.values():
            self.loop.remove_reader(sock.fileno())
            sock.close()
        self.socks.clear()

    def _readable(self, port: int, sock: socket.socket) -> None:
        recv = sock.recvfrom
        route = self.table.by_port.get(port)
        batch: list[bytes] = []
        received = 0
        latched = False
        peer = route.peer if route is not None else None
        for _ in range(BURST):
            try:
                data, addr = recv(4096)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # e.g. ICMP error queued on the socket
                break
            received += 1
            if route is None:
                continue
            source = (addr[0], addr[1])  # an IPv6 socket adds flow info and scope
            if peer is not None and source == peer:  # the common case: the latched source
                batch.append(data)
                continue
            verdict = self.table.receive(route, (str(source[0]), int(source[1])))
            if verdict == LATCH:
                latched = True
                peer = route.peer
            elif verdict != ACCEPT:
                continue
            batch.append(data)
        if not received:
            return
        self.packets_in += received
        if route is None:
            self.table.no_session(received)
            self.dropped += received
            return
        self.dropped += received - len(batch)
        if latched:
            self.on_latch(route)
        if not batch:
            return
        counters = route.counters()
        now = time.time()
        for data in batch:
            counters.add(len(data), now)
        dest = route.destination
        out_af = family(dest[0]) if dest is not None else 4
        out = self.socks.get((out_af, route.out_port))
        if dest is None or dest[1] == 0 or dest[0] in HOLD or out is None:
            self.dropped += len(batch)
            return
        if out_af != (6 if sock.family == socket.AF_INET6 else 4):
            self.cross_family += len(batch)
        dec, enc = route.transforms
        if dec is not None:
            batch = dec.apply_many(batch)
        if enc is not None:
            batch = enc.apply_many(batch)
        send = out.sendto
        sent = 0
        for data in batch:
            try:
                send(data, dest)
                sent += 1
            except (BlockingIOError, InterruptedError):
                self.dropped += 1
            except OSError as exc:
                self.dropped += 1
                log.debug("send to %s failed: %s", dest, exc)
        self.packets_out += sent
