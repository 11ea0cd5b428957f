"""The media counters of sipd and their Prometheus families.

Owns: `MediaStats` (plain counters that `media_link` and the reconciler bump on the event
loop) and `media_metrics` (the `sipedge_media_*` families sipd's collector yields at scrape
time). Must not: talk to mediad, or import another module of calls/.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


@dataclass
class MediaStats:
    sessions_created: int = 0
    sessions_deleted: int = 0
    unanchored: dict[str, int] = field(default_factory=dict)  # by reason
    errors: dict[str, int] = field(default_factory=dict)  # mediad error codes
    refused: dict[str, int] = field(default_factory=dict)  # SDPs refused, by reason
    orphans_deleted: int = 0  # sessions at mediad no call owned (reconciliation)
    rtp_timeouts: int = 0
    max_duration_ends: int = 0
    rtp_started: int = 0
    relay_families: frozenset[str] | None = None  # mediad's (media_families), None: not known

    def count(self, table: dict[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1


def media_metrics(stats: MediaStats) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
    """Prometheus families for sipd's collector."""

    def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
        return CounterMetricFamily(f"sipedge_media_{name}", doc, value=value)

    yield counter(
        "relay_sessions_created", "Relay sessions set up at mediad", stats.sessions_created
    )
    yield counter(
        "relay_sessions_deleted", "Relay sessions deleted at mediad", stats.sessions_deleted
    )
    yield counter("rtp_started", "Attempts on which the callee's RTP was seen", stats.rtp_started)
    yield counter("rtp_timeouts", "Calls ended by the RTP timeout", stats.rtp_timeouts)
    yield counter(
        "max_duration_ends", "Calls ended at SS_MAX_CALL_DURATION", stats.max_duration_ends
    )
    unanchored = CounterMetricFamily(
        "sipedge_media_unanchored",
        "Streams that went unanchored (mediad unreachable or refusing), by reason",
        labels=["reason"],
    )
    for reason, count in sorted(stats.unanchored.items()):
        unanchored.add_metric([reason], count)
    yield unanchored
    refused = CounterMetricFamily(
        "sipedge_media_refused",
        "SDPs refused before anchoring (media.refused_networks, the stream cap), by reason",
        labels=["reason"],
    )
    for reason, count in sorted(stats.refused.items()):
        refused.add_metric([reason], count)
    yield refused
    yield counter(
        "orphans_deleted",
        "Relay sessions at mediad that no call owned, deleted by reconciliation",
        stats.orphans_deleted,
    )
    errors = CounterMetricFamily(
        "sipedge_media_errors", "mediad requests that failed, by error code", labels=["code"]
    )
    for code, count in sorted(stats.errors.items()):
        errors.add_metric([code], count)
    yield errors
    if stats.relay_families is not None:
        families = GaugeMetricFamily(
            "sipedge_media_relay_family",
            "1 for each address family mediad has a relay address of (its ping), else 0",
            labels=["family"],
        )
        for name in ("IP4", "IP6"):
            families.add_metric([name], 1 if name in stats.relay_families else 0)
        yield families


__all__ = ["MediaStats", "media_metrics"]
