"""One B2BUA call: the caller's INVITE, the attempts toward routing gateways, the two dialogs.

The decisions (which gateway next, when to stop, which timer to run) come from the pure
`switching` module; this module only carries them out: it sends and answers SIP through the
transaction layer, arms timers on the event loop and writes the CDR when the call ends.

Life of a call:  SETUP (attempts running) -> CONFIRMED (a gateway answered, caller ACKed or not
yet) -> ENDED.  An attempt that is abandoned (its timer fired, or the caller cancelled) is
cancelled if it has sent a provisional response, otherwise it just stops retransmitting; if it
answers late anyway, we ACK that answer and send BYE at once.

A gateway's host name is looked up first (`CallHost.resolve`; docs/call-control.md): a name that
does not resolve fails at once; each target is an attempt of its own, and silence from one (the
INVITE timer) moves on to the next before switching decides.

Owns: `Call`: the attempts, the answer, CANCEL, ACK and BYE from either side, the end and the
CDR fields. One helper of each kind per call: `CallMedia` (media_link), `LegTimers` (refresh,
RFC 4028) and `Forwarder` (in_dialog: every other in-dialog request). Records: `calls.attempt`.
Must not: import `calls.service`. It uses the B2BUA that owns it through `CallHost`, which
`B2BUA` implements, and reports its end with `CallHost.call_ended`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sipedge.calls import carrier_events as carriers
from sipedge.calls.attempt import Attempt, CallState, CallStats, GatewayTarget
from sipedge.calls.identity import IncomingIdentity
from sipedge.calls.in_dialog import Forwarder, ForwardingHost
from sipedge.calls.linger import ignore, let_go
from sipedge.calls.media_link import CallMedia
from sipedge.calls.media_policy import MEDIA_FAMILY_UNAVAILABLE, MEDIA_UNAVAILABLE, MediaRefusal
from sipedge.calls.media_session import CALLEE, CALLER
from sipedge.calls.refresh import LegTimers
from sipedge.calls.retry import retry_headers
from sipedge.calls.session_timer import EXPIRED, Reject422, TimerSettings
from sipedge.calls.switching import (
    AttemptTracker,
    CallSwitcher,
    Next,
    Stop,
    StopReason,
    SwitchingPolicy,
    Timer,
    TimerChange,
    caller_facing,
    tries_next_target,
)
from sipedge.resolver import Targets
from sipedge.sip.dialog import Dialog, resend_request, uac_dialog, uas_dialog
from sipedge.sip.message import Request, Response, make_response, new_tag
from sipedge.sip.transaction import (
    InviteServerTransaction,
    ServerTransaction,
    build_cancel,
)
from sipedge.store import AttemptRecord, CallRecord, OnCommitted
from sipedge.typedefs import Addr

log = logging.getLogger(__name__)
# media refusals about the gateway, not the caller's SDP: the next gateway may do
GATEWAY_REFUSALS = (MEDIA_UNAVAILABLE, MEDIA_FAMILY_UNAVAILABLE)


class CallHost(ForwardingHost, Protocol):
    """What a call uses of the B2BUA that owns it (`calls.service.B2BUA` implements it)."""

    ALLOW: str

    @property
    def stats(self) -> CallStats: ...

    @property
    def session_timers(self) -> TimerSettings: ...

    @property
    def carriers(self) -> carriers.CarrierEvents: ...

    def media_for(self, call: Call) -> CallMedia: ...

    def gateway_target(self, name: str) -> GatewayTarget: ...

    def resolve(self, gateway: GatewayTarget, done: Callable[[Targets], None]) -> None:
        """The gateway's targets to `done`: at once for an address or a cached name."""

    def build_gateway_invite(self, call: Call, gateway: GatewayTarget, target: Addr) -> Request:
        """The INVITE of one attempt, to one of the gateway's targets."""

    def register_dialog(self, call: Call, leg: str, dialog: Dialog) -> None: ...

    def call_ended(self, call: Call, then: OnCommitted | None = None) -> None:
        """`then` runs (on the loop) once the call's CDR is committed, or at once if none."""


@dataclass
class Call:
    b2bua: CallHost
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
    media: CallMedia = field(init=False)  # relay sessions at mediad (media_link.py)
    # RFC 4028 session timers, per leg (docs/session-timers.md)
    session_settings: TimerSettings = field(init=False)
    timers: LegTimers = field(init=False)
    forwarder: Forwarder = field(init=False)  # in-dialog requests (in_dialog.py)
    _resolving: Next | None = None  # the attempt whose gateway name is being looked up

    def __post_init__(self) -> None:
        self.media = self.b2bua.media_for(self)
        self.session_settings = self.b2bua.session_timers
        self.timers = LegTimers(self, self.b2bua, self.session_settings)
        self.forwarder = Forwarder(self.b2bua, self.media, self.timers)

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
        request = self.invite_tx.request  # a caller of a family mediad cannot relay: 488 now
        refusal = self.media.caller_refusal(request.body, request.headers.get("Content-Type"))
        if refusal is not None:
            return self._reject_caller(refusal)
        self._follow(self.switcher.first())

    def _follow(self, decision: Next | Stop) -> None:
        if isinstance(decision, Stop):
            self._fail_caller(decision)
        else:
            self._start_attempt(decision)

    def _start_attempt(self, decision: Next) -> None:
        """Look the gateway's name up (at once for an address or a cached name), then try
        its first target; a name that does not resolve fails the attempt before any INVITE."""
        gateway = self.b2bua.gateway_target(decision.gateway)
        self._resolving = decision
        self.b2bua.resolve(gateway, lambda found: self._resolved(decision, gateway, found))

    def _resolved(self, decision: Next, gateway: GatewayTarget, found: Targets) -> None:
        if self._resolving is not decision or self.state is not CallState.SETUP:
            return  # the caller cancelled (or the call ended) while the name was looked up
        self._resolving = None
        if found.addresses:
            self._try_target(gateway, decision.policy, found.addresses, 0)
            return
        self.b2bua.stats.unresolved += 1
        self.b2bua.carriers.attempt_unresolved(gateway.name)
        now = time.time()
        self.record.attempts.append(AttemptRecord(gateway.name, now, now, found.failure))
        self._follow(self.switcher.on_unresolved(AttemptTracker(gateway.name, decision.policy)))

    def _try_target(
        self, gateway: GatewayTarget, policy: SwitchingPolicy, targets: tuple[Addr, ...], i: int
    ) -> None:
        invite = self.b2bua.build_gateway_invite(self, gateway, targets[i])
        attempt = Attempt(
            index=len(self.attempts),
            gateway=gateway,
            policy=policy,
            tracker=AttemptTracker(gateway.name, policy),
            invite=invite,
            record=AttemptRecord(gateway.name, time.time(), target=":".join(map(str, targets[i]))),
            targets=targets,
            target_index=i,
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
            refusal = self.media.refusal(attempt)
            if refusal.reason not in GATEWAY_REFUSALS:  # the caller's own SDP: no gateway helps
                self._end_attempt(attempt, refusal.reason, refusal.status)
                self._reject_caller(refusal)
                return
            # mediad could not anchor this gateway's leg (encryption, its family): try another
            self._end_attempt(attempt, refusal.reason, 503)
            self._follow(self.switcher.on_failure(attempt.tracker, 503, None))
            return
        attempt.invite.body = body
        self._send_invite(attempt)
        self.media.watch_rtp_start(attempt)

    def _send_invite(self, attempt: Attempt) -> None:
        attempt.tx = self.b2bua.transactions.start_client(
            attempt.invite,
            attempt.destination,
            lambda tx, resp: self._on_attempt_response(attempt, resp),
            lambda tx: self._on_attempt_tx_timeout(attempt, tx.failure),
        )  # type: ignore[assignment]
        carriers.invite_sent(self.b2bua.carriers, attempt, time.time())
        self._apply_timer(attempt, attempt.tracker.on_invite_sent())

    def _apply_timer(self, attempt: Attempt, change: TimerChange) -> None:
        if (change.cancel or change.arm is not None) and attempt.timer is not None:
            attempt.timer.cancel()
            attempt.timer = None
        if change.arm is not None and change.seconds is not None:
            which = change.arm
            attempt.timer = self.b2bua.scheduler.call_later(
                change.seconds, lambda: self._on_attempt_timer(attempt, which)
            )

    def _on_attempt_timer(self, attempt: Attempt, which: Timer, result: str = "") -> None:
        attempt.timer = None
        if attempt is not self.current or self.state is not CallState.SETUP:
            return
        self._end_attempt(attempt, result or f"timeout: {which.value}", None)
        self._abandon(attempt)
        following = attempt.next_target
        if following is not None and tries_next_target(which, attempt.tracker.phase):
            # silence from this address: the same gateway at its next one (RFC 3263 4.3)
            self._try_target(attempt.gateway, attempt.policy, attempt.targets, following)
            return
        self._follow(self.switcher.on_failure(attempt.tracker, None, which))

    def _on_attempt_tx_timeout(self, attempt: Attempt, failure: str | None = None) -> None:
        # Timer B (matters if the INVITE timer is longer), or the transport gave up (TCP/TLS)
        if attempt is self.current and self.state is CallState.SETUP and not attempt.abandoned:
            self._on_attempt_timer(
                attempt, Timer.INVITE, f"transport: {failure}" if failure else ""
            )

    def _end_attempt(self, attempt: Attempt, result: str, status: int | None) -> None:
        if attempt.timer is not None:
            attempt.timer.cancel()
            attempt.timer = None
        if attempt.record.end is None:
            attempt.record.end = time.time()
            attempt.record.result = result
            attempt.record.status = status
            carriers.attempt_ended(self.b2bua.carriers, attempt, result, status)
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
            build_cancel(attempt.invite), attempt.destination, ignore, ignore
        )

    def _on_attempt_response(self, attempt: Attempt, response: Response) -> None:
        status = response.status
        if status < 200:
            attempt.provisional = True
        if attempt.abandoned or attempt is not self.current or self.state is not CallState.SETUP:
            self._late_response(attempt, response)
            return
        carriers.progressed(attempt, status, time.time())
        if status > 100 and self._callee_sdp_refused(attempt, response):
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
                    lambda body: self._relay_provisional(response, body or b""),
                )
            return
        if status < 300:
            self._answered(attempt, response)
            return
        retry = retry_headers(attempt, response, self.session_settings, self.b2bua.stats)
        if retry is not None:  # 422 with a Min-SE, or a challenge we answer: once each
            self._resend(attempt, *retry)
            return
        self._end_attempt(attempt, str(status), status)
        self._follow(self.switcher.on_failure(attempt.tracker, status, None))

    def _resend(self, attempt: Attempt, *headers: tuple[str, str]) -> None:
        """The attempt's INVITE again, with `headers` set: new branch, CSeq + 1 (a CANCEL
        from now on goes to this one: `_send_cancel` builds it from `attempt.invite`)."""
        attempt.invite = resend_request(attempt.invite, *self.b2bua.via_for(attempt.destination[0]))
        for name, value in headers:
            attempt.invite.headers.set(name, value)
        attempt.provisional = False
        self._send_invite(attempt)

    def _callee_sdp_refused(self, attempt: Attempt, response: Response) -> bool:
        """The callee's SDP (18x/2xx) is refused by the media policy: the attempt fails with
        that reason, the gateway gets CANCEL (or ACK + BYE) and switching decides."""
        refusal = self.media.check(CALLEE, response.body, response.headers.get("Content-Type"))
        if refusal is None or response.status >= 300:
            return False
        self._end_attempt(attempt, refusal.reason, response.status)
        if response.status >= 200:  # answered: ACK it so it stops retransmitting, hang up
            attempt.abandoned = True
            attempt.dialog = uac_dialog(attempt.invite, response, attempt.destination)
            self._ack_gateway(attempt, b"", None)
            self._send_bye(attempt.dialog)
        else:
            self._abandon(attempt)  # CANCEL: it sent a provisional
        self._follow(self.switcher.on_failure(attempt.tracker, 503, None))
        return True

    def _reject_caller(self, refusal: MediaRefusal) -> None:
        """The caller's SDP is refused (488 with a Warning saying why); no gateway is tried."""
        response = make_response(self.invite_tx.request, refusal.status, to_tag=self.caller_tag)
        response.headers.add("Warning", refusal.warning(self.b2bua.via_for(self.source[0])[0]))
        self.invite_tx.respond(response)
        self._finish("system", refusal.reason, refusal.status)

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
        out.headers.add("Contact", self.b2bua.contact_for(self.source))
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
        out.headers.add("Contact", self.b2bua.contact_for(self.source))
        out.headers.add("Allow", self.b2bua.ALLOW)
        self.timers.on_answered(self.invite_tx.request, attempt.invite, response, out.headers)

        def send(body: bytes | None) -> None:
            if body:
                out.headers.set(
                    "Content-Type", response.headers.get("Content-Type") or "application/sdp"
                )
                out.body = body
                self.timers.local_sdp["caller"] = body
            self.invite_tx.on_ack_timeout = self._on_caller_ack_timeout
            self.invite_tx.respond(out)

        self.media.answer(
            attempt, CALLEE, response.body, response.headers.get("Content-Type"), True, send
        )
        self.media.on_answered(attempt)
        self.b2bua.stats.answered += 1
        pdd = carriers.call_pdd(self.record.setup_time, self.attempts)
        self.b2bua.carriers.call_answered(self.mapping_gateway, pdd)

    def _ack_gateway(self, attempt: Attempt, body: bytes, content_type: str | None) -> None:
        assert attempt.dialog is not None
        host, port = self.b2bua.via_for(attempt.destination[0])
        ack = attempt.dialog.request(
            "ACK", host, port, cseq=attempt.invite.cseq[0], body=body, content_type=content_type
        )
        if body and attempt.dialog is self.callee_dialog:
            self.timers.local_sdp["callee"] = body  # late offer: our answer went in the ACK
        attempt.ack_bytes = self.b2bua.transactions.send_request(ack, attempt.destination)

    def _fail_caller(self, stop: Stop) -> None:
        """Switching stopped without an answer: the caller hears the last failure."""
        status, reason = caller_facing(stop.caller_status, stop.caller_reason)
        stop = Stop(stop.reason, status, reason)
        self.record.switch_stop_reason = stop.reason.value
        if self.record.attempts:  # the last attempt's record (a failed lookup has no Attempt)
            self.record.attempts[-1].stop_reason = stop.reason.value
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
            refusal = self.media.check(CALLER, ack.body, content_type)
            if refusal is not None:  # the caller's answer to a late offer: cannot be used
                self._ack_gateway(attempt, b"", None)
                self.terminate(refusal.reason)
                return
            self.media.answer(
                attempt,
                CALLER,
                ack.body,
                content_type,
                True,
                lambda body: self._ack_gateway(attempt, body or b"", content_type),
            )
            return
        self.forwarder.forward_ack(self, leg, ack)  # the ACK of a forwarded re-INVITE

    def _on_caller_ack_timeout(self, tx: InviteServerTransaction) -> None:
        if self.state is CallState.CONFIRMED and not self.caller_acked:
            log.info("call %s: the caller never ACKed our 200, ending the call", self.id)
            if self.current is not None:
                self._ack_gateway(self.current, b"", None)
            if self.callee_dialog is not None:
                self._send_bye(self.callee_dialog)
            self._finish("system", "no ACK from caller", 408)

    # -----------------------------------------------------------------------------------------
    # In-dialog requests (both legs): what is not answered here goes to the Forwarder
    # -----------------------------------------------------------------------------------------
    def dialog(self, leg: str) -> Dialog | None:
        return self.caller_dialog if leg == "caller" else self.callee_dialog

    def on_dialog_request(self, leg: str, tx: ServerTransaction) -> None:
        request = tx.request
        dialog = self.dialog(leg)
        if dialog is None or self.state is CallState.ENDED:
            tx.respond_status(481)
            return
        if request.cseq[0] < dialog.remote_cseq and request.method != "ACK":
            tx.respond_status(500, "CSeq Out of Order")
            return
        dialog.remote_cseq = request.cseq[0]
        if request.method == "BYE":  # its 200 waits for the CDR's commit (tx absorbs resends)
            other = self.dialog("callee" if leg == "caller" else "caller")
            self._finish(leg, "normal clearing", 200, lambda: tx.respond_status(200))
            if other is not None:
                self._send_bye(other)
            return
        if request.method in ("INVITE", "UPDATE"):
            negotiated = self.timers.uas_timer(request)
            if isinstance(negotiated, Reject422):
                out = make_response(request, 422, to_tag=dialog.local_tag)
                out.headers.add("Min-SE", str(negotiated.min_se))
                tx.respond(out)
                return
        self.forwarder.forward(self, leg, tx)

    def _send_bye(self, dialog: Dialog) -> None:
        host, port = self.b2bua.via_for(dialog.destination[0])
        bye = dialog.request("BYE", host, port)
        self.b2bua.transactions.start_client(bye, dialog.destination, ignore, ignore)

    # -----------------------------------------------------------------------------------------
    # Media, session timers and the end
    # -----------------------------------------------------------------------------------------
    def on_session_expired(self, leg: str) -> None:
        """No session refresh came on `leg` in time (RFC 4028 section 10, see refresh.py)."""
        log.info("call %s: no session refresh on the %s leg, ending the call", self.id, leg)
        self.b2bua.stats.session_timer_ends += 1
        self.terminate(EXPIRED)

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

    def _finish(self, side: str, cause: str, status: int, then: OnCommitted | None = None) -> None:
        if self.state is CallState.ENDED:
            return
        self.state = CallState.ENDED
        self.timers.cancel_all()
        for attempt in self.attempts:
            if attempt.timer is not None:
                attempt.timer.cancel()
                attempt.timer = None
            let_go(attempt, self.b2bua.send_bytes)  # its transaction no longer holds the call
        self.media.release_all()  # every relay session of the call, whatever the path
        self.record.end_time = time.time()
        self.record.release_side = side
        self.record.cause = cause
        self.record.final_status = status
        self.b2bua.call_ended(self, then)
