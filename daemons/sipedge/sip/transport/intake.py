"""What every transport does with one received message: parse, stamp, refuse or pass on.

A datagram (udp) and a framed stream message (stream) go through the same steps: parse; answer
an unparseable-but-answerable request once (400 naming the problem, 505 for another SIP
version, 513 over `SipLimits.max_message_size`) through the transport's `Gate`; count and drop
what cannot be answered; stamp `received` / `rport` on the top Via of a request (RFC 3261
18.2.1, RFC 3581; an IPv6 `received` in brackets, RFC 5118 4.5); count requests by method.
What is left goes to the `MessageHandler`.

Owns: `take` (those steps), `refuse_head` (a stream's header block that framing refused),
`stamp_via`, `TransportStats` and the closed set of method labels `METHODS`.
Must not: touch a socket, keep anything per source, or import from sipedge outside sip/ but
the leaf `typedefs`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sipedge.sip.gate import Gate
from sipedge.sip.limits import SipLimits
from sipedge.sip.message import ParseError, Request, Response, host_text, parse_message
from sipedge.sip.validation import Refusal
from sipedge.typedefs import Addr

__all__ = ["METHODS", "MessageHandler", "TransportStats", "refuse_head", "stamp_via", "take"]

# on_message(msg, source, transport): `source` is an Addr (a Destination for anything but the
# first UDP listener); `transport` is the object that received it.
MessageHandler = Callable[["Request | Response", Addr, Any], None]

# ParseError reasons of a request we cannot address a response to (no usable Via or CSeq).
_UNANSWERABLE = ("Missing Via", "Missing CSeq", "Bad Via", "Bad CSeq")
# The `by_method_in` labels: a closed set, anything else counts as "other".
METHODS = frozenset(
    [
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "PRACK",
        "SUBSCRIBE",
        "NOTIFY",
        "PUBLISH",
        "INFO",
        "REFER",
        "MESSAGE",
        "UPDATE",
    ]
)


@dataclass
class TransportStats:
    """Counters the management API exports; plain ints so the hot path stays cheap. Shared by
    every transport: messages are counted the same whether a datagram or a stream brought
    them."""

    messages_in: int = 0
    messages_out: int = 0
    requests_in: int = 0
    responses_in: int = 0
    parse_errors: int = 0
    dropped: int = 0
    bad_requests_answered: int = 0
    send_errors: int = 0
    screened: int = 0  # dropped unparsed by the daemon's screen (the flood guard)
    by_method_in: dict[str, int] = field(default_factory=dict)


def take(
    data: bytes,
    source: Addr,
    limits: SipLimits,
    stats: TransportStats,
    gate: Gate,
) -> Request | Response | None:
    """The message in `data`, or None when it was refused or dropped (counted either way)."""
    too_large = len(data) > limits.max_message_size
    try:
        msg = parse_message(data)
    except ParseError as err:
        stats.parse_errors += 1
        request = err.request
        if request is None or request.method == "ACK":
            stats.dropped += 1
            reason = "too_large" if too_large else "unparseable"
            is_request = data.lstrip(b"\r\n")[:4].upper() != b"SIP/"
            if not too_large and is_request and err.reason.startswith(_UNANSWERABLE):
                reason = "unanswerable"
            gate.drop("invalid_ack" if request is not None else reason, source, err.reason)
            return None
        if too_large:
            refusal = Refusal(513, None, label="513 message too large")
        else:
            refusal = Refusal(err.status, err.reason, label=f"{err.status} {err.reason}")
        stats.bad_requests_answered += 1
        stamp_via_if_possible(request, source)
        gate.refuse(request, source, refusal)
        return None
    if isinstance(msg, Request):
        stats.requests_in += 1
        method = msg.method if msg.method in METHODS else "other"
        stats.by_method_in[method] = stats.by_method_in.get(method, 0) + 1
        if too_large and msg.method != "ACK":
            stamp_via_if_possible(msg, source)
            gate.refuse(msg, source, Refusal(513, None, label="513 message too large"))
            return None
        if too_large or not stamp_via_if_possible(msg, source):
            stats.dropped += 1
            gate.drop("too_large" if too_large else "unanswerable", source)
            return None
    else:
        stats.responses_in += 1
        if too_large:
            stats.dropped += 1
            gate.drop("too_large", source, "response")
            return None
    return msg


def refuse_head(
    head: bytes, source: Addr, status: int, reason: str | None, stats: TransportStats, gate: Gate
) -> bool:
    """Answer the request whose header block framing refused (400, or 513 when too large),
    if it can be answered; True when an answer went out."""
    try:
        request: Request | Response | None = parse_message(head)
    except ParseError as err:
        request = err.request
    stats.parse_errors += 1
    if not isinstance(request, Request) or request.method == "ACK":
        stats.dropped += 1
        gate.drop("too_large" if status == 513 else "unparseable", source, reason or "")
        return False
    stats.bad_requests_answered += 1
    stamp_via_if_possible(request, source)
    label = "513 message too large" if status == 513 else f"{status} {reason}"
    gate.refuse(request, source, Refusal(status, reason, label=label))
    return True


def stamp_via_if_possible(request: Request, source: Addr) -> bool:
    try:
        stamp_via(request, source)
    except (ParseError, ValueError):
        return False  # answered to the source address anyway
    return True


def stamp_via(request: Request, source: Addr) -> None:
    """RFC 3261 18.2.1 `received` and RFC 3581 `rport` on the top Via."""
    via = request.top_via
    changed = False
    if via.host != source[0]:
        via.params["received"] = host_text(source[0])
        changed = True
    if "rport" in via.params:
        via.params["rport"] = str(source[1])
        if "received" not in via.params:
            via.params["received"] = host_text(source[0])
        changed = True
    if changed:
        request.replace_top_via(via)  # the transaction layer reads it next: kept parsed
