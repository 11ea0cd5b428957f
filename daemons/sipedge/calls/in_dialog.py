"""In-dialog requests of an answered call, forwarded from one leg to the other.

A re-INVITE, UPDATE, INFO, NOTIFY, MESSAGE... from one side becomes a request of our own in the
other leg's dialog; its final response comes back as our answer to the original, and the ACK of
a forwarded re-INVITE is passed on when the originator sends its own. Every SDP on the way goes
through the call's media (`media_link`), with the request's source as its sender's signal
address; an offer the media policy refuses is answered 488 (Warning says why) and not forwarded,
an answer it refuses goes on without SDP. A successful re-INVITE or UPDATE restarts the session
timers of both legs (`refresh`).

Owns: `Forwarder` (one per call, with the forwarded requests awaiting their finals and the CSeq
of each forwarded re-INVITE awaiting its ACK).
Must not: answer BYE, check CSeq order or end the call (that is `calls.call`, which hands over
only what is to be forwarded), or import `calls.call` / `calls.service`: it reads its call
through `ForwardingCall` (`Call` implements it) and sends through `ForwardingHost` (`B2BUA`).
Must not keep its call: the call owns its `Forwarder` (a link back would be a reference
cycle) and hands itself in with each request; a forwarded request's transaction holds the call
until its final is relayed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sipedge.calls.attempt import Attempt, CallState
from sipedge.calls.media_link import CallMedia
from sipedge.calls.refresh import LegTimers, RefreshHost, add_uas_headers
from sipedge.calls.session_timer import UasAnswer, negotiate_uac
from sipedge.sip.dialog import Dialog
from sipedge.sip.message import Request, Response, make_response
from sipedge.sip.transaction import ServerTransaction
from sipedge.typedefs import Addr


class ForwardingHost(RefreshHost, Protocol):
    """What forwarding sends through (`calls.service.B2BUA` implements it)."""

    def contact_for(self, destination: Addr | str) -> str: ...


class ForwardingCall(Protocol):
    """What forwarding reads of its call (`calls.call.Call` implements it)."""

    @property
    def state(self) -> CallState: ...

    @property
    def current(self) -> Attempt | None: ...

    def dialog(self, leg: str) -> Dialog | None: ...


@dataclass
class PendingRequest:
    """An in-dialog request forwarded to the other leg, waiting for its final."""

    call: ForwardingCall  # alive until the final is relayed, even if the call ends meanwhile
    server_tx: ServerTransaction
    from_leg: str  # "caller" or "callee"
    forwarded: Request


class Forwarder:
    """In-dialog requests of one call, from either leg to the other."""

    def __init__(self, host: ForwardingHost, media: CallMedia, timers: LegTimers) -> None:
        self.host = host
        self.media = media
        self.timers = timers
        # forwarded re-INVITE CSeq per leg, so the originator's ACK can be forwarded
        self.pending_ack_cseq: dict[str, int] = {}

    def forward(self, call: ForwardingCall, leg: str, tx: ServerTransaction) -> None:
        """`tx`'s request, received on `call`'s `leg`, to the other leg."""
        request = tx.request
        other_leg = "callee" if leg == "caller" else "caller"
        other = call.dialog(other_leg)
        if other is None:
            tx.respond_status(481)
            return
        content_type = request.headers.get("Content-Type")

        def send(body: bytes | None) -> None:
            if call.state is CallState.ENDED:
                tx.respond_status(481)
                return
            if body is None and current is not None:  # the media policy refused its SDP
                refusal = self.media.refusal(current)
                answer = make_response(request, refusal.status, to_tag=_local_tag(call, leg))
                answer.headers.add("Warning", refusal.warning(self.host.via_for(tx.source[0])[0]))
                tx.respond(answer)
                return
            assert other is not None
            host, port = self.host.via_for(other.destination[0])
            out = other.request(
                request.method, host, port, body=body or b"", content_type=content_type
            )
            names = ["Event", "Subscription-State", "Info-Package"]
            if not self.timers.settings.enabled:
                names += ["Session-Expires", "Min-SE"]  # timers off: end to end, as before
            for name in names:
                for value in request.headers.get_all(name):
                    out.headers.add(name, value)
            if request.method in ("INVITE", "UPDATE"):
                self.timers.add_uac_headers(other_leg, out.headers)
                if out.body:
                    self.timers.local_sdp[other_leg] = out.body
            pending = PendingRequest(call, server_tx=tx, from_leg=leg, forwarded=out)
            self.host.transactions.start_client(
                out,
                other.destination,
                lambda ctx, resp: self._on_response(pending, resp),
                lambda ctx: self._on_timeout(pending),
            )

        current = call.current
        if current is None or request.method not in ("INVITE", "UPDATE"):
            send(request.body)
            return
        self.media.offer(current, leg, request.body, content_type, send, source=tx.source[0])

    def _on_response(self, pending: PendingRequest, response: Response) -> None:
        tx = pending.server_tx
        if response.status == 100:
            return
        request = tx.request
        call = pending.call
        out = make_response(
            request, response.status, response.reason, to_tag=_local_tag(call, pending.from_leg)
        )
        if request.method in ("INVITE", "UPDATE", "SUBSCRIBE") and 200 <= response.status < 300:
            out.headers.add("Contact", self.host.contact_for(tx.source))
        if request.method in ("INVITE", "UPDATE") and 200 <= response.status < 300:
            # a successful refresh on both legs (RFC 4028): each leg negotiates its own timer
            other_leg = "callee" if pending.from_leg == "caller" else "caller"
            self.timers.start(
                other_leg,
                negotiate_uac(self.timers.settings, response.headers.get("Session-Expires")),
            )
            negotiated = self.timers.uas_timer(request)
            if isinstance(negotiated, UasAnswer):
                add_uas_headers(out.headers, negotiated)
                self.timers.start(pending.from_leg, negotiated.timer)
        if request.method == "INVITE" and 200 <= response.status < 300:
            # The originator's ACK will arrive on its leg; we then ACK the other side.
            other_leg = "callee" if pending.from_leg == "caller" else "caller"
            if other_leg not in self.pending_ack_cseq:
                self.pending_ack_cseq[other_leg] = pending.forwarded.cseq[0]

        def send(body: bytes | None) -> None:
            if body:
                out.headers.set(
                    "Content-Type", response.headers.get("Content-Type") or "application/sdp"
                )
                out.body = body
                if request.method in ("INVITE", "UPDATE"):
                    self.timers.local_sdp[pending.from_leg] = body
            tx.respond(out)

        answerer = "callee" if pending.from_leg == "caller" else "caller"
        current = call.current
        if current is None or request.method not in ("INVITE", "UPDATE"):
            send(response.body)
            return
        self.media.answer(
            current,
            answerer,
            response.body,
            response.headers.get("Content-Type"),
            response.status >= 200,
            send,
        )

    def _on_timeout(self, pending: PendingRequest) -> None:
        pending.server_tx.respond_status(408)

    def forward_ack(self, call: ForwardingCall, leg: str, ack: Request) -> None:
        """The ACK of a re-INVITE forwarded earlier: pass it to the other leg."""
        other = "callee" if leg == "caller" else "caller"
        cseq = self.pending_ack_cseq.pop(other, None)
        dialog = call.dialog(other)
        if cseq is None or dialog is None:
            return
        content_type = ack.headers.get("Content-Type")

        def send(body: bytes | None) -> None:
            assert dialog is not None and cseq is not None
            host, port = self.host.via_for(dialog.destination[0])
            out = dialog.request(
                "ACK", host, port, cseq=cseq, body=body or b"", content_type=content_type
            )
            self.host.transactions.send_request(out, dialog.destination)

        current = call.current
        if current is None:
            send(ack.body)
            return
        self.media.answer(current, leg, ack.body, content_type, True, send)


def _local_tag(call: ForwardingCall, leg: str) -> str | None:
    dialog = call.dialog(leg)
    return dialog.local_tag if dialog is not None else None
