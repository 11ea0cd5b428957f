"""SIP message-layer microbenchmark: what parsing, checking and writing one message costs.

Five representative datagrams of a call (an INVITE with SDP, a 100 Trying, a 200 with SDP, an
ACK, a BYE), each through three operations:

* `parse`: `parse_message(data)`.
* `serialize`: `msg.to_bytes()` of that message, parsed once beforehand.
* `receive`: the message layer's whole share of one datagram in sipd: `UdpTransport._receive`
  (parse, the `received`/`rport` stamp on a request's top Via) to a handler that does nothing,
  then what the transaction layer asks of it: `check_request` / `check_response`, the branch,
  the CSeq and the Call-ID.

Two figures per cell:

    .venv/bin/python -m tests.bench.sip_parse                  # microseconds per message (timeit)
    .venv/bin/python -m tests.bench.sip_parse --instructions   # + instructions, under callgrind

Microseconds are the best of `--repeat` timeit runs: on a loaded machine they wander by 10-30 %.
Instructions are counted by `valgrind --tool=callgrind` (this machine's `perf` has no hardware
counters) and barely move with load: each cell runs in three fresh interpreters, doing the
operation 0, N and 2N times after the same set-up; instructions per message = (I(2N) - I(N)) / N,
and `linearity` = (I(N) - I(0)) / (I(2N) - I(N)) must be about 1.00 (the set-up cancels out).
`--scale K` repeats every operation K times per message: a run with `--scale 2` must show about
twice the figures of `--scale 1`; that is how the benchmark itself is checked.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable

from sipedge.sip.limits import SipLimits
from sipedge.sip.message import Request, Response, parse_message
from sipedge.sip.transport.udp import UdpTransport
from sipedge.sip.validation import check_request, check_response
from sipedge.typedefs import Addr
from tests.bench.callgrind import instructions_of

SDP_OFFER = (
    b"v=0\r\n"
    b"o=carrier 8000 8000 IN IP4 198.51.100.7\r\n"
    b"s=SIP Call\r\n"
    b"c=IN IP4 198.51.100.7\r\n"
    b"t=0 0\r\n"
    b"m=audio 31000 RTP/AVP 0 8 18 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:18 G729/8000\r\n"
    b"a=fmtp:18 annexb=no\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
)
SDP_ANSWER = (
    b"v=0\r\n"
    b"o=gw 4711 4711 IN IP4 203.0.113.9\r\n"
    b"s=-\r\n"
    b"c=IN IP4 203.0.113.9\r\n"
    b"t=0 0\r\n"
    b"m=audio 40000 RTP/AVP 8 101\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=ptime:20\r\n"
)
CALL = (
    b"Call-ID: 5f3a9c1e-77b2-4d0e-9a4c-1b2c3d4e5f60@198.51.100.7\r\n"
    b'From: "Alice" <sip:+4930123456@198.51.100.7>;tag=as6f1e2d3c\r\n'
)
TO = b"To: <sip:+4940987654@192.0.2.10>"
TO_TAG = TO + b";tag=gw8a7b6c5d"
VIA = b"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK3e1f2a9c7d;rport\r\n"
REVERSE_VIA = b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKb2c3d4e5f6a7b8c9;rport\r\n"


def _message(start: bytes, headers: list[bytes], body: bytes = b"") -> bytes:
    lines = [start, *headers]
    if body:
        lines.append(b"Content-Type: application/sdp")
    lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


MESSAGES: dict[str, bytes] = {
    "INVITE+SDP": _message(
        b"INVITE sip:+4940987654@192.0.2.10:5060 SIP/2.0",
        [
            VIA.rstrip(),
            b"Max-Forwards: 69",
            *CALL.rstrip().split(b"\r\n"),
            TO,
            b"CSeq: 102 INVITE",
            b"Contact: <sip:+4930123456@198.51.100.7:5060>",
            b"Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, INFO, UPDATE",
            b"Supported: replaces, timer",
            b"User-Agent: CarrierSBC 4.2",
            b"P-Asserted-Identity: <sip:+4930123456@198.51.100.7>",
        ],
        SDP_OFFER,
    ),
    "100 Trying": _message(
        b"SIP/2.0 100 Trying",
        [REVERSE_VIA.rstrip(), *CALL.rstrip().split(b"\r\n"), TO, b"CSeq: 1 INVITE"],
    ),
    "200+SDP": _message(
        b"SIP/2.0 200 OK",
        [
            REVERSE_VIA.rstrip(),
            *CALL.rstrip().split(b"\r\n"),
            TO_TAG,
            b"CSeq: 1 INVITE",
            b"Contact: <sip:+4940987654@203.0.113.9:5060>",
            b"Allow: INVITE, ACK, CANCEL, OPTIONS, BYE",
            b"Supported: timer",
            b"Server: GatewayOS 7",
        ],
        SDP_ANSWER,
    ),
    "ACK": _message(
        b"ACK sip:+4940987654@192.0.2.10:5060 SIP/2.0",
        [
            b"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK77aa88bb99;rport",
            b"Max-Forwards: 70",
            *CALL.rstrip().split(b"\r\n"),
            TO_TAG,
            b"CSeq: 102 ACK",
            b"Contact: <sip:+4930123456@198.51.100.7:5060>",
        ],
    ),
    "BYE": _message(
        b"BYE sip:+4940987654@192.0.2.10:5060 SIP/2.0",
        [
            b"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK0c1d2e3f40;rport",
            b"Max-Forwards: 70",
            *CALL.rstrip().split(b"\r\n"),
            TO_TAG,
            b"CSeq: 103 BYE",
            b"User-Agent: CarrierSBC 4.2",
        ],
    ),
}
OPERATIONS = ("parse", "serialize", "receive")
SOURCE: Addr = ("198.51.100.7", 5060)
SUPPORTED = frozenset(("timer", "replaces"))


def _receive_one(transport: UdpTransport, data: bytes) -> Request | Response:
    box: list[Request | Response] = []
    transport.on_message = lambda msg, source, t: box.append(msg)
    transport._receive(data, SOURCE)
    msg = box[0]
    if isinstance(msg, Request):
        assert check_request(msg, transport.limits, SUPPORTED) is None
    else:
        assert check_response(msg) is None
    return msg


def workload(kind: str, operation: str, scale: int = 1) -> Callable[[], object]:
    """One message's worth of `operation` on MESSAGES[kind], done `scale` times."""
    data = MESSAGES[kind]
    parsed = parse_message(data)
    if operation == "parse":

        def one() -> object:
            return parse_message(data)

    elif operation == "serialize":

        def one() -> object:
            return parsed.to_bytes()

    elif operation == "receive":
        transport = UdpTransport(lambda msg, source, t: None, limits=SipLimits())
        _receive_one(transport, data)  # the message really goes through, unrefused
        sink: list[Request | Response] = []
        transport.on_message = lambda msg, source, t: sink.append(msg)
        limits = transport.limits

        def one() -> object:
            transport._receive(data, SOURCE)
            msg = sink.pop()
            if isinstance(msg, Request):
                refusal = check_request(msg, limits, SUPPORTED)
            else:
                refusal = None if check_response(msg) is None else "bad"
            return refusal, msg.branch, msg.cseq, msg.call_id

    else:
        raise ValueError(f"unknown operation {operation!r}")
    if scale == 1:
        return one

    def scaled() -> object:
        for _ in range(scale):
            one()
        return None

    return scaled


def microseconds(fn: Callable[[], object], repeat: int, budget: float = 0.2) -> float:
    """Best of `repeat` timeit runs of about `budget` seconds each, per call, in µs."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(1, int(number * budget / 0.2))
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e6


# -- instruction counts ----------------------------------------------------------------------


def _instructions_of(kind: str, operation: str, count: int, scale: int) -> int:
    """Instructions executed by a fresh interpreter doing the set-up and `count` operations."""
    args = ["--worker", kind, operation, str(count), "--scale", str(scale)]
    return instructions_of("tests.bench.sip_parse", args)


def instructions(kind: str, operation: str, count: int, scale: int) -> tuple[float, float]:
    """(instructions per message, linearity) for one cell; see the module docstring."""
    base = _instructions_of(kind, operation, 0, scale)
    once = _instructions_of(kind, operation, count, scale)
    twice = _instructions_of(kind, operation, 2 * count, scale)
    per = (twice - once) / count
    return per, (once - base) / max(1, twice - once)


def _worker(kind: str, operation: str, count: int, scale: int) -> None:
    fn = workload(kind, operation, scale)
    fn()  # caches warm (header-name spellings), as in a running daemon
    for _ in range(count):
        fn()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=7, help="timeit runs, the best counts")
    parser.add_argument("--scale", type=int, default=1, help="do every operation K times")
    parser.add_argument("--instructions", action="store_true", help="also count instructions")
    parser.add_argument("--count", type=int, default=2000, help="N for the instruction counts")
    parser.add_argument("--kinds", default=",".join(MESSAGES), help="comma list of messages")
    parser.add_argument("--operations", default=",".join(OPERATIONS))
    parser.add_argument(
        "--worker", nargs=3, metavar=("KIND", "OP", "COUNT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker[0], args.worker[1], int(args.worker[2]), args.scale)
        return
    kinds = args.kinds.split(",")
    operations = args.operations.split(",")
    print(f"python {sys.version.split()[0]}, scale {args.scale}, best of {args.repeat}")
    for kind in kinds:
        print(f"  {kind:<11} {len(MESSAGES[kind]):>4} bytes")
    header = f"{'message':<11} {'operation':<10} {'µs/msg':>8}"
    if args.instructions:
        header += f" {'instr/msg':>10} {'linearity':>9}"
    print(header)
    totals: dict[str, list[float]] = {op: [0.0, 0.0] for op in operations}
    for kind in kinds:
        for operation in operations:
            us = microseconds(workload(kind, operation, args.scale), args.repeat)
            line = f"{kind:<11} {operation:<10} {us:>8.2f}"
            totals[operation][0] += us
            if args.instructions:
                per, linearity = instructions(kind, operation, args.count, args.scale)
                totals[operation][1] += per
                line += f" {per:>10,.0f} {linearity:>9.2f}"
            print(line, flush=True)
    for operation, (us, per) in totals.items():
        line = f"{'sum':<11} {operation:<10} {us:>8.2f}"
        if args.instructions:
            line += f" {per:>10,.0f}"
        print(line)


if __name__ == "__main__":
    main()
