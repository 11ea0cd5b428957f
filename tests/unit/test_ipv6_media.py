"""A 4-to-6 call through the real B2BUA against an in-memory mediad (docs/ipv6.md).

The caller speaks IPv4, the routing gateway IPv6: the offer asks mediad for an IPv6 relay
address (the gateway receives that SDP), the answer for an IPv4 one (the caller receives it),
and the INVITE to the gateway carries our IPv6 address in brackets. A mediad without an IPv6
relay address fails the attempt cleanly (CDR reason `media-family-unavailable`), and the next
gateway (IPv4) takes the call.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sipedge.calls.media_link import media_metrics
from sipedge.calls.media_service import MediaService
from sipedge.calls.service import media_policy
from sipedge.sip.message import Request, Response, make_response, parse_message, parse_uri
from sipedge.sip.sdp import parse
from tests.conftest import gateway, make_config
from tests.unit.memory_cdrs import MemoryCdrs
from tests.unit.test_media_reconcile import FakeMediad, invite, settle
from tests.unit.test_session_timer_call import CALLER, Edge

GW6 = ("2001:db8::20", 5060)
GW4 = ("10.0.0.2", 5060)
OURS_6 = "2001:db8::9"
CALLER6 = ("2001:db8::1", 5060)
SDP6 = (
    b"v=0\r\no=- 1 1 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::1\r\n"
    b"t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
)


def invite6(body: bytes = SDP6) -> Request:
    """An INVITE from the IPv6 caller, its SDP `IN IP6`."""
    return invite(body, caller=CALLER6[0], ours=OURS_6)


def edge_6(
    tmp: Path, fake: FakeMediad, *, v4_fallback: bool = False, media: dict[str, Any] | None = None
) -> Edge:
    gateways = [gateway("gw6", GW6[1], address=GW6[0])]
    if v4_fallback:
        gateways.append(gateway("gw4", GW4[1], address=GW4[0]))
    data = make_config(tmp, 5060, 8080, gateways, listen=[f"udp://[{OURS_6}]:5060"])
    data["routes"] = [{"prefix": "", "gateways": [g["name"] for g in gateways]}]
    data["media"].update(media or {})
    edge = Edge(tmp, data=data, callers=("10.0.0.1/32", f"{CALLER6[0]}/128"))
    # our address toward each peer from the listener of its family (sipd: Transports)
    edge.b2bua._local_host_for = lambda dest: OURS_6 if ":" in dest else "10.0.0.9"
    edge.b2bua.media = MediaService(fake, policy=media_policy(edge.b2bua.config.media))
    return edge


def answer_with_sdp(request: Request, body: bytes, source: tuple[str, int]) -> Response:
    response = make_response(request, 200, to_tag="gw-tag")
    response.headers.add("Contact", f"<sip:peer@[{source[0]}]:{source[1]}>")
    response.headers.add("Content-Type", "application/sdp")
    response.body = body
    return response


GW_SDP = (
    b"v=0\r\no=- 7 7 IN IP6 2001:db8::20\r\ns=-\r\nc=IN IP6 2001:db8::20\r\n"
    b"t=0 0\r\nm=audio 6000 RTP/AVP 0\r\n"
)


def test_a_4_to_6_call_gives_each_side_its_family(tmp_path: Path) -> None:
    async def main() -> None:
        fake = FakeMediad()
        edge = edge_6(tmp_path, fake)
        edge.feed(invite(), CALLER)
        await settle()
        (gw_invite,) = edge.requests("INVITE", GW6)
        # the gateway's SDP: the relay's IPv6 address; its headers: ours, in brackets
        stream = parse(gw_invite.body).streams[0]
        assert (stream.address_type, stream.address) == ("IP6", "2001:db8::9")
        assert b"o=- 1 1 IN IP6 2001:db8::9" in gw_invite.body
        assert (gw_invite.headers.get("Via") or "").startswith(f"SIP/2.0/UDP [{OURS_6}]:5060;")
        assert gw_invite.headers.get("Contact") == f"<sip:[{OURS_6}]:5060>"
        assert parse_uri(gw_invite.uri).host == GW6[0] and "@[2001:db8::20]:5060" in gw_invite.uri
        assert f"@[{OURS_6}]" in (gw_invite.headers.get("From") or "")
        assert fake.families == [("offer", "IP6")]
        # the gateway answers from IPv6: the caller gets the relay's IPv4 address
        edge.feed(answer_with_sdp(gw_invite, GW_SDP, GW6), GW6)
        await settle()
        assert fake.families == [("offer", "IP6"), ("answer", "IP4")]
        assert fake.calls("answer")[0][2] == "2001:db8::20"  # the gateway's own media address
        ok = edge.responses(200, CALLER)[0]
        stream = parse(ok.body).streams[0]
        assert (stream.address_type, stream.address) == ("IP4", "10.0.0.9")
        assert ok.headers.get("Contact") == "<sip:10.0.0.9:5060>"

    asyncio.run(main())


def test_no_ipv6_relay_fails_the_attempt_and_the_ipv4_gateway_takes_it(tmp_path: Path) -> None:
    async def main() -> None:
        fake = FakeMediad()
        del fake.relay["IP6"]  # mediad without advertise_address_v6
        edge = edge_6(tmp_path, fake, v4_fallback=True)
        records: list[Any] = []
        edge.b2bua.cdrs = MemoryCdrs(records)
        edge.feed(invite(), CALLER)
        await settle()
        assert edge.requests("INVITE", GW6) == []  # no SDP the gateway could not use
        (gw4_invite,) = edge.requests("INVITE", GW4)
        assert parse(gw4_invite.body).streams[0].address == "10.0.0.9"
        edge.answer(gw4_invite, 200, GW4)
        await settle()
        assert edge.responses(200, CALLER)
        stats = edge.b2bua.media.stats
        assert stats.refused == {"media-family-unavailable": 1}
        assert stats.errors == {"address-family-unavailable": 1} and stats.unanchored == {}
        caller_bye = parse_message(
            (
                "BYE sip:10.0.0.9:5060 SIP/2.0\r\n"
                "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-v6-bye\r\n"
                "From: <sip:1000@10.0.0.1>;tag=caller-tag\r\n"
                f"To: {edge.responses(200, CALLER)[0].headers.get('To')}\r\n"
                "Call-ID: media-call-1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
            ).encode()
        )
        edge.feed(caller_bye, CALLER)
        await settle()
        (record,) = records
        results = [a.result for a in record.attempts]
        assert results[0] == "media-family-unavailable" and results[1] == "answered"

    asyncio.run(main())


def test_no_ipv6_relay_and_no_other_gateway_fails_the_call_cleanly(tmp_path: Path) -> None:
    async def main() -> None:
        fake = FakeMediad()
        del fake.relay["IP6"]
        edge = edge_6(tmp_path, fake)
        records: list[Any] = []
        edge.b2bua.cdrs = MemoryCdrs(records)
        edge.feed(invite(), CALLER)
        await settle()
        assert edge.requests("INVITE", GW6) == []
        finals = [m for m, a in edge.sent if isinstance(m, Response) and m.status >= 300]
        assert len(finals) == 1 and finals[0].status == 503
        (record,) = records
        assert record.attempts[0].result == "media-family-unavailable"

    asyncio.run(main())


def test_ipv6_parties_send_their_signal_address(tmp_path: Path) -> None:
    """mediad's latching hint (signal-address) goes with IPv6 parties too: the IPv6 caller's
    INVITE source on the offer, the IPv6 gateway's address on the answer."""

    async def main() -> None:
        fake = FakeMediad()
        edge = edge_6(tmp_path, fake)
        edge.feed(invite6(), CALLER6)
        await settle()
        (offer,) = fake.calls("offer")
        assert offer[2] == "2001:db8::1" and offer[4] == CALLER6[0]
        (gw_invite,) = edge.requests("INVITE", GW6)
        edge.feed(answer_with_sdp(gw_invite, GW_SDP, GW6), GW6)
        await settle()
        (answer,) = fake.calls("answer")
        assert answer[2] == "2001:db8::20" and answer[4] == GW6[0]
        assert fake.families == [("offer", "IP6"), ("answer", "IP6")]
        assert edge.responses(200, CALLER6)

    asyncio.run(main())


def test_an_ipv6_caller_without_an_ipv6_relay_gets_488_before_any_attempt(
    tmp_path: Path,
) -> None:
    """mediad said (ping) it has IPv4 only: the IPv6 caller gets 488 with a Warning at once,
    nothing reaches mediad or a gateway; an IPv4 caller still goes through."""

    async def main() -> None:
        fake = FakeMediad()
        del fake.relay["IP6"]
        edge = edge_6(tmp_path, fake, v4_fallback=True)
        records: list[Any] = []
        edge.b2bua.cdrs = MemoryCdrs(records)
        media = edge.b2bua.media
        media.stats.relay_families = await fake.relay_families()
        edge.feed(invite6(), CALLER6)
        await settle()
        (refused,) = edge.responses(488, CALLER6)
        warning = refused.headers.get("Warning") or ""
        assert warning.startswith(f'301 [{OURS_6}] "media-family-unavailable: ')
        assert "IP6" in warning
        assert fake.calls("offer") == [] and edge.requests("INVITE", GW6) == []
        assert edge.requests("INVITE", GW4) == []
        assert media.stats.refused == {"media-family-unavailable": 1}
        (record,) = records
        assert record.cause == "media-family-unavailable" and record.final_status == 488
        assert record.attempts == []
        edge.feed(invite(), CALLER)  # IPv4: the IPv4 gateway takes it, as before
        await settle()
        assert edge.requests("INVITE", GW4)

    asyncio.run(main())


def test_mediad_refusing_ipv6_teaches_sipd_to_refuse_the_next_ipv6_caller(
    tmp_path: Path,
) -> None:
    """Families not known (no ping answered yet): the first IPv6 caller's attempt meets
    address-family-unavailable; from then on an IPv6 caller gets 488 at once."""

    async def main() -> None:
        fake = FakeMediad()
        del fake.relay["IP6"]
        edge = edge_6(tmp_path, fake, v4_fallback=True)
        media = edge.b2bua.media
        assert media.stats.relay_families is None
        edge.feed(invite6(), CALLER6)
        await settle()
        assert media.stats.relay_families == frozenset({"IP4"})
        assert edge.responses(488, CALLER6) == []  # this one went on (as before this rule)
        text = bytes(invite6().to_bytes()).replace(b"media-call-1", b"media-call-7")
        second = parse_message(text.replace(b"z9hG4bK-media-1", b"z9hG4bK-media-7"))
        assert isinstance(second, Request)
        edge.feed(second, CALLER6)
        await settle()
        assert [r.call_id for r in edge.responses(488, CALLER6)] == ["media-call-7"]

    asyncio.run(main())


def test_the_relay_families_come_from_mediad_at_start(tmp_path: Path) -> None:
    """MediaService.start asks mediad (ping) and keeps the answer; the metric shows it."""

    async def main() -> None:
        fake = FakeMediad()
        del fake.relay["IP6"]
        service = MediaService(fake)
        service.start()
        await settle()
        assert service.stats.relay_families == frozenset({"IP4"})
        assert ("ping", None) in fake.log
        metrics = {m.name: m for m in media_metrics(service.stats)}
        samples = {
            s.labels["family"]: s.value for s in metrics["sipedge_media_relay_family"].samples
        }
        assert samples == {"IP4": 1, "IP6": 0}
        await service.close()

    asyncio.run(main())
