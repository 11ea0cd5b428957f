"""RFC 4028 session timers of one call, carried out: each leg's refresh and expiry timers.

The decisions (the negotiated interval, who refreshes, the answer to a 422) come from the pure
`session_timer` module; this module arms the timers on the B2BUA's scheduler, sends the UPDATE
or re-INVITE when we are a leg's refresher, and tells its call when a leg's session expired.

Owns: `LegTimers` (one per call: each leg's `LegSession`, whether each peer allows UPDATE, the
last SDP we sent on each leg) and the session timer headers we add as UAC and as UAS.
Must not: end a call by itself, touch media, or import `calls.call` / `calls.service`: it asks
and reports through `TimedCall` (`Call` implements it) and sends through `RefreshHost` (`B2BUA`
implements it). Must not keep its call once it has ended: the call owns its `LegTimers`,
so the link back is a reference cycle, which `cancel_all` (the call's end) breaks.
Driven by: `calls.call` and `calls.in_dialog` (docs/session-timers.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sipedge.calls.attempt import CallState
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
from sipedge.sip.dialog import Dialog
from sipedge.sip.message import Headers, Request, Response
from sipedge.sip.timers import Scheduler, TimerHandle
from sipedge.sip.transaction import ClientTransaction, TransactionLayer
from sipedge.typedefs import Addr


class RefreshHost(Protocol):
    """What the session timers send through (`calls.service.B2BUA` implements it)."""

    @property
    def scheduler(self) -> Scheduler: ...

    @property
    def transactions(self) -> TransactionLayer: ...

    @property
    def send_bytes(self) -> Callable[[bytes, Addr], None]: ...

    def via_for(self, destination: str) -> tuple[str, int]: ...


class TimedCall(Protocol):
    """What the session timers need of their call (`calls.call.Call` implements it)."""

    @property
    def state(self) -> CallState: ...

    def dialog(self, leg: str) -> Dialog | None: ...

    def on_session_expired(self, leg: str) -> None: ...

    def terminate(self, cause: str) -> None: ...


@dataclass
class LegSession:
    """The RFC 4028 session timer of one leg (session_timer.py decides, we arm)."""

    timer: LegTimer
    refresh: TimerHandle | None = None
    expire: TimerHandle | None = None
    retried_422: bool = False

    def cancel(self) -> None:
        for handle in (self.refresh, self.expire):
            if handle is not None:
                handle.cancel()
        self.refresh = self.expire = None


class LegTimers:
    """The session timers of one call's two legs."""

    def __init__(self, call: TimedCall, host: RefreshHost, settings: TimerSettings) -> None:
        self._call: TimedCall | None = call  # until cancel_all (see the docstring)
        self.host = host
        self.settings = settings
        self.sessions: dict[str, LegSession] = {}
        self.allows_update: dict[str, bool] = {}
        self.local_sdp: dict[str, bytes] = {}  # last SDP we sent on each leg

    def _confirmed(self) -> TimedCall | None:
        """The call while it is up; None once it ended."""
        call = self._call
        return call if call is not None and call.state is CallState.CONFIRMED else None

    def uas_timer(self, request: Request) -> Reject422 | UasAnswer | None:
        return negotiate_uas(
            self.settings,
            request.headers.get("Session-Expires"),
            request.headers.get("Min-SE"),
            request.headers.get_all("Supported"),
        )

    def on_answered(
        self, caller_invite: Request, gateway_invite: Request, answer: Response, out: Headers
    ) -> None:
        """The gateway answered: both legs' timers start (the caller's 2xx, `out`, gets our
        UAS headers), and what each peer allows and the SDP we sent it are noted."""
        self.allows_update["caller"] = has_option(caller_invite.headers.get_all("Allow"), "UPDATE")
        self.allows_update["callee"] = has_option(answer.headers.get_all("Allow"), "UPDATE")
        if gateway_invite.body:
            self.local_sdp["callee"] = gateway_invite.body
        self.start("callee", negotiate_uac(self.settings, answer.headers.get("Session-Expires")))
        caller_timer = self.uas_timer(caller_invite)
        if isinstance(caller_timer, UasAnswer):
            add_uas_headers(out, caller_timer)
            self.start("caller", caller_timer.timer)

    def add_uac_headers(self, leg: str, headers: Headers) -> None:
        """Session timer headers of an INVITE/UPDATE we send on `leg` (we are its UAC)."""
        session = self.sessions.get(leg)
        if not self.settings.enabled:
            return
        headers.add("Supported", "timer")
        if session is not None:
            headers.add("Session-Expires", session.timer.header(we_are_uac=True))
        else:
            headers.add("Session-Expires", str(self.settings.interval))
        headers.add("Min-SE", str(self.settings.floor))

    def start(self, leg: str, timer: LegTimer | None) -> None:
        """(Re)start a leg's session timer after a successful (re)negotiation."""
        old = self.sessions.pop(leg, None)
        if old is not None:
            old.cancel()
        call = self._call
        if timer is None or call is None or call.state is CallState.ENDED:
            return
        session = LegSession(timer)
        session.expire = self.host.scheduler.call_later(
            timer.expire_after, lambda: self._on_expired(leg, session)
        )
        if timer.we_refresh:
            session.refresh = self.host.scheduler.call_later(
                timer.refresh_after, lambda: self._send_refresh(leg, session)
            )
        self.sessions[leg] = session

    def cancel_all(self) -> None:
        """The call has ended: every timer off, and the link back to the call let go."""
        for session in self.sessions.values():
            session.cancel()
        self.sessions.clear()
        self._call = None

    def _send_refresh(self, leg: str, session: LegSession) -> None:
        """We are the refresher: UPDATE without a body, or a re-INVITE with the last SDP we
        sent on the leg when the peer did not list UPDATE in its Allow."""
        session.refresh = None
        call = self._confirmed()
        dialog = call.dialog(leg) if call is not None else None
        if self.sessions.get(leg) is not session or dialog is None:
            return
        method = "UPDATE" if self.allows_update.get(leg) else "INVITE"
        body = self.local_sdp.get(leg, b"") if method == "INVITE" else b""
        host, port = self.host.via_for(dialog.destination[0])
        request = dialog.request(method, host, port, body=body)
        self.add_uac_headers(leg, request.headers)
        self.host.transactions.start_client(
            request,
            dialog.destination,
            lambda tx, resp: self._on_refresh_response(leg, session, request, resp),
            _no_answer,  # the expiry timer ends the call
        )

    def _on_refresh_response(
        self, leg: str, session: LegSession, request: Request, response: Response
    ) -> None:
        status = response.status
        call = self._confirmed()
        if status < 200 or call is None:
            return
        dialog = call.dialog(leg)
        if request.method == "INVITE" and status < 300 and dialog is not None:
            host, port = self.host.via_for(dialog.destination[0])
            ack = dialog.request("ACK", host, port, cseq=request.cseq[0])
            self.host.transactions.send_request(ack, dialog.destination)
        if self.sessions.get(leg) is not session:
            return  # another refresh (forwarded) restarted the leg meanwhile
        if status < 300:
            self.start(leg, negotiate_uac(self.settings, response.headers.get("Session-Expires")))
        elif status in (481, 408):
            call.terminate(EXPIRED)  # RFC 3261 12.2.1.2: the dialog is gone
        elif status == 422 and not session.retried_422:
            interval = retry_after_422(self.settings, response.headers.get("Min-SE"))
            if interval is not None:
                session.timer = LegTimer(interval, we_refresh=True)
                session.retried_422 = True
                self._send_refresh(leg, session)
        elif status in (405, 501) and request.method == "UPDATE":
            self.allows_update[leg] = False
            self._send_refresh(leg, session)

    def _on_expired(self, leg: str, session: LegSession) -> None:
        session.expire = None
        call = self._confirmed()
        if self.sessions.get(leg) is not session or call is None:
            return
        call.on_session_expired(leg)


def add_uas_headers(headers: Headers, answer: UasAnswer) -> None:
    """Session timer headers of the 2xx we send as UAS (RFC 4028 section 9)."""
    headers.add("Supported", "timer")
    if answer.require_timer:
        headers.add("Require", "timer")
    headers.add("Session-Expires", answer.session_expires)


def _no_answer(tx: ClientTransaction) -> None:
    return None
