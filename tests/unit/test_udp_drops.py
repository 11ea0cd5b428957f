"""tests/bench/udp_drops.py reads the per-socket drops of /proc/net/udp{,6} right.

First on a known text (the fields of rows copied from a running machine, values changed to be
told apart),
then on a known event: a socket with a small receive buffer that nobody reads is sent more
datagrams than fit, and the drops counted for its port must be exactly the ones it never got.
"""

from __future__ import annotations

import socket
import sys

import pytest

from tests.bench.udp_drops import UdpSocket, drops_by_port, parse, sockets

HEADER = (
    "sl local_address rem_address st tx_queue rx_queue tr tm->when retrnsmt uid timeout inode ref"
    " pointer drops"
)
TIMERS = "00:00000000 00000000"  # tr tm->when retrnsmt
QUEUES = "00000000:00000000"  # tx_queue rx_queue, both empty
UDP = "\n".join(
    [
        "   " + HEADER,
        f"10185: 0100007F:13C4 00000000:0000 07 00000000:00000000 {TIMERS} 0 0 3472173 2 3f7e 1198",
        f"10186: 0100007F:AF15 0200007F:13C4 01 00000000:00004400 {TIMERS} 107 0 3472174 2 4711 0",
        f"10187: 00000000:13C4 00000000:0000 07 00000000:00000000 {TIMERS} 0 0 3472175 2 4712 3",
    ]
)
V6_LOOPBACK = "00000000000000000000000001000000"  # ::1, each 32-bit word in host byte order
V6_ANY = "0" * 32
UDP6 = "\n".join(
    [
        "  " + HEADER,
        f"15023: {V6_LOOPBACK}:81FA {V6_ANY}:0000 07 {QUEUES} {TIMERS} 0 0 3732814 2 3233 7",
    ]
)

little_endian = pytest.mark.skipif(
    sys.byteorder != "little", reason="the rows were copied from a little-endian machine"
)


@little_endian
def test_rows_of_a_known_text() -> None:
    assert parse(UDP) == [
        UdpSocket(("127.0.0.1", 5060), ("0.0.0.0", 0), 0, 3472173, 1198),
        UdpSocket(("127.0.0.1", 44821), ("127.0.0.2", 5060), 0x4400, 3472174, 0),
        UdpSocket(("0.0.0.0", 5060), ("0.0.0.0", 0), 0, 3472175, 3),
    ]
    assert parse(UDP6) == [UdpSocket(("::1", 33274), ("::", 0), 0, 3732814, 7)]


@little_endian
def test_drops_are_summed_per_local_port() -> None:
    rows = parse(UDP) + parse(UDP6)
    assert drops_by_port([5060, 44821, 33274, 9], rows) == {5060: 1201, 44821: 0, 33274: 7, 9: 0}


def test_a_short_or_empty_text() -> None:
    assert parse("") == []
    assert parse(UDP.splitlines()[0] + "\n12: truncated row\n") == []


def test_the_drops_of_a_full_socket_are_the_datagrams_it_never_got() -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sink, sender:
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel's minimum
        sink.bind(("127.0.0.1", 0))
        port = sink.getsockname()[1]
        before = drops_by_port([port])[port]
        sent = 200
        for _ in range(sent):
            sender.sendto(b"x" * 1000, ("127.0.0.1", port))
        sink.setblocking(False)
        received = 0
        while True:
            try:
                sink.recv(2048)
            except BlockingIOError:
                break
            received += 1
        dropped = drops_by_port([port])[port] - before
        assert 0 < received < sent
        assert dropped == sent - received
        assert any(r.local == ("127.0.0.1", port) for r in sockets())
