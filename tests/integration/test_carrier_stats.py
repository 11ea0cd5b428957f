"""Carrier statistics end to end: SIPp callers -> sipedge-sipd -> two SIPp gateways, one that
refuses every call with 503 and one that answers, so that every call fails over. The API
(`/api/gateways/stats`) and `/metrics` must show each gateway's attempts, answers and ASR, and
the mapping gateway's, as the calls made them (docs/monitoring.md)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.conftest import free_port, gateway
from tests.sipp.harness import Sipp

pytestmark = [pytest.mark.sipp, pytest.mark.slow]

CALLS = 4  # fail over from gw-reject to gw-answer, then answered
HOLD_MS = 600
_SAMPLE = re.compile(r"^(\w+)\{(.*)\} (\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of metric `name` in an exposition text, by their sorted labels."""
    out = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and m.group(1) == name:
            out[tuple(sorted(_LABEL.findall(m.group(2))))] = float(m.group(3))
    return out


def labels(kind: str, gw: str, window: str = "5m") -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"kind": kind, "gateway": gw, "window": window}.items()))


def test_failover_shows_in_the_api_and_the_metrics(sipd_factory: Any) -> None:
    reject_port, answer_port = free_port(), free_port()
    sipd = sipd_factory(
        [gateway("gw-reject", reject_port), gateway("gw-answer", answer_port)],
        routes=[
            {"prefix": "", "gateways": ["gw-reject", "gw-answer"]},
            {"prefix": "99", "gateways": ["gw-reject"]},  # nowhere to fail over to
        ],
        api={"token": "admin-" + "t" * 40},
    )
    before = sipd.api("/api/gateways/stats")
    assert before["routing_gateways"]["gw-reject"]["windows"]["5m"]["attempts"] == 0
    assert before["routing_gateways"]["gw-answer"]["windows"]["5m"]["asr"] is None
    rejecting = Sipp(
        "uas_reject", port=reject_port, calls=CALLS + 1, timeout=60, keys={"code": "503"}
    )
    answering = Sipp("uas_answer", port=answer_port, calls=CALLS, timeout=60, keys={"ring": "200"})
    with rejecting, answering:
        callers = Sipp(
            "uac_basic",
            port=free_port(),
            remote=sipd.sip_target,
            calls=CALLS,
            rate=4,
            timeout=60,
            service="4420001",
            keys={"hold": str(HOLD_MS)},
        )
        callers.start()
        result = callers.wait(60)
        assert result.returncode == 0 and result.successful == CALLS, result.stdout + sipd.log()
        failing = Sipp(
            "uac_expect_fail",
            port=free_port(),
            remote=sipd.sip_target,
            calls=1,
            timeout=30,
            service="99123",
            keys={"expect_code": "503"},
        )
        failing.start()
        failed = failing.wait(40)
        assert failed.returncode == 0, failed.stdout + sipd.log()
        assert answering.wait(20).returncode == 0
        assert rejecting.wait(20).returncode == 0
    assert len(sipd.cdrs(wait_for=CALLS + 1)) == CALLS + 1

    stats = sipd.api("/api/gateways/stats")
    routing, mapping = stats["routing_gateways"], stats["mapping_gateways"]
    for window in ("5m", "1h", "24h"):
        reject = routing["gw-reject"]["windows"][window]
        assert (reject["attempts"], reject["answered"], reject["asr"]) == (CALLS + 1, 0, 0.0)
        assert reject["switch_reasons"] == {"5xx": CALLS + 1}
        assert reject["acd_seconds"] is None
        assert reject["pdd_seconds"] is None  # a 100 and a 503: no 18x/2xx, no PDD
        answer = routing["gw-answer"]["windows"][window]
        assert (answer["attempts"], answer["answered"], answer["asr"]) == (CALLS, CALLS, 1.0)
        assert answer["switch_reasons"] == {}
        assert 0 < answer["pdd_seconds"] < 2  # INVITE -> 180
        assert HOLD_MS / 1000 * 0.9 < answer["acd_seconds"] < HOLD_MS / 1000 + 2
        caller = mapping["test-caller"]["windows"][window]
        assert (caller["attempts"], caller["answered"]) == (CALLS + 1, CALLS)
        assert caller["asr"] == pytest.approx(CALLS / (CALLS + 1))
        assert caller["switch_reasons"] == {"no-more-gateways": 1}
    for kind, group in (("routing", routing), ("mapping", mapping)):
        assert all(g["current_calls"] == 0 for g in group.values()), (kind, group)

    text = sipd.api("/metrics")
    asr = samples(text, "sipedge_carrier_asr")
    assert asr[labels("routing", "gw-reject")] == 0.0
    assert asr[labels("routing", "gw-answer")] == 1.0
    assert asr[labels("mapping", "test-caller", "24h")] == pytest.approx(CALLS / (CALLS + 1))
    attempts = samples(text, "sipedge_carrier_attempts")
    assert attempts[labels("routing", "gw-reject", "1h")] == CALLS + 1
    assert samples(text, "sipedge_carrier_answered")[labels("routing", "gw-answer")] == CALLS
    reasons = samples(text, "sipedge_carrier_switch_reasons")
    key = tuple(sorted((*labels("routing", "gw-reject"), ("reason", "5xx"))))
    assert reasons[key] == CALLS + 1
    assert labels("routing", "gw-answer") in samples(text, "sipedge_carrier_acd_seconds")
    assert labels("routing", "gw-reject") not in samples(text, "sipedge_carrier_acd_seconds")
    current = samples(text, "sipedge_carrier_current_calls")
    assert current == {
        (("gateway", "gw-answer"), ("kind", "routing")): 0.0,
        (("gateway", "gw-reject"), ("kind", "routing")): 0.0,
        (("gateway", "test-caller"), ("kind", "mapping")): 0.0,
    }


def test_a_reload_that_removes_a_gateway_drops_its_labels(sipd_factory: Any) -> None:
    p1, p2 = free_port(), free_port()
    sipd = sipd_factory([gateway("gw1", p1), gateway("gw2", p2)])
    assert 'gateway="gw2"' in sipd.api("/metrics")
    config = yaml.safe_load(sipd.config_path.read_text())
    config["routing_gateways"] = [g for g in config["routing_gateways"] if g["name"] == "gw1"]
    config["routes"] = [{"prefix": "", "gateways": ["gw1"]}]
    sipd.rewrite_config(config)
    assert sipd.api("/api/config/reload", method="POST")["ok"]
    stats = sipd.api("/api/gateways/stats")
    assert set(stats["routing_gateways"]) == {"gw1"}
    assert 'gateway="gw2"' not in sipd.api("/metrics")
