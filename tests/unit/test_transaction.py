"""Transaction state machines driven by a fake clock: exact retransmission times, no sockets."""

from __future__ import annotations

import heapq
import itertools
import sys
import weakref
from collections.abc import Callable

import pytest

from sipedge.sip.limits import SipLimits
from sipedge.sip.message import Request, Response, make_response, parse_message
from sipedge.sip.timers import RetransmitSchedule
from sipedge.sip.transaction import (
    ClientTransaction,
    InviteServerTransaction,
    ServerTransaction,
    State,
    TransactionLayer,
)
from sipedge.sip.transport.destination import Destination

GAPS = (0.5, 1.0, 2.0, 4.0, 4.0)
PEER = ("127.0.0.1", 5070)


class FakeClock:
    """A Scheduler whose time moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0
        self._queue: list[tuple[float, int, FakeHandle]] = []
        self._seq = itertools.count()

    def call_later(self, delay: float, callback: Callable[[], object]) -> FakeHandle:
        handle = FakeHandle(callback)
        heapq.heappush(self._queue, (self.now + delay, next(self._seq), handle))
        return handle

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while self._queue and self._queue[0][0] <= end:
            when, _, handle = heapq.heappop(self._queue)
            self.now = when
            if not handle.cancelled:
                handle.callback()
        self.now = end


class FakeHandle:
    def __init__(self, callback: Callable[[], object]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.callback = _cancelled  # as asyncio's handles do: let go of what it holds


def _cancelled() -> None:
    return None


class Recorder:
    """TransactionUser + wire: records what goes out and what comes up."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.sent: list[tuple[float, bytes, tuple[str, int]]] = []
        self.requests: list[ServerTransaction] = []
        self.cancels: list[InviteServerTransaction] = []
        self.acks: list[Request] = []
        self.stray: list[Response] = []

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((self.clock.now, data, addr))

    def on_request(self, tx: ServerTransaction) -> None:
        self.requests.append(tx)

    def on_cancel(self, invite_tx: InviteServerTransaction, cancel: Request) -> None:
        self.cancels.append(invite_tx)

    def on_ack(self, ack: Request, source: tuple[str, int]) -> None:
        self.acks.append(ack)

    def on_stray_response(self, response: Response, source: tuple[str, int]) -> None:
        self.stray.append(response)

    def sent_first_lines(self) -> list[str]:
        return [data.split(b"\r\n", 1)[0].decode() for _, data, _ in self.sent]


def make_layer() -> tuple[FakeClock, Recorder, TransactionLayer]:
    clock = FakeClock()
    rec = Recorder(clock)
    layer = TransactionLayer(clock, GAPS, rec.send, rec)
    return clock, rec, layer


def request(method: str, branch: str = "z9hG4bKabc", cseq: int = 1, to_tag: str = "") -> Request:
    to = "<sip:200@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    text = (
        f"{method} sip:200@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n"
        "From: <sip:100@127.0.0.1>;tag=from1\r\n"
        f"To: {to}\r\n"
        "Call-ID: call-1@test\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    msg = parse_message(text.encode())
    assert isinstance(msg, Request)
    return msg


def test_schedule_gaps_and_timeout() -> None:
    s = RetransmitSchedule(GAPS)
    assert [s.gap(i) for i in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, None]
    assert s.timeout == 32.0  # 64*T1 floor
    assert RetransmitSchedule([20.0, 20.0]).timeout == 40.0
    with pytest.raises(ValueError):
        RetransmitSchedule([])


def test_invite_client_retransmits_at_configured_gaps_then_times_out() -> None:
    clock, rec, layer = make_layer()
    timeouts: list[ClientTransaction] = []
    layer.start_client(request("INVITE"), PEER, lambda tx, r: None, timeouts.append)
    clock.advance(60)
    times = [t for t, _, _ in rec.sent]
    # first send at 0, then after each gap of the list, then silence
    assert times == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5]
    assert len(timeouts) == 1 and clock.now == 60
    assert not layer.client


def test_invite_client_stops_retransmitting_on_provisional_and_acks_failure() -> None:
    clock, rec, layer = make_layer()
    got: list[int] = []
    invite = request("INVITE")
    layer.start_client(invite, PEER, lambda tx, r: got.append(r.status), lambda tx: None)
    clock.advance(0.6)  # one retransmission
    layer.receive(make_response(invite, 100), PEER)
    clock.advance(10)
    assert len(rec.sent) == 2
    failure = make_response(invite, 503, to_tag="gw")
    layer.receive(failure, PEER)
    layer.receive(failure, PEER)  # retransmitted final: ACKed again, reported once
    assert got == [100, 503]
    acks = [line for line in rec.sent_first_lines() if line.startswith("ACK")]
    assert len(acks) == 2
    ack = parse_message(rec.sent[-1][1])
    assert isinstance(ack, Request)
    assert ack.branch == invite.branch and ack.to_tag == "gw" and ack.cseq == (1, "ACK")


def test_invite_client_reports_every_2xx_for_reacking() -> None:
    _clock, rec, layer = make_layer()
    got: list[int] = []
    invite = request("INVITE")
    layer.start_client(invite, PEER, lambda tx, r: got.append(r.status), lambda tx: None)
    ok = make_response(invite, 200, to_tag="gw")
    layer.receive(ok, PEER)
    layer.receive(ok, PEER)
    assert got == [200, 200]
    assert rec.sent_first_lines() == ["INVITE sip:200@127.0.0.1 SIP/2.0"]  # TU sends the ACK


def test_a_client_transaction_lets_go_of_its_request_once_its_final_is_in() -> None:
    """It lingers for Timer K/M/D with nothing to resend: its request and bytes go, and a
    retransmitted non-2xx still gets the very same ACK."""
    clock, rec, layer = make_layer()
    seen: list[ClientTransaction] = []

    def report(tx: ClientTransaction, response: Response) -> None:
        assert tx.request is not None  # the transaction user still sees it in the callback
        seen.append(tx)

    for method, status in (("INVITE", 200), ("INVITE", 486), ("BYE", 200)):
        sent = request(method, branch=f"z9hG4bK{method}{status}")
        tx = layer.start_client(sent, PEER, report, lambda tx: None)
        layer.receive(make_response(sent, 180 if method == "INVITE" else 100), PEER)
        assert tx.request is sent
        layer.receive(make_response(sent, status, to_tag="gw"), PEER)
        assert tx.request is None and tx.method == method
        assert tx in layer.client.values()  # still matching retransmissions
    failed = next(tx for tx in layer.client.values() if tx.last_status == 486)
    acks = [data for _, data, _ in rec.sent if data.startswith(b"ACK ")]
    layer.receive(
        make_response(request("INVITE", branch="z9hG4bKINVITE486"), 486, to_tag="gw"), PEER
    )
    again = [data for _, data, _ in rec.sent if data.startswith(b"ACK ")]
    assert len(acks) == 1 and again == acks * 2 and failed.state is State.COMPLETED
    # A failure after the 2xx (another branch's, RFC 6026 8.4): not ACKed, not reported.
    answered = next(tx for tx in layer.client.values() if tx.last_status == 200)
    reported = len(seen)
    invite = request("INVITE", branch="z9hG4bKINVITE200")
    layer.receive(make_response(invite, 486, to_tag="other"), PEER)
    assert len(rec.sent) == len(again) + 3 and len(seen) == reported  # 3 INVITE/BYE sent
    assert answered.state is State.ACCEPTED
    clock.advance(40)
    assert not layer.client and len({id(tx) for tx in seen}) == 3


def test_non_invite_client_retransmits_until_final() -> None:
    clock, rec, layer = make_layer()
    got: list[int] = []
    bye = request("BYE", to_tag="t")
    layer.start_client(bye, PEER, lambda tx, r: got.append(r.status), lambda tx: None)
    clock.advance(1.0)
    layer.receive(make_response(bye, 100), PEER)  # provisional does not stop non-INVITE resends
    clock.advance(3.0)
    assert [t for t, _, _ in rec.sent] == [0.0, 0.5, 1.5, 3.5]
    layer.receive(make_response(bye, 200), PEER)
    clock.advance(30)
    assert got == [100, 200] and len(rec.sent) == 4


def test_invite_server_sends_100_and_repeats_last_response() -> None:
    _clock, rec, layer = make_layer()
    invite = request("INVITE")
    layer.receive(invite, PEER)
    assert rec.sent_first_lines() == ["SIP/2.0 100 Trying"]
    tx = rec.requests[0]
    tx.respond(make_response(invite, 180, to_tag="me"))
    layer.receive(invite, PEER)  # retransmitted INVITE
    assert rec.sent_first_lines()[-1] == "SIP/2.0 180 Ringing"
    assert len(rec.requests) == 1


def test_invite_server_retransmits_2xx_until_ack() -> None:
    clock, rec, layer = make_layer()
    invite = request("INVITE")
    layer.receive(invite, PEER)
    tx = rec.requests[0]
    assert isinstance(tx, InviteServerTransaction)
    tx.respond(make_response(invite, 200, to_tag="me"))
    clock.advance(3.6)
    oks = [t for t, data, _ in rec.sent if data.startswith(b"SIP/2.0 200")]
    assert oks == [0.0, 0.5, 1.5, 3.5]
    layer.receive(request("ACK", branch="z9hG4bKother", to_tag="me"), PEER)
    clock.advance(40)
    assert len([1 for _, d, _ in rec.sent if d.startswith(b"SIP/2.0 200")]) == 4
    assert len(rec.acks) == 1 and tx.state is State.TERMINATED


def test_invite_server_failure_absorbs_ack() -> None:
    clock, rec, layer = make_layer()
    invite = request("INVITE")
    layer.receive(invite, PEER)
    tx = rec.requests[0]
    tx.respond(make_response(invite, 486, to_tag="me"))
    clock.advance(0.7)  # one retransmission of 486
    layer.receive(request("ACK", to_tag="me"), PEER)  # same branch: hop-by-hop ACK
    clock.advance(10)
    busy = [t for t, d, _ in rec.sent if d.startswith(b"SIP/2.0 486")]
    assert busy == [0.0, 0.5]
    assert rec.acks == []  # not passed up: it belongs to the transaction


def test_invite_server_ack_timeout_reports() -> None:
    clock, rec, layer = make_layer()
    invite = request("INVITE")
    layer.receive(invite, PEER)
    tx = rec.requests[0]
    assert isinstance(tx, InviteServerTransaction)
    expired: list[InviteServerTransaction] = []
    tx.on_ack_timeout = expired.append
    tx.respond(make_response(invite, 200, to_tag="me"))
    clock.advance(33)
    assert expired == [tx]


def test_cancel_matches_invite_or_gets_481() -> None:
    _clock, rec, layer = make_layer()
    layer.receive(request("CANCEL", branch="z9hG4bKnone"), PEER)
    assert rec.sent_first_lines() == ["SIP/2.0 481 Call/Transaction Does Not Exist"]
    invite = request("INVITE")
    layer.receive(invite, PEER)
    layer.receive(request("CANCEL"), PEER)
    assert rec.sent_first_lines()[-1] == "SIP/2.0 200 OK"
    assert rec.cancels == [rec.requests[0]]


def test_non_invite_server_repeats_final() -> None:
    clock, rec, layer = make_layer()
    options = request("OPTIONS")
    layer.receive(options, PEER)
    rec.requests[0].respond_status(200)
    layer.receive(options, PEER)
    assert rec.sent_first_lines() == ["SIP/2.0 200 OK", "SIP/2.0 200 OK"]
    assert len(rec.requests) == 1
    clock.advance(40)
    assert not layer.server


def test_stray_response_goes_to_tu() -> None:
    _clock, rec, layer = make_layer()
    layer.receive(make_response(request("INVITE", branch="z9hG4bKgone"), 200, to_tag="x"), PEER)
    assert [r.status for r in rec.stray] == [200]


def test_a_stateless_final_is_sent_once_and_nothing_is_kept() -> None:
    clock, rec, layer = make_layer()
    register = request("REGISTER")
    layer.receive(register, PEER)
    tx = rec.requests[0]
    tx.respond_stateless(make_response(register, 401, to_tag="me"))
    assert rec.sent_first_lines() == ["SIP/2.0 401 Unauthorized"]
    assert layer.server == {}
    assert layer.stateless == 1
    clock.advance(40)  # no retransmission, no timer left behind
    assert rec.sent_first_lines() == ["SIP/2.0 401 Unauthorized"]
    tx.respond_stateless(make_response(register, 403))  # a second final is refused
    assert len(rec.sent) == 1
    layer.receive(register, PEER)  # the same request again is a new request
    assert len(rec.requests) == 2


# -- RFC 3261 17.2.3 matching, bounded tables, a final for every stored request --------------


def _variant(req: Request, via: str | None = None, method: str | None = None) -> Request:
    """A copy of `req` with another top Via and/or method (CSeq follows the method)."""
    text = req.to_bytes().decode()
    if via is not None:
        text = text.replace(req.headers.get("Via") or "", via, 1)
    if method is not None:
        text = text.replace(f"{req.method} sip:", f"{method} sip:", 1)
        text = text.replace(f"CSeq: {req.cseq[0]} {req.method}", f"CSeq: {req.cseq[0]} {method}")
    msg = parse_message(text.encode())
    assert isinstance(msg, Request)
    return msg


class Raising(Recorder):
    def on_request(self, tx: ServerTransaction) -> None:
        raise ValueError("boom from a malformed To tag")


def test_tu_that_raises_gets_a_500_and_leaves_nothing() -> None:
    clock = FakeClock()
    rec = Raising(clock)
    layer = TransactionLayer(clock, GAPS, rec.send, rec)
    layer.receive(request("INVITE"), PEER)
    layer.receive(request("OPTIONS", branch="z9hG4bKo"), PEER)
    assert rec.sent_first_lines() == [
        "SIP/2.0 500 Server Internal Error",
        "SIP/2.0 500 Server Internal Error",
    ]  # no 100 before the 500, one response each
    assert not layer.server and layer.tu_errors == 2
    clock.advance(60)
    assert len(rec.sent) == 2  # stateless: never retransmitted


def test_invite_100_is_deferred_until_the_tu_returns_without_a_final() -> None:
    clock, rec, layer = make_layer()
    layer.receive(request("INVITE"), PEER)
    assert rec.sent_first_lines() == ["SIP/2.0 100 Trying"]

    class Refusing(Recorder):
        def on_request(self, tx: ServerTransaction) -> None:
            tx.respond_stateless(make_response(tx.request, 403))

    rec2 = Refusing(clock)
    layer2 = TransactionLayer(clock, GAPS, rec2.send, rec2)
    layer2.receive(request("INVITE"), PEER)
    assert rec2.sent_first_lines() == ["SIP/2.0 403 Forbidden"]  # alone: no 100 first
    assert not layer2.server


def test_unanswered_requests_get_a_500_from_the_guard() -> None:
    clock, rec, layer = make_layer()
    layer.receive(request("OPTIONS"), PEER)
    layer.receive(request("INVITE", branch="z9hG4bKi"), PEER)
    clock.advance(40)
    assert rec.sent_first_lines() == ["SIP/2.0 100 Trying", "SIP/2.0 500 Server Internal Error"]
    assert list(layer.server) == [("z9hG4bKi", "127.0.0.1:5070", "INVITE")]
    clock.advance(3600)
    assert not layer.server and layer.unanswered == 2


def test_same_branch_other_sent_by_or_method_is_another_transaction() -> None:
    _clock, rec, layer = make_layer()
    first = request("OPTIONS")
    layer.receive(first, PEER)
    layer.receive(_variant(first, via="SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKabc"), PEER)
    layer.receive(_variant(first, method="INFO"), PEER)
    layer.receive(first, PEER)  # a retransmission: matched, not a new request
    assert len(rec.requests) == 3 and len(layer.server) == 3


def test_cancel_must_come_from_the_invite_sender() -> None:
    _clock, rec, layer = make_layer()
    invite = request("INVITE")
    layer.receive(invite, PEER)
    other_via = "SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKabc"
    layer.receive(_variant(invite, via=other_via, method="CANCEL"), PEER)
    layer.receive(_variant(invite, method="CANCEL"), ("192.0.2.66", 5070))
    assert rec.cancels == []
    assert rec.sent_first_lines()[1:] == ["SIP/2.0 481 Call/Transaction Does Not Exist"] * 2
    layer.receive(_variant(invite, method="CANCEL"), PEER)
    assert rec.cancels == [rec.requests[0]]


def test_ack_to_a_non_2xx_of_an_rfc2543_invite_matches_it() -> None:
    _clock, rec, layer = make_layer()
    invite = request("INVITE", branch="")  # no magic cookie, not even a branch
    invite.headers.replace_first("Via", "SIP/2.0/UDP 127.0.0.1:5070")
    layer.receive(invite, PEER)
    rec.requests[0].respond_status(486, to_tag="t1")
    ack = _variant(invite, method="ACK")
    layer.receive(ack, PEER)
    assert rec.acks == []  # absorbed by the transaction: hop by hop
    assert rec.requests[0].state is State.CONFIRMED


def test_transaction_cap_answers_503_with_retry_after_statelessly() -> None:
    _clock, rec, layer = make_layer()
    layer.configure(SipLimits(max_transactions=2, retry_after=7))
    for i in range(3):
        layer.receive(request("INVITE", branch=f"z9hG4bK{i}", cseq=i + 1), PEER)
    assert len(layer.server) == 2 and layer.gate.refused[503] == 1
    last = parse_message(rec.sent[-1][1])
    assert isinstance(last, Response) and last.status == 503
    assert last.headers.get("Retry-After") == "7"


@pytest.mark.parametrize(
    ("method", "change", "status"),
    [
        ("OPTIONS", ("Max-Forwards: 70", "Require: 100rel, foo"), 420),
        ("INVITE", ("Max-Forwards: 70", "Require: 100rel"), 420),
        ("INVITE", ("Max-Forwards: 70", "Require: timer"), None),
        ("INVITE", ("Max-Forwards: 70", "Max-Forwards: 0"), 483),
        ("BYE", ("Max-Forwards: 70", "Max-Forwards: 0"), 483),
        ("OPTIONS", ("Max-Forwards: 70", "Max-Forwards: 0"), None),  # answered here: 200
        ("OPTIONS", ("Max-Forwards: 70", "Max-Forwards: 300"), 400),
        ("OPTIONS", ("sip:200@127.0.0.1 SIP", "mailto:a@b SIP"), 416),
        ("OPTIONS", ("sip:200@127.0.0.1 SIP", f"sip:{'2' * 2000}@h SIP"), 414),
        ("OPTIONS", ("Max-Forwards: 70", "Max-Forwards: 70" + "\r\nX-Y: y" * 200), 513),
        ("OPTIONS", ("To: <sip:200@127.0.0.1>", 'To: "Mr <sip:200@127.0.0.1>'), 400),
        ("OPTIONS", ("To: <sip:200@127.0.0.1>", "To: < sip:200@127.0.0.1 >"), 400),
        ("OPTIONS", ("To: <sip:200@127.0.0.1>", "To: Bell, A <sip:200@127.0.0.1>"), 400),
        ("OPTIONS", ("sip:200@127.0.0.1 SIP", "sip:200@h?Route=x SIP"), 400),
        ("INVITE", ("Content-Length: 0\r\n\r\n", "Content-Type: text/x\r\n\r\nabc"), 415),
    ],
)
def test_layer_validation(method: str, change: tuple[str, str], status: int | None) -> None:
    _clock, rec, layer = make_layer()
    layer.configure(SipLimits(), frozenset({"timer"}))
    data = request(method).to_bytes().decode().replace(*change)
    msg = parse_message(data.encode())
    assert isinstance(msg, Request)
    layer.receive(msg, PEER)
    if status is None:
        assert rec.requests and not layer.gate.rlog._classes
        return
    assert not rec.requests and not layer.server
    (answer,) = [parse_message(d) for _, d, _ in rec.sent]
    assert isinstance(answer, Response) and answer.status == status
    if status == 420:
        assert answer.headers.get("Unsupported") == change[1].split(": ", 1)[1]


def test_response_with_two_vias_is_dropped() -> None:
    _clock, rec, layer = make_layer()
    invite = request("INVITE")
    layer.start_client(invite, PEER, lambda tx, r: rec.stray.append(r), lambda tx: None)
    response = make_response(invite, 200)
    response.headers.add("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx")
    layer.receive(response, PEER)
    assert rec.stray == [] and layer.gate.dropped["response_via"] == 1


class Owner:
    """Stands for a call: what a transaction's callbacks would keep alive."""

    def __init__(self) -> None:
        self.got: list[object] = []

    def on_response(self, tx: ClientTransaction, response: Response) -> None:
        self.got.append(response.status)

    def on_timeout(self, tx: ClientTransaction) -> None:
        self.got.append("timeout")

    def on_ack_timeout(self, tx: InviteServerTransaction) -> None:
        self.got.append("no ACK")


def test_an_ended_transaction_lets_go_of_its_owner() -> None:
    """No cycle owner -> transaction -> callback -> owner survives the end of a transaction
    (tests/unit/test_call_garbage.py); the last report still arrives."""
    clock, _rec, layer = make_layer()
    timed_out, answered, unacked = Owner(), Owner(), Owner()
    owners = [weakref.ref(o) for o in (timed_out, answered, unacked)]
    # kept, as an attempt keeps its INVITE transaction: only what they hold may go
    options = request("OPTIONS")
    kept = [layer.start_client(options, PEER, timed_out.on_response, timed_out.on_timeout)]
    bye = request("BYE", branch="z9hG4bKbye", to_tag="t")
    kept.append(layer.start_client(bye, PEER, answered.on_response, answered.on_timeout))
    layer.receive(make_response(bye, 200), PEER)
    invite = request("INVITE", branch="z9hG4bKinv")
    layer.receive(invite, PEER)
    server = layer.server[next(iter(layer.server))]
    assert isinstance(server, InviteServerTransaction)
    server.on_ack_timeout = unacked.on_ack_timeout
    server.respond(make_response(invite, 200, to_tag="me"))
    clock.advance(100)  # Timer F (timeout), K (after the 200), H (no ACK for the 200)
    assert (timed_out.got, answered.got, unacked.got) == (["timeout"], [200], ["no ACK"])
    assert not layer.client and not layer.server and server.on_ack_timeout is None
    assert all(tx.state is State.TERMINATED for tx in kept)
    del timed_out, answered, unacked
    assert [o() for o in owners] == [None, None, None]  # freed by reference counting


def test_compact_rebuilds_the_tables_at_their_present_size_in_place() -> None:
    """After a peak the tables keep their peak's size (a dict never shrinks on delete); compact
    rebuilds them for what is held, the same dict objects, the same transactions still matched."""
    _clock, rec, layer = make_layer()
    server, client = layer.server, layer.client
    for n in range(3_000):
        layer.receive(request("OPTIONS", branch=f"z9hG4bKs{n}"), PEER)
        layer.start_client(request("OPTIONS", branch=f"z9hG4bKc{n}"), PEER, _none, _none)
    for tx in rec.requests[:-2]:
        tx.terminate()
    for key in list(client)[:-2]:
        client[key].terminate()
    peak = sys.getsizeof(server), sys.getsizeof(client)
    kept = dict(server), dict(client)
    layer.compact()
    assert layer.server is server and layer.client is client
    assert (dict(server), dict(client)) == kept and len(server) == len(client) == 2
    assert sys.getsizeof(server) < peak[0] // 100 and sys.getsizeof(client) < peak[1] // 100
    # still matched: a retransmitted request gets its final again, a response reaches its client
    last = rec.requests[-1]
    last.respond(make_response(last.request, 200))
    rec.sent.clear()
    layer.receive(request("OPTIONS", branch="z9hG4bKs2999"), PEER)
    assert rec.sent_first_lines() == ["SIP/2.0 200 OK"]


def _none(*args: object) -> None:
    return None


def test_a_destination_keeps_its_transport_through_the_layer() -> None:
    # setup.py compiles this layer with `Addr` as Any so that an address stays the object it
    # was: a Destination unboxed to a plain (host, port) would go out over UDP.
    _clock, rec, layer = make_layer()
    over_tls = Destination("127.0.0.1", 5061, "tls", connection=7)
    layer.receive(request("OPTIONS"), over_tls)
    rec.requests[0].respond(make_response(rec.requests[0].request, 200, to_tag="me"))
    layer.start_client(request("OPTIONS", branch="z9hG4bKout"), over_tls, _none, _none)
    assert len(rec.sent) == 2  # the 200, then the request
    for _, _, sent_to in rec.sent:
        assert sent_to is over_tls
