"""The PostgreSQL schema (CDRs, bindings, the edges of the fleet and their calls in progress,
in one database).

Steps are applied under a transaction-level advisory lock, each in its own transaction with
its `schema_version` row, so two edges (or `sipedge db migrate` and a starting daemon)
migrating at the same time apply each step once. A database newer than this code is refused
(`SchemaTooNew`), never written to.

Owns: `MIGRATIONS` and `migrate`. Must not: write CDRs or bindings.
"""

from __future__ import annotations

import asyncpg

from sipedge.store.schema import Migration, behind, latest, plan

LOCK_KEY = 0x5E_ED_6E_00  # pg_advisory_xact_lock key: "sipedge schema"

MIGRATIONS = (
    Migration(
        1,
        "CDRs and registrations of every edge",
        (
            """
CREATE TABLE cdr (
    id BIGSERIAL PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    node TEXT NOT NULL,
    call_id TEXT NOT NULL,
    caller TEXT NOT NULL,
    callee TEXT NOT NULL,
    source TEXT NOT NULL,
    mapping_gateway TEXT,
    setup_time DOUBLE PRECISION NOT NULL,
    answer_time DOUBLE PRECISION,
    end_time DOUBLE PRECISION NOT NULL,
    duration DOUBLE PRECISION NOT NULL,
    release_side TEXT NOT NULL,
    cause TEXT NOT NULL,
    final_status INTEGER NOT NULL,
    routing_gateway TEXT,
    switch_stop_reason TEXT,
    attempts JSONB NOT NULL
)""",
            "CREATE INDEX cdr_end_time ON cdr (end_time)",
            "CREATE INDEX cdr_call_id ON cdr (call_id)",
            """
CREATE TABLE bindings (
    node TEXT NOT NULL,
    account TEXT NOT NULL,
    contact TEXT NOT NULL,
    source_host TEXT NOT NULL,
    source_port INTEGER NOT NULL,
    nat BOOLEAN NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    call_id TEXT NOT NULL,
    cseq BIGINT NOT NULL,
    registered_at DOUBLE PRECISION NOT NULL,
    user_agent TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (node, account)
)""",
            "CREATE INDEX bindings_account ON bindings (account)",
        ),
    ),
    Migration(
        2,
        "the edges of the fleet: where each is reached, when it was last alive",
        (
            """
CREATE TABLE nodes (
    name TEXT PRIMARY KEY,
    sip_host TEXT NOT NULL,
    sip_port INTEGER NOT NULL,
    seen_at DOUBLE PRECISION NOT NULL
)""",
        ),
    ),
    Migration(
        3,
        "each edge's calls in progress per gateway, for the fleet's current calls",
        (
            """
CREATE TABLE node_calls (
    node TEXT PRIMARY KEY,
    counts JSONB NOT NULL,
    seen_at DOUBLE PRECISION NOT NULL
)""",
        ),
    ),
)

VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
    " description TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
)


async def version(conn: asyncpg.Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    value = await conn.fetchval("SELECT max(version) FROM schema_version")
    return int(value) if value is not None else 0


async def migrate(pool: asyncpg.Pool, what: str, *, apply: bool = True) -> tuple[int, int]:
    """Bring the database to the latest version; (before, after). `apply=False` only checks
    (SchemaBehind if steps are missing, SchemaTooNew if it is ahead)."""
    async with pool.acquire() as conn:
        before = await version(conn)
        todo = plan(what, before, MIGRATIONS)
        if todo and not apply:
            raise behind(what, before, MIGRATIONS)
        for step in todo:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
                await conn.execute(VERSION_TABLE)
                if await version(conn) >= step.version:
                    continue  # another edge applied it while we waited for the lock
                for statement in step.statements:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_version (version, description) VALUES ($1, $2)",
                    step.version,
                    step.description,
                )
        after = await version(conn)
        plan(what, after, MIGRATIONS)  # a newer edge may have gone further meanwhile
        return before, after


__all__ = ["MIGRATIONS", "latest", "migrate", "version"]
