"""Session timer wiring in the B2BUA, in process on a fake clock (no sockets).

The caller is 10.0.0.1:5060, the gateway 10.0.0.2:5060. Every message we send is parsed
back and kept; the tests feed the peers' answers and move the clock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sipedge.calls.service import B2BUA
from sipedge.config import parse_config
from sipedge.sip.message import Request, Response, make_response, parse_message
from tests.conftest import gateway, make_config
from tests.unit.test_transaction import FakeClock

CALLER = ("10.0.0.1", 5060)
GW = ("10.0.0.2", 5060)
SDP = (
    b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\n"
    b"t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
)


class Edge:
    def __init__(
        self,
        tmp: Path,
        parameters: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        callers: tuple[str, ...] = ("10.0.0.1/32",),
    ) -> None:
        """`data`: a whole config (its own gateways); default: gw1 at `GW`. `callers`: the
        mapping gateway's networks."""
        if data is None:
            data = make_config(tmp, 5060, 8080, [gateway("gw1", 5060)], parameters=parameters)
            data["routing_gateways"][0]["address"] = GW[0]
        data["mapping_gateways"][0]["addresses"] = list(callers)
        self.clock = FakeClock()
        self.sent: list[tuple[Request | Response, tuple[str, int]]] = []
        self.b2bua = B2BUA(
            parse_config(data),
            self.clock,
            lambda data, addr: self.sent.append((parse_message(data), addr)),
            lambda dest: "10.0.0.9",
            5060,
            None,
        )

    def feed(self, msg: Request | Response, source: tuple[str, int]) -> None:
        self.b2bua.transactions.receive(msg, source)

    def requests(self, method: str, to: tuple[str, int]) -> list[Request]:
        out: list[Request] = []
        for msg, addr in self.sent:
            if (
                isinstance(msg, Request)
                and msg.method == method
                and addr == to
                and all(m.headers.get("Via") != msg.headers.get("Via") for m in out)
            ):
                out.append(msg)  # retransmissions folded
        return out

    def responses(self, status: int, to: tuple[str, int]) -> list[Response]:
        return [
            m for m, a in self.sent if isinstance(m, Response) and m.status == status and a == to
        ]

    def answer(
        self, request: Request, status: int, source: tuple[str, int], **headers: str
    ) -> None:
        response = make_response(request, status, to_tag="peer-tag" if status >= 200 else None)
        if request.method == "INVITE" and status < 300:
            response.headers.add("Contact", f"<sip:peer@{source[0]}:{source[1]}>")
        for name, value in headers.items():
            response.headers.add(name.replace("_", "-"), value)
        if request.method == "INVITE" and status == 200:
            response.headers.add("Content-Type", "application/sdp")
            response.body = SDP
        self.feed(response, source)


def caller_invite(allow: str, extra: str = "") -> Request:
    text = (
        "INVITE sip:4420001@10.0.0.9 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-caller-1\r\n"
        "From: <sip:100@10.0.0.1>;tag=caller-tag\r\n"
        "To: <sip:4420001@10.0.0.9>\r\n"
        "Call-ID: caller-call\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:100@10.0.0.1:5060>\r\n"
        "Max-Forwards: 70\r\n"
        f"Allow: {allow}\r\n"
        f"{extra}"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(SDP)}\r\n\r\n"
    ).encode() + SDP
    msg = parse_message(text)
    assert isinstance(msg, Request)
    return msg


def caller_ack(edge: Edge) -> None:
    ok = edge.responses(200, CALLER)[0]
    text = (
        "ACK sip:10.0.0.9:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-caller-ack\r\n"
        "From: <sip:100@10.0.0.1>;tag=caller-tag\r\n"
        f"To: {ok.headers.get('To')}\r\n"
        "Call-ID: caller-call\r\n"
        "CSeq: 1 ACK\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    msg = parse_message(text)
    edge.feed(msg, CALLER)


def answered_call(
    tmp: Path, caller_allow: str, caller_extra: str = "", gw_headers: dict[str, str] | None = None
) -> Edge:
    edge = Edge(tmp)
    edge.feed(caller_invite(caller_allow, caller_extra), CALLER)
    invite = edge.requests("INVITE", GW)[0]
    edge.answer(invite, 200, GW, **(gw_headers or {}))
    caller_ack(edge)
    assert edge.requests("ACK", GW), "the gateway's 200 was not ACKed"
    return edge


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path


def test_refresh_by_update_when_allowed(tmp: Path) -> None:
    edge = answered_call(
        tmp,
        "INVITE, ACK, BYE, UPDATE",
        gw_headers={"Allow": "INVITE, ACK, BYE, UPDATE", "Session_Expires": "200;refresher=uac"},
    )
    edge.clock.advance(99)
    assert not edge.requests("UPDATE", GW)
    edge.clock.advance(1.5)  # 100 s: half of the gateway leg's 200
    (update,) = edge.requests("UPDATE", GW)
    assert update.body == b""
    assert update.headers.get("Session-Expires") == "200;refresher=uac"
    assert update.headers.get("Min-SE") == "90"
    edge.answer(update, 200, GW, Session_Expires="200;refresher=uac")
    # the caller leg (1800 s, we refresh it: no Supported: timer) is untouched so far
    assert not edge.requests("UPDATE", CALLER)
    edge.clock.advance(100)  # restarted: the next gateway refresh 100 s after the first
    assert len(edge.requests("UPDATE", GW)) == 2
    assert edge.b2bua.calls  # still up


def test_refresh_by_reinvite_with_last_sdp_and_ack(tmp: Path) -> None:
    edge = answered_call(tmp, "INVITE, ACK, BYE", caller_extra="Session-Expires: 90\r\n")
    edge.clock.advance(45.5)
    (reinvite,) = edge.requests("INVITE", CALLER)
    assert reinvite.headers.get("Session-Expires") == "90;refresher=uac"
    ok200 = edge.responses(200, CALLER)[0]
    assert reinvite.body == ok200.body  # the SDP we sent the caller, unchanged
    edge.answer(reinvite, 200, CALLER)
    acks = edge.requests("ACK", CALLER)
    assert len(acks) == 1 and acks[0].cseq == (reinvite.cseq[0], "ACK")
    edge.clock.advance(30)  # 75.5 s: past the first expiry (60 s), restarted at 45.5
    assert edge.b2bua.calls


def test_update_refused_falls_back_to_reinvite(tmp: Path) -> None:
    edge = answered_call(tmp, "INVITE, ACK, BYE, UPDATE", caller_extra="Session-Expires: 90\r\n")
    edge.clock.advance(45.5)
    (update,) = edge.requests("UPDATE", CALLER)
    edge.answer(update, 501, CALLER)
    (reinvite,) = edge.requests("INVITE", CALLER)
    assert reinvite.body


def test_expiry_ends_the_call_with_bye_to_both(tmp: Path) -> None:
    edge = answered_call(
        tmp, "INVITE, ACK, BYE", gw_headers={"Session_Expires": "90;refresher=uas"}
    )
    edge.clock.advance(59.5)
    assert edge.b2bua.calls and not edge.requests("BYE", GW)
    edge.clock.advance(1)
    assert edge.requests("BYE", GW) and edge.requests("BYE", CALLER)
    assert not edge.b2bua.calls
    assert edge.b2bua.stats.session_timer_ends == 1


def test_unanswered_refresh_ends_the_call(tmp: Path) -> None:
    edge = answered_call(tmp, "INVITE, ACK, BYE, UPDATE", caller_extra="Session-Expires: 90\r\n")
    edge.clock.advance(45.5)
    assert edge.requests("UPDATE", CALLER)  # never answered
    edge.clock.advance(15)
    assert edge.requests("BYE", CALLER) and edge.requests("BYE", GW)
    assert not edge.b2bua.calls


def test_refresh_481_ends_the_call(tmp: Path) -> None:
    edge = answered_call(tmp, "INVITE, ACK, BYE, UPDATE", caller_extra="Session-Expires: 90\r\n")
    edge.clock.advance(45.5)
    (update,) = edge.requests("UPDATE", CALLER)
    edge.answer(update, 481, CALLER)
    assert edge.requests("BYE", GW) and not edge.b2bua.calls


def test_forwarded_refresh_restarts_both_legs(tmp: Path) -> None:
    # the caller refreshes (Supported: timer) with UPDATE; the gateway leg is refreshed by it too
    edge = answered_call(
        tmp,
        "INVITE, ACK, BYE, UPDATE",
        caller_extra="Supported: timer\r\nSession-Expires: 90\r\n",
        gw_headers={"Allow": "INVITE, ACK, BYE, UPDATE", "Session_Expires": "90;refresher=uas"},
    )
    ok = edge.responses(200, CALLER)[0]
    assert ok.headers.get("Session-Expires") == "90;refresher=uac"
    edge.clock.advance(40)
    text = (
        "UPDATE sip:10.0.0.9:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-caller-upd\r\n"
        "From: <sip:100@10.0.0.1>;tag=caller-tag\r\n"
        f"To: {ok.headers.get('To')}\r\n"
        "Call-ID: caller-call\r\n"
        "CSeq: 2 UPDATE\r\n"
        "Contact: <sip:100@10.0.0.1:5060>\r\n"
        "Supported: timer\r\n"
        "Session-Expires: 90;refresher=uac\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    update = parse_message(text)
    edge.feed(update, CALLER)
    (forwarded,) = edge.requests("UPDATE", GW)
    # the gateway leg's own timer (gateway refreshes: refresher=uas), not the caller's header
    assert forwarded.headers.get("Session-Expires") == "90;refresher=uas"
    edge.answer(forwarded, 200, GW, Session_Expires="90;refresher=uas")
    answer = edge.responses(200, CALLER)[-1]
    assert answer.cseq == (2, "UPDATE")
    assert answer.headers.get("Session-Expires") == "90;refresher=uac"
    assert answer.headers.get("Require") == "timer"
    edge.clock.advance(40)  # 80 s: past the first expiry (60 s), restarted at 40
    assert edge.b2bua.calls
    edge.clock.advance(21)  # 101 s: 61 s after the refresh, nobody refreshed again
    assert not edge.b2bua.calls


def test_too_small_in_dialog_refresh_gets_422(tmp: Path) -> None:
    edge = answered_call(tmp, "INVITE, ACK, BYE, UPDATE")
    ok = edge.responses(200, CALLER)[0]
    text = (
        "UPDATE sip:10.0.0.9:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-caller-upd\r\n"
        "From: <sip:100@10.0.0.1>;tag=caller-tag\r\n"
        f"To: {ok.headers.get('To')}\r\n"
        "Call-ID: caller-call\r\n"
        "CSeq: 2 UPDATE\r\n"
        "Contact: <sip:100@10.0.0.1:5060>\r\n"
        "Session-Expires: 60\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    edge.feed(parse_message(text), CALLER)
    (rejected,) = edge.responses(422, CALLER)
    assert rejected.headers.get("Min-SE") == "90"
    assert not edge.requests("UPDATE", GW)


@pytest.mark.parametrize(
    ("registered", "ua_privacy", "expected"),
    [(True, "Id", "id"), (True, "None", "none"), (True, "Ignore", None), (False, "Id", None)],
)
def test_ua_privacy_applies_to_calls_through_an_outbound_registration(
    tmp_path: Path, registered: bool, ua_privacy: str, expected: str | None
) -> None:
    """SS_SIP_USER_AGENT_PRIVACY covers calls sent to a carrier we are registered to."""
    data = make_config(
        tmp_path,
        5060,
        8080,
        [gateway("gw1", 5060)],
        parameters={"SS_SIP_USER_AGENT_PRIVACY": ua_privacy},
    )
    data["mapping_gateways"][0]["addresses"] = ["10.0.0.1/32"]
    data["routing_gateways"][0]["address"] = GW[0]
    if registered:
        data["registrations"] = [
            {
                "name": "up",
                "proxy": GW[0],
                "port": GW[1],
                "user": "edge",
                "password": "pw",
                "register_period": "Auto",
            }
        ]
    sent: list[tuple[Request | Response, tuple[str, int]]] = []
    b2bua = B2BUA(
        parse_config(data),
        FakeClock(),
        lambda raw, addr: sent.append((parse_message(raw), addr)),
        lambda dest: "10.0.0.9",
        5060,
        None,
    )
    b2bua.transactions.receive(caller_invite("INVITE, ACK, BYE"), CALLER)
    invites = [m for m, a in sent if isinstance(m, Request) and m.method == "INVITE" and a == GW]
    assert invites and invites[0].headers.get("Privacy") == expected
