"""Registrations in PostgreSQL: each edge's bindings under its node name, written in the
background so the registrar never waits for the server.

`flush()` (every 0.5 s from the event loop, like SQLite's) takes the accounts changed since the
last one and hands them to the runner's thread as one transaction, returning at once; while
that transaction is in flight the next changes wait for the next flush. A failed transaction
puts its changes back (unless the account changed again meanwhile: the newer change wins), so
an outage delays them, loses none, and bounds them by the number of accounts. `load()` at
start reads this edge's live bindings (and deletes its expired ones); if the server cannot be
reached the edge starts with none and logs it: the phones' next refresh registers them again.

Owns: `PostgresBindingStore`. Must not: wait for the server in `put`, `delete` or `flush`.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future

import asyncpg

from sipedge.store.postgres.runner import PgRunner, storable
from sipedge.store.postgres.schema import migrate
from sipedge.store.postgres.settings import PostgresSettings
from sipedge.store.records import Binding

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 5.0
COLUMNS = (
    "account, contact, source_host, source_port, nat, expires_at, call_id, cseq,"
    " registered_at, user_agent"
)
UPSERT = (
    f"INSERT INTO bindings (node, {COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)"
    " ON CONFLICT (node, account) DO UPDATE SET contact = excluded.contact,"
    " source_host = excluded.source_host, source_port = excluded.source_port,"
    " nat = excluded.nat, expires_at = excluded.expires_at, call_id = excluded.call_id,"
    " cseq = excluded.cseq, registered_at = excluded.registered_at,"
    " user_agent = excluded.user_agent"
)


class PostgresBindingStore:
    def __init__(self, settings: PostgresSettings, *, migrate_on_start: bool = True) -> None:
        self.node = settings.node
        self._runner = PgRunner(settings, name="bindings-postgres")
        self._dirty: dict[str, Binding | None] = {}
        self._in_flight: Future[None] | None = None
        self.writes = 0
        self.failures = 0  # failed transactions (their changes were put back)
        self._migrate = migrate_on_start

    @property
    def pending(self) -> int:
        return len(self._dirty)

    def load(self, now: float) -> list[Binding]:
        node, apply = self.node, self._migrate

        async def work(pool: asyncpg.Pool) -> list[asyncpg.Record]:
            await migrate(pool, "the PostgreSQL database", apply=apply)
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "DELETE FROM bindings WHERE node = $1 AND expires_at <= $2", node, now
                )
                return list(
                    await conn.fetch(f"SELECT {COLUMNS} FROM bindings WHERE node = $1", node)
                )

        try:
            rows = self._runner.run(work)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
            log.error("registrations not loaded: PostgreSQL is not reachable (%s)", err)
            return []
        return [
            Binding(
                account=r["account"],
                contact=r["contact"],
                source=(r["source_host"], int(r["source_port"])),
                nat=bool(r["nat"]),
                expires_at=float(r["expires_at"]),
                call_id=r["call_id"],
                cseq=int(r["cseq"]),
                registered_at=float(r["registered_at"]),
                user_agent=r["user_agent"],
            )
            for r in rows
        ]

    def put(self, binding: Binding) -> None:
        self._dirty[binding.account] = binding

    def delete(self, account: str) -> None:
        self._dirty[account] = None

    def flush(self) -> int:
        """Hand the pending changes to the server's thread; 0 while the last are in flight."""
        if not self._dirty or (self._in_flight is not None and not self._in_flight.done()):
            return 0
        dirty, self._dirty = self._dirty, {}
        node = self.node
        upserts = [
            tuple(map(storable, (node, b.account, b.contact, b.source[0], b.source[1], b.nat,
                                 b.expires_at, b.call_id, b.cseq, b.registered_at, b.user_agent)))
            for b in dirty.values()
            if b is not None
        ]  # fmt: skip
        deletes = [(node, storable(a)) for a, b in dirty.items() if b is None]

        async def work(pool: asyncpg.Pool) -> None:
            async with pool.acquire() as conn, conn.transaction():
                if upserts:
                    await conn.executemany(UPSERT, upserts)
                if deletes:
                    await conn.executemany(
                        "DELETE FROM bindings WHERE node = $1 AND account = $2", deletes
                    )

        future = self._in_flight = self._runner.submit(work)
        future.add_done_callback(lambda f: self._done(f, dirty))
        return len(dirty)

    def _done(self, future: Future[None], dirty: dict[str, Binding | None]) -> None:
        """On the runner's thread; the dict operations below are atomic under the GIL."""
        error = future.exception() if not future.cancelled() else RuntimeError("cancelled")
        if error is None:
            self.writes += len(dirty)
            return
        self.failures += 1
        for account, binding in dirty.items():
            self._dirty.setdefault(account, binding)  # a newer change wins
        log.warning("registrations not written to PostgreSQL (%s); retried", error)

    def close(self) -> None:
        try:
            if self._in_flight is not None:
                self._in_flight.result(CLOSE_TIMEOUT)
            if self.flush() and self._in_flight is not None:
                self._in_flight.result(CLOSE_TIMEOUT)
        except Exception as err:
            log.error("%d registrations not written at close (%s)", len(self._dirty), err)
        finally:
            self._runner.close()
