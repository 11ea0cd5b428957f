"""Userspace relay: one non-blocking UDP socket per relay port, drained from the event loop.

It carries AES128 sessions, every session when XDP is not loaded, and whatever the XDP program
passes up (packets of legs not latched yet, unknown neighbours, non-RTP packets where a cipher
applies). Packets are read in bursts (up to BURST per wake-up) so AES128 keystream for a whole
burst is made with one ECB call.

Every socket is bound to the relay's bind address (never 0.0.0.0), so every packet of a leg
leaves from the address in the SDP, as on the XDP path. The source rule of session.py is
applied to every packet of a burst (`SessionTable.receive`); drops are counted per leg and
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

from sipedge.media.session import ACCEPT, LATCH, Route, SessionTable

log = logging.getLogger("sipedge.media.relay")

BURST = 64
RCVBUF = 1 << 20


class Relay:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        bind_address: str,
        table: SessionTable,
        on_latch: Callable[[Route], None],
    ) -> None:
        if bind_address in ("", "0.0.0.0"):
            raise ValueError("the relay binds to one address (the SDP one), not 0.0.0.0")
        self.loop = loop
        self.bind_address = bind_address
        self.table = table
        self.on_latch = on_latch
        self.socks: dict[int, socket.socket] = {}
        self.packets_in = 0
        self.packets_out = 0
        self.dropped = 0

    def _bind(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, RCVBUF)
            sock.bind((self.bind_address, port))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        return sock

    def open_pair(self, port: int) -> bool:
        """Bind RTP `port` and RTCP `port + 1`; False when either is taken."""
        opened: list[socket.socket] = []
        try:
            for p in (port, port + 1):
                opened.append(self._bind(p))
        except OSError as exc:
            log.debug("port %d not usable: %s", port, exc)
            for s in opened:
                s.close()
            return False
        for p, sock in zip((port, port + 1), opened, strict=True):
            self.socks[p] = sock
            self.loop.add_reader(sock.fileno(), self._readable, p, sock)
        return True

    def close_pair(self, port: int) -> None:
        for p in (port, port + 1):
            sock = self.socks.pop(p, None)
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
            if peer is not None and addr == peer:  # the common case: the latched source
                batch.append(data)
                continue
            verdict = self.table.receive(route, (str(addr[0]), int(addr[1])))
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
        out = self.socks.get(route.out_port)
        if dest is None or dest[1] == 0 or dest[0] == "0.0.0.0" or out is None:
            self.dropped += len(batch)
            return
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
