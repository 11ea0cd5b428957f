"""Stream framing (RFC 3261 18.3, RFC 5626 pings): sipedge.sip.transport.framing, pure."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipedge.sip.transport.framing import PING, Event, FrameError, StreamParser


def message(body: bytes = b"", *, cl: str | None = None, extra: str = "") -> bytes:
    length = str(len(body)) if cl is None else cl
    head = (
        "OPTIONS sip:a@192.0.2.1 SIP/2.0\r\n"
        "Via: SIP/2.0/TCP 192.0.2.9:5060;branch=z9hG4bKframe\r\n"
        "From: <sip:b@192.0.2.9>;tag=1\r\n"
        "To: <sip:a@192.0.2.1>\r\n"
        "Call-ID: frame-1\r\n"
        "CSeq: 1 OPTIONS\r\n"
        f"{extra}"
    )
    if length != "none":
        head += f"Content-Length: {length}\r\n"
    return (head + "\r\n").encode() + body


def feed_all(parser: StreamParser, chunks: list[bytes]) -> list[Event]:
    out: list[Event] = []
    for chunk in chunks:
        out += parser.feed(chunk)
    return out


def test_one_message_whole() -> None:
    data = message(b"hello")
    assert StreamParser(16384).feed(data) == [data]


def test_byte_by_byte() -> None:
    data = message(b"v=0\r\n")
    parser = StreamParser(16384)
    out = feed_all(parser, [data[i : i + 1] for i in range(len(data))])
    assert out == [data]
    assert not parser.pending and parser.buffered == 0


def test_several_messages_in_one_chunk_and_a_split_one() -> None:
    a, b, c = message(b"a"), message(b"bb"), message(b"ccc")
    parser = StreamParser(16384)
    assert parser.feed(a + b + c[:10]) == [a, b]
    assert parser.pending
    assert parser.feed(c[10:]) == [c]
    assert not parser.pending


def test_body_bytes_that_look_like_headers_stay_in_the_body() -> None:
    body = b"Content-Length: 99\r\n\r\nINVITE x"
    data = message(body)
    assert StreamParser(16384).feed(data + data) == [data, data]


def test_compact_content_length() -> None:
    data = message(b"xy", cl="none", extra="l: 2\r\n")
    assert StreamParser(16384).feed(data) == [data]


def test_crlf_keepalive_ping_and_pong() -> None:
    parser = StreamParser(16384)
    assert parser.feed(b"\r\n\r\n") == [PING]
    assert parser.feed(b"\r\n") == []  # a lone CRLF (a pong, or before a message): nothing
    assert not parser.pending
    data = message()
    assert parser.feed(data) == [data]  # the lone CRLF before it was no ping
    assert parser.feed(b"\r\n\r\n\r\n\r\n") == [PING, PING]
    assert parser.feed(b"\r") == [] and not parser.pending
    assert parser.feed(b"\n\r\n") == [PING]


def test_ping_between_messages_split_anywhere() -> None:
    data = message(b"z") + b"\r\n\r\n" + message(b"y")
    for cut in range(len(data) + 1):
        parser = StreamParser(16384)
        out = parser.feed(data[:cut]) + parser.feed(data[cut:])
        assert out == [message(b"z"), PING, message(b"y")], cut


def test_missing_content_length_is_an_error_with_the_head() -> None:
    parser = StreamParser(16384)
    data = message(cl="none")
    out = parser.feed(data + message())
    assert out == [FrameError("no_content_length", data)]
    assert parser.broken and parser.feed(message()) == []


@pytest.mark.parametrize("cl", ["abc", "-1", "1234567890", ""])
def test_bad_content_length(cl: str) -> None:
    (error,) = StreamParser(16384).feed(message(cl=cl))
    assert isinstance(error, FrameError) and error.reason == "bad_content_length"


def test_two_content_lengths_that_disagree() -> None:
    data = message(b"ab", extra="l: 3\r\n")
    (error,) = StreamParser(16384).feed(data)
    assert isinstance(error, FrameError) and error.reason == "bad_content_length"


def test_oversized_body_announced_is_refused_before_it_is_read() -> None:
    parser = StreamParser(1000)
    data = message(cl="5000")
    (error,) = parser.feed(data)
    assert isinstance(error, FrameError)
    assert error.reason == "too_large" and error.head == data
    assert parser.buffered == 0


def test_oversized_header_block_without_end() -> None:
    parser = StreamParser(1000)
    out = parser.feed(b"INVITE sip:x SIP/2.0\r\n" + b"X-Junk: " + b"a" * 2000)
    assert out == [FrameError("too_large")]


def test_slow_sender_keeps_the_message_pending() -> None:
    parser = StreamParser(16384)
    data = message(b"abc")
    parser.feed(data[:5])
    assert parser.pending
    parser.feed(data[5:-1])
    assert parser.pending
    assert parser.feed(data[-1:]) == [data]


def test_linear_time_when_fed_byte_by_byte_without_end() -> None:
    # a header block that never ends, one byte at a time: the search resumes, never restarts
    parser = StreamParser(200_000)
    chunk = b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r"
    for _ in range(3000):
        for i in range(len(chunk)):
            assert parser.feed(chunk[i : i + 1]) == []
        parser.feed(b"\n")
    assert parser.pending


bodies = st.binary(max_size=300)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(bodies, st.just(None)), min_size=1, max_size=6),
    st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=40),
)
def test_any_cut_of_any_sequence_gives_the_same_events(
    items: list[bytes | None], cuts: list[int]
) -> None:
    """Messages (None: a ping) joined, then cut into arbitrary chunks: the same events."""
    stream = b""
    expected: list[Event] = []
    for item in items:
        if item is None:
            stream += b"\r\n\r\n"
            expected.append(PING)
        else:
            stream += message(item)
            expected.append(message(item))
    parser = StreamParser(16384)
    out: list[Event] = []
    pos = 0
    i = 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        out += parser.feed(stream[pos : pos + step])
        pos += step
        i += 1
    assert out == expected
    assert not parser.pending


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_garbage_never_raises_and_stays_bounded(data: bytes) -> None:
    parser = StreamParser(1000)
    for i in range(0, len(data), 7):
        for event in parser.feed(data[i : i + 7]):
            assert isinstance(event, bytes | FrameError) or event is PING
            if isinstance(event, bytes):
                assert len(event) <= 1000
    assert parser.buffered <= 1000 + 7
