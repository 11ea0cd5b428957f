"""`stats/fleet.fleet_snapshot`: grouped rows (as the PostgreSQL queries return them) folded into
the API body; the real queries are tested against PostgreSQL in
tests/integration/test_fleet_stats.py."""

from __future__ import annotations

from typing import Any

from sipedge.calls.carrier_events import attempt_reason, stop_reason_label
from sipedge.stats.fleet import fleet_snapshot
from sipedge.stats.windows import MAX_REASONS, OTHER


def fold(attempts: list[dict[str, Any]], calls: list[dict[str, Any]]) -> dict[str, Any]:
    return fleet_snapshot(
        ["gw"],
        ["pbx"],
        attempts=attempts,
        routing_durations=[{"gateway": "gw", "duration_sum": [0.0, 90.0, 90.0],
                            "duration_n": [0, 2, 2]}],
        calls=calls,
        mapping_durations=[],
        attempt_reason=attempt_reason,
        call_reason=stop_reason_label,
    )  # fmt: skip


def row(result: str, status: int | None, n: list[int], **extra: Any) -> dict[str, Any]:
    return {"gateway": "gw", "result": result, "status": status, "attempts": n,
            "pdd_sum": [None, None, None], "pdd_n": [0, 0, 0], **extra}  # fmt: skip


def test_windows_reasons_and_gateways_not_configured() -> None:
    body = fold(
        [
            row("answered", 200, [1, 2, 3], pdd_sum=[0.5, 1.0, 1.5], pdd_n=[1, 2, 3]),
            row("503", 503, [0, 1, 1]),
            {**row("answered", 200, [9, 9, 9]), "gateway": "elsewhere"},
        ],
        [
            {"gateway": "pbx", "stop_reason": None, "final_status": None,
             "attempts": [1, 1, 1], "answered": [1, 1, 1],
             "pdd_sum": [2.0, 2.0, 2.0], "pdd_n": [1, 1, 1]},
            {"gateway": "pbx", "stop_reason": "no more gateways", "final_status": 503,
             "attempts": [0, 0, 2], "answered": [0, 0, 0],
             "pdd_sum": [None, None, None], "pdd_n": [0, 0, 0]},
        ],
    )  # fmt: skip
    assert body["scope"] == "fleet"
    gw = body["routing_gateways"]["gw"]
    assert gw["current_calls"] is None
    five, hour = gw["windows"]["5m"], gw["windows"]["1h"]
    assert (five["attempts"], five["answered"], five["asr"]) == (1, 1, 1.0)
    assert five["pdd_seconds"] == 0.5 and five["acd_seconds"] is None
    assert (hour["attempts"], hour["answered"], hour["switch_reasons"]) == (3, 2, {"5xx": 1})
    assert hour["acd_seconds"] == 45.0
    assert list(body["routing_gateways"]) == ["gw"]  # "elsewhere" is not configured here
    pbx = body["mapping_gateways"]["pbx"]["windows"]
    assert (pbx["5m"]["attempts"], pbx["5m"]["answered"], pbx["5m"]["pdd_seconds"]) == (1, 1, 2.0)
    assert pbx["24h"]["attempts"] == 3
    assert pbx["24h"]["switch_reasons"] == {"no-more-gateways": 2}


def test_reasons_stay_bounded() -> None:
    rows = [row(str(400 + i), None, [1, 1, 1]) for i in range(MAX_REASONS * 2)]
    rows = [{**r, "result": "media refused " + r["result"]} for r in rows]
    reasons = fold(rows, [])["routing_gateways"]["gw"]["windows"]["5m"]["switch_reasons"]
    assert sum(reasons.values()) == MAX_REASONS * 2
    assert reasons == {"media-refused": MAX_REASONS * 2}  # one label, not one per result
    many = {f"r{i}": 1 for i in range(MAX_REASONS)}
    odd = fleet_snapshot(
        ["gw"], [], attempts=[row(r, None, [1, 1, 1]) for r in many], routing_durations=[],
        calls=[], mapping_durations=[], attempt_reason=lambda r, s: r, call_reason=lambda r, s: r,
    )["routing_gateways"]["gw"]["windows"]["5m"]["switch_reasons"]  # fmt: skip
    assert len(odd) == MAX_REASONS and odd[OTHER] == 1


def test_current_calls_are_the_sum_of_what_the_edges_published() -> None:
    def current(published: list[dict[str, Any]]) -> tuple[object, object]:
        body = fleet_snapshot(
            ["gw", "gw2"], ["pbx"], attempts=[], routing_durations=[], calls=[],
            mapping_durations=[], attempt_reason=attempt_reason,
            call_reason=stop_reason_label, current=published,
        )  # fmt: skip
        return (
            {k: v["current_calls"] for k, v in body["routing_gateways"].items()},
            body["mapping_gateways"]["pbx"]["current_calls"],
        )

    assert current([]) == ({"gw": None, "gw2": None}, None)  # no edge published: unknown
    published = [
        {"routing": {"gw": 2, "gw2": 0}, "mapping": {"pbx": 2}},
        {"routing": {"gw": 1}, "mapping": {"pbx": 1}},
        # a row written by something else is not trusted: only non-negative ints of
        # configured gateways count
        {"routing": {"gw": -5, "gw2": "7", "elsewhere": 9}, "mapping": {"pbx": True}},
        {"routing": ["gw"], "mapping": None},
        {},
    ]
    assert current(published) == ({"gw": 3, "gw2": 0}, 3)
