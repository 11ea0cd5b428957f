"""The fleet's carrier statistics (`GET /api/gateways/stats?scope=fleet`, docs/monitoring.md)
against a real PostgreSQL (tests/pg.py) holding the CDRs of two nodes.

* Two sipd edges sharing the database, SIPp calls through each (every call fails over from a
  gateway answering 503 to one that rings and answers; one call on edge-b has nowhere to fail
  over to): either edge's fleet view is the sum of the two edges' own (in-memory) views.
* CDRs written by two stores with known times: the windows, the gateways left out (not
  configured), a DNS failure's folded reason, PDD and ACD, exactly.
* Calls in progress on two edges are the fleet's current calls; an edge that stops is
  forgotten at once.
* With the SQLite backend the fleet scope is refused with 409, the node scope still answers.
"""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.error
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sipedge.sipd.fleet import FleetStats
from sipedge.store import AttemptRecord, CallRecord, migrate_databases, open_cdr_store
from tests.conftest import Sipd, free_port, gateway, make_config, start_sipd
from tests.pg import PgCluster, fresh_database, throwaway_cluster, wait_until
from tests.sipp.harness import Sipp

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

TOKEN = "admin-" + "f" * 40
WINDOWS = ("5m", "1h", "24h")


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    yield from throwaway_cluster()


@pytest.fixture
def database(cluster: PgCluster) -> str:
    return fresh_database(cluster)


def start_edge(
    cluster: PgCluster, database: str, tmp_path: Path, node: str, reject: int, answer: int
) -> Sipd:
    directory = tmp_path / node
    directory.mkdir()
    settings = cluster.settings(database, node=node)
    config = make_config(
        directory,
        free_port(),
        free_port(socket.SOCK_STREAM),
        [gateway("gw-reject", reject), gateway("gw-answer", answer)],
        routes=[
            {"prefix": "", "gateways": ["gw-reject", "gw-answer"]},
            {"prefix": "99", "gateways": ["gw-reject"]},  # nowhere to fail over to
        ],
        api={"token": TOKEN},
    )
    config["node"] = {"name": node}
    config["storage"].update(
        backend="postgresql",
        dsn=settings.dsn,
        password_file=str(settings.password_file),
        pool_size=2,
    )
    return start_sipd(directory, config, name=node)


def place(sipd: Sipd, calls: int, failing: int) -> None:
    """`calls` answered after a failover, then `failing` calls refused with 503."""
    if calls:
        callers = Sipp(
            "uac_basic",
            port=free_port(),
            remote=sipd.sip_target,
            calls=calls,
            rate=5,
            timeout=40,
            service="4420001",
            keys={"hold": "500"},
        )
        callers.start()
        result = callers.wait(45)
        assert result.returncode == 0 and result.successful == calls, result.describe()
    for _ in range(failing):
        fail = Sipp(
            "uac_expect_fail",
            port=free_port(),
            remote=sipd.sip_target,
            calls=1,
            timeout=30,
            service="99123",
            keys={"expect_code": "503"},
        )
        fail.start()
        assert fail.wait(40).returncode == 0, sipd.log()


def fleet_view(sipd: Sipd) -> Any:
    try:
        return sipd.api("/api/gateways/stats?scope=fleet")
    except urllib.error.HTTPError as err:
        raise AssertionError(f"{err.code} {err.read()!r}\n{sipd.log()[-3000:]}") from err


def summed(views: list[dict[str, Any]], kind: str, gw: str, window: str) -> dict[str, Any]:
    """Two edges' own windows of one gateway added up (averages weighted by their counts)."""
    parts = [v[f"{kind}_gateways"][gw]["windows"][window] for v in views]
    reasons: dict[str, int] = {}
    for p in parts:
        for reason, n in p["switch_reasons"].items():
            reasons[reason] = reasons.get(reason, 0) + n
    return {
        "attempts": sum(p["attempts"] for p in parts),
        "answered": sum(p["answered"] for p in parts),
        "switch_reasons": reasons,
    }


@pytest.mark.sipp
def test_the_fleet_view_is_the_sum_of_two_edges_views(
    cluster: PgCluster, database: str, tmp_path: Path
) -> None:
    reject_port, answer_port = free_port(), free_port()
    plan = {"edge-a": (3, 0), "edge-b": (2, 1)}  # answered calls, refused calls
    answered = sum(a for a, _ in plan.values())
    attempts_to_reject = sum(a + f for a, f in plan.values())
    migrate_databases(tmp_path / "setup", cluster.settings(database))
    edges: list[Sipd] = []
    rejecting = Sipp("uas_reject", port=reject_port, calls=attempts_to_reject, timeout=90,
                     keys={"code": "503"})  # fmt: skip
    answering = Sipp("uas_answer", port=answer_port, calls=answered, timeout=90,
                     keys={"ring": "200"})  # fmt: skip
    try:
        with rejecting, answering:
            for node in plan:
                edges.append(
                    start_edge(cluster, database, tmp_path, node, reject_port, answer_port)
                )
            for sipd, (calls, failing) in zip(edges, plan.values(), strict=True):
                place(sipd, calls, failing)
            assert answering.wait(20).returncode == 0
            assert rejecting.wait(20).returncode == 0
        for sipd, (calls, failing) in zip(edges, plan.values(), strict=True):
            wait_until(
                lambda s=sipd, n=calls + failing: s.metrics().get("sipedge_cdr_shipped_total") == n,
                20,
                "the edge's CDRs on the server",
            )
        # every call has ended: once both edges have published since, none is in progress
        wait_until(lambda: currents(fleet_view(edges[0])) == {0}, 20, "no call in progress")
        own = [sipd.api("/api/gateways/stats") for sipd in edges]
        fleet = [fleet_view(sipd) for sipd in edges]
        metrics = edges[0].metrics()
    finally:
        for sipd in edges:
            sipd.stop()

    assert fleet[0] == fleet[1]  # either edge sees the whole fleet
    view = fleet[0]
    assert view["scope"] == "fleet" and view["nodes"] == ["edge-a", "edge-b"]
    assert view["truncated"] is False
    assert own[0]["routing_gateways"]["gw-reject"]["windows"]["5m"]["attempts"] == 3
    for window in WINDOWS:
        for kind, gw in (("routing", "gw-reject"), ("routing", "gw-answer"),
                         ("mapping", "test-caller")):  # fmt: skip
            got = view[f"{kind}_gateways"][gw]["windows"][window]
            want = summed(own, kind, gw, window)
            assert {k: got[k] for k in want} == want, (kind, gw, window, got, want)
        reject = view["routing_gateways"]["gw-reject"]["windows"][window]
        assert (reject["attempts"], reject["asr"]) == (attempts_to_reject, 0.0)
        assert reject["switch_reasons"] == {"5xx": attempts_to_reject}
        assert reject["pdd_seconds"] is None and reject["acd_seconds"] is None
        answer = view["routing_gateways"]["gw-answer"]["windows"][window]
        assert (answer["attempts"], answer["answered"], answer["asr"]) == (answered, answered, 1.0)
        # the same calls measured by the edges in memory: PDD and ACD agree
        for key in ("pdd_seconds", "acd_seconds"):
            mean = (
                sum(
                    v["routing_gateways"]["gw-answer"]["windows"][window][key]
                    * v["routing_gateways"]["gw-answer"]["windows"][window]["answered"]
                    for v in own
                )
                / answered
            )
            assert answer[key] == pytest.approx(mean, abs=0.01), key
        caller = view["mapping_gateways"]["test-caller"]["windows"][window]
        assert (caller["attempts"], caller["answered"]) == (answered + 1, answered)
        assert caller["switch_reasons"] == {"no-more-gateways": 1}
        assert 0 < caller["pdd_seconds"] < 2
    assert metrics["sipedge_fleet_stats_queries_total"] >= 2
    assert metrics["sipedge_fleet_calls_published_total"] >= 1


def currents(view: dict[str, Any]) -> set[object]:
    """Every gateway's current_calls in a fleet view."""
    return {
        g["current_calls"]
        for group in ("routing_gateways", "mapping_gateways")
        for g in view[group].values()
    }


def live(view: dict[str, Any]) -> tuple[object, object, object]:
    """(gw-answer, gw-reject, test-caller) calls in progress in a fleet view."""
    routing, mapping = view["routing_gateways"], view["mapping_gateways"]
    return (
        routing["gw-answer"]["current_calls"],
        routing["gw-reject"]["current_calls"],
        mapping["test-caller"]["current_calls"],
    )


@pytest.mark.sipp
def test_the_fleet_counts_every_edges_calls_in_progress_and_forgets_a_stopped_edge(
    cluster: PgCluster, database: str, tmp_path: Path
) -> None:
    """Calls held up on two edges (2 on edge-a, 1 on edge-b) are the fleet's current calls
    (published by each edge every 5 s); edge-b stops cleanly: its row goes at once; the calls
    end: the count goes back to 0."""
    reject_port, answer_port = free_port(), free_port()
    plan = {"edge-a": 2, "edge-b": 1}
    migrate_databases(tmp_path / "setup", cluster.settings(database))
    edges: dict[str, Sipd] = {}
    answering = Sipp("uas_answer", port=answer_port, calls=sum(plan.values()), timeout=90)
    callers: list[Sipp] = []
    try:
        with answering:
            for node, calls in plan.items():
                sipd = edges[node] = start_edge(
                    cluster, database, tmp_path, node, reject_port, answer_port
                )
                callers.append(
                    Sipp(
                        "uac_basic",
                        port=free_port(),
                        remote=sipd.sip_target,
                        calls=calls,
                        rate=10,
                        timeout=60,
                        service="4420001",
                        keys={"hold": "25000"},  # ms: long enough to be seen, then stopped
                    )
                )
                callers[-1].start()
            wait_until(
                lambda: live(fleet_view(edges["edge-a"])) == (3, 0, 3), 30, "3 calls in progress"
            )
            assert live(fleet_view(edges["edge-b"])) == (3, 0, 3)  # either edge sees them
            own_a = edges["edge-a"].api("/api/gateways/stats")["routing_gateways"]
            assert own_a["gw-answer"]["current_calls"] == 2
            edges.pop("edge-b").stop()  # ends its call, withdraws its row
            assert live(fleet_view(edges["edge-a"])) == (2, 0, 2)
            for caller in callers[:1]:
                result = caller.wait(50)
                assert result.returncode == 0 and result.successful == 2, result.describe()
            wait_until(
                lambda: live(fleet_view(edges["edge-a"])) == (0, 0, 0), 20, "no call in progress"
            )
    finally:
        for caller in callers:
            caller.stop()
        for sipd in edges.values():
            sipd.stop()


def cdr(
    end: float,
    mapping: str | None,
    attempts: list[AttemptRecord],
    answered: bool,
    stop: str = "",
    duration: float = 0.0,
) -> CallRecord:
    setup = end - duration - 2
    winner = next((a.gateway for a in attempts if a.result == "answered"), None)
    return CallRecord(
        call_id=uuid.uuid4().hex,
        caller="1001",
        callee="2002",
        source="127.0.0.1:5060",
        mapping_gateway=mapping,
        setup_time=setup,
        answer_time=end - duration if answered else None,
        end_time=end,
        release_side="caller",
        cause="normal" if answered else "failed",
        final_status=200 if answered else 503,
        routing_gateway=winner,
        switch_stop_reason=stop,
        attempts=attempts,
    )


def attempt(
    gateway: str, start: float, result: str, status: int | None, pdd: float | None = None
) -> AttemptRecord:
    return AttemptRecord(
        gateway,
        start,
        start + 1,
        result,
        status,
        progress=None if pdd is None else start + pdd,
        pdd=pdd,
    )


def test_windows_reasons_pdd_and_acd_from_known_cdrs(
    cluster: PgCluster, database: str, tmp_path: Path
) -> None:
    now = time.time()
    t = now - 60  # a minute ago: in every window
    old = now - 2 * 3600  # two hours ago: in the 24 h window only
    written = {
        "edge-a": [
            cdr(t, "pbx", [attempt("gw-a", t - 10, "503", 503),
                           attempt("gw-b", t - 8, "answered", 200, 0.4)],
                answered=True, stop="answered", duration=60),
            cdr(t, "pbx", [attempt("gw-a", t - 5, "answered", 200, 0.2)],
                answered=True, stop="answered", duration=30),
        ],
        "edge-b": [
            cdr(t, "pbx", [attempt("gw-a", t - 20, "timeout: ringing", None, 1.0)],
                answered=False, stop="no more gateways"),
            cdr(old, "pbx", [attempt("gw-a", old - 110, "answered", 200, 0.1)],
                answered=True, stop="answered", duration=100),
            cdr(t, "pbx", [attempt("gw-b", t - 3, "dns-failure: gw-b.example: NXDOMAIN", None),
                           attempt("not-configured", t - 2, "answered", 200, 0.3)],
                answered=True, stop="answered", duration=5),
            cdr(t, "elsewhere", [attempt("gw-a", t - 4, "486", 486)],
                answered=False, stop="user busy"),
        ],
    }  # fmt: skip
    migrate_databases(tmp_path / "setup", cluster.settings(database))
    for node, records in written.items():
        store = open_cdr_store(tmp_path / node, postgres=cluster.settings(database, node=node))
        for record in records:
            store.write(record)
        store.close()  # ships what the spool holds
    assert cluster.psql("SELECT count(*) FROM cdr", database) == "6"

    # calls in progress: edge-b's fresh row counts; a stale row, an oversized one and one
    # nested too deep to parse do not (nor break the answer)
    deep = "[" * 2000 + "]" * 2000
    pad = "x" * 70000
    cluster.psql(
        "INSERT INTO node_calls VALUES"
        f' (\'edge-b\', \'{{"routing": {{"gw-a": 2}}, "mapping": {{"pbx": 2}}}}\', {now}),'
        f" ('edge-old', '{{\"routing\": {{\"gw-a\": 50}}}}', {now - 60}),"
        f' (\'edge-big\', \'{{"routing": {{"gw-a": 7}}, "pad": "{pad}"}}\', {now}),'
        f" ('edge-deep', '{{\"routing\": {deep}}}', {now})",
        database,
    )
    fleet = FleetStats(cluster.settings(database, node="edge-a"))
    try:

        async def publish_then_ask() -> dict[str, Any]:
            await fleet.publish({"routing": {"gw-a": 1, "gw-b": 0}, "mapping": {"pbx": 1}})
            assert fleet._publishing is not None
            await asyncio.wrap_future(fleet._publishing)
            return await fleet.snapshot(["gw-a", "gw-b"], ["pbx"])

        view = asyncio.run(publish_then_ask())
    finally:
        fleet.close()
    assert cluster.psql("SELECT count(*) FROM node_calls WHERE node = 'edge-a'", database) == "0"
    assert view["routing_gateways"]["gw-a"]["current_calls"] == 3
    assert view["routing_gateways"]["gw-b"]["current_calls"] == 0
    assert view["mapping_gateways"]["pbx"]["current_calls"] == 3
    assert view["nodes"] == ["edge-a", "edge-b"]
    routing, mapping = view["routing_gateways"], view["mapping_gateways"]
    assert set(routing) == {"gw-a", "gw-b"} and set(mapping) == {"pbx"}
    for window in ("5m", "1h"):
        a = routing["gw-a"]["windows"][window]
        assert (a["attempts"], a["answered"]) == (4, 1)  # 503, answered, timeout, 486
        assert a["asr"] == pytest.approx(0.25)
        assert a["switch_reasons"] == {"5xx": 1, "4xx": 1, "timeout-ringing": 1}
        assert a["pdd_seconds"] == pytest.approx((0.2 + 1.0) / 2)
        assert a["acd_seconds"] == pytest.approx(30)
        b = routing["gw-b"]["windows"][window]
        assert (b["attempts"], b["answered"]) == (2, 1)
        assert b["switch_reasons"] == {"dns-failure": 1}
        assert b["pdd_seconds"] == pytest.approx(0.4)
        assert b["acd_seconds"] == pytest.approx(60)
        p = mapping["pbx"]["windows"][window]
        assert (p["attempts"], p["answered"]) == (4, 3)
        assert p["switch_reasons"] == {"no-more-gateways": 1}
        assert p["acd_seconds"] == pytest.approx((60 + 30 + 5) / 3)
    day = routing["gw-a"]["windows"]["24h"]
    assert (day["attempts"], day["answered"]) == (5, 2)
    assert day["acd_seconds"] == pytest.approx((30 + 100) / 2)
    assert day["pdd_seconds"] == pytest.approx((0.2 + 1.0 + 0.1) / 3)
    assert mapping["pbx"]["windows"]["24h"]["attempts"] == 5
    # the caller's PDD: its INVITE to the first 18x/2xx of any attempt, recent calls only
    pdds = [
        min(a.progress for a in r.attempts if a.progress is not None) - r.setup_time
        for records in written.values()
        for r in records
        if r.mapping_gateway == "pbx"
        and r.end_time > now - 300
        and any(a.progress is not None for a in r.attempts)
    ]
    assert len(pdds) == 4
    assert mapping["pbx"]["windows"]["5m"]["pdd_seconds"] == pytest.approx(sum(pdds) / 4)


def test_the_fleet_scope_is_refused_with_sqlite(sipd_factory: Any) -> None:
    sipd = sipd_factory([gateway("gw1", free_port())], api={"token": TOKEN})
    with pytest.raises(urllib.error.HTTPError) as refused:
        sipd.api("/api/gateways/stats?scope=fleet")
    assert refused.value.code == 409
    assert b"storage.backend postgresql" in refused.value.read()
    assert "gw1" in sipd.api("/api/gateways/stats?scope=node")["routing_gateways"]
