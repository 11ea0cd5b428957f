"""What an ended call leaves in the transaction layer, and what that still needs of the call.

An answered attempt's INVITE client transaction stays in RFC 6026's Accepted state for 32 s
after the 2xx, handing each retransmitted 2xx up so that the ACK goes out again. Through its
callbacks it held the whole call (attempts, dialogs, media helpers, parsed messages) until
then: with short calls, 32 s of ended calls (16,000 at 500 calls/s, about 13 KiB each) stayed
in memory and in the garbage collector's way (docs/performance.md). Once the call has ended,
all such a transaction still needs of it is the ACK.

Owns: `let_go`, `ignore`.
Must not: import a module of calls/ other than `attempt`, or send anything itself.
"""

from __future__ import annotations

from collections.abc import Callable

from sipedge.calls.attempt import Attempt
from sipedge.sip.message import Response
from sipedge.sip.transaction import ClientTransaction
from sipedge.typedefs import Addr

__all__ = ["ignore", "let_go"]


def ignore(*args: object) -> None:
    """The answer to a CANCEL or BYE of ours: nothing to do with it."""


def let_go(attempt: Attempt, send_bytes: Callable[[bytes, Addr], None]) -> None:
    """`attempt`'s call has ended. If the attempt was answered and ACKed, its INVITE
    transaction from now on re-sends that ACK on each retransmitted 2xx by itself (what the
    ended call did: `Call._late_response`) and no longer calls back into the call. Any other
    attempt keeps the call's callbacks: a 200 that comes late (after our CANCEL, say) must
    still be ACKed and hung up by the call."""
    tx = attempt.tx
    if tx is None or attempt.dialog is None or not attempt.ack_bytes:
        return
    ack, destination = attempt.ack_bytes, attempt.destination

    def reack(_tx: ClientTransaction, response: Response) -> None:
        if 200 <= response.status < 300:
            send_bytes(ack, destination)

    tx.on_response_cb = reack
    tx.on_timeout_cb = ignore
