"""CANCEL and the ACK of a failure: the requests that share an INVITE's client transaction.

RFC 3261 9.1 and 17.1.1.3: both carry the INVITE's Request-URI, its top Via (the same branch:
they belong to its transaction), its Route set, From, Call-ID and CSeq number; the ACK takes
To (with the tag) from the failure it acknowledges, the CANCEL takes the INVITE's To.

Owns: `build_cancel`, `build_ack_for_failure`.
Must not: send, keep state, or import from sipedge outside sip/ (transaction.py re-exports
both for its callers).
"""

from __future__ import annotations

from sipedge.sip.message import Headers, Request, Response

__all__ = ["build_ack_for_failure", "build_cancel"]


def _same_transaction_request(invite: Request, method: str, to: str) -> Request:
    """ACK-for-failure and CANCEL (RFC 3261 17.1.1.3, 9.1): the INVITE's Request-URI, top Via
    (same branch: they belong to its transaction), Route set, From, Call-ID and CSeq number."""
    headers = Headers()
    headers.add("Via", invite.headers.get_all("Via")[0])
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("From", invite.headers.get("From") or "")
    headers.add("To", to)
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq[0]} {method}")
    headers.add("Max-Forwards", "70")
    return Request(method, invite.uri, headers, b"")


def build_ack_for_failure(invite: Request, response: Response) -> bytes:
    """The ACK for a non-2xx final: To (with the tag) comes from the response."""
    return _same_transaction_request(invite, "ACK", response.headers.get("To") or "").to_bytes()


def build_cancel(invite: Request) -> Request:
    """CANCEL of a pending INVITE: To exactly as in the INVITE."""
    return _same_transaction_request(invite, "CANCEL", invite.headers.get("To") or "")
