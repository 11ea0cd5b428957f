"""Shared registrations (docs/fleet.md): two sipd edges in their own network namespaces share
one real PostgreSQL; a SIPp phone registers on edge A, a call entering edge B reaches it
through A and completes; with A down, B's attempt fails with a clear CDR and, once A's
heartbeat is stale, calls get 480 at once.

Topology (tests/media/netns.py `Topology`): edge A 10.77.1.2 -- R 10.77.1.1 | 10.77.2.1 --
edge B 10.77.2.2, R forwarding between them. R holds the PostgreSQL server (listening on both
of its addresses), the phone (10.77.1.1, registered on A) and the caller (10.77.2.1, B's
mapping gateway). Every check reads the server with psql.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import BIN, gateway, make_config
from tests.integration.test_nat_keepalive import Proc, ns_get, wait_for
from tests.media.netns import Topology, sh
from tests.pg import PgCluster
from tests.sipp.harness import Sipp

pytestmark = [pytest.mark.root, pytest.mark.postgres, pytest.mark.sipp, pytest.mark.slow]

SIP_PORT, API_PORT = 5060, 18080  # inside each edge's own namespace
PHONE_PORT, CALLER_PORT = 5070, 5080  # the phone's and the caller's, in R
NODE_TIMEOUT = 3


@dataclass
class Fleet:
    topo: Topology
    pg: PgCluster
    database: str
    a: Proc
    b: Proc
    tmp: Path

    def api(self, edge: str, path: str) -> Any:
        ns = self.topo.a if edge == "a" else self.topo.b
        return ns_get(ns, f"http://127.0.0.1:{API_PORT}{path}")

    def metric(self, edge: str, name: str) -> float:
        for line in str(self.api(edge, "/metrics")).splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        return -1.0

    def sql(self, query: str) -> str:
        return self.pg.psql(query, self.database)

    def cdrs(self, node: str) -> list[dict[str, Any]]:
        out = self.sql(
            "SELECT coalesce(json_agg(row_to_json(c) ORDER BY id), '[]') FROM cdr c"
            f" WHERE node = '{node}'"
        )
        rows: list[dict[str, Any]] = json.loads(out)
        return rows

    def logs(self) -> str:
        return f"\n--- edge A ---\n{self.a.log()}\n--- edge B ---\n{self.b.log()}"


def edge_config(tmp: Path, topo: Topology, pg: PgCluster, db: str, edge: str) -> Path:
    me, peer = (topo.a_ip, topo.b_ip) if edge == "a" else (topo.b_ip, topo.a_ip)
    router = topo.ra_ip if edge == "a" else topo.rb_ip
    state = tmp / edge
    state.mkdir()
    config = make_config(
        state, SIP_PORT, API_PORT, [gateway("gw1", 5099, address="192.0.2.99")],
        parameters={"SS_SIP_TIMEOUT_INVITE": 2},
        # B's calls come from the caller in R; A has no caller (an unused documentation address)
        mapping_addresses=[f"{topo.rb_ip}/32" if edge == "b" else "192.0.2.1/32"],
        extra={"endpoints": [{"account": "alice", "password": "secret"}]},
    )  # fmt: skip
    config["node"] = {"name": f"edge-{edge}"}
    config["sip"]["listen"] = [f"udp://{me}:{SIP_PORT}"]
    config["storage"].update(
        backend="postgresql", dsn=pg.dsn(db, router), password_file=str(pg.password_file)
    )
    config["fleet"] = {"address": me, "peers": [f"{peer}/32"], "node_timeout": NODE_TIMEOUT}
    path = state / "sipd.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_edge(tmp: Path, topo: Topology, config: Path, edge: str) -> Proc:
    ns = topo.a if edge == "a" else topo.b
    cmd = ["ip", "netns", "exec", ns, str(BIN / "sipedge-sipd"), "--config", str(config)]
    proc = Proc(cmd, tmp / edge / "sipd.log")
    try:
        wait_for(lambda: bool(ns_get(ns, f"http://127.0.0.1:{API_PORT}/healthz")), 20, edge)
    except AssertionError:
        proc.stop()
        raise AssertionError(f"edge {edge} did not start:\n{proc.log()}") from None
    return proc


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    reason = PgCluster.unavailable()
    if reason is not None:
        print(f"skipped: {reason}")
        pytest.skip(reason)
    topo = Topology.create()
    procs: list[Proc] = []
    pg: PgCluster | None = None
    try:
        sh("ip", "netns", "exec", topo.r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        pg = PgCluster(listen=f"{topo.ra_ip},{topo.rb_ip}", netns=topo.r, clients="10.77.0.0/16")
        database = f"t_{uuid.uuid4().hex[:12]}"
        pg.new_database(database)
        configs = {e: edge_config(tmp_path, topo, pg, database, e) for e in ("a", "b")}
        procs.append(start_edge(tmp_path, topo, configs["a"], "a"))
        procs.append(start_edge(tmp_path, topo, configs["b"], "b"))
        yield Fleet(topo, pg, database, procs[0], procs[1], tmp_path)
    finally:
        for proc in procs:
            proc.stop()
        if pg is not None:
            pg.destroy()
        topo.destroy()


def register_phone_on_a(fleet: Fleet) -> None:
    topo = fleet.topo
    keys = {"contact_host": topo.ra_ip, "contact_port": PHONE_PORT, "expires": 300}
    reg = Sipp("uac_register", local=topo.ra_ip, port=PHONE_PORT, netns=topo.r,
               remote=f"{topo.a_ip}:{SIP_PORT}", timeout=15, keys=keys)  # fmt: skip
    reg.start()
    result = reg.wait(20)
    assert result.returncode == 0, result.describe() + fleet.logs()
    # A writes the binding (0.5 s), B reads the fleet's (1 s)
    wait_for(
        lambda: fleet.metric("b", "sipedge_fleet_remote_bindings") == 1, 10, "B sees the binding"
    )


def call_through_b(fleet: Fleet, scenario: str = "uac_basic", **keys: str) -> Any:
    topo = fleet.topo
    caller = Sipp(scenario, local=topo.rb_ip, port=CALLER_PORT, netns=topo.r,
                  remote=f"{topo.b_ip}:{SIP_PORT}", service="alice", timeout=20,
                  keys=keys or {"hold": "300"})  # fmt: skip
    caller.start()
    return caller.wait(30)


def wait_cdrs(fleet: Fleet, node: str, count: int) -> list[dict[str, Any]]:
    wait_for(lambda: len(fleet.cdrs(node)) >= count, 15, f"{count} CDR(s) of {node}")
    time.sleep(1.5)  # a duplicate would arrive with the next shipment
    return fleet.cdrs(node)


def test_a_phone_registered_on_a_is_called_through_b(fleet: Fleet) -> None:
    topo = fleet.topo
    register_phone_on_a(fleet)
    assert fleet.sql("SELECT node, account FROM bindings") == "edge-a|alice"
    nodes = fleet.sql("SELECT name, sip_host, sip_port FROM nodes ORDER BY name")
    assert nodes.splitlines() == [f"edge-a|{topo.a_ip}|{SIP_PORT}", f"edge-b|{topo.b_ip}|5060"]

    with Sipp("uas_answer", local=topo.ra_ip, port=PHONE_PORT, netns=topo.r, calls=1,
              timeout=40) as phone:  # fmt: skip
        result = call_through_b(fleet)
        phone_result = phone.wait(20)
    assert result.returncode == 0, result.describe() + fleet.logs()
    assert phone_result.returncode == 0, phone_result.describe() + fleet.logs()
    invite = phone_result.received("INVITE")[0]
    # to the contact the phone registered, sent by A (its only Via: A's B2BUA leg)
    assert invite.first_line.startswith(f"INVITE sip:alice@{topo.ra_ip}:{PHONE_PORT} ")
    vias = invite.headers("Via")
    assert len(vias) == 1 and f"UDP {topo.a_ip}:{SIP_PORT};" in vias[0], vias

    call_id = result.sent("INVITE")[0].header("Call-ID")
    entry = wait_cdrs(fleet, "edge-b", 1)
    assert len(entry) == 1, entry  # the call's CDR, once
    cdr = entry[0]
    assert cdr["call_id"] == call_id and cdr["final_status"] == 200
    assert cdr["answer_time"] is not None and cdr["routing_gateway"] == "endpoint:alice@edge-a"
    assert [a["target"] for a in cdr["attempts"]] == [f"{topo.a_ip}:{SIP_PORT}"]
    relay = wait_cdrs(fleet, "edge-a", 1)
    assert len(relay) == 1, relay  # A's relay leg, once, marked as the fleet's
    assert relay[0]["mapping_gateway"] == f"fleet:{topo.b_ip}"
    assert relay[0]["routing_gateway"] == "endpoint:alice" and relay[0]["final_status"] == 200
    assert fleet.metric("b", 'sipedge_fleet_routes_total{result="relayed"}') == 1
    assert fleet.metric("a", 'sipedge_fleet_routes_total{result="relayed_in"}') == 1
    assert fleet.metric("b", "sipedge_fleet_up") == 1

    # A stopped cleanly withdraws itself: B stops sending to it at once (480, no attempt)
    assert fleet.a.stop() == 0
    assert fleet.sql("SELECT name FROM nodes") == "edge-b"
    wait_for(lambda: fleet.metric("b", "sipedge_fleet_remote_bindings") == 0, 10, "B's view")
    refused = call_through_b(fleet, "uac_expect_fail", expect_code="480")
    assert refused.returncode == 0, refused.describe() + fleet.logs()


def test_edge_a_down_fails_the_attempt_then_its_bindings_are_ignored(fleet: Fleet) -> None:
    topo = fleet.topo
    register_phone_on_a(fleet)
    fleet.a.proc.send_signal(signal.SIGKILL)  # a crash: its heartbeat row stays behind
    fleet.a.proc.wait(10)
    # A's heartbeat is still fresh: B tries A, nobody answers, the INVITE times out (2 s)
    started = time.monotonic()
    failed = call_through_b(fleet, "uac_expect_fail", expect_code="408")
    assert failed.returncode == 0, failed.describe() + fleet.logs()
    cdr = wait_cdrs(fleet, "edge-b", 1)[-1]
    assert cdr["final_status"] == 408, cdr
    (attempt,) = cdr["attempts"]
    assert attempt["gateway"] == "endpoint:alice@edge-a", attempt
    assert attempt["target"] == f"{topo.a_ip}:{SIP_PORT}"
    assert attempt["result"] == "timeout: invite", attempt
    assert time.monotonic() - started < NODE_TIMEOUT + 10

    # once A has been silent for node_timeout, B no longer tries it: 480 at once
    time.sleep(NODE_TIMEOUT + 1.5)
    started = time.monotonic()
    refused = call_through_b(fleet, "uac_expect_fail", expect_code="480")
    assert refused.returncode == 0, refused.describe() + fleet.logs()
    assert time.monotonic() - started < 5
    assert fleet.metric("b", 'sipedge_fleet_routes_total{result="node_down"}') == 1
    assert len(fleet.cdrs("edge-b")) == 1  # a 480 before any attempt writes no CDR
