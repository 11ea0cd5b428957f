"""Media anchoring: the glue between a call's SIP legs and sipedge-mediad.

Every SDP that crosses the B2BUA goes through here and comes out pointing at the relay:

* one mediad session per attempt and per media stream (`<attempt Call-ID>/<stream>`), so an
  attempt after gateway switching gets relay legs of its own, and a call with audio + video
  gets one relay session per stream;
* the mediad legs are tagged `caller` and `callee`: whichever side offers (initial INVITE,
  re-INVITE, UPDATE, a late offer in a 200) is the `from-tag`, the other side answers;
* encryption per leg: the caller leg from the mapping gateway's `rtp_encryption`, the callee
  leg from the routing gateway's, with `SS_RTPENCRYPTIONMODE` / `SS_RTPENCRYPTIONKEY` (snapshot
  taken when the call starts, as for every other setting);
* every mediad request of a call runs through one FIFO: SIP messages leave in the order they
  came in, an offer finishes before its answer or its delete starts, and a delete always comes
  after the offer that created the session, so no port outlives its call.

SIP callbacks are synchronous; mediad is async. Each operation here takes a `then` callback
that receives the (rewritten) body and sends the SIP message. When nothing needs mediad (no
SDP, anchoring off, or mediad held off as unreachable: the outcome is known without asking)
and nothing is queued, `then` runs at once, in the caller's stack; else the call's
`media_queue.MediaQueue` runs it after the work, in order.

When mediad is unreachable or refuses a stream, the call proceeds unanchored for that stream
(`sipedge_media_unanchored_total{reason}`), except a leg that must be encrypted: only the relay
encrypts, so the attempt fails (503, switching decides) rather than send clear media.

Every SDP first goes through `media_policy.check_sdp` (refused `c=`, stream cap). A refused SDP
is never forwarded: `then` gets None, as for the encrypted leg, and `refusal(attempt)` says why.
Each offer/answer carries the party's signal address (`Session.signal`: the caller's INVITE
source, the callee's attempt destination, or the source of an in-dialog request with its SDP).
Mediad ids are claimed at the `Reconciler` before their offer is sent, released once deleted.

"RTP started" (for `SS_GATEWAY_SWITCH_STOP_AFTER_RTP_START`) is polled from mediad's `query`
while an attempt is in setup; the RTP timeout and the maximum call duration are watched by
`sipedge.calls.watchdog` from the answer on.

Owns: `CallMedia` (one call's sessions and FIFO), `MediaEvents`; the B2BUA's side is
`media_service.MediaService`; what either uses of mediad's client is `media_backend.MediaBackend`.
Must not: send SIP, decide switching, or import `calls.call` / `calls.service`: it reports to
its call through `MediaEvents`, which `Call` implements. Nor keep that call past its end: the
call owns its `CallMedia`, so the link back is a cycle, which `release_all` breaks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from sipedge.calls import watchdog
from sipedge.calls.attempt import Attempt
from sipedge.calls.media_backend import MediaBackend
from sipedge.calls.media_families import caller_refusal, family_lost
from sipedge.calls.media_metrics import MediaStats, media_metrics
from sipedge.calls.media_policy import (
    MEDIA_FAMILY_UNAVAILABLE,
    MEDIA_UNAVAILABLE,
    MediaRefusal,
    check_sdp,
    ip_or_none,
)
from sipedge.calls.media_queue import MediaQueue, Then, Work
from sipedge.calls.media_reconcile import is_gone
from sipedge.calls.media_service import HELD_OFF_REASON, MediaService
from sipedge.calls.media_session import CALLEE, CALLER, LegCrypto, Session, WatchSettings, other
from sipedge.media.client import FAMILY_UNAVAILABLE, MediaError, RelayAddress
from sipedge.sip.sdp import RelayEndpoint, Sdp, SdpError, family, is_sdp, parse, rewrite

if TYPE_CHECKING:
    from sipedge.config import Parameters
    from sipedge.typedefs import Addr

log = logging.getLogger(__name__)

FAMILIES = ("IP4", "IP6")  # the c= address types anchored
# What each stream's request comes to while mediad is held off (`MediaService.request`);
HELD_OFF = MediaError("unreachable", HELD_OFF_REASON)  # handed on as it is, never raised
# What mediad answered each stream of one offer or answer, by stream index.
Outcomes = dict[int, "RelayAddress | MediaError"]


class MediaEvents(Protocol):
    """What media anchoring reports to the call it serves (`calls.call.Call` implements it)."""

    @property
    def id(self) -> str: ...

    @property
    def source(self) -> Addr: ...  # where the caller's INVITE came from

    def on_rtp_started(self, attempt_index: int) -> None: ...

    def terminate(self, cause: str) -> None: ...


class CallMedia:
    """The media side of one call: its sessions (one per attempt) and their FIFO of work."""

    def __init__(
        self,
        service: MediaService,
        call: MediaEvents,
        caller_encrypted: bool,
        params: Parameters,
    ) -> None:
        self.service = service
        self._call: MediaEvents | None = call  # until release_all (see the docstring)
        self.call_id = call.id
        self._caller_ip = ip_or_none(call.source[0])
        self._caller_family = family(call.source[0])
        self.policy = service.policy  # the snapshot this call keeps
        self.refusals: dict[str, MediaRefusal] = {}  # by attempt Call-ID: why `then` got None
        self._mode = params.rtpencryptionmode
        self._key = params.rtpencryptionkey
        self._caller_crypto = self._crypto(caller_encrypted)
        self.settings = WatchSettings(
            params.media_rtp_timeout,
            params.max_call_duration,
            service.settings.rtp_start_poll,
        )
        self.sessions: dict[int, Session] = {}  # by attempt index
        self.queue = MediaQueue(self.call_id, service.spawn)  # SIP order for mediad's work
        self.watchdog: watchdog.CallWatchdog | None = None

    def _crypto(self, encrypted: bool) -> LegCrypto:
        if not encrypted or self._mode == 0:
            return LegCrypto()
        return LegCrypto(True, self._mode, self._key)

    def session(self, attempt: Attempt) -> Session:
        session = self.sessions.get(attempt.index)
        if session is None:
            session = Session(
                key=attempt.invite.call_id,
                crypto={
                    CALLER: self._caller_crypto,
                    CALLEE: self._crypto(attempt.gateway.config.rtp_encryption),
                },
            )
            session.signal = {
                CALLER: self._caller_ip,
                CALLEE: ip_or_none(attempt.destination[0]),
            }
            # the family each party speaks: the relay address in the SDP it receives
            session.family = {
                CALLER: self._caller_family,
                CALLEE: family(attempt.destination[0]),
            }
            self.sessions[attempt.index] = session
        return session

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        return self.service.spawn(coro)

    # -- offer / answer ---------------------------------------------------------------------
    def offer(
        self,
        attempt: Attempt,
        leg: str,
        body: bytes,
        content_type: str | None,
        then: Then,
        required: bool = False,
        source: str | None = None,
    ) -> None:
        """An SDP offer from `leg`, carried by a SIP message from `source` (None: the leg's
        signal address so far); `then` gets the SDP for the other leg, or None when refused
        (`refusal(attempt)` says why: the policy, or a required encrypted leg unanchored)."""
        if not self.service.enabled or not is_sdp(content_type, body):
            self.queue.submit(None, then, body)
            return
        session = self.session(attempt)
        refusal = self.check(leg, body, content_type)
        if refusal is not None:
            self.refusals[attempt.invite.call_id] = refusal
            self.queue.submit(None, then, None)
            return
        session.offer_from = leg
        signal = self._signal(session, leg, source)
        self._run(
            lambda: self._offer(session, leg, body, required, signal),
            lambda: self._offer_held_off(session, leg, body, required),
            then,
        )

    def answer(
        self,
        attempt: Attempt,
        leg: str,
        body: bytes,
        content_type: str | None,
        final: bool,
        then: Then,
        source: str | None = None,
    ) -> None:
        """An SDP answer from `leg` (a late offer when nothing is pending: handled as one);
        `source` as for `offer`. Refused by the policy: `then` gets None (no SDP goes on)."""
        refusal = self.check(leg, body, content_type)
        if not self.service.enabled or not is_sdp(content_type, body) or refusal is not None:
            known = self.sessions.get(attempt.index)
            if final and known is not None:
                known.offer_from = None  # a final without SDP closes the offer (488, say)
            if refusal is not None:
                self.refusals[attempt.invite.call_id] = refusal
            self.queue.submit(None, then, None if refusal is not None else body)
            return
        session = self.session(attempt)
        signal = self._signal(session, leg, source)
        if session.offer_from is None or session.offer_from == leg:
            session.offer_from = leg  # a late offer: the answer comes in the ACK
            self._run(
                lambda: self._offer(session, leg, body, False, signal),
                lambda: self._offer_held_off(session, leg, body, False),
                then,
            )
            return
        if final:
            session.offer_from = None
        self._run(
            lambda: self._answer(session, leg, body, signal),
            lambda: self._answer_held_off(session, leg, body),
            then,
        )

    def _run(self, work: Work, held_off: Callable[[], bytes | None], then: Then) -> None:
        """`work` in the call's queue; or, while mediad is held off and nothing is queued,
        `held_off` (what `work` comes to then) at once: no task, no exception per stream."""
        if not (self.queue.idle and self.service.holding_off()):
            self.queue.submit(work, then, None)
            return
        try:
            result = held_off()
        except Exception:  # as the queue does with a failing work: logged, `then` not run
            log.exception("call %s: media work failed", self.call_id)
            return
        then(result)

    def check(self, leg: str, body: bytes, content_type: str | None) -> MediaRefusal | None:
        """The policy's refusal of an SDP from `leg`, counted and logged; None: anchor it
        (also when anchoring is off, the body is no SDP, or it does not parse)."""
        if not self.service.enabled or not is_sdp(content_type, body):
            return None
        try:
            refusal = check_sdp(parse(body), self.policy)
        except SdpError:
            return None  # _parse_for_anchoring counts it as bad-sdp
        if refusal is not None:
            self.service.stats.count(self.service.stats.refused, refusal.reason)
            log.warning("call %s: SDP from the %s refused: %s", self.call_id, leg, refusal.detail)
        return refusal

    def caller_refusal(self, body: bytes, content_type: str | None) -> MediaRefusal | None:
        """At the call's start: mediad has no relay address of the caller's family (488)."""
        if not self.service.enabled:
            return None
        stats = self.service.stats
        return caller_refusal(stats, self.call_id, self._caller_family, body, content_type)

    def refusal(self, attempt: Attempt) -> MediaRefusal:
        """Why the last `then(None)` of this attempt's media came (never raises)."""
        return self.refusals.get(
            attempt.invite.call_id, MediaRefusal(MEDIA_UNAVAILABLE, "the relay refused", status=503)
        )

    @staticmethod
    def _signal(session: Session, leg: str, source: str | None) -> str | None:
        if source is not None:
            session.signal[leg] = ip_or_none(source) or session.signal[leg]
        return session.signal[leg]

    def _unanchored(self, reason: str) -> None:
        self.service.stats.count(self.service.stats.unanchored, reason)

    def _error(self, session: Session, exc: MediaError, what: str) -> None:
        stats = self.service.stats
        stats.count(stats.errors, exc.code)
        self.service.error_log.event(
            f"{what}:{exc.code}",
            "call %s (%s): mediad %s failed: %s",
            self.call_id,
            session.key,
            what,
            exc,
        )

    def _parse_for_anchoring(self, session: Session, leg: str, body: bytes) -> Sdp | None:
        """The SDP to anchor, or None when the body goes through as it is (session already
        deleted, or SDP we cannot parse: the call proceeds unanchored and is counted)."""
        if session.deleted:
            return None
        try:
            return parse(body)
        except SdpError as exc:
            log.warning(
                "call %s: unparseable SDP from %s, not anchored: %s", self.call_id, leg, exc
            )
            self._unanchored("bad-sdp")
            return None

    # Each mediad operation has two halves: one asks mediad stream by stream (async), the
    # other applies what came back (`Outcomes`). While mediad is held off every request would
    # fail at once, unsent: the second half runs alone, in the SIP message's stack (`_run`).
    async def _offer(
        self, session: Session, leg: str, body: bytes, required: bool, signal: str | None
    ) -> bytes | None:
        backend = self.service.backend
        assert backend is not None
        sdp = self._parse_for_anchoring(session, leg, body)
        if sdp is None:
            return body
        crypto = session.crypto[leg]
        outcomes: Outcomes = {}
        for index, address, port in _anchorable(sdp):
            mediad_id = session.mediad_id(index)
            self.service.reconciler.claim(mediad_id)  # before the offer leaves: see reconcile
            try:
                outcomes[index] = await self.service.request(
                    backend.offer(
                        mediad_id,
                        leg,
                        address,
                        port,
                        crypto.encrypted,
                        crypto.mode if crypto.encrypted else None,
                        crypto.key if crypto.encrypted else None,
                        signal,
                        address_family=session.family[other(leg)],
                    )
                )
            except MediaError as exc:
                outcomes[index] = _kept(exc)
                if exc.code == FAMILY_UNAVAILABLE:
                    break  # the offer is refused: no stream after it is asked for
        return self._offered(session, leg, body, sdp, outcomes, required)

    def _offer_held_off(
        self, session: Session, leg: str, body: bytes, required: bool
    ) -> bytes | None:
        sdp = self._parse_for_anchoring(session, leg, body)
        if sdp is None:
            return body
        # no claim: the failed offer would release it (a stream created before keeps its own)
        outcomes: Outcomes = {index: HELD_OFF for index, _, _ in _anchorable(sdp)}
        return self._offered(session, leg, body, sdp, outcomes, required)

    def _offered(
        self,
        session: Session,
        leg: str,
        body: bytes,
        sdp: Sdp,
        outcomes: Outcomes,
        required: bool,
    ) -> bytes | None:
        """The SDP for the other leg from the offer's outcomes (None: refused)."""
        receiver = session.family[other(leg)]
        relays: dict[int, RelayEndpoint] = {}
        failed = False
        for index, outcome in outcomes.items():
            mediad_id = session.mediad_id(index)
            if isinstance(outcome, MediaError):
                self._error(session, outcome, "offer")
                if outcome.code == FAMILY_UNAVAILABLE:  # the receiver has no relay address
                    family_lost(self.service.stats, receiver)
                    if index not in session.streams:
                        self.service.reconciler.release(mediad_id)
                    self.service.stats.count(self.service.stats.refused, MEDIA_FAMILY_UNAVAILABLE)
                    self.refusals[session.key] = MediaRefusal(
                        MEDIA_FAMILY_UNAVAILABLE,
                        f"no {receiver} relay address for the {other(leg)}",
                        status=488,
                        warn_code=301,  # RFC 3261 20.43: incompatible network address formats
                    )
                    return None
                if index not in session.streams:
                    self.service.reconciler.release(mediad_id)  # if mediad made it: an orphan
                cached = session.relay_for[other(leg)].get(index)
                if cached is not None:
                    relays[index] = cached
                else:
                    failed = True
                    self._unanchored(outcome.code)
                continue
            if index not in session.streams:
                session.streams.add(index)
                self.service.stats.sessions_created += 1
            endpoint = RelayEndpoint(outcome.address, outcome.port, outcome.rtcp_port)
            session.relay_for[other(leg)][index] = endpoint
            relays[index] = endpoint
        session.hold[leg] = sdp.on_hold
        session.sdp_changed = time.time()
        crypto, peer_crypto = session.crypto[leg], session.crypto[other(leg)]
        if failed and required and (crypto.encrypted or peer_crypto.encrypted):
            self.refusals[session.key] = MediaRefusal(
                MEDIA_UNAVAILABLE, "an encrypted leg could not be anchored", status=503
            )
            return None
        return rewrite(body, relays)

    async def _answer(
        self, session: Session, leg: str, body: bytes, signal: str | None
    ) -> bytes | None:
        backend = self.service.backend
        assert backend is not None
        sdp = self._parse_for_anchoring(session, leg, body)
        if sdp is None:
            return body
        crypto = session.crypto[leg]
        offerer = other(leg)
        outcomes: Outcomes = {}
        for index, address, port in _anchorable(sdp):
            if index not in session.streams:
                continue  # the offer of this stream was not anchored: leave it alone
            try:
                outcomes[index] = await self.service.request(
                    backend.answer(
                        session.mediad_id(index),
                        offerer,
                        leg,
                        address,
                        port,
                        crypto.encrypted,
                        crypto.mode if crypto.encrypted else None,
                        crypto.key if crypto.encrypted else None,
                        signal,
                        address_family=session.family[offerer],
                    )
                )
            except MediaError as exc:
                outcomes[index] = _kept(exc)
        return self._answered(session, leg, body, sdp, outcomes)

    def _answer_held_off(self, session: Session, leg: str, body: bytes) -> bytes | None:
        sdp = self._parse_for_anchoring(session, leg, body)
        if sdp is None:
            return body
        outcomes: Outcomes = {
            index: HELD_OFF for index, _, _ in _anchorable(sdp) if index in session.streams
        }
        return self._answered(session, leg, body, sdp, outcomes)

    def _answered(
        self, session: Session, leg: str, body: bytes, sdp: Sdp, outcomes: Outcomes
    ) -> bytes | None:
        """The SDP for the offerer from the answer's outcomes."""
        offerer = other(leg)
        relays: dict[int, RelayEndpoint] = {}
        for index, outcome in outcomes.items():
            if isinstance(outcome, MediaError):
                self._error(session, outcome, "answer")
                if outcome.code == FAMILY_UNAVAILABLE:  # learnt: the next such caller gets 488
                    family_lost(self.service.stats, session.family[offerer])
                cached = session.relay_for[offerer].get(index)
                if cached is not None:
                    relays[index] = cached
                continue
            endpoint = RelayEndpoint(outcome.address, outcome.port, outcome.rtcp_port)
            session.relay_for[offerer][index] = endpoint
            relays[index] = endpoint
        session.hold[leg] = sdp.on_hold
        session.sdp_changed = time.time()
        return rewrite(body, relays)

    # -- life of the sessions -----------------------------------------------------------------
    def release(self, attempt: Attempt) -> None:
        """The attempt is over (failed, abandoned, call ended): free its relay ports."""
        self._release(self.sessions.get(attempt.index))

    def _release(self, session: Session | None) -> None:
        if session is None or session.deleted:
            return
        session.deleted = True
        if session.rtp_watch is not None:
            session.rtp_watch.cancel()
            session.rtp_watch = None
        if session.streams or not self.queue.idle:  # else nothing of it at mediad, or coming
            self._run(
                lambda: self._delete(session), lambda: self._delete_held_off(session), _ignore
            )

    def release_all(self) -> None:
        self._call = None  # the call has ended: let go of it (see the docstring)
        if self.watchdog is not None:
            self.watchdog.stop()
            self.watchdog = None
        for index in sorted(self.sessions):  # attempt order, as the call made them
            self._release(self.sessions[index])

    async def _delete(self, session: Session) -> bytes | None:
        backend = self.service.backend
        assert backend is not None
        outcomes: dict[int, MediaError | None] = {}
        for stream in sorted(session.streams):
            try:
                await self.service.request(backend.delete(session.mediad_id(stream)))
                outcomes[stream] = None
            except MediaError as exc:
                outcomes[stream] = _kept(exc)
        return self._deleted(session, outcomes)

    def _delete_held_off(self, session: Session) -> bytes | None:
        return self._deleted(session, dict.fromkeys(sorted(session.streams), HELD_OFF))

    def _deleted(self, session: Session, outcomes: dict[int, MediaError | None]) -> bytes | None:
        for stream, error in outcomes.items():
            if error is None:
                self.service.stats.sessions_deleted += 1
            elif not is_gone(error):
                self._error(session, error, "delete")
            # Not deleted (mediad unreachable, say): released all the same, so the next
            # reconciliation deletes it as an orphan instead of touching it forever.
            self.service.reconciler.release(session.mediad_id(stream))
        return None  # a delete gives no SDP

    # -- facts from the relay -----------------------------------------------------------------
    def watch_rtp_start(self, attempt: Attempt) -> None:
        """While the attempt is in setup, ask mediad whether the callee's RTP has arrived."""
        if not self.service.enabled:
            return
        session = self.sessions.get(attempt.index)
        if session is None or not session.streams or session.rtp_watch is not None:
            return
        session.rtp_watch = self.service.spawn(self._poll_rtp_start(attempt, session))

    async def _poll_rtp_start(self, attempt: Attempt, session: Session) -> None:
        interval = self.service.settings.rtp_start_poll
        while not session.deleted and attempt.record.end is None:
            if await self.callee_rtp_seen(session):
                self.service.stats.rtp_started += 1
                log.info("call %s: RTP from the callee on attempt %d", self.call_id, attempt.index)
                if (call := self._call) is not None:  # else it has ended
                    call.on_rtp_started(attempt.index)
                return
            await asyncio.sleep(interval)

    async def query(self, session: Session) -> list[dict[str, Any]] | None:
        """The legs of every stream of the session, None when mediad cannot say."""
        backend = self.service.backend
        if backend is None:
            return None
        legs: list[dict[str, Any]] = []
        for stream in sorted(session.streams):
            try:
                info = await self.service.request(backend.query(session.mediad_id(stream)))
            except MediaError:
                return None
            legs.extend(info.get("legs", []))
        return legs

    async def callee_rtp_seen(self, session: Session) -> bool:
        legs = await self.query(session)
        if not legs:
            return False
        return any(leg.get("rtp-started") and leg.get("tag") != CALLER for leg in legs)

    def on_answered(self, attempt: Attempt) -> None:
        """The call is up: stop polling for RTP start, start the RTP timeout / duration guard."""
        session = self.sessions.get(attempt.index)
        if session is not None and session.rtp_watch is not None:
            session.rtp_watch.cancel()
            session.rtp_watch = None
        settings = self.settings
        if session is not None and not session.streams:
            session = None  # nothing anchored: no RTP facts to watch
        if settings.max_call_duration is None and (settings.rtp_timeout is None or session is None):
            return
        self.watchdog = watchdog.CallWatchdog(self, session, settings)
        self.watchdog.start()

    def end_call(self, cause: str) -> None:
        if cause == watchdog.RTP_TIMEOUT:
            self.service.stats.rtp_timeouts += 1
        elif cause == watchdog.MAX_DURATION:
            self.service.stats.max_duration_ends += 1
        log.info("call %s: ending it, %s", self.call_id, cause)
        if (call := self._call) is not None:  # else it has ended already
            call.terminate(cause)


def _ignore(body: bytes | None) -> None:
    return None


def _kept(exc: MediaError) -> MediaError:
    # A copy without the traceback, which holds the frame that holds the outcomes: a cycle.
    return MediaError(exc.code, exc.reason, exc.status)


def _anchorable(sdp: Sdp) -> list[tuple[int, str, int]]:
    """(index, address, port) of each stream the relay anchors: enabled, IPv4/IPv6 address."""
    return [
        (s.index, s.address, s.port)
        for s in sdp.streams
        if not s.disabled and s.address is not None and s.address_type in FAMILIES
    ]


__all__ = ["CallMedia", "MediaBackend", "MediaEvents", "MediaStats", "media_metrics"]
