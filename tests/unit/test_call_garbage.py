"""Finished calls leave no reference cycle behind: reference counting alone frees them.

sipd's loop stops for every collection of the garbage collector, and a full one walks every
live object (issue 20: 476 ms with the objects of 5,000 calls). That cost is only worth paying
for cycles; so a call, its attempts, dialogs and transactions must not form one that outlives
the call, and then the collector can run rarely (`sipedge.gcwatch.tune`).

Complete calls run through an in-process sipd (transport -> transaction layer -> B2BUA, built
as in tests/fuzz/harness.py) on a fake clock with the collector switched off: answered and
hung up from either side, a failed attempt with failover, a silent gateway, a caller's CANCEL,
a session-timer refresh and a forwarded re-INVITE, a refused call; without media anchoring, and
with it at a fake mediad that answers, one that refuses and none at all (the real client, as
in a benchmark without mediad). Then the clock passes every transaction timer, and
* a collection finds no unreachable object of sipedge's types (the types found are printed);
* the number of live objects of sipedge's classes is back to where it was after a first round.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import itertools
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sipedge.calls.media_link import MediaBackend
from sipedge.calls.media_service import MediaService
from sipedge.calls.service import B2BUA
from sipedge.config import parse_config
from sipedge.media.client import MediaClient
from sipedge.sip.message import Request, Response, make_response, parse_message
from sipedge.sip.transaction import MAX_INVITE_PENDING
from sipedge.sip.transport.udp import UdpTransport
from tests.conftest import gateway, make_config
from tests.unit.test_media_reconcile import FakeMediad
from tests.unit.test_transaction import FakeClock

CALLER = ("127.0.0.1", 5070)
GW1 = ("127.0.0.1", 5081)
GW2 = ("127.0.0.1", 5082)
SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
)


class _Wire:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))


class Stack:
    """sipd's SIP stack in process: datagrams in, datagrams out, time on a fake clock (media
    anchoring, when given a backend, on a real event loop)."""

    def __init__(
        self,
        tmp: Path,
        media: MediaBackend | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        data = make_config(
            tmp,
            5060,
            8080,
            [gateway("gw1", GW1[1]), gateway("gw2", GW2[1])],
            routes=[{"prefix": "44", "gateways": ["gw1", "gw2"]}],
            parameters={"SS_SIP_TIMEOUT_INVITE": 5},
        )
        self.clock = FakeClock()
        self.wire = _Wire()
        self.transport = UdpTransport(self._up)
        self.transport._transport = self.wire  # type: ignore[assignment]
        self.transport.port = 5060
        self.b2bua = B2BUA(
            parse_config(data),
            self.clock,
            self.transport.send_bytes,
            lambda destination: "127.0.0.1",
            5060,
            None,
        )
        self.b2bua.transactions.configure(self.b2bua.transactions.limits, frozenset({"timer"}))
        if media is not None:
            self.b2bua.media = MediaService(media, policy=self.b2bua.media.policy)
        self.loop = loop  # media anchoring: its work runs as tasks on this loop
        self._calls = itertools.count(1)

    def _up(self, msg: Any, source: Any, transport: Any) -> None:
        self.b2bua.transactions.receive(msg, source)

    def _run(self, step: Callable[[], None]) -> None:
        """One step; with media anchoring, inside the loop and until its tasks have run."""
        if self.loop is None:
            step()
            return

        async def in_loop() -> None:
            step()
            for _ in range(50):
                await asyncio.sleep(0)

        self.loop.run_until_complete(in_loop())

    def feed(self, msg: Request | Response, source: tuple[str, int]) -> None:
        data = msg.to_bytes()
        self._run(lambda: self.transport.datagram_received(data, source))

    def advance(self, seconds: float) -> None:
        self._run(lambda: self.clock.advance(seconds))

    def sent(self, to: tuple[str, int]) -> list[Request | Response]:
        return [parse_message(data) for data, addr in self.wire.sent if addr == to]

    def last_request(self, method: str, to: tuple[str, int]) -> Request:
        found = [m for m in self.sent(to) if isinstance(m, Request) and m.method == method]
        assert found, f"no {method} sent to {to}"
        return found[-1]

    def last_response(self, status: int, to: tuple[str, int]) -> Response:
        found = [m for m in self.sent(to) if isinstance(m, Response) and m.status == status]
        assert found, f"no {status} sent to {to}"
        return found[-1]

    def settle(self) -> None:
        """Past every timer (transaction timers, the guard of a pending INVITE)."""
        self.advance(MAX_INVITE_PENDING + 600)
        self.advance(MAX_INVITE_PENDING + 600)
        self.wire.sent.clear()
        assert not self.b2bua.calls and not self.b2bua.dialogs
        assert not self.b2bua.transactions.server and not self.b2bua.transactions.client

    # -- the caller ---------------------------------------------------------------------------
    def invite(self, extra: str = "", method: str = "INVITE", callee: str = "4420001") -> Request:
        n = next(self._calls)
        text = (
            f"{method} sip:{callee}@127.0.0.1:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{n}\r\n"
            f"From: <sip:100@127.0.0.1>;tag=caller-{n}\r\n"
            f"To: <sip:{callee}@127.0.0.1>\r\n"
            f"Call-ID: call-{n}@caller\r\n"
            f"CSeq: 1 {method}\r\n"
            "Contact: <sip:100@127.0.0.1:5070>\r\n"
            "Max-Forwards: 70\r\n"
            "Allow: INVITE, ACK, CANCEL, BYE, UPDATE\r\n"
            f"{extra}"
            "Content-Type: application/sdp\r\n"
            f"Content-Length: {len(SDP)}\r\n\r\n"
        ).encode() + SDP
        msg = parse_message(text)
        assert isinstance(msg, Request)
        self.feed(msg, CALLER)
        return msg

    def caller_request(self, invite: Request, method: str, cseq: int, body: bytes = b"") -> Request:
        """A request of the caller in the dialog of `invite`; CANCEL, and the ACK of a failure,
        in the INVITE's own transaction (its Via, its Request-URI)."""
        finals = [
            m
            for m in self.sent(CALLER)
            if isinstance(m, Response)
            and m.call_id == invite.call_id
            and m.cseq[1] == "INVITE"
            and m.status >= 200
        ]
        final = finals[-1] if finals else None
        failed = final is not None and final.status >= 300
        same_transaction = method == "CANCEL" or (method == "ACK" and failed)
        to = invite.headers.get("To") if final is None else final.headers.get("To")
        via = invite.headers.get("Via") if same_transaction else None
        via = via or f"SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{method}-{cseq}-{invite.call_id}"
        text = (
            f"{method} {invite.uri if same_transaction else 'sip:127.0.0.1:5060'} SIP/2.0\r\n"
            f"Via: {via}\r\n"
            f"From: {invite.headers.get('From')}\r\n"
            f"To: {to}\r\n"
            f"Call-ID: {invite.call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            "Contact: <sip:100@127.0.0.1:5070>\r\n"
            "Max-Forwards: 70\r\n"
            + ("Content-Type: application/sdp\r\n" if body else "")
            + f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        msg = parse_message(text)
        assert isinstance(msg, Request)
        self.feed(msg, CALLER)
        return msg

    # -- a gateway or the caller answering what we sent it ------------------------------------
    def answer(
        self, request: Request, status: int, source: tuple[str, int], tag: str = "gw-tag"
    ) -> None:
        response = make_response(request, status, to_tag=tag if status > 100 else None)
        if request.method == "INVITE" and 100 < status < 300:
            response.headers.add("Contact", f"<sip:gw@{source[0]}:{source[1]}>")
        if request.method == "INVITE" and status == 200:
            response.headers.add("Content-Type", "application/sdp")
            response.body = SDP
        self.feed(response, source)

    def gateway_bye(self, invite: Request, gw: tuple[str, int]) -> Request:
        """The gateway hangs up the dialog our `invite` created."""
        text = (
            f"BYE {(invite.headers.get('Contact') or '').strip('<>')} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {gw[0]}:{gw[1]};branch=z9hG4bK-gwbye-{invite.call_id}\r\n"
            f"From: {invite.headers.get('To')};tag=gw-tag\r\n"
            f"To: {invite.headers.get('From')}\r\n"
            f"Call-ID: {invite.call_id}\r\n"
            "CSeq: 1 BYE\r\n"
            "Max-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        msg = parse_message(text)
        assert isinstance(msg, Request)
        self.feed(msg, gw)
        return msg


# -- the calls --------------------------------------------------------------------------------


def answered(sipd: Stack, gw: tuple[str, int], caller_extra: str = "") -> tuple[Request, Request]:
    """Caller INVITE, the gateway's 100/180/200, the caller's ACK: (caller's, ours)."""
    invite = sipd.invite(caller_extra)
    ours = sipd.last_request("INVITE", gw)
    sipd.answer(ours, 100, gw)
    sipd.answer(ours, 180, gw)
    sipd.answer(ours, 200, gw)
    sipd.caller_request(invite, "ACK", 1)
    assert sipd.last_request("ACK", gw)
    return invite, ours


def call_hung_up_by_caller(sipd: Stack) -> None:
    invite, _ = answered(sipd, GW1)
    sipd.caller_request(invite, "BYE", 2)
    sipd.answer(sipd.last_request("BYE", GW1), 200, GW1)
    sipd.last_response(200, CALLER)


def call_hung_up_by_gateway_after_failover(sipd: Stack) -> None:
    invite = sipd.invite()
    first = sipd.last_request("INVITE", GW1)
    sipd.answer(first, 100, GW1)
    sipd.answer(first, 503, GW1)  # the layer ACKs it; switching tries gw2
    ours = sipd.last_request("INVITE", GW2)
    sipd.answer(ours, 180, GW2)
    sipd.answer(ours, 200, GW2)
    sipd.caller_request(invite, "ACK", 1)
    sipd.gateway_bye(ours, GW2)
    sipd.answer(sipd.last_request("BYE", CALLER), 200, CALLER, tag="caller-tag")


def call_after_a_silent_gateway(sipd: Stack) -> None:
    invite = sipd.invite()
    first = sipd.last_request("INVITE", GW1)  # silent: SS_SIP_TIMEOUT_INVITE, then gw2
    sipd.advance(6)
    ours = sipd.last_request("INVITE", GW2)
    sipd.answer(ours, 200, GW2)
    sipd.caller_request(invite, "ACK", 1)
    sipd.answer(first, 200, GW1)  # gw1 answers after all: ACK and BYE at once
    sipd.answer(sipd.last_request("BYE", GW1), 200, GW1)
    sipd.caller_request(invite, "BYE", 2)
    sipd.answer(sipd.last_request("BYE", GW2), 200, GW2)


def call_cancelled_by_caller(sipd: Stack) -> None:
    invite = sipd.invite()
    ours = sipd.last_request("INVITE", GW1)
    sipd.answer(ours, 180, GW1)
    sipd.caller_request(invite, "CANCEL", 1)
    sipd.last_response(487, CALLER)
    sipd.answer(sipd.last_request("CANCEL", GW1), 200, GW1)
    sipd.answer(ours, 487, GW1)
    sipd.caller_request(invite, "ACK", 1)  # for our 487: hop by hop, the INVITE's branch


def call_with_refresh_and_reinvite(sipd: Stack) -> None:
    # Session-Expires from a caller without `Supported: timer`: we refresh its leg at 45 s.
    invite, ours = answered(sipd, GW1, caller_extra="Session-Expires: 90\r\n")
    sipd.advance(46)
    refresh = sipd.last_request("UPDATE", CALLER)
    sipd.answer(refresh, 200, CALLER, tag="caller-tag")
    # a re-INVITE of the caller, forwarded to the gateway and answered there
    sipd.caller_request(invite, "INVITE", 2, body=SDP)
    forwarded = sipd.last_request("INVITE", GW1)
    assert forwarded.call_id == ours.call_id
    sipd.answer(forwarded, 200, GW1)
    sipd.caller_request(invite, "ACK", 2)
    sipd.gateway_bye(ours, GW1)
    sipd.answer(sipd.last_request("BYE", CALLER), 200, CALLER, tag="caller-tag")


def calls_refused(sipd: Stack) -> None:
    """No route (404, ACKed by the caller) and an OPTIONS: transactions only, no call."""
    invite = sipd.invite(callee="99")
    sipd.last_response(404, CALLER)
    sipd.caller_request(invite, "ACK", 1)
    sipd.invite(method="OPTIONS")
    sipd.last_response(200, CALLER)


ROUND: list[Callable[[Stack], None]] = [
    call_hung_up_by_caller,
    call_hung_up_by_gateway_after_failover,
    call_after_a_silent_gateway,
    call_cancelled_by_caller,
    call_with_refresh_and_reinvite,
    calls_refused,
]


# -- the checks -------------------------------------------------------------------------------


def type_name(obj: object) -> str:
    module = type(obj).__dict__.get("__module__")  # a metaclass may have a descriptor there
    return f"{module if isinstance(module, str) else '?'}.{type(obj).__qualname__}"


def live_counts() -> collections.Counter[str]:
    names = (type_name(o) for o in gc.get_objects())
    return collections.Counter(name for name in names if name.startswith("sipedge."))


def garbage_types() -> collections.Counter[str]:
    """What a collection finds unreachable, by type (all types, sipedge's or not)."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found = collections.Counter(type_name(o) for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.collect()  # saved, not freed: free them now, or the next collection finds them again
    return found


@pytest.fixture
def collector_off(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    # Captured log records would keep what their arguments reference (a MediaError, its
    # traceback, the frames' locals) alive: sipedge logs nothing below CRITICAL here.
    caplog.set_level(logging.CRITICAL, logger="sipedge")
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def run_rounds(sipd: Stack, rounds: int) -> None:
    for _ in range(rounds):
        for call in ROUND:
            call(sipd)
        sipd.settle()


def check(sipd: Stack) -> None:
    run_rounds(sipd, 1)  # first-use caches, the stats' keys
    garbage_types()  # a clean slate (and what an earlier failed test left)
    baseline = live_counts()
    run_rounds(sipd, 3)
    garbage = garbage_types()
    ours = {name: n for name, n in garbage.items() if name.startswith("sipedge.")}
    assert not ours, (
        f"reference cycles left by finished calls, sipedge's types: {ours}; "
        f"everything unreachable: {dict(garbage.most_common(40))}"
    )
    grown = live_counts() - baseline
    assert not grown, f"live sipedge objects grew over 3 rounds of calls: {dict(grown)}"


def test_finished_calls_are_freed_by_reference_counting(
    tmp_path: Path, collector_off: None
) -> None:
    check(Stack(tmp_path))


@pytest.mark.parametrize("mediad", ["up", "down", "absent", "down-every-call", "absent-every-call"])
def test_finished_calls_with_media_anchoring_are_freed(
    tmp_path: Path, collector_off: None, mediad: str
) -> None:
    """mediad answering (a fake), refusing every request, or no socket at all (the real
    client: what a benchmark without mediad runs). A dead mediad is held off after the first
    failure, so most calls then skip it; `-every-call`: no hold-off, each call's requests fail
    (the error kept as an outcome must not hold the frame that keeps it)."""
    loop = asyncio.new_event_loop()
    backend: MediaBackend
    if mediad.startswith("absent"):
        backend = MediaClient(tmp_path / "no-mediad.sock")
    else:
        backend = FakeMediad()
        backend.down = mediad.startswith("down")
    try:
        sipd = Stack(tmp_path, backend, loop)
        if mediad.endswith("-every-call"):
            sipd.b2bua.media.holding_off = lambda: False  # type: ignore[method-assign]
        check(sipd)
        stats = sipd.b2bua.media.stats
        if mediad == "up":  # anchored (a watchdog per answered call), and all deleted
            assert stats.sessions_created and stats.sessions_deleted == stats.sessions_created
        else:
            assert stats.unanchored.get("unreachable")
    finally:
        loop.run_until_complete(backend.close())
        loop.close()
