"""TCP and TLS transports (RFC 3261 section 18, 18.3 framing; TLS per RFC 3261 26.3.1).

One `StreamTransport` holds every stream listener and connection of sipd. A listener accepts
connections (TLS: the handshake runs after the guard and the limits have admitted the
source); a connection frames what it reads (`framing.StreamParser`), answers RFC 5626 pings,
and hands each message through `intake.take` to the daemon's `MessageHandler` with a
`Destination` naming that connection as its source, so that responses and requests to that
peer go back over it (RFC 3261 18.2.2). Requests to a gateway go over a pooled connection per
(transport, address, port), made on first use and reused, closed when idle; one that cannot be
made (refused, timed out, TLS handshake or verification failed, pin mismatch) or that closes
is reported to `on_failed` with each destination it carried, and the transaction layer fails
their transactions at once. After a failed connect, the same target fails at once for
`RETRY_AFTER` seconds instead of each new request waiting for the connect timeout.

Bounds (`StreamSettings`, sip.connections in the config): connections in all and per source
address (over them: closed at accept), a read timeout for a message begun and not finished
(slow senders), an idle timeout, a write high-water mark (above it the peer's reading is paused;
a peer that does not read for `message_timeout`, or lets four times the mark pile up, is
closed). Framing errors, malformed messages and a source the guard refuses close the
connection (after a 400 or 513 where the request can be answered).

Owns: `StreamTransport` (it implements connection.py's `ConnectionOwner`), `StreamSettings`,
`StreamStats`, `ClientPeer` and the closed label sets `CLOSE_REASONS`, `REFUSE_REASONS`,
`TLS_FAILURES`.
Must not: choose which transport a request takes (the router), build SSL contexts from files
(tls.py), or import from sipedge outside sip/ but the leaf `typedefs`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from sipedge.sip.gate import Gate
from sipedge.sip.limits import SipLimits
from sipedge.sip.message import Request
from sipedge.sip.transport.connection import Connection, Listener, ServerTls
from sipedge.sip.transport.destination import DEFAULT_PORTS, TLS, Destination, DestinationKey
from sipedge.sip.transport.framing import PING, FrameError
from sipedge.sip.transport.intake import MessageHandler, TransportStats, refuse_head, take
from sipedge.sip.transport.tls import pin_matches
from sipedge.typedefs import Addr

__all__ = [
    "CLOSE_REASONS",
    "REFUSE_REASONS",
    "TLS_FAILURES",
    "ClientPeer",
    "StreamSettings",
    "StreamStats",
    "StreamTransport",
]

log = logging.getLogger(__name__)

PoolKey = tuple[str, str, int]  # (transport, host, port)
RETRY_AFTER = 2.0  # seconds a target that failed to connect fails at once

CLOSE_REASONS = (
    "peer",  # the peer closed or reset it
    "idle",  # no message within idle_timeout
    "slow",  # a message begun and not finished within message_timeout
    "stalled",  # the peer does not read what we write
    "framing",  # Content-Length missing or bad, or a message over the size limit
    "malformed",  # a message that does not parse (answered 400 where possible)
    "screened",  # the guard refused its source (a ban, the rate)
    "tls",  # handshake, verification or pin failed
    "shutdown",
)
REFUSE_REASONS = ("limit", "per_source", "screened")
TLS_FAILURES = ("handshake", "verify", "pin", "timeout")
_FRAME_STATUS = {
    "too_large": (513, None),
    "no_content_length": (400, "Missing Content-Length"),
    "bad_content_length": (400, "Bad Content-Length"),
}


@dataclass(frozen=True)
class StreamSettings:
    """The field names are those of sip.connections (config's ConnectionLimits)."""

    max: int = 4096  # connections open at once, accepted and made
    max_per_source: int = 32  # accepted from one IP address
    idle_timeout: float = 300.0  # seconds without a message (either way)
    message_timeout: float = 10.0  # seconds to finish a message begun; to read our writes
    connect_timeout: float = 5.0  # TCP connect plus TLS handshake
    write_buffer: int = 256 * 1024  # bytes: the high-water mark of one connection


@dataclass
class StreamStats:
    """Counters read at scrape time; label values are the closed sets of this module."""

    accepted: dict[str, int] = field(default_factory=dict)  # by transport
    refused: dict[tuple[str, str], int] = field(default_factory=dict)  # transport, reason
    connected: dict[str, int] = field(default_factory=dict)  # made by us, by transport
    connect_failures: dict[str, int] = field(default_factory=dict)
    tls_failures: dict[tuple[str, str], int] = field(default_factory=dict)  # side, reason
    framing_errors: dict[str, int] = field(default_factory=dict)  # FRAME_ERRORS, malformed
    closed: dict[str, int] = field(default_factory=dict)  # CLOSE_REASONS
    pings: int = 0

    def count(self, table: dict[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1


@dataclass(frozen=True)
class ClientPeer:
    """How to reach one TLS peer: the context, the name to ask for, the pin."""

    context: ssl.SSLContext
    server_name: str | None = None
    pin: bytes | None = None


class StreamTransport:
    """All TCP and TLS listeners and connections of sipd."""

    def __init__(
        self,
        on_message: MessageHandler,
        stats: TransportStats | None = None,
        limits: SipLimits | None = None,
        settings: StreamSettings | None = None,
    ) -> None:
        self.on_message = on_message
        self.stats = stats if stats is not None else TransportStats()
        self.limits = limits if limits is not None else SipLimits()
        self.settings = settings if settings is not None else StreamSettings()
        self.counters = StreamStats()
        self.gate = Gate(self.send_bytes)
        # Asked before a connection is accepted and before each message is parsed (the
        # daemon's flood guard): False closes the connection.
        self.screen: Callable[[Addr], bool] | None = None
        # The transport gave up on a destination (the transaction layer fails its
        # transactions); always called from the loop, never from inside send_bytes.
        self.on_failed: Callable[[DestinationKey, str], None] | None = None
        # TLS peers by (address, port): the context, name and pin; others get the default.
        self.peers: dict[tuple[str, int], ClientPeer] = {}
        self._default_client: ssl.SSLContext | None = None  # see default_client
        self.listeners: list[Listener] = []
        self.connections: dict[int, Connection] = {}
        self.pool: dict[PoolKey, Connection] = {}
        self.connecting: dict[PoolKey, list[tuple[bytes, DestinationKey]]] = {}
        self.down: dict[PoolKey, tuple[float, str]] = {}  # failed targets: until, reason
        self.per_source: dict[str, int] = {}
        self._next_id = 0
        self._sweeper: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def now(self) -> float:
        return self.loop.time()

    @property
    def default_client(self) -> ssl.SSLContext:
        """The context for TLS destinations without a peer entry: the system's CA store, parsed
        at the first such connection (once, about 20 ms on the loop) rather than at every start
        (half a second of a boot under emulation, for a store most appliances never use)."""
        if self._default_client is None:
            self._default_client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        return self._default_client

    @property
    def write_buffer(self) -> int:
        return self.settings.write_buffer

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    # -- listening --------------------------------------------------------------------------
    async def listen(
        self, transport: str, host: str, port: int, context: ssl.SSLContext | None = None
    ) -> tuple[str, int]:
        """Serve `transport` (tcp, or tls with `context`) on host:port; the bound address."""
        if (transport == TLS) != (context is not None):
            raise ValueError(
                f"a {transport} listener {'needs' if context is None else 'takes no'} TLS context"
            )
        listener = Listener(transport, context)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server = await self.loop.create_server(
            lambda: Connection(self, transport, listener),
            host,
            port,
            family=family,
            reuse_address=True,
            backlog=1024,
        )
        listener.server = server
        bound = server.sockets[0].getsockname()
        listener.host, listener.port = str(bound[0]), int(bound[1])
        self.listeners.append(listener)
        self._arm_sweep()
        return listener.host, listener.port

    def set_server_context(self, index: int, context: ssl.SSLContext) -> None:
        """A renewed certificate: connections accepted from now on use `context`."""
        self.listeners[index].context = context

    # -- connections come and go --------------------------------------------------------------
    def _made(self, conn: Connection) -> None:
        listener = conn.listener
        io = conn.io
        assert io is not None
        if listener is not None:  # accepted: screen and limits before anything else
            reason = self._refusal(conn.peer[0])
            if reason is not None:
                key = (listener.transport, reason)
                self.counters.refused[key] = self.counters.refused.get(key, 0) + 1
                conn.closing = "refused"
                io.abort()
                return
            self.per_source[conn.peer[0]] = self.per_source.get(conn.peer[0], 0) + 1
            self.counters.count(self.counters.accepted, listener.transport)
        self._register(conn)
        io.set_write_buffer_limits(high=self.settings.write_buffer)
        if listener is not None and listener.context is not None:
            conn.tls = ServerTls(listener.context)  # ready once the handshake is done
        else:
            conn.ready = True

    def _refusal(self, address: str) -> str | None:
        if self.screen is not None and not self.screen((address, 0)):
            return "screened"
        if len(self.connections) >= self.settings.max:
            return "limit"
        if self.per_source.get(address, 0) >= self.settings.max_per_source:
            return "per_source"
        return None

    def _register(self, conn: Connection) -> None:
        self._next_id += 1
        conn.id = self._next_id
        conn.last_active = self.now()
        conn.source = Destination(conn.peer[0], conn.peer[1], conn.transport_name, conn.id)
        self.connections[conn.id] = conn

    def _tls_failed(self, side: str, exc: BaseException) -> str:
        if isinstance(exc, ssl.SSLCertVerificationError):
            reason = "verify"
        elif isinstance(exc, TimeoutError):
            reason = "timeout"
        else:
            reason = "handshake"
        key = (side, reason)
        self.counters.tls_failures[key] = self.counters.tls_failures.get(key, 0) + 1
        self.gate.rlog.event(
            f"tls {side} {reason}", "TLS %s handshake failed (%s): %.200s", side, reason, exc
        )
        return reason

    def _lost(self, conn: Connection) -> None:
        if conn.id == 0 or self.connections.get(conn.id) is not conn:
            return
        del self.connections[conn.id]
        self.counters.count(self.counters.closed, conn.closing or "peer")
        if conn.listener is not None:
            address = conn.peer[0]
            left = self.per_source.get(address, 1) - 1
            if left > 0:
                self.per_source[address] = left
            else:
                self.per_source.pop(address, None)
        if conn.pool_key is not None and self.pool.get(conn.pool_key) is conn:
            del self.pool[conn.pool_key]
        reason = "connection-closed" if conn.closing in (None, "peer") else conn.closing
        for key in conn.carried:
            self._report(key, reason or "connection-closed")
        conn.carried.clear()

    # -- receiving --------------------------------------------------------------------------
    def _received(self, conn: Connection, data: bytes) -> None:
        now = self.now()
        conn.last_active = now
        for event in conn.parser.feed(data):
            if event is PING:
                self.counters.pings += 1
                if conn.io is not None:
                    conn.send(b"\r\n")  # the pong (RFC 5626 3.5.1)
                continue
            if isinstance(event, FrameError):
                self._frame_error(conn, event)
                return
            assert isinstance(event, bytes)
            self._deliver(conn, event)
            if conn.closing is not None:
                return
        if conn.parser.pending:
            if conn.partial_since is None:
                conn.partial_since = now
        else:
            conn.partial_since = None

    def _frame_error(self, conn: Connection, error: FrameError) -> None:
        self.counters.count(self.counters.framing_errors, error.reason)
        source = conn.source
        assert source is not None
        if error.head is not None:
            status, reason = _FRAME_STATUS[error.reason]
            refuse_head(error.head, source, status, reason, self.stats, self.gate)
        else:
            self.stats.dropped += 1
            self.gate.drop("too_large", source, "stream")
        conn.close("framing")

    def _deliver(self, conn: Connection, data: bytes) -> None:
        self.stats.messages_in += 1
        if self.screen is not None and not self.screen(conn.peer):
            self.stats.screened += 1
            conn.close("screened")
            return
        source = conn.source
        assert source is not None
        msg = take(data, source, self.limits, self.stats, self.gate)
        if msg is None:
            self.counters.count(self.counters.framing_errors, "malformed")
            conn.close("malformed")
            return
        if isinstance(msg, Request):
            source = self._answer_to(conn, msg)
        self.on_message(msg, source, self)

    def _answer_to(self, conn: Connection, request: Request) -> Destination:
        """The source of a request: this connection, and (RFC 3261 18.2.2) where to connect
        if it has closed by the time we answer or call back: `received`, the sent-by port."""
        source = conn.source
        assert source is not None
        try:
            port = request.top_via.port or DEFAULT_PORTS[conn.transport_name]
        except ValueError:
            return source
        fallback = (conn.peer[0], port)
        if source.fallback != fallback:
            source = Destination(conn.peer[0], conn.peer[1], conn.transport_name, conn.id, fallback)
            conn.source = source  # the same for every request that says the same
        return source

    # -- sending ----------------------------------------------------------------------------
    def send_bytes(self, data: bytes, destination: Addr) -> None:
        """Send over the destination's connection, or the pooled one to it (made if need be);
        a failure is reported to `on_failed`, never raised."""
        if type(destination) is not Destination:
            destination = Destination(destination[0], destination[1], "tcp")
        key = destination.key
        if destination.connection:
            conn = self.connections.get(destination.connection)
            if conn is not None and conn.open:
                self._write(conn, data, key)
                return
            target = destination.fallback
            if target is None:
                self._report(key, "connection-closed")
                return
        else:
            target = (destination[0], destination[1])
        pool_key = (destination.transport, target[0], target[1])
        conn = self.pool.get(pool_key)
        if conn is not None and conn.open:
            self._write(conn, data, key)
            return
        queued = self.connecting.get(pool_key)
        if queued is not None:
            if sum(len(d) for d, _ in queued) + len(data) > self.settings.write_buffer:
                self._report(key, "write-buffer-full")
            else:
                queued.append((data, key))
            return
        down = self.down.get(pool_key)
        if down is not None:
            if down[0] > self.now():
                self._report(key, down[1])
                return
            del self.down[pool_key]
        if len(self.connections) + len(self.connecting) >= self.settings.max:
            self._report(key, "connection-limit")
            return
        self.connecting[pool_key] = [(data, key)]
        self._spawn(self._connect(pool_key))

    def _write(self, conn: Connection, data: bytes, key: DestinationKey) -> None:
        try:
            conn.write(data, key)
            self.stats.messages_out += 1
        except (OSError, RuntimeError) as exc:
            self.stats.send_errors += 1
            log.debug("stream send to %s:%s failed: %s", conn.peer[0], conn.peer[1], exc)
            conn.close("peer")

    async def _connect(self, pool_key: PoolKey) -> None:
        transport, host, port = pool_key
        peer = self.peers.get((host, port)) if transport == TLS else None
        context = None
        if transport == TLS:
            context = peer.context if peer is not None else self.default_client
        conn = Connection(self, transport, None)
        name = ((peer.server_name if peer else None) or host) if context else None
        reason = ""
        try:
            await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: conn,
                    host,
                    port,
                    ssl=context,
                    server_hostname=name,
                    ssl_handshake_timeout=self.settings.connect_timeout if context else None,
                ),
                self.settings.connect_timeout,
            )
        except ssl.SSLError as exc:
            reason = "tls-" + self._tls_failed("client", exc)
        except TimeoutError:
            reason = "connect-timeout"
        except OSError:
            reason = "connect-failed"
        if not reason and peer is not None and peer.pin is not None:
            sslobj = conn.io.get_extra_info("ssl_object") if conn.io else None
            der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
            if not pin_matches(der, peer.pin):
                pin_key = ("client", "pin")
                failures = self.counters.tls_failures
                failures[pin_key] = failures.get(pin_key, 0) + 1
                self.gate.rlog.event(
                    "tls client pin", "TLS %s:%s: not the pinned certificate", host, port
                )
                reason = "tls-pin"
                conn.close("tls")
        queued = self.connecting.pop(pool_key, [])
        if reason and conn.io is not None:
            conn.close("tls")  # made, then given up on (a pin mismatch, a late timeout)
        if reason:
            self.counters.count(self.counters.connect_failures, transport)
            self.down[pool_key] = (self.now() + RETRY_AFTER, reason)
            if len(self.down) > self.settings.max:
                del self.down[next(iter(self.down))]
            for _, key in queued:
                self._report(key, reason)
            return
        self.counters.count(self.counters.connected, transport)
        conn.pool_key = pool_key
        self.pool[pool_key] = conn
        for data, key in queued:
            if conn.open:
                self._write(conn, data, key)
            else:
                self._report(key, "connection-closed")

    def _report(self, key: DestinationKey, reason: str) -> None:
        if self.on_failed is not None:
            self.loop.call_soon(self.on_failed, key, reason)

    # -- housekeeping -----------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _arm_sweep(self) -> None:
        if self._sweeper is None:
            tick = max(0.05, min(1.0, self.settings.message_timeout / 4))
            self._sweeper = self.loop.call_later(tick, self._sweep, tick)

    def _sweep(self, tick: float) -> None:
        self._sweeper = None
        now = self.now()
        s = self.settings
        for conn in list(self.connections.values()):
            if conn.closing is not None:
                continue
            if conn.partial_since is not None and now - conn.partial_since > s.message_timeout:
                self.counters.count(self.counters.framing_errors, "slow")
                conn.close("slow")
            elif conn.paused_since is not None and now - conn.paused_since > s.message_timeout:
                conn.close("stalled")
            elif not conn.ready and now - conn.last_active > s.connect_timeout:
                self._tls_failed("server", TimeoutError("no TLS handshake in time"))
                conn.close("tls")
            elif now - conn.last_active > s.idle_timeout:
                conn.close("idle")
        self._sweeper = self.loop.call_later(tick, self._sweep, tick)

    def open_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for conn in self.connections.values():
            counts[conn.transport_name] = counts.get(conn.transport_name, 0) + 1
        return counts

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for listener in self.listeners:
            if listener.server is not None:
                listener.server.close()
        for conn in list(self.connections.values()):
            conn.close("shutdown")
        for task in self._tasks:
            task.cancel()
