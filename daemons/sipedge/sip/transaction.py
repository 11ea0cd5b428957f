"""SIP transactions (RFC 3261 section 17, with RFC 6026's Accepted state).

Four state machines, as in Kamailio's tm module:

* INVITE client (`InviteClientTransaction`): retransmits the INVITE over UDP with the gaps of
  SS_SIP_RESEND_INTERVAL until any response; ACKs non-2xx finals itself; absorbs and reports
  retransmitted 2xx for a while so the call layer can re-ACK or ACK-and-BYE a late answer.
* non-INVITE client (`ClientTransaction`): retransmits with the same gaps until a final.
* INVITE server (`InviteServerTransaction`): answers 100 at once, repeats the last response
  on a retransmitted INVITE, retransmits a final (2xx included, per parameters.md) by the same
  gaps until the ACK arrives.
* non-INVITE server (`ServerTransaction`): repeats its final on retransmitted requests.

Over TCP/TLS nothing is retransmitted (as Kamailio's tm, the 2xx too); a client transaction
the transport gives up on fails at once as on a timeout (`transport_failed`); `prepare` (the
transport's router) says where each request really goes, with which top Via.

Timers come from a `Scheduler` (an asyncio loop satisfies it), so the machines can be driven by
a fake clock in unit tests; `timers` owns it and the pure `RetransmitSchedule`. The timers a
finished transaction waits out (J, K, M, D) are armed in cohorts (`cohort`), one event-loop
timer per cohort: they end it up to `cohort.WINDOW` (0.1 s) after their nominal length. A
transaction that ends lets go of its timers and of its callbacks into the transaction user, so
that no reference cycle (call -> transaction -> callback -> call) outlives it; a client
transaction with its final in lets go of its request too (it lingers up to 32 s with nothing
to resend).

Longer than 600 lines because the four machines share the layer's tables and timers: one
concept, kept in one place as tm keeps it.

Also the gate (docs/sip-conformance.md): a request failing `validation.check_request`, or over
`SipLimits.max_transactions`, is refused statelessly; an unusable ACK or response is dropped
(both counted by `gate.Gate`). Matching: RFC 3261 17.2.3 and 17.1.3. Every stored server
transaction ends with a final or is removed (500 if the TU raises or never answers).
Must not: open sockets, read the clock, or import from sipedge outside sip/ but `typedefs`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from sipedge.sip.cancel import build_ack_for_failure as build_ack_for_failure
from sipedge.sip.cancel import build_cancel as build_cancel
from sipedge.sip.cohort import Cohorts
from sipedge.sip.gate import Gate
from sipedge.sip.limits import SipLimits
from sipedge.sip.message import ParseError, Request, Response, make_response, new_tag
from sipedge.sip.timers import T4, RetransmitSchedule
from sipedge.sip.timers import Scheduler as Scheduler  # re-exported: the stack's clock seam
from sipedge.sip.timers import TimerHandle as TimerHandle
from sipedge.sip.transport.destination import DestinationKey, is_reliable, key_of
from sipedge.sip.validation import Refusal, check_request, check_response
from sipedge.typedefs import Addr

# How long an INVITE server transaction may wait for its TU's final; then the layer sends 500.
MAX_INVITE_PENDING = 3600.0


class State(enum.Enum):
    CALLING = "calling"  # INVITE client: sent, no response yet
    TRYING = "trying"  # non-INVITE: sent/received, no final yet
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"  # RFC 6026: a 2xx went by, absorb retransmissions
    TERMINATED = "terminated"


class TransactionUser(Protocol):
    """What sits above the transaction layer (the B2BUA, registrar, ...)."""

    def on_request(self, tx: ServerTransaction) -> None: ...

    def on_cancel(self, invite_tx: InviteServerTransaction, cancel: Request) -> None: ...

    def on_ack(self, ack: Request, source: Addr) -> None: ...

    def on_stray_response(self, response: Response, source: Addr) -> None: ...


ResponseCallback = Callable[["ClientTransaction", Response], None]
TimeoutCallback = Callable[["ClientTransaction"], None]

ServerKey = tuple[str, str, str]
K = TypeVar("K")
V = TypeVar("V")


def _server_key(request: Request, method: str) -> ServerKey:
    """RFC 3261 17.2.3: branch, sent-by and method (ACK and CANCEL pass "INVITE" to find the
    INVITE they belong to). Raises ParseError on a top Via that does not parse."""
    via = request.top_via
    sent_by = f"{via.host.lower()}:{via.port or 5060}"
    branch = via.branch
    if branch and branch.startswith("z9hG4bK"):
        return branch, sent_by, method
    # RFC 2543 peers: no magic cookie, match on Request-URI, From tag, Call-ID and CSeq number
    # too (the To tag is ours, or absent on the INVITE, so it is left out).
    cseq = request.cseq[0]
    return f"{request.uri}|{request.call_id}|{cseq}|{request.from_tag}|{branch}", sent_by, method


class TransactionLayer:
    """Matches messages to transactions and owns their lifetimes."""

    def __init__(
        self,
        scheduler: Scheduler,
        resend: Sequence[float],
        send_bytes: Callable[[bytes, Addr], None],
        tu: TransactionUser,
        limits: SipLimits | None = None,
        supported: frozenset[str] = frozenset(),
    ) -> None:
        self.scheduler = scheduler
        self.schedule = RetransmitSchedule(resend)
        self.send_bytes_to = send_bytes
        self.tu = tu
        self.limits = limits if limits is not None else SipLimits()
        self.supported = supported  # option tags the TU supports (Require -> 420 otherwise)
        self.server: dict[ServerKey, ServerTransaction] = {}
        self.client: dict[tuple[str, str], ClientTransaction] = {}
        # 2xx responses to INVITE being retransmitted until the (end-to-end) ACK arrives.
        self.awaiting_ack: dict[tuple[str, int], InviteServerTransaction] = {}
        self.created = 0
        self.retransmissions = 0
        self.timeouts = 0
        self.stateless = 0  # finals sent once, without keeping the transaction
        self.gate = Gate(send_bytes)  # refusals and drops: counted, logged rate-limited
        self.tu_errors = 0  # the transaction user raised (answered 500 where it could be)
        self.unanswered = 0  # guard timer fired: the TU never sent a final (answered 500)
        # the destination and bytes a request really goes to (sipd: sip/transport's router)
        self.prepare: Callable[[Request, Addr], tuple[Addr, bytes]] = _as_is
        # live client transactions over TCP/TLS by destination (`transport_failed`)
        self.streamed: dict[DestinationKey, set[ClientTransaction]] = {}
        self.transport_failures = 0
        self._cohorts: dict[float, Cohorts] = {}  # by delay: T4 and the transaction timeout

    def set_resend(self, resend: Sequence[float]) -> None:
        """Config reload: new transactions use the new gaps, running ones keep theirs."""
        self.schedule = RetransmitSchedule(resend)

    def configure(self, limits: SipLimits, supported: frozenset[str] | None = None) -> None:
        """Start-up and config reload: the limits apply from the next message on."""
        self.limits = limits
        if supported is not None:
            self.supported = supported

    # -- incoming ---------------------------------------------------------------------------
    def receive(self, msg: Request | Response, source: Addr) -> None:
        if isinstance(msg, Response):
            self._receive_response(msg, source)
        else:
            self._receive_request(msg, source)

    def _receive_response(self, response: Response, source: Addr) -> None:
        # RFC 3261 18.1.2: one Via, ours; and nothing the TU would trip on (never answered).
        problem = "Vias" if len(response.headers.get_all("Via")) != 1 else None
        try:
            branch = response.top_via.branch or ""  # the parser checked the Via only quickly
        except ParseError:
            problem = "Vias"
        problem = problem or check_response(response)
        if problem is not None:
            self.gate.drop("response_via" if problem == "Vias" else "invalid_response", source)
            return
        ct = self.client.get((branch, response.cseq[1]))
        try:
            if ct is not None:
                ct.on_response(response)
            else:
                self.tu.on_stray_response(response, source)
        except Exception as exc:
            self._tu_failed("response", exc)

    def _receive_request(self, request: Request, source: Addr) -> None:
        method = request.method
        refusal = check_request(request, self.limits, self.supported)
        if refusal is not None:
            if method == "ACK":
                self.gate.drop("invalid_ack", source, refusal.label)
            else:
                self.refuse(request, source, refusal)
            return
        if method == "ACK":
            self._receive_ack(request, source)
            return
        key = _server_key(request, method)
        existing = self.server.get(key)
        if existing is not None:
            existing.on_retransmission()
            return
        if len(self.server) + len(self.client) >= self.limits.max_transactions:
            retry = (("Retry-After", str(self.limits.retry_after)),)
            self.refuse(request, source, Refusal(503, None, retry, "503 transaction table full"))
            return
        if method == "CANCEL":
            self._receive_cancel(request, source, key)
            return
        st: ServerTransaction
        if method == "INVITE":
            st = InviteServerTransaction(self, request, source, key)
        else:
            st = ServerTransaction(self, request, source, key)
        self.server[key] = st
        self.created += 1
        try:
            self.tu.on_request(st)
        except Exception as exc:
            self._tu_failed(method, exc)
            st.respond_stateless(make_response(request, 500, to_tag=new_tag()))
            return
        if st.state is State.TERMINATED or st.final_sent:
            return
        # The TU took its time: say so now (deferred, so that a refusal goes out alone), and
        # make sure a final comes even if the TU never sends one.
        if isinstance(st, InviteServerTransaction) and st.last_response is None:
            st.respond(make_response(request, 100))
        st.arm_guard(MAX_INVITE_PENDING if method == "INVITE" else self.schedule.timeout + T4)

    def _receive_ack(self, request: Request, source: Addr) -> None:
        invite_st = self.server.get(_server_key(request, "INVITE"))
        if isinstance(invite_st, InviteServerTransaction) and invite_st.state is State.COMPLETED:
            invite_st.on_ack()  # ACK for our non-2xx final: hop by hop, ends here
            return
        pending = self.awaiting_ack.pop((request.call_id, request.cseq[0]), None)
        if pending is not None:
            pending.on_ack()
        try:
            self.tu.on_ack(request, source)
        except Exception as exc:
            self._tu_failed("ACK", exc)

    def _receive_cancel(self, request: Request, source: Addr, key: ServerKey) -> None:
        invite_tx = self.server.get(_server_key(request, "INVITE"))
        # Same branch and sent-by (the key) and the same source address: nobody else's CANCEL.
        # A CANCEL that matches nothing is answered statelessly, so that it cannot occupy the
        # key of the real CANCEL that may follow.
        if not isinstance(invite_tx, InviteServerTransaction) or invite_tx.source[0] != source[0]:
            self.refuse(request, source, Refusal(481, label="481 CANCEL matches no INVITE"))
            return
        cancel_tx = ServerTransaction(self, request, source, key)
        self.server[key] = cancel_tx
        self.created += 1
        cancel_tx.respond_status(200, to_tag=new_tag())
        if invite_tx.final_sent:
            return
        try:
            self.tu.on_cancel(invite_tx, request)
        except Exception as exc:
            self._tu_failed("CANCEL", exc)
            invite_tx.respond_status(487, to_tag=new_tag())

    def refuse(self, request: Request, source: Addr, refusal: Refusal) -> None:
        self.stateless += 1
        self.gate.refuse(request, source, refusal)

    def _tu_failed(self, what: str, exc: Exception) -> None:
        self.tu_errors += 1
        self.gate.failed(f"transaction user on {what[:32]}", exc)

    # -- outgoing ---------------------------------------------------------------------------
    def start_client(
        self,
        request: Request,
        destination: Addr,
        on_response: ResponseCallback,
        on_timeout: TimeoutCallback,
    ) -> ClientTransaction:
        ct: ClientTransaction
        if request.method == "INVITE":
            ct = InviteClientTransaction(self, request, destination, on_response, on_timeout)
        else:
            ct = ClientTransaction(self, request, destination, on_response, on_timeout)
        self.client[ct.key] = ct
        self.created += 1
        ct.start()
        return ct

    def send_request(self, request: Request, destination: Addr) -> bytes:
        """A request outside any transaction (a 2xx's ACK), prepared and sent; its bytes."""
        destination, data = self.prepare(request, destination)
        self.send_bytes_to(data, destination)
        return data

    def transport_failed(self, key: DestinationKey, reason: str) -> None:
        """The transport gave up on `key`: its transactions fail now (RFC 3261 8.1.3.1)."""
        for ct in list(self.streamed.pop(key, ())):
            ct.fail(reason)

    def counts(self) -> dict[str, int]:
        return {"server": len(self.server), "client": len(self.client)}

    def linger(self, delay: float, ending: Callable[[], object]) -> None:
        """`ending` (a finished transaction's end) runs `delay` s from now, or up to
        `cohort.WINDOW` later: one event-loop timer per cohort, not one per transaction."""
        cohorts = self._cohorts.get(delay)
        if cohorts is None:  # one per distinct delay: T4, and the timeout of each resend list
            cohorts = self._cohorts[delay] = Cohorts(self.scheduler, delay)
        cohorts.add(ending)

    def compact(self) -> None:
        """Rebuild the tables at their present size. A dict keeps the table of its peak (CPython
        never shrinks one on delete): after 500 calls/s the two hold 16,000 and more entries,
        a table of over a megabyte that stays resident. Costs a copy of what is held now:
        the daemon calls it when little is (`gcwatch.heap`)."""
        _rebuild(self.server)
        _rebuild(self.client)
        _rebuild(self.awaiting_ack)


def _rebuild(table: dict[K, V]) -> None:
    """`table` with the same entries in a table sized for them (in place: others hold it)."""
    kept = dict(table)
    table.clear()
    table.update(kept)


class _Transaction:
    def __init__(self, layer: TransactionLayer) -> None:
        self.layer = layer
        self.schedule = layer.schedule
        self.state = State.TRYING
        self._timers: dict[str, TimerHandle] = {}

    def _arm(self, name: str, delay: float, callback: Callable[[], None]) -> None:
        self._cancel(name)
        self._timers[name] = self.layer.scheduler.call_later(delay, callback)

    def _cancel(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _cancel_all(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    def _linger(self, delay: float) -> None:
        """Wait out a finished transaction's last timer (J, K, M, D), then end it."""
        self.layer.linger(delay, self._lingered)

    def _lingered(self) -> None:
        if self.state is not State.TERMINATED:  # not ended otherwise meanwhile
            self.terminate()

    def terminate(self) -> None:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# Server side
# ---------------------------------------------------------------------------------------------


class ServerTransaction(_Transaction):
    """non-INVITE server transaction (also the base of the INVITE one)."""

    def __init__(
        self, layer: TransactionLayer, request: Request, source: Addr, key: ServerKey
    ) -> None:
        super().__init__(layer)
        self.request = request
        self.source = source
        self.key = key
        self.last_response: Response | None = None
        self._last_bytes = b""
        self.reliable = is_reliable(source)  # TCP/TLS: finals are not retransmitted

    @property
    def final_sent(self) -> bool:
        return self.last_response is not None and self.last_response.status >= 200

    def respond_status(self, status: int, reason: str | None = None, **kw: str) -> Response:
        response = make_response(self.request, status, reason, to_tag=kw.get("to_tag"))
        self.respond(response)
        return response

    def respond(self, response: Response) -> None:
        if self.state is State.TERMINATED or self.final_sent:
            return  # a final has gone: RFC 3261 forbids a second one
        self.last_response = response
        self._last_bytes = response.to_bytes()
        self._transmit()
        if response.status >= 200:
            self._cancel("guard")
            self._on_final(response)

    def arm_guard(self, delay: float) -> None:
        """No final from the transaction user within `delay`: answer 500 and forget."""
        self._arm("guard", delay, self._unanswered)

    def _unanswered(self) -> None:
        if self.final_sent or self.state is State.TERMINATED:
            return
        self.layer.unanswered += 1
        self.layer.gate.rlog.event(
            "transaction unanswered",
            "%.32s %.64s got no final from the call layer; answered 500",
            self.request.method,
            self.request.call_id,
        )
        self.respond_stateless(make_response(self.request, 500, to_tag=new_tag()))

    def respond_stateless(self, response: Response) -> None:
        """Send a final once and forget this transaction: no retransmission, nothing kept.

        For refusals to sources that are neither a mapping gateway nor an authenticated
        endpoint: a spoofed source must not turn us into a reflector that repeats a response
        eleven times. A retransmitted request is then a new request and is answered once more.
        """
        if self.state is State.TERMINATED or self.final_sent:
            return
        self.last_response = response
        self.layer.send_bytes_to(response.to_bytes(), self.source)
        self.layer.stateless += 1
        self.terminate()

    def _transmit(self) -> None:
        self.layer.send_bytes_to(self._last_bytes, self.source)

    def _on_final(self, response: Response) -> None:
        self.state = State.COMPLETED
        self._linger(self.schedule.timeout)  # Timer J

    def on_retransmission(self) -> None:
        if self._last_bytes:
            self.layer.retransmissions += 1
            self._transmit()

    def terminate(self) -> None:
        self.state = State.TERMINATED
        self._cancel_all()
        if self.layer.server.get(self.key) is self:
            del self.layer.server[self.key]


class InviteServerTransaction(ServerTransaction):
    """INVITE server transaction; finals are retransmitted by the resend list until ACK."""

    def __init__(
        self, layer: TransactionLayer, request: Request, source: Addr, key: ServerKey
    ) -> None:
        super().__init__(layer, request, source, key)
        self.state = State.PROCEEDING
        self.cancelled = False
        self._sent = 0
        # Called when Timer H fires without an ACK for our final (the call layer ends the call).
        self.on_ack_timeout: Callable[[InviteServerTransaction], None] | None = None

    def _on_final(self, response: Response) -> None:
        if response.status < 300:
            # RFC 6026 Accepted: our 2xx goes on until the end-to-end ACK.
            self.state = State.ACCEPTED
            self.layer.awaiting_ack[(self.request.call_id, self.request.cseq[0])] = self
        else:
            self.state = State.COMPLETED
        self._sent = 1
        if not self.reliable:
            self._schedule_retransmit()
        self._arm("H", self.schedule.timeout, self._give_up)

    def _schedule_retransmit(self) -> None:
        gap = self.schedule.gap(self._sent)
        if gap is not None:
            self._arm("G", gap, self._retransmit)

    def _retransmit(self) -> None:
        if self.state not in (State.COMPLETED, State.ACCEPTED):
            return
        self._sent += 1
        self.layer.retransmissions += 1
        self._transmit()
        self._schedule_retransmit()

    def _give_up(self) -> None:
        # Timer H: the ACK never came. The call layer notices through ack_timeout.
        self.layer.timeouts += 1
        self.layer.awaiting_ack.pop((self.request.call_id, self.request.cseq[0]), None)
        if self.on_ack_timeout is not None:
            self.on_ack_timeout(self)
        self.terminate()

    def terminate(self) -> None:
        self.on_ack_timeout = None  # a call's bound method: the call holds this transaction
        super().terminate()

    def on_ack(self) -> None:
        self._cancel("G")
        self._cancel("H")
        if self.state is State.ACCEPTED:
            self.terminate()
        elif self.state is State.COMPLETED:
            self.state = State.CONFIRMED
            self._arm("I", T4, self.terminate)

    def on_retransmission(self) -> None:
        if self.state is State.PROCEEDING or self.state is State.COMPLETED:
            super().on_retransmission()
        elif self.state is State.ACCEPTED:
            # A retransmitted INVITE after our 2xx: the 2xx retransmission timer covers it.
            pass


# ---------------------------------------------------------------------------------------------
# Client side
# ---------------------------------------------------------------------------------------------


class ClientTransaction(_Transaction):
    """non-INVITE client transaction (also the base of the INVITE one)."""

    def __init__(
        self,
        layer: TransactionLayer,
        request: Request,
        destination: Addr,
        on_response: ResponseCallback,
        on_timeout: TimeoutCallback,
    ) -> None:
        super().__init__(layer)
        self.request: Request | None = request  # None once a final is in (`_settle`)
        self.method = request.method
        self.destination = destination
        self.on_response_cb = on_response
        self.on_timeout_cb = on_timeout
        branch = request.branch or ""
        self.key = (branch, request.method)
        self.sent_count = 0
        self.last_status = 0
        self.destination, self._bytes = layer.prepare(request, destination)
        self.reliable = is_reliable(self.destination)  # TCP/TLS: sent once, never again
        self.failure: str | None = None  # why the transport gave up on it (None: no failure)

    def start(self) -> None:
        self.state = State.CALLING if self.method == "INVITE" else State.TRYING
        if self.reliable:
            self.layer.streamed.setdefault(key_of(self.destination), set()).add(self)
        self._send()
        self._arm("timeout", self.schedule.timeout, self._on_timeout)

    def _send(self) -> None:
        self.sent_count += 1
        if self.sent_count > 1:
            self.layer.retransmissions += 1
        self.layer.send_bytes_to(self._bytes, self.destination)
        gap = self.schedule.gap(self.sent_count)
        if gap is not None and not self.reliable:
            self._arm("retransmit", gap, self._send)

    def stop_retransmitting(self) -> None:
        """Stop resending; keep matching responses (late answers still reach the TU)."""
        self._cancel("retransmit")

    def _on_timeout(self) -> None:
        report = self.on_timeout_cb  # terminate() lets go of it
        if self.state in (State.CALLING, State.TRYING, State.PROCEEDING):
            self.layer.timeouts += 1
            self.terminate()
            report(self)
        else:
            self.terminate()

    def fail(self, reason: str) -> None:
        """Undeliverable: without a final yet, a timeout (`failure` says why)."""
        if self.state in (State.CALLING, State.TRYING, State.PROCEEDING):
            self.failure = reason
            self.layer.transport_failures += 1
            self._on_timeout()

    def on_response(self, response: Response) -> None:
        status = response.status
        if self.state in (State.COMPLETED, State.TERMINATED):
            return  # retransmitted final: already reported
        self.last_status = status
        if status < 200:
            self.state = State.PROCEEDING
        else:
            self._cancel_all()
            self.state = State.COMPLETED
            self._linger(T4)  # Timer K
        self.on_response_cb(self, response)
        if status >= 200:
            self._settle()

    def _settle(self) -> None:
        """A final is in: the request is never sent again (a non-2xx's ACK is kept as bytes).
        Its parsed form and bytes go: most of what a finished transaction holds while its
        timer (K, M: up to 32 s) runs, thousands of them at 500 calls/s."""
        self.request = None
        self._bytes = b""

    def terminate(self) -> None:
        self.state = State.TERMINATED
        self._cancel_all()
        if self.layer.client.get(self.key) is self:
            del self.layer.client[self.key]
        users = self.layer.streamed.get(key_of(self.destination)) if self.reliable else None
        if users is not None:
            users.discard(self)
            if not users:
                del self.layer.streamed[key_of(self.destination)]
        # The callbacks close over the TU's objects (a call, its attempt), which may hold this
        # transaction: nothing is reported after the end, so let go of them (no cycle).
        self.on_response_cb = self.on_timeout_cb = _ended


class InviteClientTransaction(ClientTransaction):
    _ack = b""  # the ACK to our non-2xx final, once one came

    def on_response(self, response: Response) -> None:
        status = response.status
        state = self.state
        if state is State.TERMINATED:
            return
        if status < 200:
            if state in (State.CALLING, State.PROCEEDING):
                self._cancel("retransmit")
                self._cancel("timeout")  # Timer B runs in Calling only
                self.state = State.PROCEEDING
                self.last_status = status
                self.on_response_cb(self, response)
            return
        if status < 300:
            # Every 2xx (first and retransmitted) goes up: the TU ACKs each (RFC 6026).
            first = state is not State.ACCEPTED
            self._cancel("retransmit")
            self._cancel("timeout")
            if first:
                self.state = State.ACCEPTED
                self.last_status = status
                self._linger(self.schedule.timeout)  # Timer M
            self.on_response_cb(self, response)
            self._settle()
            return
        if state is State.ACCEPTED:
            return  # RFC 6026 8.4: once a 2xx is in, only 2xx count (another branch failed)
        # non-2xx final: ACK it ourselves (hop by hop), report it once. A retransmission of
        # it gets the same ACK (RFC 3261 17.1.1.3), from the bytes kept.
        if self.request is not None:
            self._ack = build_ack_for_failure(self.request, response)
        self.layer.send_bytes_to(self._ack, self.destination)
        if state is State.COMPLETED:
            return
        self._cancel("retransmit")
        self._cancel("timeout")
        self.state = State.COMPLETED
        self.last_status = status
        self._linger(self.schedule.timeout)  # Timer D
        self.on_response_cb(self, response)
        self._settle()


def _ended(*args: object) -> None:
    """The callback of a transaction that has ended: it reports nothing more."""


def _as_is(request: Request, destination: Addr) -> tuple[Addr, bytes]:
    """No transport to ask (unit tests): the request goes where it was addressed, as built."""
    return destination, request.to_bytes()
