"""The calls code reports to the carrier statistics: a real `CarrierStats` on the B2BUA of
tests/unit/test_session_timer_call.py (in process, fake clock, no sockets), fed by SIP
messages: an answered call, a gateway that never answers, a caller that cancels while it
rings, a gateway that refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sipedge.sip.dialog import uas_dialog
from sipedge.sip.message import Request
from sipedge.sip.transaction import build_cancel
from sipedge.stats import CarrierStats
from tests.unit.test_session_timer_call import CALLER, GW, Edge, caller_ack, caller_invite

ALLOW = "INVITE, ACK, BYE, CANCEL"


def edge_with_stats(tmp: Path) -> tuple[Edge, CarrierStats]:
    edge = Edge(tmp)
    stats = CarrierStats(lambda: edge.clock.now)
    stats.configure(["gw1"], ["test-caller"])
    edge.b2bua.carriers = stats
    return edge, stats


def gateway_stats(stats: CarrierStats, kind: str, name: str) -> dict[str, Any]:
    gateways = stats.snapshot()[f"{kind}_gateways"]
    assert isinstance(gateways, dict)
    return gateways[name]  # type: ignore[no-any-return]


def gateway_bye(edge: Edge, invite: Request) -> None:
    """The gateway hangs up the call it answered with tag peer-tag (Edge.answer)."""
    dialog = uas_dialog(invite, "peer-tag", CALLER)
    edge.feed(dialog.request("BYE", *GW), GW)


def caller_cancel(edge: Edge) -> None:
    edge.feed(build_cancel(caller_invite(ALLOW)), CALLER)


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path


def test_an_answered_call_counts_once_and_its_duration_at_the_end(tmp: Path) -> None:
    edge, stats = edge_with_stats(tmp)
    edge.feed(caller_invite(ALLOW), CALLER)
    assert gateway_stats(stats, "routing", "gw1")["current_calls"] == 1  # INVITE out
    assert gateway_stats(stats, "mapping", "test-caller")["current_calls"] == 1
    invite = edge.requests("INVITE", GW)[0]
    edge.answer(invite, 100, GW)
    edge.answer(invite, 180, GW)
    edge.clock.advance(2)
    edge.answer(invite, 200, GW)
    caller_ack(edge)
    gw = gateway_stats(stats, "routing", "gw1")
    window = gw["windows"]["5m"]
    assert (window["attempts"], window["answered"], window["asr"]) == (1, 1, 1.0)
    assert window["pdd_seconds"] is not None and 0 <= window["pdd_seconds"] < 1  # the 180
    assert window["acd_seconds"] is None and gw["current_calls"] == 1
    caller = gateway_stats(stats, "mapping", "test-caller")["windows"]["5m"]
    assert (caller["attempts"], caller["answered"]) == (1, 1)
    edge.clock.advance(30)
    gateway_bye(edge, invite)
    assert not edge.b2bua.calls
    for kind, name in (("routing", "gw1"), ("mapping", "test-caller")):
        g = gateway_stats(stats, kind, name)
        assert g["current_calls"] == 0
        assert g["windows"]["1h"]["acd_seconds"] is not None  # wall-clock duration, ~0 here
        assert g["windows"]["1h"]["attempts"] == 1  # the end adds no attempt


def test_a_silent_gateway_times_out(tmp: Path) -> None:
    edge, stats = edge_with_stats(tmp)
    edge.feed(caller_invite(ALLOW), CALLER)
    edge.clock.advance(120)  # every switching timer and Timer B are shorter
    assert not edge.b2bua.calls
    window = gateway_stats(stats, "routing", "gw1")["windows"]["5m"]
    assert (window["attempts"], window["answered"], window["asr"]) == (1, 0, 0.0)
    assert window["switch_reasons"] == {"timeout-invite": 1}
    assert window["pdd_seconds"] is None
    caller = gateway_stats(stats, "mapping", "test-caller")
    assert caller["windows"]["5m"]["switch_reasons"] == {"no-more-gateways": 1}
    assert caller["current_calls"] == 0
    assert gateway_stats(stats, "routing", "gw1")["current_calls"] == 0


def test_a_caller_that_cancels_while_it_rings(tmp: Path) -> None:
    edge, stats = edge_with_stats(tmp)
    edge.feed(caller_invite(ALLOW), CALLER)
    invite = edge.requests("INVITE", GW)[0]
    edge.answer(invite, 180, GW)
    caller_cancel(edge)
    assert edge.responses(487, CALLER)
    window = gateway_stats(stats, "routing", "gw1")["windows"]["5m"]
    assert window["switch_reasons"] == {"caller-cancelled": 1}
    assert window["pdd_seconds"] is not None  # it rang
    caller = gateway_stats(stats, "mapping", "test-caller")["windows"]["5m"]
    assert caller["switch_reasons"] == {"caller-cancelled": 1}
    assert caller["pdd_seconds"] is not None
    assert gateway_stats(stats, "routing", "gw1")["current_calls"] == 0


@pytest.mark.parametrize(("status", "reason"), [(503, "5xx"), (486, "4xx"), (603, "6xx")])
def test_a_refusing_gateway(tmp: Path, status: int, reason: str) -> None:
    edge, stats = edge_with_stats(tmp)
    edge.feed(caller_invite(ALLOW), CALLER)
    edge.answer(edge.requests("INVITE", GW)[0], status, GW)
    assert edge.responses(status, CALLER)
    window = gateway_stats(stats, "routing", "gw1")["windows"]["24h"]
    assert (window["attempts"], window["answered"], window["switch_reasons"]) == (
        1,
        0,
        {reason: 1},
    )
