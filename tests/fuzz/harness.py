"""A whole sipd SIP stack in-process, fed datagrams, and the invariants every input must keep.

transport (`UdpTransport.datagram_received`, no socket) -> `TransactionLayer` -> `B2BUA` with a
real config (parsed as sipd parses it), on a fake clock. What the stack sends is recorded.

Invariants, checked by `Stack.feed` / `Stack.settle`:
* nothing raises out of the receive path, and no transaction user failed (`tu_errors`);
* every response we send parses with our own parser, unless it answers a request the parser
  refused and echoes the header that made it refuse (a 400 "Missing From" has no From);
* the transaction tables never exceed `SipLimits.max_transactions`;
* after the clock has run past every timer, no transaction, call or dialog is left.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from sipedge.calls.service import B2BUA
from sipedge.config.loader import parse_config
from sipedge.sip.limits import SipLimits
from sipedge.sip.message import ParseError, Response, parse_message
from sipedge.sip.transaction import MAX_INVITE_PENDING
from sipedge.sip.transport.udp import UdpTransport
from tests.conftest import gateway, make_config
from tests.unit.test_transaction import FakeClock

LIMITS = SipLimits(max_transactions=64)


class _Wire:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))


class Finding(AssertionError):
    """An input broke an invariant."""


class Stack:
    def __init__(self) -> None:
        tmp = Path(tempfile.mkdtemp(prefix="sipedge-fuzz-"))
        config = parse_config(
            make_config(
                tmp,
                5060,
                8080,
                [gateway("gw1", 5080)],
                routes=[{"prefix": "44", "gateways": ["gw1"]}],
            )
        )
        self.clock = FakeClock()
        self.wire = _Wire()
        self.transport = UdpTransport(self._up, limits=LIMITS)
        self.transport._transport = self.wire  # type: ignore[assignment]
        self.transport.port = 5060
        self.b2bua = B2BUA(
            config,
            self.clock,
            self.transport.send_bytes,
            lambda destination: "127.0.0.1",
            5060,
            None,
        )
        self.layer = self.b2bua.transactions
        self.layer.configure(LIMITS, frozenset({"timer"}))
        self.inputs = 0

    def _up(self, msg: Any, source: Any, transport: Any) -> None:
        self.layer.receive(msg, source)

    def feed(self, data: bytes, source: tuple[str, int]) -> None:
        """One datagram in; raises Finding if an invariant breaks."""
        self.inputs += 1
        refused_before = sum(self.transport.gate.refused.values())
        errors_before = (self.transport.gate.dropped["internal_error"], self.layer.tu_errors)
        sent_before = len(self.wire.sent)
        self.transport.datagram_received(data, source)
        errors = (self.transport.gate.dropped["internal_error"], self.layer.tu_errors)
        if errors != errors_before:
            raise Finding(f"an exception in the receive path: {errors_before} -> {errors}")
        tables = len(self.layer.server) + len(self.layer.client)
        if tables > LIMITS.max_transactions + 8:  # the B2BUA's own client transactions
            raise Finding(f"{tables} transactions held")
        framing_refusal = sum(self.transport.gate.refused.values()) != refused_before
        for out, _ in self.wire.sent[sent_before:]:
            try:
                parse_message(out)
            except ParseError as err:
                if not framing_refusal:
                    raise Finding(f"we sent what we cannot parse ({err.reason}): {out!r}") from err

    def settle(self) -> None:
        """Run the clock past every timer; then nothing may be left."""
        self.clock.advance(MAX_INVITE_PENDING + 600)
        self.clock.advance(MAX_INVITE_PENDING + 600)
        left = {
            "server": len(self.layer.server),
            "client": len(self.layer.client),
            "calls": len(self.b2bua.calls),
            "dialogs": len(self.b2bua.dialogs),
            "awaiting_ack": len(self.layer.awaiting_ack),
        }
        if any(left.values()):
            raise Finding(f"left behind after every timer ran: {left}")
        self.wire.sent.clear()


def responses(stack: Stack) -> list[Response]:
    out = []
    for data, _ in stack.wire.sent:
        try:
            msg = parse_message(data)
        except ParseError:
            continue
        if isinstance(msg, Response):
            out.append(msg)
    return out
