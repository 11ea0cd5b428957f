"""sipedge.sip.sdp: parsing every stream's address, port and direction; rewriting to the relay."""

from __future__ import annotations

import pytest

from sipedge.calls.watchdog import check_interval, last_packet, rtp_idle
from sipedge.sip.sdp import RelayEndpoint, SdpError, is_sdp, parse, rewrite

OFFER = (
    b"v=0\r\n"
    b"o=- 1 2 IN IP4 192.0.2.10\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtcp:4001\r\n"
    b"a=sendrecv\r\n"
)
RELAY = RelayEndpoint("203.0.113.5", 30000, 30001)


def test_parse_single_stream() -> None:
    sdp = parse(OFFER)
    assert sdp.session_address == "192.0.2.10"
    (s,) = sdp.streams
    assert (s.media, s.port, s.proto, s.address, s.direction) == (
        "audio",
        4000,
        "RTP/AVP",
        "192.0.2.10",
        "sendrecv",
    )
    assert s.rtcp_port == 4001 and not s.own_connection and not sdp.on_hold


def test_rewrite_single_stream_keeps_everything_else() -> None:
    out = rewrite(OFFER, {0: RELAY})
    assert out == (
        b"v=0\r\n"
        b"o=- 1 2 IN IP4 203.0.113.5\r\n"
        b"s=-\r\n"
        b"c=IN IP4 203.0.113.5\r\n"
        b"t=0 0\r\n"
        b"m=audio 30000 RTP/AVP 0 101\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtcp:30001\r\n"
        b"a=sendrecv\r\n"
    )
    assert rewrite(OFFER, {}) == OFFER


def test_lf_only_body_keeps_lf() -> None:
    body = OFFER.replace(b"\r\n", b"\n")
    out = rewrite(body, {0: RELAY})
    assert b"\r" not in out and b"m=audio 30000 " in out


MULTI = (
    b"v=0\n"
    b"o=- 1 2 IN IP4 192.0.2.10\n"
    b"s=-\n"
    b"c=IN IP4 192.0.2.10\n"
    b"t=0 0\n"
    b"a=sendonly\n"
    b"m=audio 4000 RTP/AVP 0\n"
    b"a=rtcp:4001 IN IP4 192.0.2.10\n"
    b"m=video 0 RTP/AVP 96\n"
    b"m=video 5000 RTP/AVP 96\n"
    b"c=IN IP4 192.0.2.20\n"
    b"a=inactive\n"
    b"m=audio 6000 RTP/AVP 8\n"
    b"c=IN IP6 2001:db8::1\n"
)


def test_parse_multi_stream_directions_and_levels() -> None:
    sdp = parse(MULTI)
    a, v0, v1, a6 = sdp.streams
    assert a.direction == "sendonly" and a.on_hold and a.rtcp_port == 4001
    assert v0.disabled and v0.index == 1
    assert (v1.address, v1.direction, v1.own_connection) == ("192.0.2.20", "inactive", True)
    assert (a6.address_type, a6.address) == ("IP6", "2001:db8::1")
    assert sdp.on_hold


def test_rewrite_some_streams_gives_relayed_ones_their_own_c() -> None:
    out = parse_lines(rewrite(MULTI, {0: RELAY, 2: RelayEndpoint("203.0.113.5", 30002, 30003)}))
    # session c= stays: the IPv6 stream is not relayed and still inherits nothing from it
    assert out[3] == "c=IN IP4 192.0.2.10"
    assert out[6:9] == [
        "m=audio 30000 RTP/AVP 0",
        "c=IN IP4 203.0.113.5",
        "a=rtcp:30001 IN IP4 203.0.113.5",
    ]
    assert out[9] == "m=video 0 RTP/AVP 96"
    assert out[10:12] == ["m=video 30002 RTP/AVP 96", "c=IN IP4 203.0.113.5"]
    assert out[13:] == ["m=audio 6000 RTP/AVP 8", "c=IN IP6 2001:db8::1"]
    reparsed = parse(rewrite(MULTI, {0: RELAY, 2: RelayEndpoint("203.0.113.5", 30002, 30003)}))
    assert [s.address for s in reparsed.streams] == [
        "203.0.113.5",
        "192.0.2.10",
        "203.0.113.5",
        "2001:db8::1",
    ]


def parse_lines(body: bytes) -> list[str]:
    return body.decode().splitlines()


def test_rfc2543_hold_address_is_kept() -> None:
    body = OFFER.replace(b"c=IN IP4 192.0.2.10", b"c=IN IP4 0.0.0.0")
    assert parse(body).on_hold
    out = rewrite(body, {0: RELAY})
    assert b"c=IN IP4 0.0.0.0" in out and b"m=audio 30000" in out


def test_stream_level_hold_address_without_session_c() -> None:
    body = b"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    body += b"c=IN IP4 0.0.0.0\r\n"
    out = rewrite(body, {0: RELAY})
    assert b"c=IN IP4 0.0.0.0" in out and b"m=audio 30000" in out


def test_missing_session_c_gets_stream_c() -> None:
    body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    body += b"c=IN IP4 192.0.2.1\r\nm=audio 4002 RTP/AVP 0\r\n"
    sdp = parse(body)
    assert sdp.streams[1].address is None
    out = parse_lines(rewrite(body, {0: RELAY, 1: RelayEndpoint("203.0.113.5", 30002, 30003)}))
    assert out[-3:] == [
        "c=IN IP4 203.0.113.5",
        "m=audio 30002 RTP/AVP 0",
        "c=IN IP4 203.0.113.5",
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"x=1\r\n",
        b"v=0\r\nm=audio\r\n",
        b"v=0\r\nm=audio x RTP/AVP 0\r\n",
        b"v=0\r\nm=audio 70000 RTP/AVP 0\r\n",
        b"v=0\r\nc=IN\r\n",
        b"v=0\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:x\r\n",
    ],
)
def test_bad_sdp(body: bytes) -> None:
    with pytest.raises(SdpError):
        parse(body)


def test_is_sdp() -> None:
    assert is_sdp("application/sdp", OFFER)
    assert is_sdp("Application/SDP; charset=x", OFFER)
    assert not is_sdp("application/dtmf-relay", OFFER)
    assert not is_sdp("application/sdp", b"")
    assert is_sdp(None, OFFER) and not is_sdp(None, b"hello")


def test_watchdog_rules() -> None:
    assert check_interval(60) == 5.0 and check_interval(0.4) == 0.2 and check_interval(2) == 0.5
    assert rtp_idle(now=100, last_packet=None, since=40, timeout=60)
    assert not rtp_idle(now=100, last_packet=None, since=41, timeout=60)
    assert not rtp_idle(now=100, last_packet=90, since=0, timeout=60)
    assert rtp_idle(now=100, last_packet=40, since=0, timeout=60)
    assert last_packet([{"last-packet": None}, {"last-packet": 5.0}, {"last-packet": 7}]) == 7
    assert last_packet([{"last-packet": None}]) is None
