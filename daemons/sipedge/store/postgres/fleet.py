"""The fleet in PostgreSQL: this edge's heartbeat and the other edges' live bindings
(docs/fleet.md).

`refresh(now, accounts)` (every second, from the event loop) hands one transaction to the
runner's thread and returns at once: it upserts this edge's row in `nodes` (its fleet address
and `seen_at`), then reads the other edges' live bindings of the accounts this edge knows,
joined with their edge's address and heartbeat. The answer replaces the view when it arrives;
`lookup` reads the view and never waits. A failed refresh keeps the last view (its rows still
carry their expiry and heartbeat, so the caller's staleness checks go on working) and is
counted. `close()` deletes this edge's `nodes` row, so the others stop sending to it at once
(its bindings stay: they are its own, for its next start).

Bounded: the read is limited to the accounts of this edge's config and to `MAX_ROWS` rows.

Owns: `PostgresFleetView`. Must not: decide which binding a call uses (registrar/fleet.py),
or wait for the server outside `close`.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from concurrent.futures import Future

import asyncpg

from sipedge.store.postgres.runner import PgRunner, storable
from sipedge.store.postgres.settings import PostgresSettings
from sipedge.store.records import RemoteBinding

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 2.0
MAX_ROWS = 100_000
HEARTBEAT = (
    "INSERT INTO nodes (name, sip_host, sip_port, seen_at) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (name) DO UPDATE SET sip_host = excluded.sip_host,"
    " sip_port = excluded.sip_port, seen_at = excluded.seen_at"
)
REMOTE = (
    "SELECT b.node, b.account, b.contact, b.expires_at, b.registered_at,"
    " n.sip_host, n.sip_port, n.seen_at"
    " FROM bindings b JOIN nodes n ON n.name = b.node"
    " WHERE b.node <> $1 AND b.expires_at > $2 AND b.account = ANY($3::text[])"
    " ORDER BY b.registered_at DESC LIMIT $4"
)

View = dict[str, list[RemoteBinding]]


class PostgresFleetView:
    def __init__(self, settings: PostgresSettings, host: str, port: int) -> None:
        self.node = settings.node
        self.host, self.port = host, port
        self._runner = PgRunner(settings, name="fleet-postgres")
        self._view: View = {}
        self._size = 0
        self._in_flight: Future[View] | None = None
        self.up = False
        self.failures = 0

    def refresh(self, now: float, accounts: Collection[str]) -> bool:
        if self._in_flight is not None and not self._in_flight.done():
            return False
        me = (self.node, self.host, self.port, now)
        wanted = [storable(a) for a in accounts]

        async def work(pool: asyncpg.Pool) -> View:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(HEARTBEAT, *me)
                rows = await conn.fetch(REMOTE, self.node, now, wanted, MAX_ROWS)
            view: View = {}
            for r in rows:
                view.setdefault(r["account"], []).append(
                    RemoteBinding(
                        node=r["node"],
                        account=r["account"],
                        contact=r["contact"],
                        expires_at=float(r["expires_at"]),
                        registered_at=float(r["registered_at"]),
                        node_host=r["sip_host"],
                        node_port=int(r["sip_port"]),
                        node_seen_at=float(r["seen_at"]),
                    )
                )
            return view

        future = self._in_flight = self._runner.submit(work)
        future.add_done_callback(self._done)
        return True

    def _done(self, future: Future[View]) -> None:
        """On the runner's thread; replacing the dict is atomic under the GIL."""
        error = future.exception() if not future.cancelled() else RuntimeError("cancelled")
        if error is None:
            view = future.result()
            self._view, self._size = view, sum(len(v) for v in view.values())
            self.up = True
            return
        if self.up:
            log.warning(
                "fleet view not refreshed from PostgreSQL (%s); the last one is kept", error
            )
        self.up = False
        self.failures += 1

    def lookup(self, account: str) -> list[RemoteBinding]:
        return list(self._view.get(account, ()))

    def size(self) -> int:
        return self._size

    def close(self) -> None:
        node = self.node

        async def withdraw(pool: asyncpg.Pool) -> None:
            async with pool.acquire() as conn:
                await conn.execute("DELETE FROM nodes WHERE name = $1", node)

        try:
            if self._in_flight is not None:  # its heartbeat must not land after the withdrawal
                self._in_flight.result(CLOSE_TIMEOUT)
            self._runner.run(withdraw, timeout=CLOSE_TIMEOUT)
        except Exception as err:
            log.warning("fleet: this edge not withdrawn from PostgreSQL (%s)", err)
        finally:
            self._runner.close()
