"""The fleet's carrier statistics, read from every edge's CDRs in PostgreSQL: grouped counts.

`GET /api/gateways/stats?scope=fleet` (docs/monitoring.md) asks the shared database what the
edges' CDRs say about each gateway over the windows an edge keeps in memory (5 min, 1 h,
24 h). This module only runs the grouping queries; `sipedge.stats.fleet` folds the groups
into the same body as one edge's statistics.

Bounded work: one scan of the CDRs that ended within the longest window (the `cdr_end_time`
index), only the gateways the asking edge has configured (labels stay bounded as in
`stats/carriers.py`), a dns-failure's error text folded to one group, at most `MAX_GROUPS`
groups per query (`FleetGroups.truncated` says when the rest was left out).

Calls in progress are not in the CDRs (a CDR is written when its call ends): each edge
publishes its own per-gateway counts in its `node_calls` row (`publish_calls`, every few
seconds, a few hundred bytes), and the fleet's are the rows seen within the freshness the
caller gives (an edge that died stops counting once its row is stale; one that stops
cleanly deletes its row: `withdraw_calls`).

Owns: `fleet_groups`, the shape of its rows (`FleetGroups`), `publish_calls`, `withdraw_calls`.
Must not: classify reasons or compute ratios (stats/ and calls/ do), write anything but this
edge's `node_calls` row, or be
called on the daemon's event loop other than through `PgRunner.submit` (`fleet_groups_async`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from sipedge.store.postgres.runner import PgRunner, storable

MAX_GROUPS = 5000  # per query: distinct (gateway, result, status) or (gateway, reason) groups


def _per_window(n: int, aggregate: str, when: str, also: str = "") -> str:
    """An array of `aggregate` once per window: rows whose `when` is at or after the window's
    cut-off `$1[i]` (and `also`). The cut-offs are parameters; only their count shapes the SQL."""
    extra = f"{also} AND " if also else ""
    parts = [
        f"{aggregate} FILTER (WHERE {extra}{when} >= ($1::float8[])[{i + 1}])" for i in range(n)
    ]
    return "ARRAY[" + ", ".join(parts) + "]"


def attempts_sql(n: int) -> str:
    """Routing attempts by (gateway, result, status), settled at the attempt's end."""
    settled = "coalesce((a->>'end')::float8, c.end_time)"
    pdd = "(a->>'pdd')::float8"
    return (
        "SELECT a->>'gateway' AS gateway,"
        " CASE WHEN a->>'result' LIKE 'dns-failure%' THEN 'dns-failure' ELSE a->>'result' END"
        " AS result, (a->>'status')::int AS status,"
        f" {_per_window(n, 'count(*)', settled)} AS attempts,"
        f" {_per_window(n, f'sum({pdd})', settled)} AS pdd_sum,"
        f" {_per_window(n, f'count({pdd})', settled)} AS pdd_n"
        " FROM cdr c, jsonb_array_elements(c.attempts) a"
        " WHERE c.end_time >= $2 AND a->>'gateway' = ANY($3::text[])"
        " GROUP BY 1, 2, 3 LIMIT $4"
    )


def durations_sql(n: int, column: str) -> str:
    """Answered calls' durations by gateway (`column`: routing_gateway or mapping_gateway),
    counted when the call ended."""
    return (
        f"SELECT {column} AS gateway,"
        f" {_per_window(n, 'sum(duration)', 'end_time')} AS duration_sum,"
        f" {_per_window(n, 'count(*)', 'end_time')} AS duration_n"
        f" FROM cdr WHERE end_time >= $2 AND answer_time IS NOT NULL"
        f" AND {column} = ANY($3::text[]) GROUP BY 1 LIMIT $4"
    )


def calls_sql(n: int) -> str:
    """Mapping gateways' calls: answered ones settle at the answer, the others at their end,
    by (gateway, switch_stop_reason, final_status) (both NULL when answered); the call's PDD
    is its INVITE to the first 18x/2xx of any attempt."""
    return (
        "SELECT gateway, stop_reason, final_status,"
        f" {_per_window(n, 'count(*)', 'settled')} AS attempts,"
        f" {_per_window(n, 'count(*)', 'settled', 'answered')} AS answered,"
        f" {_per_window(n, 'sum(pdd)', 'settled')} AS pdd_sum,"
        f" {_per_window(n, 'count(pdd)', 'settled')} AS pdd_n"
        " FROM (SELECT mapping_gateway AS gateway, answer_time IS NOT NULL AS answered,"
        " CASE WHEN answer_time IS NULL THEN switch_stop_reason END AS stop_reason,"
        " CASE WHEN answer_time IS NULL THEN final_status END AS final_status,"
        " coalesce(answer_time, end_time) AS settled,"
        " (SELECT min((a->>'progress')::float8) FROM jsonb_array_elements(attempts) a)"
        " - setup_time AS pdd"
        " FROM cdr WHERE end_time >= $2 AND mapping_gateway = ANY($3::text[])) c"
        " GROUP BY 1, 2, 3 LIMIT $4"
    )


@dataclass
class FleetGroups:
    """The grouped rows, as plain dicts (columns as named in the queries; the per-window
    columns are lists in the order of the cut-offs given), and the nodes that wrote them."""

    attempts: list[dict[str, Any]] = field(default_factory=list)
    routing_durations: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    mapping_durations: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    current: list[dict[str, Any]] = field(default_factory=list)  # fresh node_calls counts
    truncated: bool = False


NODES_SQL = "SELECT DISTINCT node FROM cdr WHERE end_time >= $1 ORDER BY 1 LIMIT $2"
MAX_COUNTS_BYTES = 65536  # one edge's row: its gateways' names and counts, a few KiB at most
CURRENT_SQL = (
    "SELECT counts FROM node_calls WHERE seen_at >= $1"
    f" AND octet_length(counts::text) <= {MAX_COUNTS_BYTES} ORDER BY node LIMIT $2"
)
PUBLISH_SQL = (
    "INSERT INTO node_calls (node, counts, seen_at) VALUES ($1, $2::jsonb, $3)"
    " ON CONFLICT (node) DO UPDATE SET counts = excluded.counts, seen_at = excluded.seen_at"
)


async def _fleet_groups(
    pool: asyncpg.Pool,
    cutoffs: Sequence[float],
    routing: list[str],
    mapping: list[str],
    fresh_since: float,
) -> FleetGroups:
    n = len(cutoffs)
    oldest = min(cutoffs)
    out = FleetGroups()

    async def fetch(sql: str, names: list[str]) -> list[dict[str, Any]]:
        if not names:
            return []
        rows = await pool.fetch(sql, list(cutoffs), oldest, names, MAX_GROUPS)
        if len(rows) >= MAX_GROUPS:
            out.truncated = True
        return [dict(row) for row in rows]

    out.attempts = await fetch(attempts_sql(n), routing)
    out.routing_durations = await fetch(durations_sql(n, "routing_gateway"), routing)
    out.calls = await fetch(calls_sql(n), mapping)
    out.mapping_durations = await fetch(durations_sql(n, "mapping_gateway"), mapping)
    out.nodes = [str(row["node"]) for row in await pool.fetch(NODES_SQL, oldest, MAX_GROUPS)]
    for row in await pool.fetch(CURRENT_SQL, fresh_since, MAX_GROUPS):
        try:
            counts = json.loads(row["counts"])
        except (ValueError, RecursionError):  # not ours: skipped, never a failed answer
            continue
        if isinstance(counts, dict):
            out.current.append(counts)
    return out


async def fleet_groups_async(
    runner: PgRunner,
    cutoffs: Sequence[float],
    routing: list[str],
    mapping: list[str],
    fresh_since: float,
) -> FleetGroups:
    """From the daemon's event loop: the queries run on the runner's loop, never this one.
    `fresh_since`: the oldest `node_calls` heartbeat still counted."""
    future = runner.submit(lambda pool: _fleet_groups(pool, cutoffs, routing, mapping, fresh_since))
    return await asyncio.wrap_future(future)


def fleet_groups(
    runner: PgRunner,
    cutoffs: Sequence[float],
    routing: list[str],
    mapping: list[str],
    fresh_since: float,
) -> FleetGroups:
    """The same, waiting (a worker thread, the CLI, tests)."""
    return runner.run(lambda pool: _fleet_groups(pool, cutoffs, routing, mapping, fresh_since))


def publish_calls(
    runner: PgRunner, node: str, counts: Mapping[str, Mapping[str, int]], now: float
) -> Future[None]:
    """This edge's calls in progress per gateway (`{"routing": {name: n}, "mapping": {...}}`),
    upserted in its `node_calls` row; returns at once (the caller may ignore the future)."""
    body = json.dumps(counts, separators=(",", ":"))

    async def work(pool: asyncpg.Pool) -> None:
        await pool.execute(PUBLISH_SQL, storable(node), storable(body), now)

    return runner.submit(work)


def withdraw_calls(runner: PgRunner, node: str, timeout: float) -> None:
    """This edge stops cleanly: its row goes, so the fleet stops counting its calls at once."""

    async def work(pool: asyncpg.Pool) -> None:
        await pool.execute("DELETE FROM node_calls WHERE node = $1", storable(node))

    runner.run(work, timeout=timeout)
