"""Shared registrations (docs/fleet.md): which edge a call goes through (registrar/fleet.py,
pure), the registrar's routing and admission with a fleet view, and the `fleet:` section.

The end-to-end check with two sipd edges and a real PostgreSQL: tests/integration/test_fleet.py.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest
import yaml

from sipedge.config import check_config_main, parse_config
from sipedge.registrar.fleet import FLEET_PREFIX, choose, relay_allowed, relay_uri
from sipedge.registrar.service import EndpointService
from sipedge.sip.message import Request, parse_message
from sipedge.store import Binding, RemoteBinding
from tests.unit.test_config import one_problem
from tests.unit.test_config_api import section
from tests.unit.test_registrar import Clock, FakeTx

NOW = 1_000_000.0
DSN = "postgresql://sipedge@db.example.net/sipedge"


def row(node: str = "edge-a", host: str = "10.0.0.1", **kw: Any) -> RemoteBinding:
    values: dict[str, Any] = {
        "node": node,
        "account": "alice",
        "contact": "sip:alice@192.168.1.5:5060",
        "expires_at": NOW + 60,
        "registered_at": NOW - 10,
        "node_host": host,
        "node_port": 5060,
        "node_seen_at": NOW - 1,
    }
    values.update(kw)
    return RemoteBinding(**values)


def peer(address: str) -> bool:
    return address.startswith("10.0.0.")


# -- the choice --------------------------------------------------------------------------------


def test_the_binding_registered_last_on_a_live_peer_wins() -> None:
    older, newer = row("edge-a", registered_at=NOW - 100), row("edge-c", registered_at=NOW - 5)
    choice = choose([older, newer], NOW, 10, peer)
    assert choice.binding == newer and choice.outcome == "relayed"


@pytest.mark.parametrize(
    ("rows", "outcome"),
    [
        ([], "not_registered"),
        ([row(expires_at=NOW)], "not_registered"),  # expired at this very second
        ([row(node_seen_at=NOW - 10.5)], "node_down"),
        ([row(host="203.0.113.9")], "not_peer"),  # a row must not send calls elsewhere
        ([row(node_port=0)], "not_peer"),
        ([row(host="not-an-address")], "not_peer"),
        ([row(host="203.0.113.9"), row(node_seen_at=NOW - 60)], "not_peer"),
        ([row(node_seen_at=NOW - 60), row(host="203.0.113.9")], "not_peer"),
    ],
)
def test_no_binding_and_why(rows: list[RemoteBinding], outcome: str) -> None:
    choice = choose(rows, NOW, 10, peer)
    assert choice.binding is None and choice.outcome == outcome


def test_a_down_edge_is_passed_over_for_a_live_one() -> None:
    down = row("edge-a", node_seen_at=NOW - 30, registered_at=NOW)
    live = row("edge-c", host="10.0.0.3", registered_at=NOW - 50)
    assert choose([down, live], NOW, 10, peer).binding == live


def test_relay_uri_and_one_hop() -> None:
    assert relay_uri("alice", row(node_port=5070)) == "sip:alice@10.0.0.1:5070"
    assert relay_uri("bob", row(host="fd00::1")) == "sip:bob@[fd00::1]:5060"
    assert relay_allowed(None) and relay_allowed("customer-a") and relay_allowed("endpoint:x")
    assert not relay_allowed(FLEET_PREFIX + "10.0.0.2")


# -- the registrar with a fleet view -----------------------------------------------------------


class StaticFleet:
    """A `FleetView` holding rows given to it (what a refresh would have read)."""

    def __init__(self, rows: list[RemoteBinding]) -> None:
        self.rows, self.up, self.failures, self.closed = rows, True, 0, False

    def refresh(self, now: float, accounts: Collection[str]) -> bool:
        return False

    def lookup(self, account: str) -> list[RemoteBinding]:
        return [r for r in self.rows if r.account == account]

    def size(self) -> int:
        return len(self.rows)

    def close(self) -> None:
        self.closed = True


def fleet_config() -> Any:
    return parse_config(
        {
            "node": {"name": "edge-b"},
            "storage": {"backend": "postgresql", "dsn": DSN},
            "fleet": {"address": "10.0.0.2", "peers": ["10.0.0.0/24"], "node_timeout": 10},
            "endpoints": [
                {"account": "alice", "password": "secret"},
                {"account": "bob", "password": "pw"},
            ],
        }
    )


def edge(rows: list[RemoteBinding]) -> tuple[EndpointService, Clock]:
    clock = Clock()
    clock.now = NOW
    return EndpointService(fleet_config(), None, clock=clock, fleet=StaticFleet(rows)), clock


def test_an_account_registered_on_another_edge_goes_to_that_edge() -> None:
    svc, _ = edge([row("edge-a", node_port=5070)])
    found = svc.route("alice", "customer-a")
    assert not isinstance(found, int) and found is not None
    target, _policy = found
    assert (target.name, target.address, target.port) == ("endpoint:alice@edge-a", "10.0.0.1", 5070)
    assert target.request_uri == "sip:alice@10.0.0.1:5070" and target.flow is None
    assert svc.route("bob", "customer-a") == 480  # registered nowhere
    assert svc.route("carol", "customer-a") is None  # no account: the routes decide
    assert svc.stats.fleet["relayed"] == 1 and svc.stats.fleet["not_registered"] == 1


def test_our_own_binding_comes_first() -> None:
    svc, clock = edge([row("edge-a")])
    svc.table.bindings["alice"] = Binding(
        "alice", "sip:alice@192.168.9.9:5062", ("198.51.100.7", 40000), True,
        clock.now + 60, "c1", 1, clock.now,
    )  # fmt: skip
    found = svc.route("alice")
    assert not isinstance(found, int) and found is not None
    assert (found[0].name, found[0].address) == ("endpoint:alice", "198.51.100.7")
    assert svc.stats.fleet["local"] == 1


def test_a_call_a_peer_relayed_goes_to_our_bindings_only() -> None:
    svc, _ = edge([row("edge-a")])
    relayed = FLEET_PREFIX + "10.0.0.3"
    assert svc.route("alice", relayed) == 480  # not here: never on to edge-a (one hop)
    assert svc.route("carol", relayed) == 404  # no account: never to our gateways
    assert svc.stats.fleet["relayed"] == 0


def test_a_stale_edge_gets_480_and_is_counted() -> None:
    svc, clock = edge([row("edge-a")])
    clock.now = NOW + 30  # edge-a's heartbeat is now 31 s old
    assert svc.route("alice") == 480
    assert svc.stats.fleet["node_down"] == 1


def invite(source: str) -> FakeTx:
    text = (
        "INVITE sip:alice@10.0.0.2:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {source}:5060;branch=z9hG4bK1\r\n"
        "From: <sip:4420@edge-a>;tag=1\r\nTo: <sip:alice@10.0.0.2>\r\n"
        "Call-ID: x1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    request = parse_message(text.encode())
    assert isinstance(request, Request)
    return FakeTx(request, (source, 5060))


def test_only_a_configured_peer_is_admitted_as_the_fleet() -> None:
    svc, _ = edge([])
    tx = invite("10.0.0.1")
    assert svc.admit(tx) == "fleet:10.0.0.1" and tx.answers == []  # type: ignore[arg-type]
    assert svc.is_fleet_peer("10.0.0.1") and not svc.is_fleet_peer("10.0.1.1")
    stranger = invite("203.0.113.5")
    assert svc.admit(stranger) == ""  # type: ignore[arg-type]  # an endpoint's 407
    assert stranger.answers[0][1].status == 407
    assert svc.stats.fleet["relayed_in"] == 1
    # without a fleet view (fleet.address unset) nobody is a peer
    plain = EndpointService(fleet_config(), None)
    assert not plain.is_fleet_peer("10.0.0.1")


# -- the fleet: section --------------------------------------------------------------------------


def fleet_data(**keys: Any) -> dict[str, Any]:
    data = section("storage", backend="postgresql", dsn=DSN)
    data["fleet"] = {"address": "10.0.0.2", "peers": ["10.0.0.0/24"], **keys}
    return data


def test_fleet_defaults_off_and_keys() -> None:
    assert not parse_config({}).fleet.enabled
    fleet = parse_config(fleet_data(port=5070, node_timeout=30)).fleet
    assert fleet.enabled and fleet.address == "10.0.0.2" and fleet.port == 5070
    assert [str(p) for p in fleet.peers] == ["10.0.0.0/24"] and fleet.node_timeout == 30


@pytest.mark.parametrize(
    ("keys", "path", "allowed"),
    [
        ({"address": "edge-a.example"}, "fleet.address", "unicast IP address"),
        ({"address": "0.0.0.0"}, "fleet.address", "unicast IP address"),
        ({"peers": []}, "fleet.peers", "the other edges' addresses"),
        ({"peers": ["10.0.0.1/24"]}, "fleet.peers[0]", "CIDR network"),
        ({"node_timeout": 1}, "fleet.node_timeout", "3-3600"),
        ({"port": 0}, "fleet.port", "null or 1-65535"),
        ({"peers": ["198.51.100.7"]}, "fleet.peers[0]", "mapping gateway customer-a"),
        ({"relay": True}, "fleet.relay", "one of"),
    ],
)
def test_fleet_problems(keys: dict[str, Any], path: str, allowed: str) -> None:
    problem = one_problem(fleet_data(**keys))
    assert problem.path == path and allowed in problem.allowed, str(problem)


def test_a_fleet_needs_a_shared_database() -> None:
    data = fleet_data()
    data["storage"] = {"path": "/var/lib/sipedge"}
    problem = one_problem(data)
    assert problem.path == "fleet.address" and "postgresql" in problem.allowed


def test_check_config_names_the_fleet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sipedge.yaml"
    path.write_text(yaml.safe_dump(fleet_data()))
    assert check_config_main(str(path)) == 0
    assert "fleet at 10.0.0.2 with 1 peer" in capsys.readouterr().out
