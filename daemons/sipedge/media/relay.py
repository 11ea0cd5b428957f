"""Userspace relay: one non-blocking UDP socket per relay port, drained from the event loop.

It carries AES128 sessions, every session when XDP is not loaded, and whatever the XDP program
passes up (first packets before latching, unknown neighbours, oversize or non-RTP packets).
Packets are read in bursts (up to BURST per wake-up) so AES128 keystream for a whole burst is
made with one ECB call.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable

from sipedge.media.session import Route, SessionTable

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
        batch: list[bytes] = []
        source = None
        recv = sock.recvfrom
        for _ in range(BURST):
            try:
                data, addr = recv(4096)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # e.g. ICMP error queued on the socket
                break
            if source is None:
                source = addr
            batch.append(data)
        if not batch:
            return
        self.packets_in += len(batch)
        route = self.table.by_port.get(port)
        if route is None:
            self.dropped += len(batch)
            return
        if (
            route.latch_pending
            and source is not None
            and self.table.latch(route, (str(source[0]), int(source[1])))
        ):
            self.on_latch(route)
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
