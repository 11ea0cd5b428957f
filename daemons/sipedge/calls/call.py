"""One B2BUA call: the caller's INVITE, the attempts toward routing gateways, the two dialogs.

The decisions (which gateway next, when to stop, which timer to run) come from the pure
`switching` module; this module only carries them out: it sends and answers SIP through the
transaction layer, arms timers on the event loop and writes the CDR when the call ends.

Life of a call:  SETUP (attempts running) -> CONFIRMED (a gateway answered, caller ACKed or not
yet) -> ENDED.  An attempt that is abandoned (its timer fired, or the caller cancelled) is
cancelled if it has sent a provisional response, otherwise it just stops retransmitting; if it
answers late anyway, we ACK that answer and send BYE at once.
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sipedge.calls.identity import IncomingIdentity
from sipedge.calls.media_link import CALLEE, CALLER, CallMedia
from sipedge.calls.session_timer import (
    EXPIRED,
    LegTimer,
    Reject422,
    TimerSettings,
    UasAnswer,
    has_option,
    negotiate_uac,
    negotiate_uas,
    retry_after_422,
)
from sipedge.calls.switching import (
    AttemptTracker,
    CallSwitcher,
    Next,
    Stop,
    StopReason,
    SwitchingPolicy,
    Timer,
    TimerChange,
)
from sipedge.sip.dialog import Dialog, uac_dialog, uas_dialog
from sipedge.sip.message import (
    Headers,
    Request,
    Response,
    make_response,
    new_branch,
    new_tag,
)
from sipedge.sip.transaction import (
    ClientTransaction,
    InviteClientTransaction,
    InviteServerTransaction,
    ServerTransaction,
    TimerHandle,
    build_cancel,
)
from sipedge.store import AttemptRecord, CallRecord

if TYPE_CHECKING:
    from sipedge.calls.service import B2BUA, GatewayTarget

log = logging.getLogger(__name__)

Addr = tuple[str, int]

TIMER_NAMES = {
    Timer.INVITE: "invite",
    Timer.TRYING: "trying",
    Timer.RINGING: "ringing",
    Timer.SESSION_PROGRESS: "session progress",
}

# Headers of the caller's INVITE that travel to the gateway unchanged. Everything else that is
# end-to-end (identity, privacy) is decided by the identity rules; hop-by-hop ones are ours.
PASS_THROUGH = ("Content-Type", "Allow", "Accept", "User-Agent", "Subject", "Organization")


class CallState(enum.Enum):
    SETUP = "setup"
    CONFIRMED = "confirmed"
    ENDED = "ended"


@dataclass
class Attempt:
    """One INVITE to one routing gateway."""

    index: int
    gateway: GatewayTarget
    policy: SwitchingPolicy
    tracker: AttemptTracker
    invite: Request
    record: AttemptRecord
    tx: InviteClientTransaction | None = None
    timer: TimerHandle | None = None
    abandoned: bool = False
    cancel_sent: bool = False
    dialog: Dialog | None = None  # set by a 2xx
    ack_bytes: bytes = b""  # our ACK for its 2xx, re-sent on each retransmitted 2xx
    provisional: bool = False
    retried_422: bool = False  # RFC 4028 section 7.1: one retry with the gateway's Min-SE

    @property
    def destination(self) -> Addr:
        return (self.gateway.address, self.gateway.port)


@dataclass
class PendingRequest:
    """An in-dialog request forwarded to the other leg, waiting for its final."""

    server_tx: ServerTransaction
    from_leg: str  # "caller" or "callee"
    forwarded: Request


@dataclass
class LegSession:
    """The RFC 4028 session timer of one leg (b2bua/session_timer.py decides, we arm)."""

    timer: LegTimer
    refresh: TimerHandle | None = None
    expire: TimerHandle | None = None
    retried_422: bool = False

    def cancel(self) -> None:
        for handle in (self.refresh, self.expire):
            if handle is not None:
                handle.cancel()
        self.refresh = self.expire = None


@dataclass
class Call:
    b2bua: B2BUA
    invite_tx: InviteServerTransaction
    caller_number: str
    callee_number: str
    mapping_gateway: str | None
    switcher: CallSwitcher
    record: CallRecord
    incoming_identity: IncomingIdentity
    caller_tag: str = field(default_factory=new_tag)  # our To tag toward the caller
    state: CallState = CallState.SETUP
    attempts: list[Attempt] = field(default_factory=list)
    current: Attempt | None = None
    caller_dialog: Dialog | None = None
    callee_dialog: Dialog | None = None
    caller_acked: bool = False
    # forwarded re-INVITE CSeq per leg, so the originator's ACK can be forwarded
    pending_ack_cseq: dict[str, int] = field(default_factory=dict)
    media: CallMedia = field(init=False)  # relay sessions at mediad (b2bua/media.py)
    # RFC 4028 session timers, per leg (docs/session-timers.md)
    session_settings: TimerSettings = field(init=False)
    leg_sessions: dict[str, LegSession] = field(default_factory=dict)
    allows_update: dict[str, bool] = field(default_factory=dict)
    local_sdp: dict[str, bytes] = field(default_factory=dict)  # last SDP we sent on each leg

    def __post_init__(self) -> None:
        self.media = self.b2bua.media.for_call(self)
        self.session_settings = self.b2bua.session_timers

    @property
    def id(self) -> str:
        return self.invite_tx.request.call_id

    @property
    def source(self) -> Addr:
        return self.invite_tx.source

    # -----------------------------------------------------------------------------------------
    # Setup
    # -----------------------------------------------------------------------------------------
    def start(self) -> None:
        self._follow(self.switcher.first())

    def _follow(self, decision: Next | Stop) -> None:
        if isinstance(decision, Stop):
            self._fail_caller(decision)
        else:
            self._start_attempt(decision)

    def _start_attempt(self, decision: Next) -> None:
        gateway = self.b2bua.gateway_target(decision.gateway)
        invite = self.b2bua.build_gateway_invite(self, gateway)
        now = time.time()
        attempt = Attempt(
            index=len(self.attempts),
            gateway=gateway,
            policy=decision.policy,
            tracker=AttemptTracker(decision.gateway, decision.policy),
            invite=invite,
            record=AttemptRecord(gateway=gateway.name, start=now),
        )
        self.attempts.append(attempt)
        self.record.attempts.append(attempt.record)
        self.current = attempt
        self.b2bua.stats.attempts += 1
        # The caller's SDP goes to mediad first; the INVITE leaves with the relay's address.
        self.media.offer(
            attempt,
            CALLER,
            invite.body,
            invite.headers.get("Content-Type"),
            lambda body: self._send_attempt(attempt, body),
            required=True,
        )

    def _send_attempt(self, attempt: Attempt, body: bytes | None) -> None:
        if attempt.abandoned or attempt is not self.current or self.state is not CallState.SETUP:
            return  # cancelled (or timed out) while mediad was asked; _end_attempt released it
        if body is None:
            # an encrypted leg that mediad could not anchor: this gateway cannot be used
            self._end_attempt(attempt, "media unavailable", 503)
            self._follow(self.switcher.on_failure(attempt.tracker, 503, None))
            return
        attempt.invite.body = body
        attempt.tx = self.b2bua.transactions.start_client(
            attempt.invite,
            attempt.destination,
            lambda tx, resp: self._on_attempt_response(attempt, resp),
            lambda tx: self._on_attempt_tx_timeout(attempt),
        )  # type: ignore[assignment]
        self._apply_timer(attempt, attempt.tracker.on_invite_sent())
        self.media.watch_rtp_start(attempt)

    def _apply_timer(self, attempt: Attempt, change: TimerChange) -> None:
        if change.cancel and attempt.timer is not None:
            attempt.timer.cancel()
            attempt.timer = None
        if change.arm is not None and change.seconds is not None:
            if attempt.timer is not None:
                attempt.timer.cancel()
            which = change.arm
            attempt.timer = self.b2bua.scheduler.call_later(
                change.seconds, lambda: self._on_attempt_timer(attempt, which)
            )

    def _on_attempt_timer(self, attempt: Attempt, which: Timer) -> None:
        attempt.timer = None
        if attempt is not self.current or self.state is not CallState.SETUP:
            return
        self._end_attempt(attempt, f"timeout: {TIMER_NAMES[which]}", None)
        self._abandon(attempt)
        self._follow(self.switcher.on_failure(attempt.tracker, None, which))

    def _on_attempt_tx_timeout(self, attempt: Attempt) -> None:
        # Timer B of the transaction: only matters if the switching INVITE timer is longer.
        if attempt is self.current and self.state is CallState.SETUP and not attempt.abandoned:
            self._on_attempt_timer(attempt, Timer.INVITE)

    def _end_attempt(self, attempt: Attempt, result: str, status: int | None) -> None:
        if attempt.timer is not None:
            attempt.timer.cancel()
            attempt.timer = None
        if attempt.record.end is None:
            attempt.record.end = time.time()
            attempt.record.result = result
            attempt.record.status = status
        if result != "answered":
            self.media.release(attempt)  # no relay port outlives its attempt

    def _abandon(self, attempt: Attempt) -> None:
        """Stop an attempt we no longer want: CANCEL if it is proceeding, else go quiet."""
        attempt.abandoned = True
        if attempt.tx is None:
            return
        if attempt.provisional:
            self._send_cancel(attempt)
        else:
            attempt.tx.stop_retransmitting()  # a provisional later still gets a CANCEL

    def _send_cancel(self, attempt: Attempt) -> None:
        if attempt.cancel_sent:
            return
        attempt.cancel_sent = True
        self.b2bua.transactions.start_client(
            build_cancel(attempt.invite), attempt.destination, _ignore_response, _ignore_timeout
        )

    def _on_attempt_response(self, attempt: Attempt, response: Response) -> None:
        status = response.status
        if status < 200:
            attempt.provisional = True
        if attempt.abandoned or attempt is not self.current or self.state is not CallState.SETUP:
            self._late_response(attempt, response)
            return
        if status < 200:
            has_sdp = bool(response.body)
            self._apply_timer(attempt, attempt.tracker.on_provisional(status, has_sdp))
            if status > 100:
                self.media.answer(
                    attempt,
                    CALLEE,
                    response.body,
                    response.headers.get("Content-Type"),
                    False,
                    lambda body: self._relay_provisional(response, body),
                )
            return
        if status < 300:
            self._answered(attempt, response)
            return
        if status == 422 and self._retry_422(attempt, response):
            return
        self._end_attempt(attempt, str(status), status)
        self._follow(self.switcher.on_failure(attempt.tracker, status, None))

    def _retry_422(self, attempt: Attempt, response: Response) -> bool:
        """RFC 4028 section 7.1: the gateway wants a longer interval; retry it once with its
        Min-SE (same Call-ID and tags, next CSeq). False: treat the 422 as a failure."""
        if attempt.retried_422:
            return False
        interval = retry_after_422(self.session_settings, response.headers.get("Min-SE"))
        if interval is None:
            return False
        attempt.retried_422 = True
        invite = Request(attempt.invite.method, attempt.invite.uri, attempt.invite.headers.copy())
        invite.body = attempt.invite.body
        invite.headers.remove("Via")
        host, port = self.b2bua.via_for(attempt.destination[0])
        invite.headers.add(
            "Via", f"SIP/2.0/UDP {host}:{port};branch={new_branch()};rport", first=True
        )
        invite.headers.set("CSeq", f"{attempt.invite.cseq[0] + 1} INVITE")
        invite.headers.set("Session-Expires", str(interval))
        invite.headers.set("Min-SE", str(interval))
        attempt.invite = invite
        attempt.provisional = False
        attempt.tx = self.b2bua.transactions.start_client(
            invite,
            attempt.destination,
            lambda tx, resp: self._on_attempt_response(attempt, resp),
            lambda tx: self._on_attempt_tx_timeout(attempt),
        )  # type: ignore[assignment]
        self._apply_timer(attempt, attempt.tracker.on_invite_sent())
        return True

    def _late_response(self, attempt: Attempt, response: Response) -> None:
        status = response.status
        if status < 200:
            if attempt.abandoned:
                self._send_cancel(attempt)  # RFC 3261 9.1: CANCEL only after a provisional
            return
        if status < 300:
            # A gateway we gave up on answered anyway (or its 2xx crossed our CANCEL):
            # ACK it so it stops retransmitting, then hang up at once.
            if attempt.dialog is None:
                self.b2bua.stats.late_answers += 1
                attempt.dialog = uac_dialog(attempt.invite, response, attempt.destination)
                self._ack_gateway(attempt, b"", None)
                self._send_bye(attempt.dialog)
                self._end_attempt(attempt, "late 200", status)
            elif attempt.ack_bytes:
                self.b2bua.send_bytes(attempt.ack_bytes, attempt.destination)
            return
        # a final failure after we moved on: the transaction layer has ACKed it already

    def _relay_provisional(self, response: Response, body: bytes | None = None) -> None:
        if self.state is not CallState.SETUP:
            return  # the call moved on while mediad was asked
        body = response.body if body is None else body
        out = make_response(
            self.invite_tx.request, response.status, response.reason, to_tag=self.caller_tag
        )
        self._copy_record_route(out)
        out.headers.add("Contact", self.b2bua.contact_for(self.source[0]))
        if body:
            out.headers.set(
                "Content-Type", response.headers.get("Content-Type") or "application/sdp"
            )
            out.body = body
        self.invite_tx.respond(out)

    def _copy_record_route(self, out: Response) -> None:
        for rr in self.invite_tx.request.headers.get_all("Record-Route"):
            out.headers.add("Record-Route", rr)

    def _answered(self, attempt: Attempt, response: Response) -> None:
        self._end_attempt(attempt, "answered", response.status)
        decision = self.switcher.on_answer(attempt.tracker)
        attempt.record.stop_reason = decision.reason.value
        self.state = CallState.CONFIRMED
        now = time.time()
        self.record.answer_time = now
        self.record.routing_gateway = attempt.gateway.name
        self.record.switch_stop_reason = decision.reason.value
        attempt.dialog = uac_dialog(attempt.invite, response, attempt.destination)
        self.callee_dialog = attempt.dialog
        self.caller_dialog = uas_dialog(self.invite_tx.request, self.caller_tag, self.source)
        self.b2bua.register_dialog(self, "callee", self.callee_dialog)
        self.b2bua.register_dialog(self, "caller", self.caller_dialog)
        out = make_response(
            self.invite_tx.request, response.status, response.reason, to_tag=self.caller_tag
        )
        self._copy_record_route(out)
        out.headers.add("Contact", self.b2bua.contact_for(self.source[0]))
        out.headers.add("Allow", self.b2bua.ALLOW)
        self.allows_update["caller"] = has_option(
            self.invite_tx.request.headers.get_all("Allow"), "UPDATE"
        )
        self.allows_update["callee"] = has_option(response.headers.get_all("Allow"), "UPDATE")
        if attempt.invite.body:
            self.local_sdp["callee"] = attempt.invite.body
        self._start_leg_timer(
            "callee", negotiate_uac(self.session_settings, response.headers.get("Session-Expires"))
        )
        caller_timer = self._uas_timer(self.invite_tx.request)
        if isinstance(caller_timer, UasAnswer):
            _add_uas_headers(out.headers, caller_timer)
            self._start_leg_timer("caller", caller_timer.timer)

        def send(body: bytes | None) -> None:
            if body:
                out.headers.set(
                    "Content-Type", response.headers.get("Content-Type") or "application/sdp"
                )
                out.body = body
                self.local_sdp["caller"] = body
            self.invite_tx.on_ack_timeout = self._on_caller_ack_timeout
            self.invite_tx.respond(out)

        self.media.answer(
            attempt, CALLEE, response.body, response.headers.get("Content-Type"), True, send
        )
        self.media.on_answered(attempt)
        self.b2bua.stats.answered += 1

    def _ack_gateway(self, attempt: Attempt, body: bytes, content_type: str | None) -> None:
        assert attempt.dialog is not None
        host, port = self.b2bua.via_for(attempt.destination[0])
        ack = attempt.dialog.request(
            "ACK", host, port, cseq=attempt.invite.cseq[0], body=body, content_type=content_type
        )
        if body and attempt.dialog is self.callee_dialog:
            self.local_sdp["callee"] = body  # late offer: our answer went in the ACK
        attempt.ack_bytes = ack.to_bytes()
        self.b2bua.send_bytes(attempt.ack_bytes, attempt.destination)

    def _fail_caller(self, stop: Stop) -> None:
        """Switching stopped without an answer: the caller hears the last failure."""
        status, reason = caller_facing(stop.caller_status, stop.caller_reason)
        stop = Stop(stop.reason, status, reason)
        self.record.switch_stop_reason = stop.reason.value
        if self.attempts:
            self.attempts[-1].record.stop_reason = stop.reason.value
        self.b2bua.stats.count_stop(stop.reason)
        self.invite_tx.respond(
            make_response(
                self.invite_tx.request,
                stop.caller_status,
                stop.caller_reason,
                to_tag=self.caller_tag,
            )
        )
        self._finish(
            "system" if stop.reason is not StopReason.CALLER_CANCELLED else "caller",
            f"{stop.caller_status} {stop.reason.value}",
            stop.caller_status,
        )

    # -----------------------------------------------------------------------------------------
    # Events from the caller
    # -----------------------------------------------------------------------------------------
    def on_caller_cancel(self) -> None:
        if self.state is not CallState.SETUP:
            return
        attempt = self.current
        if attempt is not None:
            self._end_attempt(attempt, "cancelled", None)
            self._abandon(attempt)
        stop = self.switcher.on_caller_cancel()
        self.record.switch_stop_reason = stop.reason.value
        if attempt is not None:
            attempt.record.stop_reason = stop.reason.value
        self.b2bua.stats.count_stop(stop.reason)
        self.invite_tx.respond(make_response(self.invite_tx.request, 487, to_tag=self.caller_tag))
        self._finish("caller", "487 caller cancelled", 487)

    def on_ack(self, leg: str, ack: Request) -> None:
        if leg == "caller" and not self.caller_acked and self.current is not None:
            self.caller_acked = True
            attempt = self.current
            content_type = ack.headers.get("Content-Type")
            self.media.answer(
                attempt,
                CALLER,
                ack.body,
                content_type,
                True,
                lambda body: self._ack_gateway(attempt, body or b"", content_type),
            )
            return
        # ACK for a re-INVITE forwarded earlier: pass it to the other leg.
        other = "callee" if leg == "caller" else "caller"
        cseq = self.pending_ack_cseq.pop(other, None)
        dialog = self._dialog(other)
        if cseq is None or dialog is None:
            return
        content_type = ack.headers.get("Content-Type")

        def send(body: bytes | None) -> None:
            assert dialog is not None and cseq is not None
            host, port = self.b2bua.via_for(dialog.destination[0])
            out = dialog.request(
                "ACK", host, port, cseq=cseq, body=body or b"", content_type=content_type
            )
            self.b2bua.send_bytes(out.to_bytes(), dialog.destination)

        if self.current is None:
            send(ack.body)
            return
        self.media.answer(self.current, leg, ack.body, content_type, True, send)

    def _on_caller_ack_timeout(self, tx: InviteServerTransaction) -> None:
        if self.state is CallState.CONFIRMED and not self.caller_acked:
            log.info("call %s: the caller never ACKed our 200, ending the call", self.id)
            if self.current is not None:
                self._ack_gateway(self.current, b"", None)
            if self.callee_dialog is not None:
                self._send_bye(self.callee_dialog)
            self._finish("system", "no ACK from caller", 408)

    # -----------------------------------------------------------------------------------------
    # In-dialog requests (both legs)
    # -----------------------------------------------------------------------------------------
    def _dialog(self, leg: str) -> Dialog | None:
        return self.caller_dialog if leg == "caller" else self.callee_dialog

    def on_dialog_request(self, leg: str, tx: ServerTransaction) -> None:
        request = tx.request
        dialog = self._dialog(leg)
        if dialog is None or self.state is CallState.ENDED:
            tx.respond_status(481)
            return
        if request.cseq[0] < dialog.remote_cseq and request.method != "ACK":
            tx.respond_status(500, "CSeq Out of Order")
            return
        dialog.remote_cseq = request.cseq[0]
        if request.method == "BYE":
            tx.respond_status(200)
            other = self._dialog("callee" if leg == "caller" else "caller")
            if other is not None:
                self._send_bye(other)
            self._finish(leg, "normal clearing", 200)
            return
        if request.method in ("INVITE", "UPDATE"):
            negotiated = self._uas_timer(request)
            if isinstance(negotiated, Reject422):
                out = make_response(request, 422, to_tag=dialog.local_tag)
                out.headers.add("Min-SE", str(negotiated.min_se))
                tx.respond(out)
                return
        self._forward_in_dialog(leg, tx)

    def _forward_in_dialog(self, leg: str, tx: ServerTransaction) -> None:
        request = tx.request
        other_leg = "callee" if leg == "caller" else "caller"
        other = self._dialog(other_leg)
        if other is None:
            tx.respond_status(481)
            return
        content_type = request.headers.get("Content-Type")

        def send(body: bytes | None) -> None:
            if self.state is CallState.ENDED:
                tx.respond_status(481)
                return
            assert other is not None
            host, port = self.b2bua.via_for(other.destination[0])
            out = other.request(
                request.method, host, port, body=body or b"", content_type=content_type
            )
            names = ["Event", "Subscription-State", "Info-Package"]
            if not self.session_settings.enabled:
                names += ["Session-Expires", "Min-SE"]  # timers off: end to end, as before
            for name in names:
                for value in request.headers.get_all(name):
                    out.headers.add(name, value)
            if request.method in ("INVITE", "UPDATE"):
                self._add_uac_headers(other_leg, out.headers)
                if out.body:
                    self.local_sdp[other_leg] = out.body
            pending = PendingRequest(server_tx=tx, from_leg=leg, forwarded=out)
            self.b2bua.transactions.start_client(
                out,
                other.destination,
                lambda ctx, resp: self._on_forwarded_response(pending, resp),
                lambda ctx: self._on_forwarded_timeout(pending),
            )

        if self.current is None or request.method not in ("INVITE", "UPDATE"):
            send(request.body)
            return
        self.media.offer(self.current, leg, request.body, content_type, send)

    def _on_forwarded_response(self, pending: PendingRequest, response: Response) -> None:
        tx = pending.server_tx
        if response.status == 100:
            return
        request = tx.request
        dialog = self._dialog(pending.from_leg)
        local_tag = dialog.local_tag if dialog is not None else None
        out = make_response(request, response.status, response.reason, to_tag=local_tag)
        if request.method in ("INVITE", "UPDATE", "SUBSCRIBE") and 200 <= response.status < 300:
            out.headers.add("Contact", self.b2bua.contact_for(tx.source[0]))
        if request.method in ("INVITE", "UPDATE") and 200 <= response.status < 300:
            # a successful refresh on both legs (RFC 4028): each leg negotiates its own timer
            other_leg = "callee" if pending.from_leg == "caller" else "caller"
            self._start_leg_timer(
                other_leg,
                negotiate_uac(self.session_settings, response.headers.get("Session-Expires")),
            )
            negotiated = self._uas_timer(request)
            if isinstance(negotiated, UasAnswer):
                _add_uas_headers(out.headers, negotiated)
                self._start_leg_timer(pending.from_leg, negotiated.timer)
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
                    self.local_sdp[pending.from_leg] = body
            tx.respond(out)

        answerer = "callee" if pending.from_leg == "caller" else "caller"
        if self.current is None or request.method not in ("INVITE", "UPDATE"):
            send(response.body)
            return
        self.media.answer(
            self.current,
            answerer,
            response.body,
            response.headers.get("Content-Type"),
            response.status >= 200,
            send,
        )

    def _on_forwarded_timeout(self, pending: PendingRequest) -> None:
        pending.server_tx.respond_status(408)

    def _send_bye(self, dialog: Dialog) -> None:
        host, port = self.b2bua.via_for(dialog.destination[0])
        bye = dialog.request("BYE", host, port)
        self.b2bua.transactions.start_client(
            bye, dialog.destination, _ignore_response, _ignore_timeout
        )

    # -----------------------------------------------------------------------------------------
    # RFC 4028 session timers (decisions in b2bua/session_timer.py)
    # -----------------------------------------------------------------------------------------
    def _uas_timer(self, request: Request) -> Reject422 | UasAnswer | None:
        return negotiate_uas(
            self.session_settings,
            request.headers.get("Session-Expires"),
            request.headers.get("Min-SE"),
            request.headers.get_all("Supported"),
        )

    def _add_uac_headers(self, leg: str, headers: Headers) -> None:
        """Session timer headers of an INVITE/UPDATE we send on `leg` (we are its UAC)."""
        session = self.leg_sessions.get(leg)
        if not self.session_settings.enabled:
            return
        headers.add("Supported", "timer")
        if session is not None:
            headers.add("Session-Expires", session.timer.header(we_are_uac=True))
        else:
            headers.add("Session-Expires", str(self.session_settings.interval))
        headers.add("Min-SE", str(self.session_settings.floor))

    def _start_leg_timer(self, leg: str, timer: LegTimer | None) -> None:
        """(Re)start a leg's session timer after a successful (re)negotiation."""
        old = self.leg_sessions.pop(leg, None)
        if old is not None:
            old.cancel()
        if timer is None or self.state is CallState.ENDED:
            return
        session = LegSession(timer)
        session.expire = self.b2bua.scheduler.call_later(
            timer.expire_after, lambda: self._on_session_expired(leg, session)
        )
        if timer.we_refresh:
            session.refresh = self.b2bua.scheduler.call_later(
                timer.refresh_after, lambda: self._send_refresh(leg, session)
            )
        self.leg_sessions[leg] = session

    def _send_refresh(self, leg: str, session: LegSession) -> None:
        """We are the refresher: UPDATE without a body, or a re-INVITE with the last SDP we
        sent on the leg when the peer did not list UPDATE in its Allow."""
        session.refresh = None
        dialog = self._dialog(leg)
        if self.leg_sessions.get(leg) is not session or dialog is None:
            return
        if self.state is not CallState.CONFIRMED:
            return
        method = "UPDATE" if self.allows_update.get(leg) else "INVITE"
        body = self.local_sdp.get(leg, b"") if method == "INVITE" else b""
        host, port = self.b2bua.via_for(dialog.destination[0])
        request = dialog.request(method, host, port, body=body)
        self._add_uac_headers(leg, request.headers)
        self.b2bua.transactions.start_client(
            request,
            dialog.destination,
            lambda tx, resp: self._on_refresh_response(leg, session, request, resp),
            _ignore_timeout,  # no answer: the expiry timer ends the call
        )

    def _on_refresh_response(
        self, leg: str, session: LegSession, request: Request, response: Response
    ) -> None:
        status = response.status
        if status < 200 or self.state is not CallState.CONFIRMED:
            return
        dialog = self._dialog(leg)
        if request.method == "INVITE" and status < 300 and dialog is not None:
            host, port = self.b2bua.via_for(dialog.destination[0])
            ack = dialog.request("ACK", host, port, cseq=request.cseq[0])
            self.b2bua.send_bytes(ack.to_bytes(), dialog.destination)
        if self.leg_sessions.get(leg) is not session:
            return  # another refresh (forwarded) restarted the leg meanwhile
        if status < 300:
            self._start_leg_timer(
                leg, negotiate_uac(self.session_settings, response.headers.get("Session-Expires"))
            )
        elif status in (481, 408):
            self.terminate(EXPIRED)  # RFC 3261 12.2.1.2: the dialog is gone
        elif status == 422 and not session.retried_422:
            interval = retry_after_422(self.session_settings, response.headers.get("Min-SE"))
            if interval is not None:
                session.timer = LegTimer(interval, we_refresh=True)
                session.retried_422 = True
                self._send_refresh(leg, session)
        elif status in (405, 501) and request.method == "UPDATE":
            self.allows_update[leg] = False
            self._send_refresh(leg, session)

    def _on_session_expired(self, leg: str, session: LegSession) -> None:
        session.expire = None
        if self.leg_sessions.get(leg) is not session or self.state is not CallState.CONFIRMED:
            return
        log.info("call %s: no session refresh on the %s leg, ending the call", self.id, leg)
        self.b2bua.stats.session_timer_ends += 1
        self.terminate(EXPIRED)

    # -----------------------------------------------------------------------------------------
    # Media and the end
    # -----------------------------------------------------------------------------------------
    def on_rtp_started(self, attempt_index: int) -> None:
        """The media relay saw RTP from the called side of this attempt."""
        if 0 <= attempt_index < len(self.attempts):
            self.attempts[attempt_index].tracker.on_rtp_started()

    def terminate(self, cause: str) -> None:
        """Shutdown or operator action: end the call on both sides."""
        if self.state is CallState.ENDED:
            return
        if self.state is CallState.SETUP:
            if self.current is not None:
                self._end_attempt(self.current, "terminated", None)
                self._abandon(self.current)
            self.invite_tx.respond(
                make_response(self.invite_tx.request, 503, to_tag=self.caller_tag)
            )
            self._finish("system", cause, 503)
            return
        for dialog in (self.caller_dialog, self.callee_dialog):
            if dialog is not None:
                self._send_bye(dialog)
        self._finish("system", cause, 200)

    def _finish(self, release_side: str, cause: str, status: int) -> None:
        if self.state is CallState.ENDED:
            return
        self.state = CallState.ENDED
        for session in self.leg_sessions.values():
            session.cancel()
        self.leg_sessions.clear()
        for attempt in self.attempts:
            if attempt.timer is not None:
                attempt.timer.cancel()
                attempt.timer = None
        self.media.release_all()  # every relay session of the call, whatever the path
        self.record.end_time = time.time()
        self.record.release_side = release_side
        self.record.cause = cause
        self.record.final_status = status
        self.b2bua.call_ended(self)

    def summary(self) -> dict[str, object]:
        current = self.current
        return {
            "call_id": self.id,
            "state": self.state.value,
            "caller": self.caller_number,
            "callee": self.callee_number,
            "source": f"{self.source[0]}:{self.source[1]}",
            "mapping_gateway": self.mapping_gateway,
            "setup_time": self.record.setup_time,
            "answer_time": self.record.answer_time,
            "attempts": len(self.attempts),
            "current_attempt": None
            if current is None
            else {
                "index": current.index,
                "gateway": current.gateway.name,
                "phase": current.tracker.phase.value,
                "sdp_seen": current.tracker.sdp_seen,
                "rtp_started": current.tracker.rtp_started,
            },
        }


def caller_facing(status: int, reason: str | None) -> tuple[int, str | None]:
    """A gateway's challenge (401/407) or redirect (3xx) is about our leg, not the caller's:
    the caller's credentials or a redirect would mean nothing to it, so it hears 503."""
    if status in (401, 407, 422) or 300 <= status < 400:
        return 503, f"Gateway Answered {status}"
    return status, reason


def _add_uas_headers(headers: Headers, answer: UasAnswer) -> None:
    """Session timer headers of the 2xx we send as UAS (RFC 4028 section 9)."""
    headers.add("Supported", "timer")
    if answer.require_timer:
        headers.add("Require", "timer")
    headers.add("Session-Expires", answer.session_expires)


def _ignore_response(tx: ClientTransaction, response: Response) -> None:
    return None


def _ignore_timeout(tx: ClientTransaction) -> None:
    return None


def copy_pass_through(source: Headers, target: Headers) -> None:
    for name in PASS_THROUGH:
        for value in source.get_all(name):
            target.add(name, value)
