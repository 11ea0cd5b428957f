"""SIP transports: one module per transport, each turning a socket into parsed messages.

`udp` (RFC 3261 section 18, RFC 3581) and `stream` (TCP and TLS, RFC 3261 18.3: `framing`
delimits the messages, `connection` is one connection, `tls` builds the SSL contexts). A
transport is the only place in the SIP stack that touches a socket: it parses what arrives
(`intake`: stamps `received` / `rport` on the top Via of requests, answers
unparseable-but-answerable requests with 400, counts what it drops) and hands every good
message to a `MessageHandler`. `destination` says where a message goes (`Destination`: an
address and its transport); `router` puts the transports behind one `send_bytes` and one
`prepare` (which sets a request's top Via for the transport it takes, RFC 3261 18.1.1).

Dependency direction inside: udp and stream use intake, framing, destination; router uses
them all; nothing here imports router but the daemon.

The public names are re-exported here, so other packages import them from
`sipedge.sip.transport`. Like the rest of sip/, nothing here imports from
sipedge outside sip/ but the leaf `sipedge.typedefs`.
"""

from sipedge.sip.transport.destination import (
    Destination,
    destination_for,
    is_reliable,
    transport_of,
)
from sipedge.sip.transport.intake import MessageHandler, TransportStats
from sipedge.sip.transport.router import Transports
from sipedge.sip.transport.stream import ClientPeer, StreamSettings, StreamTransport
from sipedge.sip.transport.tls import (
    ClientTls,
    ServerTls,
    TlsError,
    client_context,
    server_context,
)
from sipedge.sip.transport.udp import UdpTransport, open_udp

__all__ = [
    "ClientPeer",
    "ClientTls",
    "Destination",
    "MessageHandler",
    "ServerTls",
    "StreamSettings",
    "StreamTransport",
    "TlsError",
    "TransportStats",
    "Transports",
    "UdpTransport",
    "client_context",
    "destination_for",
    "is_reliable",
    "open_udp",
    "server_context",
    "transport_of",
]
