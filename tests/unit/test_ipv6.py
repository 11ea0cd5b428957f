"""IPv6 in the SIP signalling (docs/ipv6.md): the pure parts.

RFC 5118 torture messages (sections 4.1-4.10, the messages rebuilt from the RFC's text) through
the parser and the request checks; the bracket rules of what sipd writes; SDP `IN IP6` read and
rewritten for a 4-to-6 call; the router's choice of listener by family; the guard's /64 keys;
the RFC 3263 lookup asking AAAA; the ng "address-family" key.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from sipedge.config import parse_config
from sipedge.guard import GuardRules, GuardSettings, Standing, source_key
from sipedge.media.client import _family
from sipedge.resolver.hosts import hosts_lookup, parse_hosts
from sipedge.resolver.targets import Answer, Lookup, Query
from sipedge.sip.limits import SipLimits
from sipedge.sip.message import Request, host_text, hostport, parse_message, parse_uri, parse_via
from sipedge.sip.sdp import RelayEndpoint, parse, rewrite
from sipedge.sip.transport.destination import Destination
from sipedge.sip.transport.intake import stamp_via
from sipedge.sip.transport.router import Transports
from sipedge.sip.transport.udp import open_udp
from sipedge.sip.validation import check_request
from tests.unit.test_config import example_data, one_problem
from tests.unit.test_resolver_targets import run

# -- RFC 5118 ------------------------------------------------------------------------------


def register(ruri: str, via: str, contact: str, extra: str = "", body: str = "") -> bytes:
    return (
        f"REGISTER {ruri} SIP/2.0\r\n"
        "To: sip:user@example.com\r\n"
        "From: sip:user@example.com;tag=81x2\r\n"
        f"Via: {via}\r\n"
        "Call-ID: SSG9559905523997077@hlau_4100\r\n"
        "Max-Forwards: 70\r\n"
        f"Contact: {contact}\r\n"
        "CSeq: 98176 REGISTER\r\n"
        f"{extra}"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def checked(data: bytes) -> tuple[Request, str | None]:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    refusal = check_request(msg, SipLimits(), frozenset())
    return msg, None if refusal is None else f"{refusal.status} {refusal.reason}"


VIA = "SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111"
CONTACT = '"Caller" <sip:caller@[2001:db8::1]>'


def test_rfc5118_4_1_valid_ipv6_reference() -> None:
    msg, problem = checked(register("sip:[2001:db8::10]", VIA, CONTACT))
    assert problem is None
    assert parse_uri(msg.uri).host == "2001:db8::10"
    assert msg.top_via.host == "2001:db8::9:1" and msg.top_via.port is None


def test_rfc5118_4_2_ipv6_without_brackets_is_a_400() -> None:
    _, problem = checked(register("sip:2001:db8::10", VIA, CONTACT))
    assert problem == "400 Bad Request-URI"


def test_rfc5118_4_3_port_ambiguous_is_an_address() -> None:
    msg, problem = checked(register("sip:[2001:db8::10:5070]", VIA, CONTACT))
    uri = parse_uri(msg.uri)
    assert problem is None and (uri.host, uri.port) == ("2001:db8::10:5070", None)


def test_rfc5118_4_4_port_unambiguous() -> None:
    msg, problem = checked(register("sip:[2001:db8::10]:5070", VIA, CONTACT))
    uri = parse_uri(msg.uri)
    assert problem is None and (uri.host, uri.port) == ("2001:db8::10", 5070)


@pytest.mark.parametrize("received", ["[2001:db8::9:255]", "2001:db8::9:255"])
def test_rfc5118_4_5_received_with_and_without_brackets(received: str) -> None:
    via = f"SIP/2.0/UDP [2001:db8::9:1];received={received};branch=z9hG4bKas3-111"
    msg, problem = checked(register("sip:[2001:db8::10]", via, CONTACT))
    assert problem is None and msg.top_via.params["received"] == received


SDP_6 = (
    "v=0\r\no=assistant 971731711378798081 0 IN IP6 2001:db8::20\r\ns=Live video feed\r\n"
    "c=IN IP6 2001:db8::20\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def test_rfc5118_4_6_ipv6_in_sdp() -> None:
    sdp = parse(SDP_6.encode())
    (stream,) = sdp.streams
    assert (stream.address_type, stream.address, stream.port) == ("IP6", "2001:db8::20", 6000)


def test_rfc5118_4_7_ipv4_and_ipv6_in_one_message() -> None:
    data = register(
        "sip:[2001:db8::10]",
        "SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111",
        CONTACT,
        extra="Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKjhja8781hjuaij65144\r\n",
    )
    msg, problem = checked(data)
    assert problem is None
    hosts = [parse_via(v).host for v in msg.headers.get_all("Via")]
    assert hosts == ["2001:db8::9:1", "192.0.2.1"]


def test_rfc5118_4_8_both_families_in_one_sdp() -> None:
    body = (
        "v=0\r\no=bob 280744730 28977631 IN IP4 host.example.com\r\ns=\r\nt=0 0\r\n"
        "m=audio 22334 RTP/AVP 0\r\nc=IN IP4 192.0.2.1\r\n"
        "m=video 6024 RTP/AVP 107\r\nc=IN IP6 2001:db8::1\r\na=rtpmap:107 H263-1998/90000\r\n"
    )
    audio, video = parse(body.encode()).streams
    assert (audio.address_type, audio.address) == ("IP4", "192.0.2.1")
    assert (video.address_type, video.address) == ("IP6", "2001:db8::1")


def test_rfc5118_4_9_ipv4_mapped_address() -> None:
    msg, problem = checked(register("sip:[::ffff:192.0.2.2]", VIA, CONTACT))
    assert problem is None and parse_uri(msg.uri).host == "::ffff:192.0.2.2"
    sdp = parse(
        b"v=0\r\no=- 1 1 IN IP6 ::ffff:192.0.2.2\r\nc=IN IP6 ::ffff:192.0.2.2\r\n"
        b"t=0 0\r\nm=audio 3456 RTP/AVP 0\r\n"
    )
    assert sdp.streams[0].address == "::ffff:192.0.2.2"


def test_rfc5118_4_10_two_colons_good_three_colons_bad() -> None:
    _, problem = checked(register("sip:[2001:db8::10]", VIA, "<sip:caller@[2001:db8::192.0.2.1]>"))
    assert problem is None
    _, problem = checked(register("sip:[2001:db8::10]", VIA, "<sip:caller@[2001:db8:::192.0.2.1]>"))
    assert problem == "400 Bad Contact"
    _, problem = checked(register("sip:[2001:db8:::192.0.2.1]", VIA, CONTACT))
    assert problem == "400 Bad Request-URI"


# -- what sipd writes -----------------------------------------------------------------------


def test_hosts_in_headers_get_brackets_once() -> None:
    assert host_text("2001:db8::1") == "[2001:db8::1]"
    assert host_text("[2001:db8::1]") == "[2001:db8::1]"
    assert host_text("192.0.2.1") == "192.0.2.1" and host_text("gw.example.com") == "gw.example.com"
    assert hostport("::1", 5060) == "[::1]:5060" and hostport("192.0.2.1", 5060) == "192.0.2.1:5060"
    assert hostport("::1", None) == "[::1]"


def test_received_and_rport_of_an_ipv6_source_are_bracketed() -> None:
    data = register(
        "sip:[2001:db8::10]", "SIP/2.0/UDP [2001:db8::9:1]:5060;branch=z9hG4bK1;rport", CONTACT
    )
    msg = parse_message(data)
    assert isinstance(msg, Request)
    stamp_via(msg, ("2001:db8::77", 40000))
    via = msg.headers.get("Via") or ""
    assert via.endswith(";rport=40000;received=[2001:db8::77]") or (
        "received=[2001:db8::77]" in via and "rport=40000" in via
    )
    again = parse_message(msg.to_bytes())
    assert isinstance(again, Request) and checked(again.to_bytes())[1] is None


# -- SDP 4-to-6 -----------------------------------------------------------------------------

SDP_4 = (
    b"v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\na=rtcp:4001 IN IP4 198.51.100.7\r\n"
)


def test_an_ipv4_offer_rewritten_for_an_ipv6_party() -> None:
    out = rewrite(SDP_4, {0: RelayEndpoint("2001:db8::9", 30000, 30001)}).decode()
    assert "o=- 1 1 IN IP6 2001:db8::9\r\n" in out
    assert "c=IN IP6 2001:db8::9\r\n" in out and "IP4" not in out
    assert "m=audio 30000 RTP/AVP 0\r\n" in out and "a=rtcp:30001 IN IP6 2001:db8::9\r\n" in out
    assert parse(out.encode()).streams[0].address_type == "IP6"


def test_an_ipv6_answer_rewritten_for_an_ipv4_party() -> None:
    out = rewrite(SDP_6.encode(), {0: RelayEndpoint("203.0.113.9", 31000, 31001)}).decode()
    assert (
        "c=IN IP4 203.0.113.9\r\n" in out
        and "o=assistant 971731711378798081 0 IN IP4 203.0.113.9" in out
    )
    assert "IP6" not in out


def test_hold_stays_hold_in_the_other_family() -> None:
    held = SDP_4.replace(b"c=IN IP4 198.51.100.7", b"c=IN IP4 0.0.0.0")
    out = rewrite(held, {0: RelayEndpoint("2001:db8::9", 30000, 30001)}).decode()
    assert "c=IN IP6 ::\r\n" in out
    assert parse(out.encode()).streams[0].on_hold
    held6 = SDP_6.replace("c=IN IP6 2001:db8::20", "c=IN IP6 ::").encode()
    assert parse(held6).streams[0].on_hold
    assert (
        "c=IN IP4 0.0.0.0\r\n" in rewrite(held6, {0: RelayEndpoint("203.0.113.9", 1, 2)}).decode()
    )


# -- the router: a listener per family --------------------------------------------------------


class FakeUdp:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port, self.listener = host, port, 0
        self.sent: list[tuple[bytes, Any]] = []

    def send_bytes(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))

    def local_host_for(self, destination: str) -> str:
        return self.host

    def close(self) -> None:
        pass


def invite_to(host: str) -> Request:
    ours = "192.0.2.1:5060"
    msg = parse_message(
        (
            f"INVITE sip:100@{host_text(host)} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {ours};branch=z9hG4bK6;rport\r\nMax-Forwards: 70\r\n"
            "From: <sip:1@192.0.2.1>;tag=a\r\nTo: <sip:100@x>\r\nCall-ID: v6\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:{ours}>\r\nContent-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(msg, Request)
    return msg


def test_an_ipv6_destination_leaves_from_the_ipv6_listener() -> None:
    v4, v6 = FakeUdp("192.0.2.1", 5060), FakeUdp("2001:db8::1", 5062)
    r = Transports([v4, v6])  # type: ignore[list-item]
    assert r.local_host_for("2001:db8::20") == "2001:db8::1"
    assert r.local_host_for("198.51.100.7") == "192.0.2.1"
    assert r.port_for(("2001:db8::20", 5060)) == 5062 and r.port_for(("198.51.100.7", 5060)) == 5060
    out, data = r.prepare(invite_to("2001:db8::20"), ("2001:db8::20", 5060))
    assert isinstance(out, Destination) and out.listener == 1
    assert ";branch=z9hG4bK6" in data.decode() and "192.0.2.1:5062" in data.decode()
    r.send_bytes(data, out)
    r.send_bytes(b"ack", ("2001:db8::20", 5060))  # a plain tuple (a 2xx ACK again)
    r.send_bytes(b"v4", ("198.51.100.7", 5060))
    assert [a for _, a in v6.sent] == [("2001:db8::20", 5060)] * 2
    assert [a for _, a in v4.sent] == [("198.51.100.7", 5060)]


def test_one_family_only_sends_everything_from_the_first_listener() -> None:
    v4 = FakeUdp("192.0.2.1", 5060)
    r = Transports([v4])  # type: ignore[list-item]
    out, _ = r.prepare(invite_to("2001:db8::20"), ("2001:db8::20", 5060))
    assert out == ("2001:db8::20", 5060) and type(out) is tuple


# -- the guard: IPv6 sources by /64 -------------------------------------------------------------


def test_source_keys() -> None:
    assert source_key("198.51.100.7") == "198.51.100.7"
    assert source_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert source_key("2001:DB8:1:2::ffff") == "2001:db8:1:2::/64"
    assert source_key("::ffff:198.51.100.7") == "198.51.100.7"


def test_a_host_rotating_its_ipv6_address_is_banned_as_its_64() -> None:
    rules = GuardRules(GuardSettings(requests=5, window=1.0, ban=60.0))
    drops = [
        rules.check(f"2001:db8:1:2::{i + 1:x}", Standing.UNKNOWN, i * 0.01, "INVITE").drop
        for i in range(8)
    ]
    assert drops == [None] * 5 + ["rate", "banned", "banned"]
    assert rules.check("2001:db8:1:2:ffff::9", Standing.UNKNOWN, 0.5, "INVITE").drop == "banned"
    # the next /64 is another source
    assert rules.check("2001:db8:1:3::1", Standing.UNKNOWN, 0.5, "INVITE").drop is None
    (ban,) = rules.bans.active(0.5)
    assert ban.address == "2001:db8:1:2::/64"


# -- DNS: AAAA as well as A ------------------------------------------------------------------


def test_with_ipv6_both_a_and_aaaa_ipv4_first() -> None:
    answers = {
        ("dual.test", "A"): Answer(("192.0.2.5",), 60),
        ("dual.test", "AAAA"): Answer(("2001:db8::5",), 30),
    }
    result, asked = run(Lookup("dual.test", 5060, ipv6=True), answers)
    assert asked == [Query("dual.test", "A"), Query("dual.test", "AAAA")]
    assert result.error is None and result.entries[0].hosts == ("192.0.2.5", "2001:db8::5")
    assert result.ttl == 30
    result, _ = run(
        Lookup("v6.test", 5060, ipv6=True), {("v6.test", "AAAA"): answers[("dual.test", "AAAA")]}
    )
    assert result.error is None and result.entries[0].hosts == ("2001:db8::5",)
    result, _ = run(Lookup("none.test", 5060, ipv6=True), {})
    assert result.error == "no answer"


def test_with_ipv6_srv_targets_get_aaaa_too() -> None:
    from sipedge.resolver.targets import SrvRecord

    answers = {
        ("_sip._udp.gw.test", "SRV"): Answer((SrvRecord(10, 0, 5070, "t.test"),), 60),
        ("t.test", "A"): Answer(("192.0.2.6",), 60),
        ("t.test", "AAAA"): Answer(("2001:db8::6",), 60),
    }
    result, asked = run(Lookup("gw.test", None, ipv6=True), answers)
    assert Query("t.test", "AAAA") in asked
    assert result.entries[0].hosts == ("192.0.2.6", "2001:db8::6")
    result, asked = run(Lookup("gw.test", None), answers)
    assert Query("t.test", "AAAA") not in asked and result.entries[0].hosts == ("192.0.2.6",)


def test_hosts_file_ipv6_lines_only_with_ipv6() -> None:
    text = "::1 localhost ip6-localhost\n127.0.0.1 localhost\n2001:db8::7 gw\n192.0.2.7 gw\n"
    assert hosts_lookup(parse_hosts(text), "gw") == ("192.0.2.7",)
    assert hosts_lookup(parse_hosts(text, ipv6=True), "gw") == ("192.0.2.7", "2001:db8::7")
    assert hosts_lookup(parse_hosts(text, ipv6=True), "ip6-localhost") == ("::1",)


# -- mediad's "address-family" ---------------------------------------------------------------


def test_address_family_key() -> None:
    assert _family("IP4") == {}  # absent means IP4: a mediad from before IPv6 understands it
    assert _family("IP6") == {"address-family": "IP6"}
    with pytest.raises(ValueError):
        _family("ip6")


# -- config ----------------------------------------------------------------------------------


def test_ipv6_listeners_gateways_and_networks_in_the_config() -> None:
    data = example_data()
    data["sip"]["listen"] = ["udp://0.0.0.0:5060", "udp://[2001:DB8::10]:5060", "tcp://[::1]:5070"]
    data["routing_gateways"][1].update(address="2001:DB8:0::20")
    data["mapping_gateways"][0]["addresses"] = ["2001:db8:30::/48"]
    config = parse_config(data)
    assert [a.address for a in config.sip.listen] == [
        ("udp", "0.0.0.0", 5060),
        ("udp", "2001:db8::10", 5060),
        ("tcp", "::1", 5070),
    ]
    # as the kernel writes source addresses, so that a gateway is recognised by its source
    assert config.routing_gateways[1].address == "2001:db8::20"


@pytest.mark.parametrize(
    "listen",
    ["udp://::1:5060", "udp://[::1]", "udp://[2001:db8:::1]:5060", "udp://[192.0.2.1]:5060"],
)
def test_bad_ipv6_listeners_are_refused(listen: str) -> None:
    data = example_data()
    data["sip"]["listen"] = ["udp://0.0.0.0:5060", listen]
    problem = one_problem(data)
    assert problem.path == "sip.listen[1]" and "IPv6 in brackets" in problem.allowed


def test_an_ipv6_peer_needs_an_ipv6_udp_listener() -> None:
    data = example_data()
    data["routing_gateways"][1].update(address="2001:db8::20")
    problem = one_problem(data)
    assert problem.path == "routing_gateways[1].address" and "IPv6 udp://" in problem.allowed
    data["sip"]["listen"] = ["udp://0.0.0.0:5060", "udp://[::]:5060"]
    assert parse_config(data).routing_gateways[1].address == "2001:db8::20"


def test_an_ipv6_udp_listener_is_ipv6_only() -> None:
    """udp://127.0.0.1:P and udp://[::]:P side by side: the IPv6 socket takes no IPv4
    (IPV6_V6ONLY), so both bind and IPv4 sources never show up as ::ffff:a.b.c.d."""

    async def main() -> None:
        v4 = await open_udp("127.0.0.1", 0, lambda *a: None)
        v6 = await open_udp("::", v4.port, lambda *a: None)
        try:
            assert v6.port == v4.port and v6.host == "::"
            assert v6._transport is not None
            sock = v6._transport.get_extra_info("socket")  # asyncio's TransportSocket
            assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        finally:
            v4.close()
            v6.close()

    asyncio.run(main())
