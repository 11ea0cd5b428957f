"""sipd's transports behind one interface: send to a destination, prepare a request for it.

The transaction layer and the call layer know one `send_bytes(data, destination)` and one
`prepare(request, destination)`; this module maps them onto the transports. A plain
`(host, port)` is UDP from the first UDP listener, passed straight on (the hot path: one type
check), unless its address is of the other family (IPv6 toward an IPv4 first listener, or the
reverse) and a UDP listener of that family exists: then it leaves from that one, whose address
`local_host_for` gives for Via and Contact (docs/ipv6.md). A `Destination` names another UDP
listener or a stream (TCP, TLS), which sends over
the connection it names or the pooled one (stream.py).

`prepare` is where a request we send gets the transport it really takes (RFC 3261 18.1.1):
the builders of requests (calls/, uplinks/, sip/dialog.py) write our address and a UDP Via,
and for any other way out the router sets the top Via's sent-protocol and sent-by port, and a
Contact that names the same host and port as that Via (ours) gets the listener's port and
`;transport=tcp` / `;transport=tls`. A request of more than `MTU_ALLOWANCE` bytes bound for
UDP, from any UDP listener, goes over TCP instead when a TCP listener exists and the peer is
known to take TCP (`tcp_peers`: the routing gateways configured with `transport: tcp`).

Owns: `Transports`.
Must not: parse what arrives (the transports do), decide the destination of a request (the
caller does: calls/, the dialog), or import from sipedge outside sip/ but `typedefs`.
"""

from __future__ import annotations

from collections.abc import Sequence

from sipedge.sip.message import ParseError, Request, parse_name_addr, parse_uri
from sipedge.sip.transport.destination import (
    MTU_ALLOWANCE,
    TCP,
    UDP,
    VIA_TRANSPORT,
    Destination,
    choose_transport,
    transport_of,
)
from sipedge.sip.transport.stream import StreamTransport
from sipedge.sip.transport.udp import UdpTransport
from sipedge.typedefs import Addr

__all__ = ["Transports"]


class Transports:
    """The UDP listeners (the first one is the default way out) and the stream transport."""

    def __init__(self, udp: Sequence[UdpTransport], streams: StreamTransport | None = None):
        if not udp:
            raise ValueError("sipd needs a UDP listener")
        self.udp = list(udp)
        self.primary = self.udp[0]
        for index, listener in enumerate(self.udp):
            listener.listener = index
        # IPv6 (docs/ipv6.md): a plain (host, port) of the other family than the first UDP
        # listener's leaves from the first UDP listener of that family, if there is one
        self._primary_v6 = _is_v6(self.primary.host)
        self._other_family = next(
            (i for i, u in enumerate(self.udp) if _is_v6(u.host) != self._primary_v6), None
        )
        self.streams = streams
        # the port of the first listener of each stream transport (Via sent-by, Contact)
        self.ports: dict[str, int] = {}
        if streams is not None:
            for served in streams.listeners:
                self.ports.setdefault(served.transport, served.port)
        # (address, port) of peers known to take TCP (RFC 3261 18.1.1); set by the daemon
        self.tcp_peers: frozenset[tuple[str, int]] = frozenset()
        self.moved_to_tcp = 0  # requests the MTU rule moved off UDP

    # -- sending ----------------------------------------------------------------------------
    def send_bytes(self, data: bytes, destination: Addr) -> None:
        if type(destination) is tuple:
            if self._other_family is None or (":" in destination[0]) == self._primary_v6:
                self.primary.send_bytes(data, destination)
                return
            destination = self._by_family(destination)
        assert isinstance(destination, Destination)
        if destination.transport == UDP:
            listener = self.udp[destination.listener % len(self.udp)]
            listener.send_bytes(data, (destination[0], destination[1]))
        elif self.streams is not None:
            self.streams.send_bytes(data, destination)

    def port_for(self, destination: Addr) -> int:
        """Our port as the sent-by of a request to `destination`."""
        if type(destination) is not Destination:
            if self._other_family is not None and (":" in destination[0]) != self._primary_v6:
                return self.udp[self._other_family].port
            return self.primary.port
        if destination.transport == UDP:
            return self.udp[destination.listener % len(self.udp)].port
        return self.ports.get(destination.transport, self.primary.port)

    def _by_family(self, destination: Addr) -> Destination:
        """A plain (host, port) of the other family: from that family's first UDP listener."""
        assert self._other_family is not None
        return Destination(destination[0], destination[1], UDP, listener=self._other_family)

    def local_host_for(self, destination: str) -> str:
        """Our address as seen from `destination` (Via, Contact), from a listener of its
        family: an IPv4 address toward an IPv4 peer, an IPv6 one toward an IPv6 peer."""
        listener = self.primary
        if self._other_family is not None and (":" in destination) != self._primary_v6:
            listener = self.udp[self._other_family]
        return listener.local_host_for(destination)

    # -- preparing a request ----------------------------------------------------------------
    def prepare(self, request: Request, destination: Addr) -> tuple[Addr, bytes]:
        """Where `request` goes and its bytes, its top Via (and our Contact) saying how."""
        data = request.to_bytes()
        if type(destination) is tuple:
            if self._other_family is not None and (":" in destination[0]) != self._primary_v6:
                destination = self._by_family(destination)
            elif len(data) <= MTU_ALLOWANCE:
                return destination, data  # the hot path: UDP as built
        if len(data) > MTU_ALLOWANCE and transport_of(destination) == UDP:
            # every UDP listener, not only the first: the peer's (address, port) decides
            takes_tcp = TCP in self.ports and (destination[0], destination[1]) in self.tcp_peers
            if choose_transport(UDP, len(data), takes_tcp) == TCP:
                self.moved_to_tcp += 1
                destination = Destination(destination[0], destination[1], TCP)
        if type(destination) is tuple:
            return destination, data
        assert isinstance(destination, Destination)
        if destination.transport == UDP and destination.listener == 0:
            return destination, data
        if self._stamp(request, destination):
            data = request.to_bytes()
        return destination, data

    def _stamp(self, request: Request, destination: Destination) -> bool:
        try:
            via = request.top_via
        except ParseError:
            return False
        ours = (via.host, via.port)
        transport = destination.transport
        port = self.port_for(destination)
        via.transport = VIA_TRANSPORT[transport]
        via.port = port
        request.replace_top_via(via)
        contacts = request.headers.get_all("Contact")
        if len(contacts) == 1:
            try:
                contact = parse_name_addr(contacts[0])
                uri = parse_uri(contact.uri)
            except ParseError:
                return True
            if (
                uri.scheme == "sip"
                and (uri.host, uri.port) == ours
                and "transport" not in uri.params
            ):
                uri.port = port
                if transport != UDP:
                    uri.params["transport"] = transport
                contact.uri = str(uri)
                request.headers.set("Contact", str(contact))
        return True

    # -- the listeners ----------------------------------------------------------------------
    def describe(self) -> list[str]:
        """Every listener served, as `transport host:port`, for the start-up log."""
        out = [f"udp {_hostport(u.host, u.port)}" for u in self.udp]
        if self.streams is not None:
            out += [f"{s.transport} {_hostport(s.host, s.port)}" for s in self.streams.listeners]
        return out

    def close(self) -> None:
        for listener in self.udp:
            listener.close()
        if self.streams is not None:
            self.streams.close()


def _is_v6(host: str) -> bool:
    return ":" in host


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
