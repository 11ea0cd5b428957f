"""sdp.parse remembers its last few results: the same body read again costs a lookup, the
answer is the one a fresh parse gives, the memory stays bounded, and errors are not kept."""

from __future__ import annotations

import pytest

from sipedge.sip import sdp

BODY = (
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    b"m=audio 20000 RTP/AVP 0 8\r\na=rtcp:20001\r\na=sendonly\r\n"
)


def test_the_same_body_gives_the_same_answer_once_parsed() -> None:
    first = sdp.parse(BODY)
    assert sdp.parse(bytes(BODY)) is first  # equal bytes, another object: still remembered
    assert first == sdp._parse(BODY)
    assert first.streams[0].rtcp_port == 20001 and first.on_hold


def test_the_memory_is_bounded() -> None:
    for port in range(20000, 20100):
        body = BODY.replace(b"20000", str(port).encode())
        assert sdp.parse(body).streams[0].port == port
    assert len(sdp._parsed) <= sdp._REMEMBER


def test_a_bad_body_raises_every_time() -> None:
    for _ in range(2):
        with pytest.raises(sdp.SdpError):
            sdp.parse(b"m=audio x RTP/AVP 0\r\n")
    assert b"m=audio x RTP/AVP 0\r\n" not in sdp._parsed


def test_rewrite_reads_the_remembered_parse() -> None:
    relay = sdp.RelayEndpoint("198.51.100.9", 30000, 30001)
    out = sdp.rewrite(BODY, {0: relay})
    assert b"m=audio 30000 RTP/AVP 0 8" in out and b"c=IN IP4 198.51.100.9" in out
    assert sdp.parse(out).streams[0].address == "198.51.100.9"
