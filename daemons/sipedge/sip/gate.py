"""What the SIP stack refuses and drops: the stateless answer, the counters and the log line.

Owns: `Gate`, shared in shape by the transport (framing: 400, 505, 513) and the transaction
layer (validation and overload: 400, 414, 415, 416, 420, 481, 483, 500, 503, 513). A refusal is one
response, sent once, nothing kept; a drop is silence. Both are counted in closed sets
(`REFUSAL_STATUSES`, `DROP_REASONS`, the label sets of sipd's metrics) and logged through a
`RateLimitedLog`: one line per class per interval, never a traceback.
Must not: keep anything per message or per source, or import from sipedge outside sip/ but
the leaves `typedefs` and `ratelog`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sipedge.ratelog import RateLimitedLog
from sipedge.sip.message import Request, make_response, new_tag
from sipedge.sip.validation import Refusal
from sipedge.typedefs import Addr

__all__ = ["DROP_REASONS", "REFUSAL_STATUSES", "Gate"]

log = logging.getLogger("sipedge.sip")

REFUSAL_STATUSES = (400, 414, 415, 416, 420, 481, 483, 500, 503, 505, 513)
DROP_REASONS = (
    "unparseable",  # not SIP, or too broken to tell who sent it
    "unanswerable",  # a request without a usable top Via or CSeq
    "too_large",  # over sip_max_message_size and not an answerable request
    "invalid_ack",  # an ACK that fails validation (an ACK is never answered)
    "response_via",  # a response with other than one Via (RFC 3261 18.1.2)
    "invalid_response",  # a response whose From, To or Call-ID does not parse
    "internal_error",  # a bug below the transaction user; logged, the loop goes on
)


class Gate:
    def __init__(self, send_bytes: Callable[[bytes, Addr], None]) -> None:
        self.send_bytes = send_bytes
        self.refused: dict[int, int] = dict.fromkeys(REFUSAL_STATUSES, 0)
        self.dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.rlog = RateLimitedLog(log)

    def refuse(self, request: Request, source: Addr, refusal: Refusal) -> None:
        """Answer `request` once with `refusal`, keep nothing, count and log (rate-limited)."""
        response = make_response(request, refusal.status, refusal.reason, to_tag=new_tag())
        for name, value in refusal.headers:
            response.headers.add(name, value)
        self.send_bytes(response.to_bytes(), source)
        self.refused[refusal.status] = self.refused.get(refusal.status, 0) + 1
        self.rlog.event(
            refusal.label or str(refusal.status),
            "%.32s from %s:%s refused: %d %s",
            request.method,
            *source,
            response.status,
            response.reason,
        )

    def drop(self, reason: str, source: Addr, detail: str = "") -> None:
        """Count and log (rate-limited) a message dropped for `reason` (one of DROP_REASONS)."""
        self.dropped[reason] += 1
        self.rlog.event(
            f"drop {reason}", "datagram from %s:%s dropped: %s %s", *source, reason, detail
        )

    def failed(self, what: str, exc: BaseException) -> None:
        """A bug that bad input reached: one line per interval, no traceback."""
        self.rlog.event(f"failed {what}", "%s failed: %s: %.200s", what, type(exc).__name__, exc)
