"""CDRs in PostgreSQL, through a local spool: calls never wait for the server.

Every CDR is first group-committed to a local SQLite spool (`<storage.path>/cdr-spool.sqlite`,
the SQLite backend's own store and writer: bounded queue, one fsync per batch when durable);
its `on_committed` runs then, so a call's end waits for the local disk only, exactly as with
the SQLite backend. A shipper coroutine on the PostgreSQL runner's thread moves the spool to
the server in batches: read up to SHIP_BATCH rows, insert them in one transaction with
`ON CONFLICT (uuid) DO NOTHING`, then delete them from the spool. A crash between the commit
and the delete ships those rows again at the next start, and the server keeps each once: every
CDR carries the uuid made when its call was (`CallRecord.uuid`). While the server is down the
spool grows (on disk, not in memory) and the shipper retries with a growing pause; when it
returns the spool drains, oldest first.

Reads (`recent`, `export`: the API and `sipedge cdr`) and retention (`prune`, this edge's
CDRs by age only) go to the server; records still in the spool are not visible to them.

Owns: `PostgresCdrStore` (the SQLite store of the spool, extended), `PostgresCdrReader`, the
shipper and its counters.
Must not: block the caller of `write()` on the network, or delete a spool row before the
server has committed it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg

from sipedge.store.base import CdrFilters, StoreMetric
from sipedge.store.postgres.runner import PgRunner, storable
from sipedge.store.postgres.schema import migrate
from sipedge.store.postgres.settings import SPOOL, PostgresSettings
from sipedge.store.schema import SchemaError
from sipedge.store.sqlite.cdr import SqliteCdrStore, decode_rows, recent_query
from sipedge.store.sqlite.writer import CLOSE_TIMEOUT

log = logging.getLogger(__name__)

SHIP_BATCH = 500  # rows per server transaction
SHIP_INTERVAL = 0.2  # seconds between looks at an empty spool
RETRY_FIRST = 0.5  # seconds after a failed shipment, doubling up to RETRY_MAX
RETRY_MAX = 10.0
COUNT_INTERVAL = 1.0  # seconds between counts of the spool (the cdr_spooled gauge)
DRAIN_TIMEOUT = 5.0  # seconds close() keeps shipping; what is left waits for the next start
PRUNE_BATCH = 1000
EXPORT_BATCH = 1000
COLUMNS = (
    "call_id, caller, callee, source, mapping_gateway, setup_time, answer_time, end_time,"
    " duration, release_side, cause, final_status, routing_gateway, switch_stop_reason,"
    " attempts"
)
INSERT = (
    f"INSERT INTO cdr (uuid, node, {COLUMNS}) VALUES"
    " ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17::jsonb)"
    " ON CONFLICT (uuid) DO NOTHING"
)


class _ServerReads:
    """`CdrReader.recent` and `export` on the server (never the spool)."""

    _runner: PgRunner

    def recent(
        self,
        limit: int = 50,
        call_id: str | None = None,
        before: int | None = None,
        filters: CdrFilters | None = None,
    ) -> list[dict[str, Any]]:
        return recent(self._runner, limit, call_id, before, filters)

    def export(self, since: float, until: float | None = None) -> Iterator[dict[str, Any]]:
        return export(self._runner, since, until)


class PostgresCdrStore(_ServerReads, SqliteCdrStore):
    """The spool is the SQLite store this class extends (its writes, queue, counters and
    size are the spool's); reads, retention and close go to the server."""

    def __init__(
        self,
        directory: Path,
        settings: PostgresSettings,
        *,
        durable: bool = False,
        migrate_on_start: bool = True,
    ) -> None:
        self.node = settings.node
        self.migrate_on_start = migrate_on_start
        self._runner = PgRunner(settings, name="cdr-postgres")
        try:
            self._schema_ok = self._check_schema()
            super().__init__(directory, durable=durable, name=SPOOL)
        except BaseException:
            self._runner.close()
            raise
        # the shipper's own connection: reads the spool and deletes what the server has
        # (short transactions; the spool's writer waits for them with SQLite's busy timeout)
        self._ship_db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self.shipped = 0  # rows the server committed (or already had)
        self.ship_batches = 0
        self.ship_failures = 0  # failed shipments (each retried: nothing is dropped)
        self.spooled = 0  # rows waiting in the spool (as of the shipper's last look)
        self.server_up = False
        self._draining = asyncio.Event()  # bound to the runner's loop at its first wait
        self._counted = 0.0  # when the spool's rows were last counted (monotonic)
        self._closed = False
        self._shipper = self._runner.spawn(self._ship_loop())

    def _check_schema(self) -> bool:
        """At open: migrate (or check) when the server answers. Refusals (a schema too new,
        or behind with migrate_on_start off) are raised; an unreachable server is not an
        error: the shipper checks again before its first shipment."""
        what = "the PostgreSQL database"
        try:
            self._runner.run(lambda pool: migrate(pool, what, apply=self.migrate_on_start))
        except SchemaError:
            raise
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
            log.warning("PostgreSQL is not reachable at start (%s); CDRs spool locally", err)
            return False
        return True

    def backend_metrics(self) -> list[StoreMetric]:
        return [
            StoreMetric("gauge", "cdr_spooled", "CDRs in the local spool, not yet in PostgreSQL",
                        self.spooled),
            StoreMetric("counter", "cdr_shipped", "CDRs committed to PostgreSQL", self.shipped),
            StoreMetric("counter", "cdr_ship_batches", "CDR transactions on PostgreSQL",
                        self.ship_batches),
            StoreMetric("counter", "cdr_ship_failures",
                        "Failed CDR shipments to PostgreSQL (retried, nothing dropped)",
                        self.ship_failures),
            StoreMetric("gauge", "postgres_up", "1: the last CDR shipment reached PostgreSQL",
                        1 if self.server_up else 0),
        ]  # fmt: skip

    # -- the shipper (on the runner's loop) -----------------------------------------------
    def _spool_batch(self) -> list[tuple[Any, ...]]:
        if time.monotonic() - self._counted >= COUNT_INTERVAL:  # a full scan: not every batch
            self.spooled = int(self._ship_db.execute("SELECT count(*) FROM cdr").fetchone()[0])
            self._counted = time.monotonic()
        return self._ship_db.execute(
            f"SELECT id, uuid, {COLUMNS} FROM cdr ORDER BY id LIMIT ?", (SHIP_BATCH,)
        ).fetchall()

    def _forget(self, last_id: int) -> None:
        self._ship_db.execute("DELETE FROM cdr WHERE id <= ?", (last_id,))

    async def ship_once(self) -> int:
        """Move one batch from the spool to the server; how many rows it held."""
        rows = await asyncio.to_thread(self._spool_batch)
        if not rows:
            return 0
        values = [(row[1], self.node, *map(storable, row[2:])) for row in rows]
        async with self._runner.pool.acquire() as conn, conn.transaction():
            await conn.executemany(INSERT, values)
        await asyncio.to_thread(self._forget, int(rows[-1][0]))
        self.spooled = max(0, self.spooled - len(rows))
        self.shipped += len(rows)
        self.ship_batches += 1
        return len(rows)

    async def _ship_loop(self) -> None:
        pause = RETRY_FIRST
        deadline: float | None = None
        while True:
            if self._draining.is_set() and deadline is None:
                deadline = time.monotonic() + DRAIN_TIMEOUT
            if deadline is not None and time.monotonic() > deadline:
                return
            try:
                if not self._schema_ok:
                    what = "the PostgreSQL database"
                    await migrate(self._runner.pool, what, apply=self.migrate_on_start)
                    self._schema_ok = True
                shipped = await self.ship_once()
            except Exception as err:  # the server is down, restarting, refusing: retry
                self.ship_failures += 1
                if self.server_up or isinstance(err, SchemaError):
                    log.warning(
                        "CDRs cannot reach PostgreSQL (%s); spooling (%d waiting), retrying",
                        err,
                        self.spooled,
                    )
                self.server_up = False
                if deadline is not None:
                    return  # closing: the spool keeps them for the next start
                await self._sleep(pause)
                pause = min(pause * 2, RETRY_MAX)
                continue
            if not self.server_up:
                log.info("PostgreSQL reachable; shipping the CDR spool (%d)", self.spooled)
            self.server_up = True
            pause = RETRY_FIRST
            if shipped < SHIP_BATCH:
                if deadline is not None:
                    return  # drained
                await self._sleep(SHIP_INTERVAL)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._draining.wait(), seconds)
        except TimeoutError:
            pass

    # -- retention (the server) --------------------------------------------------------
    def prune(self, now: float, max_age: float | None, max_bytes: int | None) -> int:
        """This edge's CDRs older than `max_age`, a batch; `max_bytes` is not applied to a
        shared database (docs/storage.md)."""
        if max_age is None:
            return 0
        node, cutoff = self.node, now - max_age

        async def work(pool: asyncpg.Pool) -> str:
            return str(
                await pool.execute(
                    "DELETE FROM cdr WHERE id IN (SELECT id FROM cdr WHERE node = $1"
                    " AND end_time < $2 ORDER BY id LIMIT $3)",
                    node,
                    cutoff,
                    PRUNE_BATCH,
                )
            )

        return int(self._runner.run(work).split()[-1])

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Commit the queue to the spool, ship what the server takes within DRAIN_TIMEOUT
        (the rest waits in the spool for the next start), release everything."""
        if self._closed:
            return
        self._closed = True
        super().close(timeout)
        self._runner.loop.call_soon_threadsafe(self._draining.set)
        try:
            self._shipper.result(DRAIN_TIMEOUT + 2 * RETRY_MAX)
        except Exception:
            log.exception("the CDR shipper failed while closing")
            self._shipper.cancel()
        self._runner.close()
        self._ship_db.close()


class PostgresCdrReader(_ServerReads):
    """`sipedge cdr` with storage.backend postgresql."""

    def __init__(self, settings: PostgresSettings) -> None:
        self._runner = PgRunner(settings, name="cdr-reader")

    def close(self) -> None:
        self._runner.close()


def recent(
    runner: PgRunner,
    limit: int,
    call_id: str | None,
    before: int | None,
    filters: CdrFilters | None = None,
) -> list[dict[str, Any]]:
    sql, args = recent_query(limit, call_id, before, postgres=True, filters=filters)

    async def work(pool: asyncpg.Pool) -> list[asyncpg.Record]:
        return list(await pool.fetch(sql, *args))

    return decode_rows(runner.run(work))


def export(runner: PgRunner, since: float, until: float | None) -> Iterator[dict[str, Any]]:
    after = 0
    sql = "SELECT * FROM cdr WHERE id > $1 AND end_time >= $2"
    if until is not None:
        sql += " AND end_time < $4"
    sql += " ORDER BY id LIMIT $3"
    while True:
        args: list[Any] = [after, since, EXPORT_BATCH]
        if until is not None:
            args.append(until)

        async def work(pool: asyncpg.Pool, args: list[Any] = args) -> list[asyncpg.Record]:
            return list(await pool.fetch(sql, *args))

        rows = runner.run(work)
        if not rows:
            return
        yield from decode_rows(rows)
        after = int(rows[-1]["id"])
