"""`GET /api/gateways/stats?scope=fleet`: the carrier statistics of every edge sharing this
edge's PostgreSQL (storage.backend postgresql), from their CDRs (docs/monitoring.md).

Composition only: `sipedge.store.postgres.fleet_stats` groups the CDRs on the server,
`sipedge.stats.fleet` folds the groups, `sipedge.calls.carrier_events` names the reasons.
The queries run on a runner of their own (one connection, made at the first request), so a
slow statistics query never holds the CDR shipper's connections, and never on sipd's loop.

Owns: `FleetStats`. Must not: be used with the SQLite backend (sipd answers 409 instead).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import asyncpg

from sipedge.calls.carrier_events import attempt_reason, stop_reason_label
from sipedge.stats import WINDOWS
from sipedge.stats.carriers import DNS_FAILURE
from sipedge.stats.fleet import fleet_snapshot
from sipedge.store.postgres.fleet_stats import fleet_groups_async
from sipedge.store.postgres.runner import PgRunner
from sipedge.store.postgres.settings import PostgresSettings

TIMEOUT = 30.0  # seconds for the whole answer; the API's client gets a 503 past it


def _attempt_reason(result: str, status: int | None) -> str | None:
    if result == "dns-failure":  # the query folds "dns-failure: <name>: <error>" to this
        return DNS_FAILURE
    return attempt_reason(result, status)


class FleetStats:
    def __init__(self, settings: PostgresSettings) -> None:
        self.settings = dataclasses.replace(settings, pool_size=1)
        self._runner: PgRunner | None = None
        self.queries = 0  # answered fleet queries
        self.failures = 0  # fleet queries PostgreSQL did not answer

    async def snapshot(self, routing: list[str], mapping: list[str]) -> dict[str, object]:
        """The fleet's body; ConnectionError (with why) when PostgreSQL does not answer."""
        if self._runner is None:
            self._runner = await asyncio.to_thread(PgRunner, self.settings, name="fleet-stats")
        now = time.time()
        cutoffs = [now - spec.seconds for spec in WINDOWS]
        try:
            groups = await asyncio.wait_for(
                fleet_groups_async(self._runner, cutoffs, routing, mapping), TIMEOUT
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
        )
        body["nodes"] = groups.nodes
        body["truncated"] = groups.truncated
        return body

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None
