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
SDP, anchoring off) and nothing is queued, `then` runs at once, in the caller's stack; else
the call's `media_queue.MediaQueue` runs it after the work, in order.

When mediad is unreachable or refuses a stream, the call proceeds unanchored for that stream
(carriers expect calls to complete) and `sipedge_media_unanchored_total{reason}` counts it;
the exception is a leg that must be encrypted: the relay is the only thing that can encrypt,
so the attempt fails (503, switching decides) instead of sending clear media to a peer that
expects ciphertext.

Every SDP first goes through `media_policy.check_sdp` (refused `c=`, stream cap). A refused SDP
is never forwarded: `then` gets None, as for the encrypted leg, and `refusal(attempt)` says why.
Each offer/answer carries the party's signal address (`Session.signal`: the caller's INVITE
source, the callee's attempt destination, or the source of an in-dialog request with its SDP).
Mediad ids are claimed at the `Reconciler` before their offer is sent, released once deleted.

"RTP started" (for `SS_GATEWAY_SWITCH_STOP_AFTER_RTP_START`) is polled from mediad's `query`
while an attempt is in setup; the RTP timeout and the maximum call duration are watched by
`sipedge.calls.watchdog` from the answer on.

Owns: `MediaService` (the mediad client, counters, reconciler, background tasks), `CallMedia`
(one call's sessions and FIFO); what it uses of mediad's client is `media_backend.MediaBackend`.
Must not: send SIP, decide switching, or import `calls.call` / `calls.service`: it reports to
its call through `MediaEvents`, which `Call` implements. Nor hold that call strongly: the call
owns its `CallMedia`, a strong link back would be a cycle.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sipedge.calls import watchdog
from sipedge.calls.attempt import Attempt
from sipedge.calls.media_backend import MediaBackend
from sipedge.calls.media_families import caller_refusal, family_lost, watch_families
from sipedge.calls.media_metrics import MediaStats, media_metrics
from sipedge.calls.media_policy import (
    MEDIA_FAMILY_UNAVAILABLE,
    MEDIA_UNAVAILABLE,
    MediaPolicy,
    MediaRefusal,
    check_sdp,
    ip_or_none,
)
from sipedge.calls.media_queue import MediaQueue, Then
from sipedge.calls.media_reconcile import Reconciler, is_gone
from sipedge.calls.media_session import CALLEE, CALLER, LegCrypto, Session, WatchSettings, other
from sipedge.media.client import FAMILY_UNAVAILABLE, MediaError
from sipedge.ratelog import RateLimitedLog
from sipedge.sip.sdp import RelayEndpoint, Sdp, SdpError, family, is_sdp, parse, rewrite

if TYPE_CHECKING:
    from sipedge.config import Parameters
    from sipedge.typedefs import Addr

log = logging.getLogger(__name__)
T = TypeVar("T")

# After a call's request found mediad unreachable, the calls of the next second skip it (one
# request per second probes): a dead control socket must not cost every call a connection
# attempt and a log line. A reconciliation round that reaches mediad lifts the hold-off early.
UNREACHABLE_HOLD_OFF = 1.0
ERROR_LOG_INTERVAL = 10.0  # one mediad-failure line per (operation, code) per interval
FAMILIES = ("IP4", "IP6")  # the c= address types anchored


class MediaEvents(Protocol):
    """What media anchoring reports to the call it serves (`calls.call.Call` implements it)."""

    @property
    def id(self) -> str: ...

    @property
    def source(self) -> Addr: ...  # where the caller's INVITE came from

    def on_rtp_started(self, attempt_index: int) -> None: ...

    def terminate(self, cause: str) -> None: ...


class MediaService:
    """One per B2BUA: the mediad client, the counters, the background tasks."""

    def __init__(
        self,
        backend: MediaBackend | None,
        settings: WatchSettings | None = None,
        policy: MediaPolicy | None = None,
        idle_timeout: float = 120.0,
    ):
        self.backend = backend
        self.settings = settings or WatchSettings()
        self.policy = policy or MediaPolicy()  # replaced on reload; each call keeps its own
        self.stats = MediaStats()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.reconciler = Reconciler(backend, idle_timeout, self._orphan_deleted)
        self._loops: list[asyncio.Task[None]] = []  # reconciliation, mediad's families
        self.clock = time.monotonic
        self._skip_until = 0.0  # calls skip mediad until then (see UNREACHABLE_HOLD_OFF)
        self.error_log = RateLimitedLog(log, ERROR_LOG_INTERVAL)

    def _orphan_deleted(self) -> None:
        self.stats.orphans_deleted += 1

    def start(self) -> None:
        """Reconcile with mediad now and every `idle_timeout / 4`, and ask its relay families
        (media_families); needs a running loop."""
        if self.backend is not None and not self._loops:
            loop, ask = asyncio.get_running_loop(), self.backend.relay_families
            self._loops.append(loop.create_task(self.reconciler.run()))
            watch = watch_families(self.stats, ask, self.reconciler.on_success)
            self._loops.append(loop.create_task(watch))

    def holding_off(self) -> bool:
        """mediad was unreachable for a call less than UNREACHABLE_HOLD_OFF ago."""
        return not self.reconciler.reachable and self.clock() < self._skip_until

    async def request(self, work: Awaitable[T]) -> T:
        """One mediad request; tells the reconciler whether mediad answered. While holding
        off after an unreachable mediad, fails at once with `unreachable` (`work` unsent)."""
        if self.holding_off():
            if isinstance(work, Coroutine):
                work.close()  # never started: nothing was sent
            raise MediaError("unreachable", "mediad unreachable (held off, retried each second)")
        try:
            result = await work
        except MediaError as exc:
            self.reconciler.on_error(exc)
            if exc.code == "unreachable":
                self._skip_until = self.clock() + UNREACHABLE_HOLD_OFF
            raise
        self.reconciler.on_success()
        return result

    @property
    def enabled(self) -> bool:
        return self.backend is not None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def for_call(
        self, call: MediaEvents, caller_encrypted: bool, parameters: Parameters
    ) -> CallMedia:
        """The media side of a new call; `caller_encrypted` is its mapping gateway's
        `rtp_encryption`, `parameters` the config snapshot the call started with."""
        return CallMedia(self, call, caller_encrypted, parameters)

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) for queued mediad work, deletes above all, to finish."""
        deadline = time.monotonic() + timeout
        while self._tasks and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        for task in self._loops:
            task.cancel()
        await self.reconciler.stop()
        for task in list(self._tasks):
            task.cancel()
        if self.backend is not None:
            await self.backend.close()


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
        self._call = weakref.ref(call)  # the call owns us: no cycle (see the docstring)
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
        self.queue.submit(lambda: self._offer(session, leg, body, required, signal), then, body)

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
            self.queue.submit(lambda: self._offer(session, leg, body, False, signal), then, body)
            return
        if final:
            session.offer_from = None
        self.queue.submit(lambda: self._answer(session, leg, body, signal), then, body)

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

    async def _offer(
        self, session: Session, leg: str, body: bytes, required: bool, signal: str | None
    ) -> bytes | None:
        backend = self.service.backend
        assert backend is not None
        sdp = self._parse_for_anchoring(session, leg, body)
        if sdp is None:
            return body
        crypto = session.crypto[leg]
        peer_crypto = session.crypto[other(leg)]
        relays: dict[int, RelayEndpoint] = {}
        failed = False
        receiver = session.family[other(leg)]
        for stream in sdp.streams:
            if stream.disabled or stream.address is None or stream.address_type not in FAMILIES:
                continue
            mediad_id = session.mediad_id(stream.index)
            self.service.reconciler.claim(mediad_id)  # before the offer leaves: see reconcile
            try:
                relay = await self.service.request(
                    backend.offer(
                        mediad_id,
                        leg,
                        stream.address,
                        stream.port,
                        crypto.encrypted,
                        crypto.mode if crypto.encrypted else None,
                        crypto.key if crypto.encrypted else None,
                        signal,
                        address_family=receiver,
                    )
                )
            except MediaError as exc:
                self._error(session, exc, "offer")
                if exc.code == FAMILY_UNAVAILABLE:  # the receiver's family has no relay address
                    family_lost(self.service.stats, receiver)
                    if stream.index not in session.streams:
                        self.service.reconciler.release(mediad_id)
                    self.service.stats.count(self.service.stats.refused, MEDIA_FAMILY_UNAVAILABLE)
                    self.refusals[session.key] = MediaRefusal(
                        MEDIA_FAMILY_UNAVAILABLE,
                        f"no {receiver} relay address for the {other(leg)}",
                        status=488,
                        warn_code=301,  # RFC 3261 20.43: incompatible network address formats
                    )
                    return None
                if stream.index not in session.streams:
                    self.service.reconciler.release(mediad_id)  # if mediad made it: an orphan
                cached = session.relay_for[other(leg)].get(stream.index)
                if cached is not None:
                    relays[stream.index] = cached
                else:
                    failed = True
                    self._unanchored(exc.code)
                continue
            if stream.index not in session.streams:
                session.streams.add(stream.index)
                self.service.stats.sessions_created += 1
            endpoint = RelayEndpoint(relay.address, relay.port, relay.rtcp_port)
            session.relay_for[other(leg)][stream.index] = endpoint
            relays[stream.index] = endpoint
        session.hold[leg] = sdp.on_hold
        session.sdp_changed = time.time()
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
        relays: dict[int, RelayEndpoint] = {}
        for stream in sdp.streams:
            if stream.disabled or stream.address is None or stream.address_type not in FAMILIES:
                continue
            if stream.index not in session.streams:
                continue  # the offer of this stream was not anchored: leave it alone
            try:
                relay = await self.service.request(
                    backend.answer(
                        session.mediad_id(stream.index),
                        offerer,
                        leg,
                        stream.address,
                        stream.port,
                        crypto.encrypted,
                        crypto.mode if crypto.encrypted else None,
                        crypto.key if crypto.encrypted else None,
                        signal,
                        address_family=session.family[offerer],
                    )
                )
            except MediaError as exc:
                self._error(session, exc, "answer")
                if exc.code == FAMILY_UNAVAILABLE:  # learnt: the next such caller gets 488
                    family_lost(self.service.stats, session.family[offerer])
                cached = session.relay_for[offerer].get(stream.index)
                if cached is not None:
                    relays[stream.index] = cached
                continue
            endpoint = RelayEndpoint(relay.address, relay.port, relay.rtcp_port)
            session.relay_for[offerer][stream.index] = endpoint
            relays[stream.index] = endpoint
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
        self.queue.submit(lambda: self._delete(session), _ignore, None)

    def release_all(self) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()
            self.watchdog = None
        for index in sorted(self.sessions):  # attempt order, as the call made them
            self._release(self.sessions[index])

    async def _delete(self, session: Session) -> bytes | None:
        backend = self.service.backend
        assert backend is not None
        reconciler = self.service.reconciler
        for stream in sorted(session.streams):
            mediad_id = session.mediad_id(stream)
            try:
                await self.service.request(backend.delete(mediad_id))
                self.service.stats.sessions_deleted += 1
            except MediaError as exc:
                if not is_gone(exc):
                    self._error(session, exc, "delete")
                # Not deleted (mediad unreachable, say): released all the same, so the next
                # reconciliation deletes it as an orphan instead of touching it forever.
            reconciler.release(mediad_id)
        return None

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
                if (call := self._call()) is not None:  # else it has ended
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
        if (call := self._call()) is not None:  # else it has ended already
            call.terminate(cause)


def _ignore(body: bytes | None) -> None:
    return None


__all__ = [
    "CallMedia",
    "MediaBackend",
    "MediaEvents",
    "MediaService",
    "MediaStats",
    "media_metrics",
]
