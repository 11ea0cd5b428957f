"""SIP transports: one module per transport, each turning a socket into parsed messages.

`udp` (RFC 3261 section 18, RFC 3581) is the only one today. A transport is the only place in
the SIP stack that touches a socket: it parses what arrives, stamps `received` / `rport` on the
top Via of requests, answers unparseable-but-answerable requests with 400 and counts what it
drops, and hands every good message to a `MessageHandler`.

The public names are re-exported here, so other packages import them from
`sipedge.sip.transport`. Like the rest of sip/, nothing here imports from
sipedge outside sip/ but the leaf `sipedge.typedefs`.
"""

from sipedge.sip.transport.udp import MessageHandler, TransportStats, UdpTransport, open_udp

__all__ = ["MessageHandler", "TransportStats", "UdpTransport", "open_udp"]
