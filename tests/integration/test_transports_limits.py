"""The bounds of sipd's TCP listener, from the wire (raw sockets on loopback).

Too many connections from one address are refused; a slow sender (a message begun and not
finished) is closed after the read timeout; an oversized message gets 513 and the connection
closes, a message without Content-Length 400; a CRLF keep-alive ping gets its pong; an idle
connection is closed; a request over a kept connection is answered over it.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from tests.conftest import free_port, gateway

pytestmark = [pytest.mark.slow]


def options(
    branch: str = "z9hG4bKlim", extra: str = "", body: bytes = b"", cl: bool = True
) -> bytes:
    head = (
        "OPTIONS sip:probe@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 127.0.0.1:5999;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:probe@127.0.0.1>;tag=p1\r\n"
        "To: <sip:probe@127.0.0.1>\r\n"
        f"Call-ID: limits-{branch}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        f"{extra}"
    )
    if cl:
        head += f"Content-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.settimeout(5)
    return sock


def read_until_closed(sock: socket.socket, timeout: float = 5) -> tuple[bytes, bool]:
    """Everything the peer sends until it closes (True) or `timeout` passes (False)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return data, False
    except ConnectionResetError:
        return data, True
    return data, True


@pytest.fixture
def sipd(sipd_factory: Any) -> Any:
    listen = free_port(socket.SOCK_STREAM)
    daemon = sipd_factory(
        [gateway("gw", free_port())],
        listen=[f"tcp://127.0.0.1:{listen}"],
        sip={
            "connections": {
                "max_per_source": 3,
                "message_timeout": 1,
                "idle_timeout": 4,
            }
        },
        parameters={"SS_SIP_MAX_MESSAGE_SIZE": 4096},
    )
    daemon.tcp_port = listen
    return daemon


def test_a_request_is_answered_over_its_connection_and_pings_get_pongs(sipd: Any) -> None:
    with connect(sipd.tcp_port) as sock:
        sock.sendall(b"\r\n\r\n")
        assert sock.recv(16) == b"\r\n"
        sock.sendall(options("z9hG4bKa") + options("z9hG4bKb"))  # two in one segment
        data = b""
        while data.count(b"SIP/2.0 200") < 2:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    assert b"branch=z9hG4bKa" in data and b"branch=z9hG4bKb" in data
    assert b"received=127.0.0.1" not in data  # sent-by host is the source: no received


def test_too_many_connections_from_one_address_are_refused(sipd: Any) -> None:
    kept = [connect(sipd.tcp_port) for _ in range(3)]
    for sock in kept:  # each is served
        sock.sendall(options(f"z9hG4bKk{sock.fileno()}"))
        assert sock.recv(65536).startswith(b"SIP/2.0 200")
    extra = connect(sipd.tcp_port)
    data, closed = read_until_closed(extra)
    assert closed and data == b""
    for sock in kept:
        sock.close()
    metrics = sipd.metrics()
    assert (
        metrics['sipedge_sip_connections_refused_total{reason="per_source",transport="tcp"}'] >= 1
    )
    time.sleep(0.3)  # the closes reach sipd: the address may connect again
    with connect(sipd.tcp_port) as again:
        again.sendall(options("z9hG4bKagain"))
        assert again.recv(65536).startswith(b"SIP/2.0 200")


def test_a_slow_sender_is_closed_after_the_read_timeout(sipd: Any) -> None:
    message = options("z9hG4bKslow")
    with connect(sipd.tcp_port) as sock:
        started = time.monotonic()
        sock.sendall(message[:40])
        closed = False
        for i in range(40, 80):  # a byte every 0.1 s: it would take 4 s to finish
            try:
                sock.sendall(message[i : i + 1])
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.1)
        if not closed:
            data, closed = read_until_closed(sock, 5)
            assert data == b""
        elapsed = time.monotonic() - started
    assert closed
    assert elapsed < 3.0  # message_timeout is 1 s (checked every 0.25 s)
    assert sipd.metrics()['sipedge_sip_connections_closed_total{reason="slow"}'] >= 1


def test_an_oversized_message_gets_513_and_closes_the_connection(sipd: Any) -> None:
    with connect(sipd.tcp_port) as sock:
        sock.sendall(options("z9hG4bKbig", body=b"x" * 8000))
        data, closed = read_until_closed(sock)
    assert data.startswith(b"SIP/2.0 513"), data
    assert closed
    assert sipd.metrics()['sipedge_sip_framing_errors_total{reason="too_large"}'] == 1


def test_a_message_without_content_length_gets_400_and_closes(sipd: Any) -> None:
    with connect(sipd.tcp_port) as sock:
        sock.sendall(options("z9hG4bKnocl", cl=False))
        data, closed = read_until_closed(sock)
    assert data.startswith(b"SIP/2.0 400 Missing Content-Length"), data
    assert closed


def test_garbage_closes_the_connection(sipd: Any) -> None:
    with connect(sipd.tcp_port) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        _data, closed = read_until_closed(sock)
    assert closed
    assert sipd.alive()


def test_an_idle_connection_is_closed(sipd: Any) -> None:
    with connect(sipd.tcp_port) as sock:
        sock.sendall(options("z9hG4bKidle"))
        assert sock.recv(65536).startswith(b"SIP/2.0 200")
        started = time.monotonic()
        data, closed = read_until_closed(sock, 10)
    assert closed and data == b""
    assert 3.0 < time.monotonic() - started < 8.0
    assert sipd.metrics()['sipedge_sip_connections_closed_total{reason="idle"}'] >= 1
