"""`GET /api/gateways/stats?scope=fleet`: the carrier statistics of every edge sharing this
edge's PostgreSQL (storage.backend postgresql), from their CDRs (docs/monitoring.md).

Composition only: `sipedge.store.postgres.fleet_stats` groups the CDRs on the server,
`sipedge.stats.fleet` folds the groups, `sipedge.calls.carrier_events` names the reasons.
The queries run on a runner of their own (one connection), so a slow statistics query never
holds the CDR shipper's connections, and never on sipd's loop.

Calls in progress are not in any CDR: `publish` (sipd's loop, every `PUBLISH_EVERY` seconds)
upserts this edge's per-gateway counts in `node_calls` without waiting, skipping a beat while
the last one is still in flight; the fleet's current calls are the sum of the rows seen in the
last `FRESH` seconds. `close` deletes this edge's row (bounded).

Owns: `FleetStats`. Must not: be used with the SQLite backend (sipd answers 409 instead).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future

import asyncpg

from sipedge.calls.carrier_events import attempt_reason, stop_reason_label
from sipedge.stats import WINDOWS
from sipedge.stats.carriers import DNS_FAILURE
from sipedge.stats.fleet import fleet_snapshot
from sipedge.store.postgres.fleet_stats import fleet_groups_async, publish_calls, withdraw_calls
from sipedge.store.postgres.runner import PgRunner
from sipedge.store.postgres.settings import PostgresSettings

log = logging.getLogger(__name__)

TIMEOUT = 30.0  # seconds for the whole answer; the API's client gets a 503 past it
PUBLISH_EVERY = 5.0  # seconds between this edge's calls-in-progress rows
FRESH = 3 * PUBLISH_EVERY  # an edge's row older than this no longer counts (edge down)
WITHDRAW_TIMEOUT = 2.0
Counts = Mapping[str, Mapping[str, int]]  # {"routing": {gateway: calls}, "mapping": {...}}


def _attempt_reason(result: str, status: int | None) -> str | None:
    if result == "dns-failure":  # the query folds "dns-failure: <name>: <error>" to this
        return DNS_FAILURE
    return attempt_reason(result, status)


class FleetStats:
    def __init__(self, settings: PostgresSettings) -> None:
        self.settings = dataclasses.replace(settings, pool_size=1)
        self._runner: PgRunner | None = None
        self._publishing: Future[None] | None = None
        self.queries = 0  # answered fleet queries
        self.failures = 0  # fleet queries PostgreSQL did not answer
        self.published = 0  # calls-in-progress rows written
        self.publish_failures = 0  # ... and not written (PostgreSQL down)
        self._publish_up = True

    async def _ready_runner(self) -> PgRunner:
        if self._runner is None:  # no connection yet: the pool connects at its first use
            self._runner = await asyncio.to_thread(PgRunner, self.settings, name="fleet-stats")
        return self._runner

    async def publish(self, counts: Counts) -> None:
        """Hand this edge's calls in progress to the runner; never waits for the server."""
        if self._publishing is not None and not self._publishing.done():
            return  # the server is slow or down: skip a beat rather than queue them up
        runner = await self._ready_runner()
        self._publishing = publish_calls(runner, self.settings.node, counts, time.time())
        self._publishing.add_done_callback(self._published)

    def _published(self, future: Future[None]) -> None:
        """On the runner's thread: counters, and one warning when the writes start failing."""
        error = future.exception() if not future.cancelled() else RuntimeError("cancelled")
        if error is None:
            self.published += 1
            self._publish_up = True
            return
        if self._publish_up:
            log.warning("calls in progress not published to PostgreSQL (%s)", error)
        self._publish_up = False
        self.publish_failures += 1

    async def publish_every(self, counts: Callable[[], Counts]) -> None:
        """sipd's task: `publish(counts())` every `PUBLISH_EVERY` seconds until cancelled."""
        while True:
            try:
                await self.publish(counts())
            except Exception:
                log.exception("calls in progress not handed to PostgreSQL")
            await asyncio.sleep(PUBLISH_EVERY)

    async def snapshot(self, routing: list[str], mapping: list[str]) -> dict[str, object]:
        """The fleet's body; ConnectionError (with why) when PostgreSQL does not answer."""
        runner = await self._ready_runner()
        now = time.time()
        cutoffs = [now - spec.seconds for spec in WINDOWS]
        try:
            groups = await asyncio.wait_for(
                fleet_groups_async(runner, cutoffs, routing, mapping, now - FRESH), TIMEOUT
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
            self.failures += 1
            why = str(err) or type(err).__name__
            raise ConnectionError(f"PostgreSQL did not answer: {why}") from err
        self.queries += 1
        body = fleet_snapshot(
            routing,
            mapping,
            attempts=groups.attempts,
            routing_durations=groups.routing_durations,
            calls=groups.calls,
            mapping_durations=groups.mapping_durations,
            attempt_reason=_attempt_reason,
            call_reason=stop_reason_label,
            current=groups.current,
        )
        body["nodes"] = groups.nodes
        body["truncated"] = groups.truncated
        return body

    def close(self) -> None:
        """Delete this edge's calls-in-progress row (bounded), then stop the runner."""
        if self._runner is None:
            return
        try:
            if self._publishing is not None:  # its row must not land after the withdrawal
                self._publishing.result(WITHDRAW_TIMEOUT)
            withdraw_calls(self._runner, self.settings.node, WITHDRAW_TIMEOUT)
        except Exception as err:
            log.warning("calls in progress not withdrawn from PostgreSQL (%s)", err)
        finally:
            self._runner.close()
            self._runner = None
