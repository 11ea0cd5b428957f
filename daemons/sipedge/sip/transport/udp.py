"""UDP transport: datagrams in, parsed messages out (RFC 3261 section 18, RFC 3581).

The transport is the only place that touches the socket. What it receives goes through
`intake.take` (parse, stamp `received`/`rport` on the top Via of requests, answer
unparseable-but-answerable requests once with 400, 505 or 513, count what it drops through
`gate.Gate`). Nothing raises out of `datagram_received`. Sources from the first UDP listener
are plain `(host, port)` tuples (the hot path builds nothing); another listener's are a
`Destination` naming it, so that answers leave from the socket the request came to.

Socket buffers: bursts at high call rates must wait in the kernel, not be dropped, so the
socket asks for RECEIVE_BUFFER with plain SO_RCVBUF and logs what the kernel granted at start
(a warning when net.core.rmem_max capped it: the appliance role sets that sysctl). Not
SO_RCVBUFFORCE: sipd runs as its own user with CAP_NET_BIND_SERVICE only, and the sysctl is the
administrator's limit to raise, not ours to bypass. Reading is batched below us: uvloop (libuv)
reads up to 32 datagrams per readiness event, one recvmsg each, before it returns to epoll.
Must not: keep anything per source (the guard does), or import from sipedge outside sip/ but
the leaf `typedefs`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from sipedge.sip.gate import Gate
from sipedge.sip.limits import SipLimits
from sipedge.sip.message import Request, Response
from sipedge.sip.transport.destination import UDP, Destination
from sipedge.sip.transport.intake import MessageHandler, TransportStats, take
from sipedge.typedefs import Addr

__all__ = ["MessageHandler", "TransportStats", "UdpTransport", "open_udp"]

log = logging.getLogger(__name__)

# Big enough for any SIP datagram (UDP max); anything larger is truncated by the kernel anyway.
MAX_DATAGRAM = 65535
# Socket buffers we ask for. The kernel charges a datagram its allocation, not its length (on
# loopback 1,280 bytes up to ~700 bytes of payload, 2,304 up to ~1,700): the 8 MiB granted for
# 4 MiB hold ~3,600-6,500 SIP datagrams, about a second of 800 calls/s (7 inbound per call).
# The kernel caps the request at net.core.rmem_max / wmem_max and then doubles it.
RECEIVE_BUFFER = 4 * 1024 * 1024
SEND_BUFFER = 4 * 1024 * 1024
RMEM_MAX = Path("/proc/sys/net/core/rmem_max")
# Linux's SO_MEMINFO (asm-generic/socket.h; not in Python's socket module): nine u32 counters
# of the socket's memory, SK_MEMINFO_RMEM_ALLOC (the receive queue) first.
SO_MEMINFO = 55
SO_MEMINFO_LENGTH = 9 * 4


class UdpTransport(asyncio.DatagramProtocol):
    """One listening UDP socket. `on_message(msg, source, transport)` gets every good message."""

    def __init__(
        self,
        on_message: MessageHandler,
        stats: TransportStats | None = None,
        limits: SipLimits | None = None,
    ) -> None:
        self.on_message = on_message
        self.stats = stats if stats is not None else TransportStats()
        self.limits = limits if limits is not None else SipLimits()  # the daemon may replace it
        self.gate = Gate(self.send_bytes)
        # Asked before a datagram is parsed or answered (the daemon's flood guard): False drops
        # it silently, so a banned source gets not even a 400 for a broken request.
        self.screen: Callable[[Addr], bool] | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self.host = ""
        self.port = 0
        # Address written into Via/Contact. Set by the daemon (public_address or listen address).
        self.advertised_host = ""
        self._route_cache: dict[str, str] = {}
        self.receive_buffer = 0  # SO_RCVBUF as the kernel granted it (0: no socket)
        self._sock: Any = None  # the socket (uvloop's stand-in has getsockopt as well)
        # Index among sipd's UDP listeners: 0 (the first) hands plain (host, port) sources
        # up, the others a Destination naming them, so that answers leave from them.
        self.listener = 0

    # -- asyncio protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport does not subclass asyncio.DatagramTransport, but behaves as one.
        self._transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self._sock = sock
            self.host, self.port = sock.getsockname()[:2]
            self.receive_buffer = _grow_buffer(sock, socket.SO_RCVBUF, RECEIVE_BUFFER)
            _grow_buffer(sock, socket.SO_SNDBUF, SEND_BUFFER)
            self._log_receive_buffer()
        if not self.advertised_host:
            self.advertised_host = self.host

    def _log_receive_buffer(self) -> None:
        try:
            rmem_max: str = RMEM_MAX.read_text().strip()
        except OSError:
            rmem_max = "unknown"
        # Linux doubles what it grants (the other half is its bookkeeping): less than twice
        # the request means net.core.rmem_max capped it.
        capped = self.receive_buffer < 2 * RECEIVE_BUFFER
        (log.warning if capped else log.info)(
            "SIP UDP %s:%s: receive buffer %d bytes (asked %d, net.core.rmem_max %s)%s",
            self.host,
            self.port,
            self.receive_buffer,
            RECEIVE_BUFFER,
            rmem_max,
            f"; raise net.core.rmem_max to {RECEIVE_BUFFER} or more" if capped else "",
        )

    def datagram_received(self, data: bytes, addr: tuple[str | Any, ...]) -> None:
        source: Addr = (str(addr[0]), int(addr[1]))
        try:
            self._receive(data, source)
        except Exception as exc:  # a bug must not stop the loop, nor log a traceback per packet
            self.stats.dropped += 1
            self.gate.dropped["internal_error"] += 1
            self.gate.failed("receiving a datagram", exc)

    def _receive(self, data: bytes, source: Addr) -> None:
        stats = self.stats
        stats.messages_in += 1
        if len(data) <= 4 and not data.strip():
            return  # CRLF keep-alive ping (RFC 5626): nothing to do on UDP
        if self.screen is not None and not self.screen(source):
            stats.screened += 1
            return
        if self.listener:  # not the first UDP listener: answers must leave from this one
            source = Destination(source[0], source[1], UDP, listener=self.listener)
        msg = take(data, source, self.limits, stats, self.gate)
        if msg is not None:
            self.on_message(msg, source, self)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and friends: the transaction timers deal with the silence.
        log.debug("udp error: %s", exc)

    # -- sending ----------------------------------------------------------------------------
    def send(self, msg: Request | Response, addr: Addr) -> None:
        self.send_bytes(msg.to_bytes(), addr)

    def send_bytes(self, data: bytes, addr: Addr) -> None:
        if self._transport is None:
            return
        try:
            self._transport.sendto(data, addr)
            self.stats.messages_out += 1
        except OSError as exc:
            self.stats.send_errors += 1
            log.debug("send to %s:%s failed: %s", addr[0], addr[1], exc)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def queued_bytes(self) -> int:
        """What the kernel holds in this socket's receive queue: datagrams not read yet, in its
        own accounting (SO_MEMINFO's rmem_alloc, about 1.3 KB for a 600-byte datagram); 0
        without a socket, or where the option is unknown."""
        if self._sock is None or self._transport is None:
            return 0
        try:
            info = self._sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, SO_MEMINFO_LENGTH)
        except OSError:
            return 0
        return int(struct.unpack_from("I", info)[0])

    @property
    def raw_socket(self) -> socket.socket | None:
        """The signaling socket (natd sends keep-alives from this same address and port)."""
        if self._transport is None:
            return None
        sock = self._transport.get_extra_info("socket")
        return sock if isinstance(sock, socket.socket) else None

    def local_host_for(self, destination: str) -> str:
        """Our address as seen from `destination` (for Via/Contact when bound to a wildcard)."""
        if self.advertised_host not in ("0.0.0.0", "::", ""):
            return self.advertised_host
        cached = self._route_cache.get(destination)
        if cached is None:
            family = socket.AF_INET6 if ":" in destination else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect((destination, 9))  # no packet leaves: connect() on UDP only routes
                cached = str(probe.getsockname()[0])
            self._route_cache[destination] = cached
        return cached


def _grow_buffer(sock: socket.socket, option: int, size: int) -> int:
    """Ask for a `size` socket buffer (SO_RCVBUF / SO_SNDBUF); what the kernel granted."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, option, size)
    except OSError as exc:  # the kernel caps quietly; an error here is unexpected, not fatal
        log.warning("setsockopt(%d, %d) failed: %s", option, size, exc)
    return int(sock.getsockopt(socket.SOL_SOCKET, option))


async def open_udp(
    host: str,
    port: int,
    on_message: MessageHandler,
    stats: TransportStats | None = None,
    limits: SipLimits | None = None,
) -> UdpTransport:
    """Bind a UDP listening socket and return its protocol object."""
    loop = asyncio.get_running_loop()
    if ":" in host:
        # IPv6 only (docs/ipv6.md: one listener per family): `[::]` must neither take IPv4 as
        # ::ffff:a.b.c.d nor collide with a 0.0.0.0 listener on the same port (as asyncio
        # does for TCP servers)
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        _, protocol = await loop.create_datagram_endpoint(
            lambda: UdpTransport(on_message, stats, limits), sock=sock
        )
        return protocol
    _, protocol = await loop.create_datagram_endpoint(
        lambda: UdpTransport(on_message, stats, limits),
        local_addr=(host, port),
        family=socket.AF_INET,
        reuse_port=False,
    )
    return protocol
