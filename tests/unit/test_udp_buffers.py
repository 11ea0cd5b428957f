"""The SIP socket asks for a 4 MiB receive buffer and says at start what the kernel granted.

On a real socket the granted size must be Linux's answer (twice the request, capped at
net.core.rmem_max); on a fake socket that grants less, the start-up line is a warning that
names the sysctl to raise.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Any

import pytest

from sipedge.sip.transport.udp import RECEIVE_BUFFER, SEND_BUFFER, UdpTransport, open_udp

LOGGER = "sipedge.sip.transport.udp"


def _buffer_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "receive buffer" in r.getMessage()]


async def test_a_real_socket_gets_the_buffer_and_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    transport = await open_udp("127.0.0.1", 0, lambda msg, source, t: None)
    try:
        assert transport._transport is not None
        sock = transport._transport.get_extra_info("socket")
        granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
        assert transport.receive_buffer == granted == 2 * min(RECEIVE_BUFFER, rmem_max)
        [line] = _buffer_lines(caplog)
        assert f"receive buffer {granted} bytes" in line.getMessage()
        assert f"net.core.rmem_max {rmem_max}" in line.getMessage()
        assert (line.levelno == logging.WARNING) == (rmem_max < RECEIVE_BUFFER)
    finally:
        transport.close()


class CappedSocket:
    """Grants at most `cap` bytes, doubled, as Linux does under a low net.core.rmem_max."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.asked: dict[int, int] = {}

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", 5060)

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.asked[option] = value

    def getsockopt(self, level: int, option: int) -> int:
        return 2 * min(self.asked[option], self.cap)


class FakeTransport:
    def __init__(self, sock: CappedSocket) -> None:
        self.sock = sock

    def get_extra_info(self, name: str) -> Any:
        return self.sock if name == "socket" else None


def test_a_capped_buffer_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    sock = CappedSocket(cap=212992)  # Debian's default net.core.rmem_max
    transport = UdpTransport(lambda msg, source, t: None)
    transport.connection_made(FakeTransport(sock))  # type: ignore[arg-type]
    assert sock.asked == {socket.SO_RCVBUF: RECEIVE_BUFFER, socket.SO_SNDBUF: SEND_BUFFER}
    assert transport.receive_buffer == 425984
    [line] = _buffer_lines(caplog)
    assert line.levelno == logging.WARNING
    assert "receive buffer 425984 bytes (asked 4194304" in line.getMessage()
    assert "raise net.core.rmem_max to 4194304 or more" in line.getMessage()


async def test_queued_bytes_counts_what_waits_unread_in_the_kernel() -> None:
    """Load shedding's input (`calls.capacity.Backlog`): datagrams sent while the loop is busy
    wait in the socket; SO_MEMINFO counts them as the kernel does (more than their payload)."""
    received: list[object] = []
    transport = await open_udp("127.0.0.1", 0, lambda msg, source, t: received.append(msg))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert transport.queued_bytes() == 0
        datagram = b"OPTIONS sip:x SIP/2.0\r\n" + b"X-Pad: " + b"p" * 560 + b"\r\n\r\n"
        for _ in range(10):  # no await: the loop cannot read them yet
            sender.sendto(datagram, ("127.0.0.1", transport.port))
        queued = transport.queued_bytes()
        assert 10 * len(datagram) <= queued < 10 * 4096, queued
        for _ in range(50):  # the loop reads them (each a broken request, dropped)
            await asyncio.sleep(0.01)
            if transport.queued_bytes() == 0:
                break
        assert transport.queued_bytes() == 0
    finally:
        sender.close()
        transport.close()
    assert transport.queued_bytes() == 0  # closed: nothing to ask
