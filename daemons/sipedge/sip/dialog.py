"""One side of a B2BUA call: a SIP dialog (RFC 3261 section 12) as seen by us.

A B2BUA has two dialogs per call: toward the caller (we are its UAS) and toward the routing
gateway (we are its UAC). Each builds its own in-dialog requests with its own Call-ID, tags and
CSeq space, which is what keeps the legs independent.

We send in-dialog requests to the address the peer's signaling came from (`destination`), not to
the host in its Contact: an edge sees many peers behind NAT, and symmetric signaling is what
SBCs do. The Request-URI is still the peer's Contact (its remote target), as RFC 3261 requires.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sipedge.sip.message import (
    Headers,
    Request,
    Response,
    hostport,
    new_branch,
    parse_name_addr,
)
from sipedge.typedefs import Addr


@dataclass
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # From (our requests): the name-addr without tag
    remote_uri: str  # To (our requests): the name-addr without tag
    remote_target: str  # the peer's Contact URI
    destination: Addr
    route_set: list[str] = field(default_factory=list)
    local_cseq: int = 1
    remote_cseq: int = 0

    def next_cseq(self) -> int:
        self.local_cseq += 1
        return self.local_cseq

    def request(
        self,
        method: str,
        via_host: str,
        via_port: int,
        *,
        cseq: int | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        branch: str | None = None,
    ) -> Request:
        """A new in-dialog request from our side (ACK passes the INVITE's `cseq`)."""
        if cseq is None:
            cseq = self.next_cseq()
        headers = Headers()
        headers.add(
            "Via",
            f"SIP/2.0/UDP {hostport(via_host, via_port)};branch={branch or new_branch()};rport",
        )
        for route in self.route_set:
            headers.add("Route", route)
        headers.add("Max-Forwards", "70")
        headers.add("From", f"{self.local_uri};tag={self.local_tag}")
        headers.add("To", f"{self.remote_uri};tag={self.remote_tag}")
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{cseq} {method}")
        if method not in ("ACK", "CANCEL", "BYE"):
            headers.add("Contact", f"<sip:{hostport(via_host, via_port)}>")
        if body:
            headers.add("Content-Type", content_type or "application/sdp")
        return Request(method, self.remote_target, headers, body)


def resend_request(request: Request, via_host: str, via_port: int) -> Request:
    """`request` again as a new transaction before any dialog exists (RFC 3261 8.1.3.5, 22.2:
    after a 401/407 or a 422): same Call-ID, From tag, To, Request-URI and body; a new Via
    branch and CSeq + 1. The caller sets or changes the headers it answers with."""
    again = Request(request.method, request.uri, request.headers.copy())
    again.body = request.body
    again.headers.remove("Via")
    again.headers.add(
        "Via", f"SIP/2.0/UDP {hostport(via_host, via_port)};branch={new_branch()};rport", first=True
    )
    again.headers.set("CSeq", f"{request.cseq[0] + 1} {request.method}")
    return again


def strip_tag(name_addr: str) -> str:
    """The header value without its tag parameter (for building our own dialog URIs)."""
    parsed = parse_name_addr(name_addr)
    parsed.params.pop("tag", None)
    return str(parsed)


def contact_uri(message: Request | Response) -> str | None:
    """The URI of the first Contact, or None."""
    values = message.headers.get_all("Contact")
    if not values:
        return None
    return parse_name_addr(values[0]).uri


def uas_dialog(invite: Request, local_tag: str, source: Addr) -> Dialog:
    """The caller-side dialog, created when we answer the caller's INVITE."""
    return Dialog(
        call_id=invite.call_id,
        local_tag=local_tag,
        remote_tag=invite.from_tag or "",
        local_uri=strip_tag(invite.headers.get("To") or ""),
        remote_uri=strip_tag(invite.headers.get("From") or ""),
        remote_target=contact_uri(invite) or invite.uri,
        destination=source,
        route_set=list(invite.headers.get_all("Record-Route")),
        local_cseq=0,
        remote_cseq=invite.cseq[0],
    )


def uac_dialog(invite: Request, response: Response, destination: Addr) -> Dialog:
    """The gateway-side dialog, created by the gateway's 2xx (or a late 2xx we must end)."""
    return Dialog(
        call_id=invite.call_id,
        local_tag=invite.from_tag or "",
        remote_tag=response.to_tag or "",
        local_uri=strip_tag(invite.headers.get("From") or ""),
        remote_uri=strip_tag(invite.headers.get("To") or ""),
        remote_target=contact_uri(response) or invite.uri,
        destination=destination,
        route_set=list(reversed(response.headers.get_all("Record-Route"))),
        local_cseq=invite.cseq[0],
    )
