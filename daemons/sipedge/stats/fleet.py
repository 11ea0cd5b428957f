"""The fleet's carrier statistics: the grouped counts of every edge's CDRs (read from
PostgreSQL by `sipedge.store.postgres.fleet_stats`) folded into the body one edge's
`CarrierStats.snapshot` has, for `GET /api/gateways/stats?scope=fleet` (docs/monitoring.md).

What counts where, from the CDRs (so only finished calls: a CDR is written when its call ends):

* routing gateway: every attempt of every CDR, settled at the attempt's end; answered when its
  result is "answered"; PDD from the attempt's recorded `pdd`; ACD from the answered calls
  that ended through it (`routing_gateway`), counted at their end.
* mapping gateway: every CDR from it, settled at its answer (answered) or its end (not, with
  the reason switching stopped); PDD its INVITE to the first 18x/2xx of any attempt; ACD as
  above.
* current calls: not in the CDRs; the sum of what the edges published in PostgreSQL within
  the freshness (`current`: each edge's `{"routing": {name: n}, "mapping": {name: n}}`), `None`
  when no edge did (a count that is not a non-negative integer is ignored, not trusted).

Owns: `fleet_snapshot`. Must not: import from sipedge outside stats/ (the rows are plain
mappings, the reason labels come from the caller: calls/ owns that vocabulary), or do I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sipedge.stats.windows import WINDOWS, Totals, add_reason

Row = Mapping[str, Any]
AttemptReason = Callable[[str, int | None], str | None]  # (result, status) -> None: answered
CallReason = Callable[[str, int], str]  # (switch_stop_reason, final_status) -> label


def _at(values: Sequence[Any] | None, i: int) -> Any:
    return values[i] if values is not None and i < len(values) else None


def _empty(names: Iterable[str]) -> dict[str, list[Totals]]:
    return {name: [Totals() for _ in WINDOWS] for name in names}


def _add_pdd(t: Totals, row: Row, i: int) -> None:
    t.pdd_sum += float(_at(row["pdd_sum"], i) or 0.0)
    t.pdd_n += int(_at(row["pdd_n"], i) or 0)


def _add_durations(table: dict[str, list[Totals]], rows: Iterable[Row]) -> None:
    for row in rows:
        windows = table.get(row["gateway"])
        if windows is None:
            continue
        for i, t in enumerate(windows):
            t.duration_sum += float(_at(row["duration_sum"], i) or 0.0)
            t.duration_n += int(_at(row["duration_n"], i) or 0)


def _current(published: Sequence[Row], kind: str, table: Mapping[str, object]) -> dict[str, int]:
    """The configured gateways' calls in progress, summed over the edges that published."""
    totals = dict.fromkeys(table, 0)
    for counts in published:
        of_kind = counts.get(kind)
        if not isinstance(of_kind, Mapping):
            continue
        for name, n in of_kind.items():
            if name in totals and type(n) is int and n >= 0:
                totals[name] += n
    return totals


def fleet_snapshot(
    routing: Iterable[str],
    mapping: Iterable[str],
    *,
    attempts: Iterable[Row],
    routing_durations: Iterable[Row],
    calls: Iterable[Row],
    mapping_durations: Iterable[Row],
    attempt_reason: AttemptReason,
    call_reason: CallReason,
    current: Sequence[Row] = (),
) -> dict[str, object]:
    """The per-window lists in the rows are in `WINDOWS` order; rows of gateways not in
    `routing`/`mapping` are left out (the labels stay the configured ones)."""
    routed = _empty(routing)
    for row in attempts:
        windows = routed.get(row["gateway"])
        if windows is None:
            continue
        reason = attempt_reason(str(row["result"] or ""), row["status"])
        for i, t in enumerate(windows):
            n = int(_at(row["attempts"], i) or 0)
            if not n:
                continue
            t.attempts += n
            if reason is None:
                t.answered += n
            else:
                add_reason(t.reasons, reason, n)
            _add_pdd(t, row, i)
    _add_durations(routed, routing_durations)

    mapped = _empty(mapping)
    for row in calls:
        windows = mapped.get(row["gateway"])
        if windows is None:
            continue
        for i, t in enumerate(windows):
            n = int(_at(row["attempts"], i) or 0)
            if not n:
                continue
            answered = int(_at(row["answered"], i) or 0)
            t.attempts += n
            t.answered += answered
            if n > answered:
                reason = call_reason(str(row["stop_reason"] or ""), int(row["final_status"] or 0))
                add_reason(t.reasons, reason, n - answered)
            _add_pdd(t, row, i)
    _add_durations(mapped, mapping_durations)

    out: dict[str, object] = {
        "scope": "fleet",
        "windows": {spec.name: spec.seconds for spec in WINDOWS},
    }
    for kind, table in (("routing", routed), ("mapping", mapped)):
        in_progress = _current(current, kind, table)
        out[f"{kind}_gateways"] = {
            name: {
                "current_calls": in_progress.get(name) if current else None,
                "windows": {
                    spec.name: t.as_dict() for spec, t in zip(WINDOWS, windows, strict=True)
                },
            }
            for name, windows in sorted(table.items())
        }
    return out
