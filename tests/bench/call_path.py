"""Call-control microbenchmark: what one whole call costs sipd's SIP stack, in instructions.

One call as SIPp's `uac_basic` and `uas_answer` scenarios make it (INVITE with SDP, the
gateway's 100/180/200 with SDP, ACK, the caller's BYE and the gateway's 200), fed as datagrams
through sipd's stack in process: `UdpTransport.datagram_received` (no socket) ->
`TransactionLayer` -> `B2BUA`, with a config parsed as sipd parses it and the garbage collector
tuned as in sipd (`sipedge.gcwatch.tune`), on a fake clock that moves 2 ms per call (500
calls/s) and, after the calls, past every transaction timer, so each call's cost includes its
timers and the end of its transactions, and the gateways' ASR/ACD/PDD windows kept as sipd
keeps them (`stats.carriers`, since 2026-12-05). What the stack sends is kept
in a list; the driver reads the few headers it needs with regular expressions.

Not in the figure: system calls (`sendto`, `recvmsg`, the event loop's own work), media
anchoring (no mediad client: `MediaService(None)`; `--media held-off` gives the calls a mediad
client whose socket has no listener, held off after one failed request, as `sip_cps`'s sipd
runs between its once-a-second probes), and the CDR store (none: its writer thread would count
with a timing-dependent batch size). `tests.bench.sip_cps` measures all of that on
a real sipd; this one measures the Python that a change to the SIP stack moves, repeatably.

    .venv/bin/python -m tests.bench.call_path                  # microseconds per call (timed)
    .venv/bin/python -m tests.bench.call_path --instructions   # + instructions, under callgrind
    .venv/bin/python -m tests.bench.call_path --media held-off # mediad unreachable, held off

Instructions are counted by `valgrind --tool=callgrind` in fresh interpreters that make one
call to warm up and then 0, N and 2N calls: per call = (I(2N) - I(N)) / N, and `linearity` =
(I(N) - I(0)) / (I(2N) - I(N)) must be about 1.00. The driver's own share (building the
datagrams, reading headers from what was sent) is counted apart by `--harness`, which does
exactly that work on canned datagrams of one call, and is subtracted in the `stack` column.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sipedge.calls.media_service import MediaService
from sipedge.calls.service import B2BUA
from sipedge.config.loader import parse_config
from sipedge.gcwatch import tune
from sipedge.media.client import MediaError
from sipedge.sip.transaction import MAX_INVITE_PENDING
from sipedge.sip.transport.udp import UdpTransport
from sipedge.sipd.settings import gateway_list
from sipedge.stats.carriers import CarrierStats
from tests.bench.callgrind import instructions_of
from tests.conftest import gateway, hold_off, make_config
from tests.unit.test_transaction import FakeClock

CALLER = ("127.0.0.1", 5070)
GATEWAY = ("127.0.0.1", 5080)
CALL_INTERVAL = 0.002  # seconds of fake time per call: 500 calls/s

SDP = (
    b"v=0\r\no=- 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
)
GW_SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\nm=audio 7000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n"
)
CALLER_HEADERS = (
    'From: "sipp" <sip:sipp@127.0.0.1:5070>;tag=%(n)dSIPpTag001\r\n'
    "To: <sip:4420001@127.0.0.1:5060>%(tag)s\r\n"
    "Call-ID: %(n)d-bench@127.0.0.1\r\n"
)

# the headers a response copies from its request (RFC 3261 8.2.6.2), one line each (Via: all)
_VIA = re.compile(rb"^Via: [^\r]*\r\n", re.M)
_ECHO = re.compile(rb"^(?:From|To|Call-ID|CSeq): [^\r]*\r\n", re.M)
_TO = re.compile(rb"^To: ([^\r]*)\r\n", re.M)
_CONTACT = re.compile(rb"^Contact: <([^>]*)>", re.M)


class Wire:
    """Stands in for the socket: keeps what the stack sends, by destination."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))

    def last(self, to: tuple[str, int], start: bytes) -> bytes:
        for data, addr in reversed(self.sent):
            if addr == to and data.startswith(start):
                return data
        raise AssertionError(f"nothing starting {start!r} sent to {to}")


def caller_request(method: str, n: int, cseq: int, uri: str, to_tag: bytes = b"") -> bytes:
    body = SDP if method == "INVITE" else b""
    headers = CALLER_HEADERS % {"n": n, "tag": to_tag.decode()}
    text = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{n}-{cseq}\r\n"
        f"{headers}"
        f"CSeq: {cseq} {method}\r\n"
        "Contact: <sip:sipp@127.0.0.1:5070>\r\n"
        "Max-Forwards: 70\r\n"
        + ("Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\nSubject: sipedge test\r\n" if body else "")
        + ("Content-Type: application/sdp\r\n" if body else "")
        + f"Content-Length: {len(body)}\r\n\r\n"
    )
    return text.encode() + body


def response_to(request: bytes, status: bytes, to_tag: bytes = b"", body: bytes = b"") -> bytes:
    """The gateway's response to `request` (as SIPp's uas_answer sends it)."""
    head = request.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    lines = [b"SIP/2.0 " + status + b"\r\n", *_VIA.findall(head)]
    for line in _ECHO.findall(head):
        if to_tag and line.startswith(b"To:"):
            line = line[:-2] + b";tag=" + to_tag + b"\r\n"
        lines.append(line)
    if to_tag:
        lines.append(b"Contact: <sip:gw@127.0.0.1:5080;transport=UDP>\r\n")
    if body:
        lines.append(b"Content-Type: application/sdp\r\n")
    lines.append(b"Content-Length: %d\r\n\r\n" % len(body))
    return b"".join(lines) + body


class DeadMediad:
    """A mediad control socket with no listener: every request fails `unreachable`."""

    async def _unreachable(self, *args: Any, **kwargs: Any) -> Any:
        raise MediaError("unreachable", "no listener")

    offer = answer = delete = query = _unreachable

    async def close(self) -> None:
        return None


def held_off_media() -> MediaService:
    """A MediaService held off after one failed request, for good (its clock stands still)."""
    service = MediaService(DeadMediad())  # type: ignore[arg-type]
    asyncio.run(hold_off(service))
    return service


class Bench:
    """sipd's SIP stack in process and a driver that places whole calls through it."""

    def __init__(self, tune_gc: bool = True, media: str = "none") -> None:
        tmp = Path(tempfile.mkdtemp(prefix="sipedge-callpath-"))
        config = make_config(
            tmp,
            5060,
            8080,
            [gateway("gw", GATEWAY[1])],
            routes=[{"prefix": "44", "gateways": ["gw"]}],
            parameters={"SS_SIP_TIMEOUT_INVITE": 30},
        )
        self.clock = FakeClock()
        self.wire = Wire()
        self.transport = UdpTransport(self._up)
        self.transport._transport = self.wire  # type: ignore[assignment]
        self.transport.port = 5060
        parsed = parse_config(config)
        self.b2bua = B2BUA(
            parsed,
            self.clock,
            self.transport.send_bytes,
            lambda destination: "127.0.0.1",
            5060,
            None,
        )
        self.b2bua.clock = lambda: self.clock.now  # calls-per-second buckets on the fake clock
        # each gateway's ASR/ACD/PDD windows, as sipd keeps them (sipd/daemon.py)
        self.b2bua.carriers = carriers = CarrierStats(lambda: self.clock.now)
        carriers.configure(*gateway_list(parsed))
        if media == "held-off":
            self.b2bua.media = held_off_media()
        self.numbers = itertools.count(1)
        if tune_gc:  # the collector as sipd runs it: start-up frozen, no automatic full one
            tune()

    def _up(self, msg: Any, source: Any, transport: Any) -> None:
        self.b2bua.transactions.receive(msg, source)

    def feed(self, data: bytes, source: tuple[str, int]) -> None:
        self.transport.datagram_received(data, source)

    def call(self) -> None:
        """One whole call, answered and hung up by the caller; fails loudly if sipd does not
        do what SIPp's scenarios expect."""
        n = next(self.numbers)
        wire = self.wire
        self.feed(caller_request("INVITE", n, 1, "sip:4420001@127.0.0.1:5060"), CALLER)
        ours = wire.last(GATEWAY, b"INVITE ")
        tag = b"gw%d" % n
        self.feed(response_to(ours, b"100 Trying"), GATEWAY)
        self.feed(response_to(ours, b"180 Ringing", tag), GATEWAY)
        self.feed(response_to(ours, b"200 OK", tag, GW_SDP), GATEWAY)
        ok = wire.last(CALLER, b"SIP/2.0 200 ")
        to = _TO.search(ok)
        contact = _CONTACT.search(ok)
        assert to is not None and contact is not None, ok
        to_tag = b";tag=" + to.group(1).rsplit(b";tag=", 1)[1]
        next_url = contact.group(1).decode()
        self.feed(caller_request("ACK", n, 1, next_url, to_tag), CALLER)
        wire.last(GATEWAY, b"ACK ")
        self.feed(caller_request("BYE", n, 2, next_url, to_tag), CALLER)
        self.feed(response_to(wire.last(GATEWAY, b"BYE "), b"200 OK"), GATEWAY)
        wire.last(CALLER, b"SIP/2.0 200 ")
        wire.sent.clear()
        self.clock.advance(CALL_INTERVAL)

    def settle(self) -> None:
        """Past every transaction timer: nothing may be left."""
        self.clock.advance(MAX_INVITE_PENDING + 600)
        assert not self.b2bua.calls and not self.b2bua.dialogs, "a call was left"
        transactions = self.b2bua.transactions
        assert not transactions.server and not transactions.client, "a transaction was left"


class Harness:
    """The driver's own work for one call, on canned datagrams: what `--harness` counts."""

    def __init__(self, tune_gc: bool = True) -> None:
        bench = Bench(tune_gc)
        self.sent: dict[bytes, bytes] = {}
        original = bench.wire.sendto

        def keep(data: bytes, addr: Any) -> None:
            key = data.split(b" ", 2)[1] if addr == CALLER else data[:4]
            self.sent.setdefault(key, data)  # the first: the INVITE's 200, not the BYE's
            original(data, addr)

        bench.wire.sendto = keep  # type: ignore[method-assign]
        bench.call()
        self.wire = Wire()
        self.numbers = itertools.count(1)

    def call(self) -> None:
        n = next(self.numbers)
        wire, sent = self.wire, self.sent
        wire.sendto(sent[b"INVI"], GATEWAY)
        wire.sendto(sent[b"200"], CALLER)
        caller_request("INVITE", n, 1, "sip:4420001@127.0.0.1:5060")
        ours = wire.last(GATEWAY, b"INVITE ")
        tag = b"gw%d" % n
        response_to(ours, b"100 Trying")
        response_to(ours, b"180 Ringing", tag)
        response_to(ours, b"200 OK", tag, GW_SDP)
        ok = wire.last(CALLER, b"SIP/2.0 200 ")
        to = _TO.search(ok)
        contact = _CONTACT.search(ok)
        assert to is not None and contact is not None
        to_tag = b";tag=" + to.group(1).rsplit(b";tag=", 1)[1]
        next_url = contact.group(1).decode()
        caller_request("ACK", n, 1, next_url, to_tag)
        wire.sendto(sent[b"ACK "], GATEWAY)
        wire.last(GATEWAY, b"ACK ")
        caller_request("BYE", n, 2, next_url, to_tag)
        wire.sendto(sent[b"BYE "], GATEWAY)
        response_to(wire.last(GATEWAY, b"BYE "), b"200 OK")
        wire.last(CALLER, b"SIP/2.0 200 ")
        wire.sent.clear()


def run(count: int, harness: bool, media: str = "none") -> None:
    """One warm-up call, then `count` calls, then past every timer (the worker's body)."""
    driver: Bench | Harness = Harness() if harness else Bench(media=media)
    driver.call()
    for _ in range(count):
        driver.call()
    if isinstance(driver, Bench):
        driver.settle()


# -- instruction counts ----------------------------------------------------------------------


def _instructions_of(count: int, harness: bool, media: str) -> int:
    args = ["--worker", str(count), "--media", media, *(["--harness"] if harness else [])]
    return instructions_of("tests.bench.call_path", args)


def instructions(count: int, harness: bool, media: str = "none") -> tuple[float, float]:
    """(instructions per call, linearity): see the module docstring."""
    base = _instructions_of(0, harness, media)
    once = _instructions_of(count, harness, media)
    twice = _instructions_of(2 * count, harness, media)
    return (twice - once) / count, (once - base) / max(1, twice - once)


def microseconds(count: int, repeat: int, media: str = "none") -> float:
    """Best of `repeat` timed runs of `count` calls (then past every timer), per call."""
    best = float("inf")
    for _ in range(repeat):
        bench = Bench(media=media)
        bench.call()
        start = time.perf_counter()
        for _ in range(count):
            bench.call()
        bench.settle()
        best = min(best, time.perf_counter() - start)
    return best / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=2000, help="calls per timed run, and N")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs, the best counts")
    parser.add_argument("--instructions", action="store_true", help="also count instructions")
    parser.add_argument(
        "--media",
        choices=("none", "held-off"),
        default="none",
        help="no mediad client (default), or one held off as unreachable",
    )
    parser.add_argument("--worker", type=int, metavar="COUNT", help=argparse.SUPPRESS)
    parser.add_argument("--harness", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        run(args.worker, args.harness, args.media)
        return
    us = microseconds(args.count, args.repeat, args.media)
    print(
        f"python {sys.version.split()[0]}: one call (7 datagrams in, 7 out), best of "
        f"{args.repeat} runs of {args.count} calls, media {args.media}"
    )
    print(f"  {us:,.1f} µs per call (timed, this machine's load moves it)", flush=True)
    if args.instructions:
        per, linearity = instructions(args.count, False, args.media)
        own, own_linearity = instructions(args.count, True)
        print(f"  {per:,.0f} instructions per call (linearity {linearity:.2f})")
        print(f"  {own:,.0f} of them the driver's own (linearity {own_linearity:.2f})")
        print(f"  {per - own:,.0f} instructions per call in sipd's stack")


if __name__ == "__main__":
    main()
