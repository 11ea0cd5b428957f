"""The PostgreSQL backend against a real server (tests/pg.py: a throw-away cluster of Debian's
postgresql): schema migrations and their refusal, CDRs from two processes, CDRs through a
server restart in the middle of the writes, a spool replayed twice, registrations.

Every check reads the server with psql, not through the store under test.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from sipedge.store import (
    AttemptRecord,
    Binding,
    CallRecord,
    SchemaError,
    Unsupported,
    migrate_databases,
    open_binding_store,
    open_cdr_store,
    open_fleet_view,
)
from sipedge.store.postgres.bindings import PostgresBindingStore
from sipedge.store.postgres.cdr import PostgresCdrStore
from sipedge.store.postgres.settings import SPOOL
from sipedge.store.sqlite.cdr import SqliteCdrStore
from tests.conftest import Sipd, free_port, gateway, make_config, start_sipd
from tests.pg import PgCluster, fresh_database, throwaway_cluster
from tests.sipp.harness import Sipp

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    yield from throwaway_cluster()


@pytest.fixture
def database(cluster: PgCluster) -> str:
    return fresh_database(cluster)


def record(call_id: str, end: float | None = None) -> CallRecord:
    now = time.time() if end is None else end
    return CallRecord(
        call_id=call_id,
        caller="1001",
        callee="2002",
        source="127.0.0.1:5060",
        mapping_gateway="m1",
        setup_time=now - 3,
        answer_time=now - 2,
        end_time=now,
        release_side="caller",
        cause="normal",
        final_status=200,
        routing_gateway="gw1",
    )


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def cdr_counts(cluster: PgCluster, database: str) -> tuple[int, int, int]:
    """(rows, distinct uuids, distinct call ids) on the server."""
    out = cluster.psql(
        "SELECT count(*), count(DISTINCT uuid), count(DISTINCT call_id) FROM cdr", database
    )
    rows, uuids, call_ids = (int(x) for x in out.split("|"))
    return rows, uuids, call_ids


def test_migrations_from_empty_then_up_to_date_then_refused_when_newer(
    cluster: PgCluster, database: str, tmp_path: Path
) -> None:
    settings = cluster.settings(database)
    done = migrate_databases(tmp_path, settings)
    versions = {what.split(" ")[0]: (before, after) for what, before, after in done}
    assert versions[str(tmp_path / SPOOL)] == (0, 2)
    assert versions["PostgreSQL"] == (0, 3)
    assert cluster.psql("SELECT version FROM schema_version ORDER BY 1", database) == "1\n2\n3"
    tables = cluster.psql(
        "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables"
        " WHERE schemaname = 'public'",
        database,
    )
    assert tables == "bindings,cdr,node_calls,nodes,schema_version"
    again = migrate_databases(tmp_path, settings)
    assert [(b, a) for _, b, a in again] == [(2, 2), (3, 3)]

    # a newer sipedge migrated it: this one refuses, and writes nothing
    cluster.psql("INSERT INTO schema_version VALUES (7, 'from the future')", database)
    with pytest.raises(SchemaError, match=r"schema version 7, newer than this sipedge knows \(3\)"):
        migrate_databases(tmp_path, settings)
    with pytest.raises(SchemaError, match="newer than this sipedge"):
        open_cdr_store(tmp_path / "edge", postgres=settings)
    bindings = open_binding_store(tmp_path / "edge", settings)
    with pytest.raises(SchemaError, match="newer than this sipedge"):
        bindings.load(time.time())
    bindings.close()
    cli = subprocess.run(
        [sys.executable, "-m", "sipedge.cli", "db", "migrate", "--storage", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr  # the SQLite side alone (--storage) is fine
    assert f"{tmp_path / 'cdr.sqlite'}: schema version 2 (migrated from 0)" in cli.stdout


def test_migrate_on_start_off_refuses_a_database_behind(
    cluster: PgCluster, database: str, tmp_path: Path
) -> None:
    settings = cluster.settings(database)
    with pytest.raises(SchemaError, match="sipedge db migrate"):
        open_cdr_store(tmp_path, postgres=settings, migrate=False)
    assert cluster.psql("SELECT to_regclass('cdr') IS NULL", database) == "t"


WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from sipedge.store import CallRecord, PostgresSettings, open_cdr_store
    dsn, password_file, node, directory = sys.argv[1:5]
    store = open_cdr_store(Path(directory), postgres=PostgresSettings(
        dsn, Path(password_file), 2, node))
    now = time.time()
    for i in range(150):
        store.write(CallRecord(f"{node}-{i}", "1001", "2002", "127.0.0.1:5060", None,
                               now - 1, now, now, "caller", "normal", 200))
    store.close()
    print(store.shipped, store.spooled)
    """
)


def test_cdrs_from_two_processes_land_once_each(
    cluster: PgCluster, database: str, tmp_path: Path
) -> None:
    settings = cluster.settings(database)
    migrate_databases(tmp_path / "setup", settings)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                settings.dsn,
                str(settings.password_file),
                node,
                str(tmp_path / node),
                "150",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for node in ("edge-a", "edge-b")
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.split() == ["150", "0"], (out, err)  # all shipped at close, spool empty
    assert cdr_counts(cluster, database) == (300, 300, 300)
    per_node = cluster.psql("SELECT node, count(*) FROM cdr GROUP BY node ORDER BY node", database)
    assert per_node.splitlines() == ["edge-a|150", "edge-b|150"]


def test_a_spool_shipped_twice_is_kept_once(
    cluster: PgCluster, database: str, tmp_path: Path
) -> None:
    """A crash between the server's commit and the spool's delete replays the spool."""
    settings = cluster.settings(database)
    spool = SqliteCdrStore(tmp_path, name=SPOOL)
    for i in range(40):
        spool.write(record(f"replayed-{i}"))
    spool.close()
    shutil.copy(tmp_path / SPOOL, tmp_path / "before-the-crash")
    for _ in range(2):
        store = open_cdr_store(tmp_path, postgres=settings)
        assert isinstance(store, PostgresCdrStore)
        wait_for(lambda s=store: s.shipped == 40, 30, "the spool to ship")
        store.close()
        assert cdr_counts(cluster, database) == (40, 40, 40)
        for suffix in ("-wal", "-shm"):
            (tmp_path / (SPOOL + suffix)).unlink(missing_ok=True)
        shutil.copy(tmp_path / "before-the-crash", tmp_path / SPOOL)
    reader = open_cdr_store(tmp_path / "reader", postgres=settings)
    try:
        recent = reader.recent(limit=5)
        assert [r["call_id"] for r in recent] == [f"replayed-{i}" for i in range(39, 34, -1)]
        assert recent[0]["node"] == "edge-a" and recent[0]["attempts"] == []
        older = reader.recent(limit=100, before=recent[-1]["id"])
        assert len(older) == 35
        exported = list(reader.export(0.0))
        assert len(exported) == 40 and len({r["uuid"] for r in exported}) == 40
        # the console's search: the SQL (LIKE ... ESCAPE, bound arguments) is SQLite's too
        assert len(reader.recent(100, filters={"caller": "00", "gateway": "m1"})) == 40
        assert reader.recent(100, filters={"caller": "_"}) == []  # a literal underscore
        assert reader.recent(100, filters={"answered": False}) == []
        assert len(reader.recent(100, filters={"gateway": "gw1", "answered": True})) == 40
    finally:
        reader.close()


async def test_server_stopped_and_restarted_during_200_writes_every_cdr_arrives_once(
    cluster: PgCluster, database: str, tmp_path: Path
) -> None:
    settings = cluster.settings(database)
    store = open_cdr_store(tmp_path, postgres=settings, durable=True)
    assert isinstance(store, PostgresCdrStore)
    loop = asyncio.get_running_loop()
    committed: list[str] = []
    restart: subprocess.Popen[bytes] | None = None
    longest = 0.0
    try:
        for i in range(200):
            if i == 40:  # the server goes away for ~2 s while the calls go on
                restart = subprocess.Popen(cluster.stop_command(2.0))
            started = loop.time()
            call_id = f"restart-{i}"
            store.write(record(call_id), lambda c=call_id: committed.append(c))
            longest = max(longest, loop.time() - started)
            await asyncio.sleep(0.02)
        assert restart is not None
        assert await asyncio.to_thread(restart.wait, 60) == 0
        deadline = loop.time() + 60
        while (store.shipped < 200 or store.spooled) and loop.time() < deadline:
            await asyncio.sleep(0.1)
        # every call's end was released by the local commit, in order, server or not
        assert committed == [f"restart-{i}" for i in range(200)]
        assert longest < 0.05, f"write() took {longest * 1000:.1f} ms on the event loop"
        assert store.ship_failures > 0, "the shipper never saw the server down"
        assert store.shipped == 200 and store.spooled == 0
        metrics = {m.name: m.value for m in store.backend_metrics()}
        assert metrics["postgres_up"] == 1 and metrics["cdr_spooled"] == 0
    finally:
        if restart is not None and restart.poll() is None:
            restart.wait(60)
        await asyncio.to_thread(store.close)
    assert cdr_counts(cluster, database) == (200, 200, 200)


def a_binding(account: str, expires_at: float, now: float) -> Binding:
    return Binding(
        account=account,
        contact=f"sip:{account}@192.0.2.7:5062;transport=udp",
        source=("192.0.2.7", 5062),
        nat=True,
        expires_at=expires_at,
        call_id=f"reg-{account}",
        cseq=7,
        registered_at=now,
        user_agent="test phone",
    )


def test_registrations_stored_and_read_back_per_node(
    cluster: PgCluster, database: str, tmp_path: Path
) -> None:
    settings = cluster.settings(database, node="edge-a")
    now = time.time()

    def binding(account: str, expires_in: float) -> Binding:
        return a_binding(account, now + expires_in, now)

    store = open_binding_store(tmp_path, settings)
    assert store.load(now) == []
    for account, expires_in in (("1001", 600), ("1002", 600), ("1003", 600), ("1004", 1)):
        store.put(binding(account, expires_in))
    store.delete("1003")
    assert store.flush() == 4
    store.put(binding("1002", 900))  # a refresh while the first flush may be in flight
    store.close()
    assert cluster.psql("SELECT count(*) FROM bindings", database) == "3"

    again = open_binding_store(tmp_path, settings)
    loaded = {b.account: b for b in again.load(now + 10)}  # 1004 expired meanwhile
    again.close()
    assert sorted(loaded) == ["1001", "1002"]
    assert loaded["1001"] == binding("1001", 600)
    assert loaded["1002"] == binding("1002", 900)
    assert cluster.psql("SELECT count(*) FROM bindings", database) == "2"
    other = open_binding_store(tmp_path, cluster.settings(database, node="edge-b"))
    assert other.load(now) == []  # another edge's bindings are its own
    hostile = binding("1005", 600)
    hostile.user_agent = "evil\x00phone"  # PostgreSQL refuses NUL: it must not wedge the flush
    other.put(hostile)
    other.put(binding("1006", 600))
    other.close()
    rows = cluster.psql(
        "SELECT account, user_agent FROM bindings WHERE node = 'edge-b' ORDER BY 1", database
    )
    assert rows.splitlines() == ["1005|evil\ufffdphone", "1006|test phone"]


def test_the_fleet_view_reads_the_other_edges_live_bindings(
    cluster: PgCluster, database: str, tmp_path: Path
) -> None:
    """docs/fleet.md: each edge's heartbeat in `nodes`, the others' live bindings of its own
    accounts joined with their edge's address; a closed view withdraws its edge."""
    now = time.time()
    a_settings = cluster.settings(database, node="edge-a")
    a = open_binding_store(tmp_path, a_settings)
    a.load(now)  # migrates
    for account, expires_in in (("1001", 600), ("1002", -1), ("9999", 600)):
        a.put(a_binding(account, now + expires_in, now))
    a.close()
    view_a = open_fleet_view(a_settings, "10.0.0.1", 5060)
    view_b = open_fleet_view(cluster.settings(database, node="edge-b"), "10.0.0.2", 5070)
    try:
        for view in (view_a, view_b):  # one after the other: edge-b reads edge-a's heartbeat
            assert view.refresh(now, ["1001", "1002"])
            wait_for(lambda: view.up, 10, "a refresh")  # noqa: B023 (waited for at once)
        assert view_a.lookup("1001") == []  # its own binding is not the fleet's
        (row,) = view_b.lookup("1001")
        assert (row.node, row.node_host, row.node_port, row.node_seen_at) == (
            "edge-a",
            "10.0.0.1",
            5060,
            now,
        )
        assert (
            row.contact == "sip:1001@192.0.2.7:5062;transport=udp" and row.expires_at == now + 600
        )
        # expired, and an account edge-b does not have, are not read
        assert view_b.lookup("1002") == [] and view_b.lookup("9999") == [] and view_b.size() == 1
        rows = cluster.psql("SELECT name, sip_host, sip_port FROM nodes ORDER BY 1", database)
        assert rows.splitlines() == ["edge-a|10.0.0.1|5060", "edge-b|10.0.0.2|5070"]
    finally:
        view_b.close()
        view_a.close()
    assert cluster.psql("SELECT count(*) FROM nodes", database) == "0"
    with pytest.raises(Unsupported, match="postgresql"):
        open_fleet_view(None, "10.0.0.1", 5060)


@pytest.mark.sipp
def start_pg_edge(
    cluster: PgCluster, database: str, directory: Path, node: str, gw_port: int
) -> Sipd:
    """A sipd named `node` on the PostgreSQL backend, one gateway on `gw_port`."""
    settings = cluster.settings(database)
    config = make_config(
        directory, free_port(), free_port(socket.SOCK_STREAM), [gateway("gw1", gw_port)]
    )
    config["node"] = {"name": node}
    config["storage"].update(
        backend="postgresql",
        dsn=settings.dsn,
        password_file=str(settings.password_file),
        pool_size=2,
    )
    return start_sipd(directory, config, name=node)


def sipp_caller(sipd: Sipd, calls: int, rate: int, timeout: int) -> Sipp:
    caller = Sipp(
        "uac_basic",
        port=free_port(),
        remote=sipd.sip_target,
        calls=calls,
        rate=rate,
        timeout=timeout,
        service="1000",
    )
    caller.start()
    return caller


def test_two_sipd_edges_share_the_database_each_call_once(
    cluster: PgCluster, database: str, tmp_path: Path
) -> None:
    """Two sipd processes (edge-a, edge-b) with storage.backend postgresql, SIPp calls through
    each: every call's CDR is on the server once, under its edge's name, and either edge's
    API reads both edges' CDRs."""
    calls = 8
    edges: list[tuple[Sipd, Sipp]] = []
    try:
        for node in ("edge-a", "edge-b"):
            gw_port = free_port()
            directory = tmp_path / node
            directory.mkdir()
            sipd = start_pg_edge(cluster, database, directory, node, gw_port)
            uas = Sipp("uas_answer", port=gw_port, calls=calls, timeout=40)
            uas.start()
            edges.append((sipd, uas))
        results = []
        for sipd, _ in edges:
            results.append(sipp_caller(sipd, calls, rate=10, timeout=40))
        finished: dict[str, set[str]] = {}
        for caller, node in zip(results, ("edge-a", "edge-b"), strict=True):
            result = caller.wait(45)
            assert result.returncode == 0 and result.successful == calls, result.describe()
            finished[node] = {m.call_id for m in result.sent("INVITE")}
        for sipd, _ in edges:
            wait_for(
                lambda s=sipd: s.metrics().get("sipedge_cdr_shipped_total") == calls,
                20,
                "the edge's CDRs on the server",
            )
            assert sipd.metrics()["sipedge_postgres_up"] == 1
        from_a = {r["call_id"]: r["node"] for r in edges[0][0].cdrs(wait_for=2 * calls)}
    finally:
        for sipd, uas in edges:
            sipd.stop()
            uas.stop()
    assert from_a == {c: n for n, ids in finished.items() for c in ids}
    assert cdr_counts(cluster, database) == (2 * calls, 2 * calls, 2 * calls)
    for node, ids in finished.items():
        on_server = cluster.psql(f"SELECT call_id FROM cdr WHERE node = '{node}'", database)
        assert set(on_server.splitlines()) == ids


def test_server_stopped_during_200_sipp_calls_through_sipd_every_cdr_arrives_once(
    cluster: PgCluster, database: str, tmp_path: Path
) -> None:
    """Issue 17's check end to end: 200 SIPp calls through one sipd on the PostgreSQL
    backend, the server stopped for 3 s in the middle of them and started again. Every call
    completes (CDR writes never wait on the server), and every call's CDR is on the server
    exactly once, spooled while it was away and shipped when it came back."""
    calls = 200
    gw_port = free_port()
    sipd = start_pg_edge(cluster, database, tmp_path, "edge-outage", gw_port)
    uas = Sipp("uas_answer", port=gw_port, calls=calls, timeout=90)
    restart: subprocess.Popen[bytes] | None = None
    try:
        uas.start()
        caller = sipp_caller(sipd, calls, rate=20, timeout=90)
        # about a third of the calls in: the server goes away for 3 s while calls go on
        wait_for(
            lambda: (
                sipd.metrics().get("sipedge_cdr_written_total", 0) >= 60
                or sipd.metrics().get("sipedge_cdr_shipped_total", 0) >= 60
            ),
            60,
            "60 calls' CDRs",
        )
        restart = subprocess.Popen(cluster.stop_command(3.0))
        result = caller.wait(120)
        assert result.returncode == 0 and result.successful == calls, result.describe()
        assert restart.wait(60) == 0
        wait_for(
            lambda: (
                sipd.metrics().get("sipedge_cdr_shipped_total") == calls
                and sipd.metrics().get("sipedge_cdr_spooled", 0) == 0
            ),
            60,
            "every CDR shipped and the spool empty",
        )
        metrics = sipd.metrics()
        assert metrics["sipedge_postgres_up"] == 1
        placed = {m.call_id for m in result.sent("INVITE")}
    finally:
        if restart is not None and restart.poll() is None:
            restart.wait(60)
        sipd.stop()
        uas.stop()
    assert metrics.get("sipedge_cdr_ship_failures_total", 0) > 0, (
        "the shipper never saw the server down: the outage missed the calls"
    )
    assert cdr_counts(cluster, database) == (calls, calls, calls)
    on_server = cluster.psql("SELECT call_id FROM cdr WHERE node = 'edge-outage'", database)
    assert set(on_server.splitlines()) == placed


def test_db_migrate_command_and_sipd_refuse_a_newer_schema(
    cluster: PgCluster, database: str, tmp_path: Path
) -> None:
    settings = cluster.settings(database)
    gateways = [gateway("gw1", free_port())]
    config = make_config(tmp_path, free_port(), free_port(socket.SOCK_STREAM), gateways)
    config["storage"].update(
        backend="postgresql", dsn=settings.dsn, password_file=str(settings.password_file)
    )
    config_path = tmp_path / "sipedge.yaml"
    config_path.write_text(yaml.safe_dump(config))

    def db_migrate() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sipedge.cli", "db", "migrate", "--config", str(config_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )

    first = db_migrate()
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"{tmp_path / 'state' / SPOOL}: schema version 2 (migrated from 0)",
        f"PostgreSQL ({settings.dsn}): schema version 3 (migrated from 0)",
    ]
    assert "up to date" in db_migrate().stdout
    cluster.psql(
        "INSERT INTO cdr (uuid, node, call_id, caller, callee, source, setup_time, end_time,"
        " duration, release_side, cause, final_status, attempts) VALUES ('u1', 'edge-z',"
        " 'from-another-edge', '1', '2', 'x', 1, 2, 0, 'callee', 'normal', 200, '[]')",
        database,
    )
    listed = subprocess.run(
        [sys.executable, "-m", "sipedge.cli", "cdr", "--config", str(config_path), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert [(r["call_id"], r["node"]) for r in json.loads(listed.stdout)] == [
        ("from-another-edge", "edge-z")
    ]
    cluster.psql("INSERT INTO schema_version VALUES (4, 'from the future')", database)
    refused = db_migrate()
    assert refused.returncode == 1
    assert "schema version 4, newer than this sipedge knows (3)" in refused.stderr
    with pytest.raises(RuntimeError, match="exited") as info:
        start_sipd(tmp_path, config)
    assert "cannot start" in str(info.value) and "newer than this sipedge" in str(info.value)


def test_registration_changes_during_an_outage_are_written_when_the_server_returns(
    cluster: PgCluster, database: str, tmp_path: Path
) -> None:
    now = time.time()
    store = open_binding_store(tmp_path, cluster.settings(database))
    assert isinstance(store, PostgresBindingStore)
    store.load(now)  # migrates the empty database
    store.put(a_binding("2001", now + 600, now))
    store.put(a_binding("2002", now + 600, now))
    cluster.stop()
    try:
        started = time.monotonic()
        assert store.flush() == 2
        assert time.monotonic() - started < 0.05  # handed over, not waited for
        wait_for(lambda: store.failures == 1 and store.pending == 2, 30, "a failed flush")
        store.delete("2001")  # newer than the failed upsert: it must win
        assert store.flush() == 2
        wait_for(lambda: store.failures == 2 and store.pending == 2, 30, "another failure")
    finally:
        cluster.start()
    deadline = time.monotonic() + 30
    while store.pending and time.monotonic() < deadline:
        store.flush()
        time.sleep(0.1)
    store.close()
    assert store.writes == 2 and store.pending == 0
    rows = cluster.psql("SELECT account, expires_at FROM bindings", database)
    assert [row.split("|")[0] for row in rows.splitlines()] == ["2002"]


def test_a_nul_from_the_network_does_not_block_the_spool(
    cluster: PgCluster, database: str, tmp_path: Path
) -> None:
    """SQLite keeps NUL characters, PostgreSQL refuses them in text and jsonb: a hostile
    caller must not wedge the spool (every CDR after it would wait forever)."""
    store = open_cdr_store(tmp_path, postgres=cluster.settings(database))
    assert isinstance(store, PostgresCdrStore)
    hostile = record("hostile")
    hostile.caller = "10\x0001"
    hostile.attempts.append(AttemptRecord("gw1", 1.0, 2.0, result="503 \x00", status=503))
    store.write(hostile)
    store.write(record("after-it"))
    try:
        wait_for(lambda: store.shipped == 2, 30, "both CDRs on the server")
    finally:
        store.close()
    out = cluster.psql(
        "SELECT call_id, caller, attempts->0->>'result' FROM cdr ORDER BY id", database
    )
    assert out.splitlines() == ["hostile|10\ufffd01|503 \ufffd", "after-it|1001|"]
