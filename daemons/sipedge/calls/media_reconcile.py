"""Reconciliation with mediad: delete the relay sessions nobody owns, keep ours alive.

mediad outlives sipd: when sipd is killed (SIGKILL, OOM, a crash) the sessions it created stay
at mediad, each holding a port pair, and mediad only drops them after `media.idle_timeout`
without packets. And mediad expires idle sessions by itself, so a call that is ringing or on
hold (no RTP) must be named to mediad now and then or it loses its relay.

So sipd keeps the set of mediad session ids it owns (`owned`): an id is added *before* the
offer that creates it is sent, and removed after a successful delete or a delete answered
"unknown call" (404). A round (`reconcile`) runs at start, after mediad becomes reachable again
(a request succeeds after an `unreachable` error) and every `idle_timeout / 4` seconds (5-60 s):

* `list`; every listed id not in `owned` is an orphan of a previous sipd (or of a request that
  timed out here but went through there): `delete` it, count it
  (`sipedge_media_orphans_deleted_total`), log it;
* `touch` every listed id that is ours, in chunks, so that mediad's idle clock never ends a
  live call.

A round is bounded: at most `MAX_DELETES_PER_ROUND` deletes (the rest next round) and touches
of `TOUCH_CHUNK` ids per request. A mediad that does not know `touch` yet (`unknown-command`)
is logged once and the round goes on; calls never depend on a round.

Owns: `Reconciler` (the owned set, reachability, the loop) and `plan` (the pure split of a
`list` answer into orphans and ours).
Must not: send SIP, know calls or attempts (`media_link` claims and releases ids), or import
another module of calls/.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sipedge.media.client import MediaError

log = logging.getLogger(__name__)

MAX_DELETES_PER_ROUND = 1000
TOUCH_CHUNK = 1000
MIN_INTERVAL = 5.0
MAX_INTERVAL = 60.0


class ReconcileBackend(Protocol):
    """What a round uses of mediad's client (`sipedge.media.client.MediaClient`)."""

    async def list(self) -> list[dict[str, Any]]: ...

    async def delete(self, call_id: str) -> dict[str, Any]: ...

    async def touch(self, call_ids: Sequence[str]) -> dict[str, Any]: ...


def interval_for(idle_timeout: float) -> float:
    """Seconds between two rounds: a quarter of mediad's idle timeout, within 5-60 s."""
    return min(MAX_INTERVAL, max(MIN_INTERVAL, idle_timeout / 4))


@dataclass(frozen=True)
class Plan:
    orphans: tuple[str, ...]  # listed, not ours: delete
    ours: tuple[str, ...]  # listed and ours: touch


def plan(listed: Iterable[object], owned: set[str]) -> Plan:
    """Split the call-ids of a `list` answer. Pure; entries without a call-id are skipped."""
    orphans: list[str] = []
    ours: list[str] = []
    for entry in listed:
        call_id = entry.get("call-id") if isinstance(entry, dict) else None
        if not isinstance(call_id, str) or not call_id:
            continue
        (ours if call_id in owned else orphans).append(call_id)
    return Plan(tuple(orphans), tuple(ours))


def is_gone(exc: MediaError) -> bool:
    """A delete answered "no such call": the session is gone either way."""
    return exc.code == "unknown-call" or (exc.status == 404 and exc.code != "unknown-command")


class Reconciler:
    """The ids sipd owns at mediad, and the rounds that compare them with mediad's `list`."""

    def __init__(
        self,
        backend: ReconcileBackend | None,
        idle_timeout: float = 120.0,
        on_orphan_deleted: Callable[[], None] | None = None,
    ) -> None:
        self.backend = backend  # None: anchoring off, nothing to reconcile
        self.interval = interval_for(idle_timeout)
        self.owned: set[str] = set()
        self.orphans_deleted = 0
        self._on_orphan_deleted = on_orphan_deleted
        self.rounds = 0
        self.reachable = True
        self.touch_supported: bool | None = None  # None: not tried yet
        self._round: asyncio.Task[None] | None = None

    # -- the owned set (media_link calls these) -----------------------------------------------
    def claim(self, call_id: str) -> None:
        """Before the offer that may create `call_id` is sent."""
        self.owned.add(call_id)

    def release(self, call_id: str) -> None:
        """After a successful delete, a 404 on delete, or an offer that created nothing."""
        self.owned.discard(call_id)

    # -- reachability -------------------------------------------------------------------------
    def on_success(self) -> None:
        """A mediad request succeeded: after an `unreachable` spell, reconcile at once."""
        if not self.reachable:
            self.reachable = True
            log.info("mediad is reachable again: reconciling relay sessions")
            self.kick()

    def on_error(self, exc: MediaError) -> None:
        if exc.code == "unreachable":
            self.reachable = False

    def kick(self) -> None:
        """Start a round now unless one is running (needs a running event loop)."""
        if self._round is not None and not self._round.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._round = loop.create_task(self.reconcile())

    # -- the loop -----------------------------------------------------------------------------
    async def run(self) -> None:
        """At start, then every `interval` seconds, until cancelled."""
        while True:
            self.kick()
            if self._round is not None:
                await asyncio.shield(self._round)
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._round is not None and not self._round.done():
            self._round.cancel()

    async def reconcile(self) -> None:
        """One round; never raises (a failed round is logged and the next one tries again)."""
        try:
            await self._reconcile()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reconciling relay sessions with mediad failed")

    async def _reconcile(self) -> None:
        if self.backend is None:
            return
        try:
            listed = await self.backend.list()
        except MediaError as exc:
            self.on_error(exc)
            log.debug("mediad list failed, reconciling later: %s", exc)
            return
        self.reachable = True  # calls stop holding off (media_link) as soon as mediad answers
        # Race-free without a lock: `owned` is read now, after the answer arrived. An id is
        # claimed before its offer is sent, so a session that mediad lists was either offered
        # before this moment (then it is in `owned`) or is not ours. A delete of ours that
        # finishes between `list` and now only makes us delete it a second time (404, fine).
        split = plan(listed, self.owned)
        self.rounds += 1
        for call_id in split.orphans[:MAX_DELETES_PER_ROUND]:
            if call_id in self.owned:
                continue  # claimed again meanwhile (a new offer): ours now
            try:
                await self.backend.delete(call_id)
            except MediaError as exc:
                if not is_gone(exc):
                    log.warning("deleting orphaned relay session %s failed: %s", call_id, exc)
                    self.on_error(exc)
                    if exc.code == "unreachable":
                        return
                continue
            self.orphans_deleted += 1
            if self._on_orphan_deleted is not None:
                self._on_orphan_deleted()
            log.info("deleted orphaned relay session %s (not owned by this sipd)", call_id)
        if len(split.orphans) > MAX_DELETES_PER_ROUND:
            log.info(
                "%d orphaned relay sessions left for the next round",
                len(split.orphans) - MAX_DELETES_PER_ROUND,
            )
        await self._touch(split.ours)

    async def _touch(self, ours: tuple[str, ...]) -> None:
        assert self.backend is not None
        for start in range(0, len(ours), TOUCH_CHUNK):
            chunk = [i for i in ours[start : start + TOUCH_CHUNK] if i in self.owned]
            if not chunk:
                continue
            try:
                await self.backend.touch(chunk)
            except MediaError as exc:
                if exc.code in ("unknown-command", "bad-request"):
                    if self.touch_supported is not False:
                        log.warning(
                            "mediad does not know `touch` (%s): ringing calls and calls on "
                            "hold may idle out there; upgrade sipedge-mediad",
                            exc,
                        )
                    self.touch_supported = False
                    return
                self.on_error(exc)
                log.warning("touching relay sessions at mediad failed: %s", exc)
                return
            self.touch_supported = True


__all__ = ["Plan", "ReconcileBackend", "Reconciler", "interval_for", "plan"]
