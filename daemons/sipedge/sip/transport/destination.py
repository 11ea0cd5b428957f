"""Where a message goes: an address and the transport that reaches it (RFC 3261 section 18).

A plain `Addr` tuple `(host, port)` means UDP from the first UDP listener: that is the hot
path, and nothing on it builds anything new. Every other way out is a `Destination`, a
`(host, port)` tuple that also says its transport (`udp` from another listener, `tcp`,
`tls`), the connection a message came in on (responses go back over it, RFC 3261 18.2.2) and
where to connect instead once that connection has gone (the Via's `received` address and
sent-by port). Because it *is* an `(host, port)` tuple, everything that stores or compares
addresses (dialogs, transactions, the guard, CDRs) takes it unchanged; it compares and hashes
as its address, so tables keyed by address stay transport-blind. `key` tells transports
apart where that matters (the connection pool, failure reports).

Owns: `Destination`, `destination_for`, `transport_of`, `is_reliable`, the transport names and
default ports, `MTU_ALLOWANCE` and `choose_transport`, the RFC 3261 18.1.1 rule that moves a
large request off UDP.
Must not: open sockets, read the clock, hold state, or import from sipedge outside sip/ but
the leaf `typedefs`.
"""

from __future__ import annotations

from sipedge.typedefs import Addr

__all__ = [
    "DEFAULT_PORTS",
    "MTU_ALLOWANCE",
    "STREAM_TRANSPORTS",
    "TCP",
    "TLS",
    "TRANSPORTS",
    "UDP",
    "VIA_TRANSPORT",
    "Destination",
    "DestinationKey",
    "choose_transport",
    "destination_for",
    "is_reliable",
    "key_of",
    "transport_of",
]

UDP, TCP, TLS = "udp", "tcp", "tls"
TRANSPORTS = (UDP, TCP, TLS)
STREAM_TRANSPORTS = frozenset((TCP, TLS))
DEFAULT_PORTS = {UDP: 5060, TCP: 5060, TLS: 5061}  # RFC 3261 19.1.2
VIA_TRANSPORT = {UDP: "UDP", TCP: "TCP", TLS: "TLS"}  # the Via sent-protocol token
# RFC 3261 18.1.1: a request larger than this (the path MTU being unknown) must not go over UDP.
MTU_ALLOWANCE = 1300

DestinationKey = tuple[str, str, int, int]
"""(transport, host, port, connection id): which connection a message is for (0: pooled)."""


class Destination(tuple[str, int]):
    """`(host, port)` plus the transport that reaches it; see the module docstring.

    `connection` is the id of the connection a message came in on (0: none, so the pooled
    connection to `(transport, host, port)` is used or made); `fallback` is where to connect
    when that connection has closed; `listener` picks the UDP listener a `udp` destination
    is sent from (its index in sip.listen's UDP addresses).
    """

    transport: str
    connection: int
    fallback: Addr | None
    listener: int

    def __new__(
        cls,
        host: str,
        port: int,
        transport: str,
        connection: int = 0,
        fallback: Addr | None = None,
        listener: int = 0,
    ) -> Destination:
        self = super().__new__(cls, (host, port))
        self.transport = transport
        self.connection = connection
        self.fallback = fallback
        self.listener = listener
        return self

    def __getnewargs__(self) -> tuple[str, int, str, int, Addr | None, int]:
        return (self[0], self[1], self.transport, self.connection, self.fallback, self.listener)

    @property
    def key(self) -> DestinationKey:
        return (self.transport, self[0], self[1], self.connection)

    @property
    def reliable(self) -> bool:
        return self.transport in STREAM_TRANSPORTS

    def __repr__(self) -> str:
        via = f" via #{self.connection}" if self.connection else ""
        return f"Destination({self.transport}:{self[0]}:{self[1]}{via})"


def destination_for(transport: str, host: str, port: int) -> Addr:
    """How to address a peer configured with `transport`: UDP stays a plain tuple."""
    if transport == UDP:
        return (host, port)
    return Destination(host, port, transport)


def transport_of(address: Addr) -> str:
    return address.transport if type(address) is Destination else UDP


def is_reliable(address: Addr) -> bool:
    """True for TCP and TLS: no retransmissions (RFC 3261 17.1.1.2, 17.2.1)."""
    return type(address) is Destination and address.transport in STREAM_TRANSPORTS


def key_of(address: Addr) -> DestinationKey:
    if type(address) is Destination:
        return address.key
    return (UDP, address[0], address[1], 0)


def choose_transport(transport: str, size: int, takes_tcp: bool) -> str:
    """RFC 3261 18.1.1: a request of more than MTU_ALLOWANCE bytes bound for UDP goes over
    TCP instead when the peer is known to take TCP (`takes_tcp`, decided by the caller from
    the configuration); otherwise it keeps its transport."""
    if transport == UDP and size > MTU_ALLOWANCE and takes_tcp:
        return TCP
    return transport
