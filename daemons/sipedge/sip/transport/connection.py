"""One TCP or TLS connection of the stream transport, and one listener.

The asyncio side of a connection: it records its addresses, passes what it reads to its
owner, pauses reading while the peer does not read what we write (the write buffer's
high-water mark), closes a peer that lets `STALL_FACTOR` times the mark pile up, and remembers
(bounded) which destinations it carried, so that its owner can report them when it closes.

An accepted TLS connection runs TLS itself, over memory BIOs (`ServerTls`): the handshake
starts only once the owner has screened the source and counted it against the limits, its
failures come back as exceptions to count, and the same code runs on uvloop and asyncio
(uvloop's `start_tls` on an accepted connection loses a ClientHello that arrives before the
protocol is swapped). Connections we make use the loop's TLS (`create_connection(ssl=...)`).

Owns: `Connection`, `Listener`, `ServerTls`, `ConnectionOwner` (the Protocol
`stream.StreamTransport` implements), `STALL_FACTOR`, `MAX_CARRIED`.
Must not: frame, parse or decide anything (the owner does), or import from sipedge outside
sip/ but the leaf `typedefs`.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Protocol, cast

from sipedge.sip.gate import Gate
from sipedge.sip.limits import SipLimits
from sipedge.sip.transport.destination import Destination, DestinationKey
from sipedge.sip.transport.framing import StreamParser
from sipedge.typedefs import Addr

__all__ = [
    "MAX_CARRIED",
    "STALL_FACTOR",
    "Connection",
    "ConnectionOwner",
    "Listener",
    "ServerTls",
]

STALL_FACTOR = 4  # a write buffer this many times the high-water mark closes the peer
MAX_CARRIED = 64  # destination keys remembered per connection (reported when it closes)


class ConnectionOwner(Protocol):
    """What a connection needs of the transport that owns it (`stream.StreamTransport`)."""

    limits: SipLimits
    gate: Gate

    @property
    def write_buffer(self) -> int: ...

    def now(self) -> float: ...

    def _made(self, conn: Connection) -> None: ...

    def _received(self, conn: Connection, data: bytes) -> None: ...

    def _lost(self, conn: Connection) -> None: ...

    def _tls_failed(self, side: str, exc: BaseException) -> str: ...


class ServerTls:
    """The server side of TLS over memory BIOs: bytes from the peer in, plaintext and bytes
    for the peer out. `ssl.SSLError` (a failed handshake, a bad record) propagates."""

    __slots__ = ("done", "incoming", "obj", "outgoing")

    def __init__(self, context: ssl.SSLContext) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.done = False  # handshake complete

    def receive(self, data: bytes) -> tuple[bytes, bytes, bool]:
        """(plaintext, bytes to send back, the peer closed TLS)."""
        self.incoming.write(data)
        if not self.done:
            try:
                self.obj.do_handshake()
            except ssl.SSLWantReadError:
                return b"", self.outgoing.read(), False
            self.done = True
        plain = bytearray()
        closed = False
        while True:
            try:
                chunk = self.obj.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                closed = True
                break
            if not chunk:
                break
            plain += chunk
        return bytes(plain), self.outgoing.read(), closed

    def encrypt(self, data: bytes) -> bytes:
        self.obj.write(data)
        return self.outgoing.read()


class Listener:
    def __init__(self, transport: str, context: ssl.SSLContext | None) -> None:
        self.transport = transport
        self.context = context  # swapped on reload: new connections take the new one
        self.server: asyncio.AbstractServer | None = None
        self.host = ""
        self.port = 0


class Connection(asyncio.Protocol):
    """One TCP or TLS connection, accepted or made."""

    def __init__(self, owner: ConnectionOwner, transport: str, listener: Listener | None):
        self.owner = owner
        self.transport_name = transport
        self.listener = listener  # None: made by us
        self.id = 0  # registered (0: refused or not yet)
        self.io: asyncio.Transport | None = None
        self.peer: Addr = ("", 0)
        self.local: Addr = ("", 0)
        self.parser = StreamParser(owner.limits.max_message_size)
        self.source: Destination | None = None
        self.ready = False  # TLS: handshake done
        self.closing: str | None = None  # why we close it
        self.last_active = 0.0
        self.partial_since: float | None = None
        self.paused_since: float | None = None
        self.pool_key: tuple[str, str, int] | None = None  # pooled as (transport, host, port)
        self.carried: dict[DestinationKey, None] = {}  # an ordered, bounded set
        self.tls: ServerTls | None = None  # an accepted TLS connection: TLS over memory BIOs

    @property
    def open(self) -> bool:
        return self.ready and self.closing is None and self.io is not None

    # -- asyncio ----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        io = cast(asyncio.Transport, transport)
        self.io = io
        peer = io.get_extra_info("peername")
        local = io.get_extra_info("sockname")
        if peer:
            self.peer = (str(peer[0]), int(peer[1]))
        if local:
            self.local = (str(local[0]), int(local[1]))
        self.owner._made(self)

    def data_received(self, data: bytes) -> None:
        tls = self.tls
        if tls is not None and self.closing is None and self.io is not None:
            try:
                data, out, closed = tls.receive(data)
            except ssl.SSLError as exc:
                self.owner._tls_failed("server", exc)
                self.close("tls")
                return
            if out:
                self.io.write(out)
            if not self.ready and tls.done:
                self.ready = True
                self.last_active = self.owner.now()
            if closed:
                self.close("peer")
            if not data:
                return
        if not self.open:
            return
        try:
            self.owner._received(self, data)
        except Exception as exc:  # a bug must not stop the loop, nor keep the connection
            self.owner.gate.failed("receiving on a stream", exc)
            self.close("malformed")

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._lost(self)
        self.io = None

    def pause_writing(self) -> None:
        self.paused_since = self.owner.now()
        if self.io is not None:
            self.io.pause_reading()  # it does not read: we stop reading it

    def resume_writing(self) -> None:
        self.paused_since = None
        if self.io is not None and self.closing is None:
            self.io.resume_reading()

    # -- ours -------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """Bytes to the peer (through TLS on an accepted TLS connection)."""
        assert self.io is not None
        self.io.write(data if self.tls is None else self.tls.encrypt(data))

    def write(self, data: bytes, key: DestinationKey) -> None:
        io = self.io
        assert io is not None
        self.send(data)
        self.last_active = self.owner.now()
        carried = self.carried
        if key not in carried:
            carried[key] = None
            if len(carried) > MAX_CARRIED:
                del carried[next(iter(carried))]
        if io.get_write_buffer_size() > STALL_FACTOR * self.owner.write_buffer:
            self.close("stalled")

    def close(self, reason: str) -> None:
        if self.closing is not None:
            return
        self.closing = reason
        if self.io is not None:
            if reason in ("stalled", "shutdown"):
                self.io.abort()
            else:
                self.io.close()  # what is buffered (a 400) goes out first
