"""Transport selection without sockets: Destination, the router's prepare (top Via, our
Contact, the RFC 3261 18.1.1 MTU rule) and transactions over reliable transports."""

from __future__ import annotations

import copy
import pickle
from typing import Any

from sipedge.sip.message import Request, Response, make_response, parse_message
from sipedge.sip.transaction import State
from sipedge.sip.transport.destination import (
    MTU_ALLOWANCE,
    Destination,
    choose_transport,
    destination_for,
    is_reliable,
    key_of,
    transport_of,
)
from sipedge.sip.transport.router import Transports
from tests.unit.test_transaction import make_layer, request

GW = ("192.0.2.20", 5060)


class FakeUdp:
    def __init__(self, port: int) -> None:
        self.port = port
        self.host = "192.0.2.1"
        self.listener = 0
        self.sent: list[tuple[bytes, Any]] = []

    def send_bytes(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))

    def close(self) -> None:
        pass


class FakeListener:
    def __init__(self, transport: str, port: int) -> None:
        self.transport, self.port, self.host = transport, port, "192.0.2.1"


class FakeStreams:
    def __init__(self) -> None:
        self.listeners = [FakeListener("tcp", 5070), FakeListener("tls", 5061)]
        self.sent: list[tuple[bytes, Any]] = []

    def send_bytes(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))


def router() -> tuple[Transports, FakeUdp, FakeUdp, FakeStreams]:
    first, second, streams = FakeUdp(5060), FakeUdp(5080), FakeStreams()
    return Transports([first, second], streams), first, second, streams  # type: ignore[list-item, arg-type]


def invite(size: int = 0) -> Request:
    text = (
        "INVITE sip:4420001@192.0.2.20:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKroute;rport\r\n"
        "From: <sip:1000@192.0.2.1>;tag=f1\r\n"
        "To: <sip:4420001@192.0.2.20>\r\n"
        "Call-ID: route-1\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:192.0.2.1:5060>\r\n"
        "Max-Forwards: 70\r\n"
        f"X-Pad: {'p' * size}\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    msg = parse_message(text.encode())
    assert isinstance(msg, Request)
    return msg


def test_destination_is_its_address() -> None:
    d = Destination("192.0.2.9", 5060, "tcp", 7, ("192.0.2.9", 5070))
    assert d == ("192.0.2.9", 5060) and hash(d) == hash(("192.0.2.9", 5060))
    host, port = d
    assert (host, port) == ("192.0.2.9", 5060)
    assert d.key == ("tcp", "192.0.2.9", 5060, 7)
    for clone in (copy.copy(d), copy.deepcopy(d), pickle.loads(pickle.dumps(d))):
        assert clone.key == d.key and clone.fallback == d.fallback
    assert destination_for("udp", *GW) == GW and type(destination_for("udp", *GW)) is tuple
    assert transport_of(destination_for("tls", *GW)) == "tls"
    assert is_reliable(destination_for("tcp", *GW)) and not is_reliable(GW)
    assert key_of(GW) == ("udp", *GW, 0)


def test_mtu_rule() -> None:
    assert choose_transport("udp", MTU_ALLOWANCE, True) == "udp"
    assert choose_transport("udp", MTU_ALLOWANCE + 1, True) == "tcp"
    assert choose_transport("udp", MTU_ALLOWANCE + 1, False) == "udp"
    assert choose_transport("tls", 60000, True) == "tls"


def test_udp_requests_go_out_as_built() -> None:
    r, first, _, _ = router()
    msg = invite()
    dest, data = r.prepare(msg, GW)
    assert dest is GW and data == msg.to_bytes()
    r.send_bytes(data, dest)
    assert first.sent == [(data, GW)]


def test_tcp_request_gets_a_tcp_via_and_contact() -> None:
    r, _, _, streams = router()
    dest, data = r.prepare(invite(), destination_for("tcp", *GW))
    text = data.decode()
    assert "Via: SIP/2.0/TCP 192.0.2.1:5070;branch=z9hG4bKroute;rport\r\n" in text
    assert "Contact: <sip:192.0.2.1:5070;transport=tcp>\r\n" in text
    r.send_bytes(data, dest)
    assert streams.sent == [(data, dest)]


def test_tls_request_and_a_contact_that_is_not_ours() -> None:
    r, _, _, _ = router()
    msg = invite()
    msg.headers.set("Contact", "<sip:someone@198.51.100.1:5060>")
    _, data = r.prepare(msg, destination_for("tls", *GW))
    text = data.decode()
    assert "Via: SIP/2.0/TLS 192.0.2.1:5061;" in text
    assert "Contact: <sip:someone@198.51.100.1:5060>\r\n" in text  # untouched


def test_second_udp_listener_sends_and_signs_its_port() -> None:
    r, first, second, _ = router()
    dest = Destination(*GW, "udp", listener=1)
    out, data = r.prepare(invite(), dest)
    assert "Via: SIP/2.0/UDP 192.0.2.1:5080;" in data.decode()
    r.send_bytes(data, out)
    assert second.sent and not first.sent
    assert type(second.sent[0][1]) is tuple


def test_a_large_request_moves_to_tcp_for_a_peer_known_to_take_it() -> None:
    r, _, _, _ = router()
    big = invite(size=MTU_ALLOWANCE)
    dest, data = r.prepare(big, GW)
    assert dest is GW  # an unknown peer: UDP, as built
    r.tcp_peers = frozenset({GW})
    dest, data = r.prepare(invite(size=MTU_ALLOWANCE), GW)
    assert transport_of(dest) == "tcp" and dest == GW
    assert b"Via: SIP/2.0/TCP 192.0.2.1:5070;" in data
    assert r.moved_to_tcp == 1
    small = invite()
    dest, _ = r.prepare(small, GW)
    assert dest is GW  # small: stays on UDP


def test_a_large_request_from_any_udp_listener_moves_to_tcp() -> None:
    """The MTU rule applies to a request bound for the second UDP listener too, and to a
    plain address of the other family (the IPv6 listener's); small ones stay on UDP."""
    r, first, second, streams = router()
    r.tcp_peers = frozenset({GW})
    via_second = Destination(*GW, "udp", listener=1)
    dest, data = r.prepare(invite(size=MTU_ALLOWANCE), via_second)
    assert transport_of(dest) == "tcp" and dest == GW
    assert b"Via: SIP/2.0/TCP 192.0.2.1:5070;" in data
    r.send_bytes(data, dest)
    assert streams.sent and not first.sent and not second.sent
    dest, data = r.prepare(invite(), via_second)
    assert dest == via_second and b"Via: SIP/2.0/UDP 192.0.2.1:5080;" in data
    other = Destination(*("198.51.100.9", 5060), "udp", listener=1)
    dest, _ = r.prepare(invite(size=MTU_ALLOWANCE), other)
    assert dest == other and transport_of(dest) == "udp"  # not known to take TCP
    assert r.moved_to_tcp == 1

    v4, v6 = FakeUdp(5060), FakeUdp(5062)
    v6.host = "2001:db8::1"
    r6 = Transports([v4, v6], FakeStreams())  # type: ignore[list-item, arg-type]
    peer6 = ("2001:db8::20", 5060)
    r6.tcp_peers = frozenset({peer6})
    dest, _ = r6.prepare(invite(size=MTU_ALLOWANCE), peer6)
    assert transport_of(dest) == "tcp" and dest == peer6 and r6.moved_to_tcp == 1
    dest, _ = r6.prepare(invite(), peer6)
    assert transport_of(dest) == "udp" and getattr(dest, "listener", None) == 1


def test_no_tcp_listener_no_move() -> None:
    first = FakeUdp(5060)
    r = Transports([first])  # type: ignore[list-item]
    r.tcp_peers = frozenset({GW})
    dest, _ = r.prepare(invite(size=MTU_ALLOWANCE), GW)
    assert dest is GW


# -- transactions over a reliable transport ------------------------------------------------


def test_no_retransmissions_over_tcp_and_timer_b_still_runs() -> None:
    clock, rec, layer = make_layer()
    dest = destination_for("tcp", *GW)
    timeouts: list[Any] = []
    tx = layer.start_client(request("INVITE"), dest, lambda t, r: None, timeouts.append)
    clock.advance(10)
    assert len(rec.sent) == 1
    clock.advance(layer.schedule.timeout)
    assert timeouts == [tx] and tx.failure is None


def test_transport_failure_fails_the_transaction_at_once() -> None:
    _clock, _rec, layer = make_layer()
    dest = destination_for("tls", *GW)
    timeouts: list[Any] = []
    tx = layer.start_client(request("INVITE"), dest, lambda t, r: None, timeouts.append)
    other = layer.start_client(
        request("OPTIONS", branch="z9hG4bKother"), GW, lambda t, r: None, timeouts.append
    )
    layer.transport_failed(("tls", *GW, 0), "tls-verify")
    assert timeouts == [tx] and tx.failure == "tls-verify"
    assert tx.state is State.TERMINATED and other.state is State.TRYING
    assert layer.streamed == {} and layer.transport_failures == 1
    layer.transport_failed(("tls", *GW, 0), "again")  # nothing left to fail
    assert timeouts == [tx]


def test_a_final_response_keeps_a_transaction_from_failing() -> None:
    _clock, _rec, layer = make_layer()
    dest = destination_for("tcp", *GW)
    finals: list[int] = []
    timeouts: list[Any] = []
    req = request("OPTIONS")
    layer.start_client(req, dest, lambda t, r: finals.append(r.status), timeouts.append)
    layer.receive(make_response(req, 200, to_tag="t"), GW)
    layer.transport_failed(("tcp", *GW, 0), "connection-closed")
    assert finals == [200] and timeouts == []


def test_server_finals_are_not_retransmitted_over_tcp() -> None:
    clock, rec, layer = make_layer()
    source = Destination("127.0.0.1", 5070, "tcp", 3)
    layer.receive(request("INVITE"), source)
    (tx,) = rec.requests
    response: Response = make_response(tx.request, 486, to_tag="x")
    tx.respond(response)
    sent = len(rec.sent)
    clock.advance(10)
    assert len(rec.sent) == sent
    assert rec.sent[-1][2] is source  # back over the connection it came on


def test_send_request_prepares() -> None:
    _clock, rec, layer = make_layer()
    seen: list[Any] = []

    def prepare(req: Request, dest: Any) -> tuple[Any, bytes]:
        seen.append(dest)
        return dest, b"prepared"

    layer.prepare = prepare
    assert layer.send_request(request("ACK"), GW) == b"prepared"
    assert rec.sent[-1][1:] == (b"prepared", GW) and seen == [GW]
