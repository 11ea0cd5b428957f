"""Load shedding in a real sipd: a backlog in its SIP socket makes new calls get 503 at once.

sipd is stopped (SIGSTOP) while 200 INVITEs arrive, so they wait in its socket's receive queue
as they would behind a busy loop (about 300 KiB in the kernel's accounting, over the 64 KiB
SS_SIP_OVERLOAD_QUEUE). When it goes on (SIGCONT), its sampler is overdue. Usually it runs
before the socket is read (libuv runs due timers first in a loop iteration) and every INVITE
gets `503 Over Capacity`; if sipd was stopped in its poll, the poll's batch (libuv reads up to
32 datagrams a socket at a time) is read first and admitted, and the sample after it finds the
rest waiting. Either way most are refused at once, none is lost, and the 503s are counted.
Once the queue is read, the next sample ends the episode and a new INVITE is admitted (100
Trying, and it goes on to the gateway).
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import free_port, gateway, make_config, start_sipd

CALLS = 200
FIRST_BATCHES = 64  # at most two of libuv's batches of 32 read before the overdue sample


def invite(n: int, sip_port: int, local_port: int, number: str = "1000") -> bytes:
    return (
        f"INVITE sip:{number}@127.0.0.1:{sip_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bKshed{n}\r\n"
        f"From: <sip:100@127.0.0.1>;tag=shed{n}\r\nTo: <sip:1000@127.0.0.1>\r\n"
        f"Call-ID: shed{n}@127.0.0.1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        f"Contact: <sip:100@127.0.0.1:{local_port}>\r\n"
        f"X-Pad: {'p' * 400}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def responses(sock: socket.socket, want: int, seconds: float) -> list[bytes]:
    """First lines of what comes back, until `want` of them or the deadline."""
    got: list[bytes] = []
    deadline = time.monotonic() + seconds
    while len(got) < want and time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65535)
        except TimeoutError:
            break
        got.append(data)
    return got


def first(sock: socket.socket, wanted: Callable[[bytes], bool], seconds: float = 5.0) -> bytes:
    """The first datagram `wanted` picks, within the deadline (others are skipped)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65535)
        except TimeoutError:
            break
        if wanted(data):
            return data
    raise AssertionError("not received in time")


def test_new_calls_get_503_while_behind_and_are_admitted_again(tmp_path: Path) -> None:
    gw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the gateway: takes INVITEs, silent
    gw.bind(("127.0.0.1", 0))
    config = make_config(
        tmp_path,
        free_port(),
        free_port(socket.SOCK_STREAM),
        [gateway("gw1", gw.getsockname()[1])],
        parameters={"SS_SIP_OVERLOAD_QUEUE": 64, "SS_SIP_RETRY_AFTER": 4},
    )
    sipd = start_sipd(tmp_path, config)
    caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    caller.bind(("127.0.0.1", 0))
    caller.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    port = caller.getsockname()[1]
    try:
        assert sipd.metrics().get("sipedge_calls_shedding") == 0
        os.kill(sipd.proc.pid, signal.SIGSTOP)
        try:
            for n in range(CALLS):
                caller.sendto(invite(n, sipd.sip_port, port), ("127.0.0.1", sipd.sip_port))
            time.sleep(0.3)  # the sampler's 0.1 s timer is due when sipd goes on
        finally:
            os.kill(sipd.proc.pid, signal.SIGCONT)
        answers = responses(caller, CALLS, 10.0)
        assert len(answers) == CALLS  # one answer each: 100 Trying (admitted) or the 503
        refused = [a for a in answers if a.startswith(b"SIP/2.0 503 Over Capacity\r\n")]
        admitted = [a for a in answers if a.startswith(b"SIP/2.0 100 Trying\r\n")]
        assert len(refused) + len(admitted) == CALLS
        assert len(refused) >= CALLS - FIRST_BATCHES, (len(refused), len(admitted))
        assert all(b"\r\nRetry-After: 4\r\n" in a for a in refused)
        metrics = sipd.metrics()
        assert metrics['sipedge_calls_over_capacity_total{limit="overload"}'] == len(refused)
        assert metrics["sipedge_calls_shedding_episodes_total"] >= 1
        # caught up: the next sample ends the episode, and a new call is admitted
        deadline = time.monotonic() + 5.0
        while sipd.metrics().get("sipedge_calls_shedding") != 0:
            assert time.monotonic() < deadline, "still shedding with nothing waiting"
            time.sleep(0.1)
        final = invite(CALLS, sipd.sip_port, port, number="2000")
        caller.sendto(final, ("127.0.0.1", sipd.sip_port))
        ours = f"Call-ID: shed{CALLS}@127.0.0.1".encode()
        assert first(caller, lambda a: ours in a).startswith(b"SIP/2.0 100 ")
        # the admitted calls' INVITEs (and their retransmissions) reach the gateway too
        assert first(gw, lambda d: d.startswith(b"INVITE sip:2000@"))
        log = sipd.log()
        assert "behind on SIP" in log and "caught up on SIP" in log
    finally:
        caller.close()
        gw.close()
        sipd.stop()
