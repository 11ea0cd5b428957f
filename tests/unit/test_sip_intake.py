"""The receive path of the SIP stack: framing refusals, limits, drops, and bounded work.

Datagrams go into `UdpTransport.datagram_received` (no socket: a fake asyncio transport records
what goes out) and on to a `TransactionLayer` on a fake clock.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from sipedge.sip.limits import SipLimits
from sipedge.sip.message import Request, Response, parse_message
from sipedge.sip.transaction import ServerTransaction, TransactionLayer
from sipedge.sip.transport import intake
from sipedge.sip.transport.udp import UdpTransport
from tests.unit.test_transaction import GAPS, FakeClock, Recorder

PEER = ("192.0.2.10", 5060)


class FakeDatagram:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))


def make_stack(limits: SipLimits | None = None) -> tuple[UdpTransport, FakeDatagram, Recorder]:
    clock = FakeClock()
    tu = Recorder(clock)
    wire = FakeDatagram()
    layer_box: list[TransactionLayer] = []
    transport = UdpTransport(lambda msg, src, t: layer_box[0].receive(msg, src), limits=limits)
    transport._transport = wire  # type: ignore[assignment]
    layer = TransactionLayer(clock, GAPS, transport.send_bytes, tu, limits)
    layer_box.append(layer)
    return transport, wire, tu


def options(extra: str = "", uri: str = "sip:alice@192.0.2.1", body: bytes = b"") -> bytes:
    return (
        f"OPTIONS {uri} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKintake\r\n"
        "From: <sip:bob@192.0.2.10>;tag=f1\r\n"
        "To: <sip:alice@192.0.2.1>\r\n"
        "Call-ID: intake-1\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Max-Forwards: 70\r\n"
        f"{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def answers(wire: FakeDatagram) -> list[Response]:
    out = []
    for data, _ in wire.sent:
        msg = parse_message(data)  # every response we send parses with our own parser
        assert isinstance(msg, Response)
        out.append(msg)
    return out


@pytest.mark.parametrize(
    ("data", "status", "reason"),
    [
        (options().replace(b"Length: 0", b"Length: " + b"7" * 5000), 400, "Bad Content-Length"),
        (options("Content-Length: 0\r\n"), 400, "Multiple Content-Length headers"),
        (options().replace(b"SIP/2.0\r\nVia", b"SIP/3.0\r\nVia"), 505, "Version Not Supported"),
        (options(uri="<sip:alice@192.0.2.1>"), 400, "Request-URI in <>"),
        (options(uri="sip:alice@192.0.2.1; lr"), 400, "LWS in Request-URI"),
        (options("X-Pad: " + "a" * 17000 + "\r\n"), 513, "Message Too Large"),
    ],
)
def test_framing_refusals(data: bytes, status: int, reason: str) -> None:
    transport, wire, tu = make_stack()
    transport.datagram_received(data, PEER)
    (answer,) = answers(wire)
    assert (answer.status, answer.reason) == (status, reason)
    assert not tu.requests
    assert transport.gate.refused[status] == 1


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x16\x03\x01garbage", "unparseable"),
        (b"hello world\r\n\r\n", "unparseable"),
        (options().replace(b"Via: SIP/2.0/UDP 192.0.2.10:5060;", b"Via: x;"), "unanswerable"),
        (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n" + b"X: " * 9000, "too_large"),
        (options().replace(b"OPTIONS", b"ACK").replace(b"Length: 0", b"Length: 9"), "invalid_ack"),
    ],
)
def test_drops_are_counted_and_silent(data: bytes, reason: str) -> None:
    transport, wire, _ = make_stack()
    transport.datagram_received(data, PEER)
    assert wire.sent == []
    assert transport.gate.dropped[reason] == 1


def test_method_labels_are_a_closed_set() -> None:
    transport, _, _ = make_stack()
    for method in ("OPTIONS", "FOO", "BAR", "INVITE"):
        transport.datagram_received(options().replace(b"OPTIONS", method.encode()), PEER)
    assert transport.stats.by_method_in == {"OPTIONS": 1, "other": 2, "INVITE": 1}


def test_nothing_raises_out_of_the_receive_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(msg: Request | Response, source: Any, transport: Any) -> None:
        raise RuntimeError("bug")

    transport, _, _ = make_stack()
    transport.on_message = broken
    transport.datagram_received(options(), PEER)
    assert transport.gate.dropped["internal_error"] == 1

    def stamp(request: Request, source: Any) -> None:
        raise ValueError("bad via")

    monkeypatch.setattr(intake, "stamp_via", stamp)
    transport2, wire, tu = make_stack()
    transport2.datagram_received(options(), PEER)
    assert not tu.requests and wire.sent == []
    assert transport2.gate.dropped["unanswerable"] == 1


def test_a_valid_request_reaches_the_tu_with_received_stamped() -> None:
    transport, _, tu = make_stack()
    transport.datagram_received(options(), ("198.51.100.7", 5999))
    (tx,) = tu.requests
    assert isinstance(tx, ServerTransaction)
    assert tx.request.top_via.params["received"] == "198.51.100.7"


# Datagrams built to make a parser go quadratic; each is 16 KB (sip_max_message_size).
_HEAD = options().split(b"Content-Length")[0]
WORST = {
    "commas in Via": _HEAD.replace(b"z9hG4bKintake", b"z9hG4bKintake" + b"," * 16000),
    "commas in Contact": _HEAD + b"Contact: " + b"<sip:a@b>," * 1600 + b"\r\n",
    "semicolons in Via": _HEAD.replace(b"z9hG4bKintake", b"z9hG4bKintake" + b";a" * 8000),
    "quotes in To": _HEAD.replace(b"To: <", b'To: "' + b'\\"' * 8000 + b'" <'),
    "semicolons in To": _HEAD.replace(
        b"To: <sip:alice@192.0.2.1>", b"To: <sip:a@b>" + b";a" * 8000
    ),
    "semicolons in Contact": _HEAD + b"Contact: <sip:a@b>" + b";a=b" * 4000 + b"\r\n",
    "semicolons in URI": _HEAD.replace(b"sip:alice@192.0.2.1 ", b"sip:a@b" + b";a" * 500 + b" "),
    "folded lines": _HEAD + b"Subject: x\r\n" + b" y\r\n" * 4000,
    "many headers": _HEAD + b"X-A: b\r\n" * 2000,
    "many Contact lines": _HEAD + b"Contact: <sip:a@b>,<sip:c@d>\r\n" * 500,
    "angle brackets": _HEAD + b"Contact: " + b"<" * 16000 + b"\r\n",
}


@pytest.mark.parametrize("name", sorted(WORST))
def test_one_datagram_is_bounded_work(name: str) -> None:
    data = WORST[name][:16300] + b"\r\n\r\n"
    transport, _, _ = make_stack()
    transport.datagram_received(data, PEER)  # warm-up (header-name cache)
    # this thread's CPU time, not the wall clock: a guard against quadratic work (hundreds of
    # ms), which other processes on the machine (pytest-xdist workers, Molecule) do not move
    start = time.thread_time()
    for _ in range(5):
        transport.datagram_received(data, PEER)
    per_datagram = (time.thread_time() - start) / 5
    assert per_datagram < 0.02, f"{name}: {per_datagram * 1000:.1f} ms"
