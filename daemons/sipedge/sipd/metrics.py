"""What sipd's /metrics exports: `SipdCollector` reads the daemon's plain counters at scrape time.

Owns: the metric names and help texts of sipd (the packages' own families come from their
`metrics()`). Must not: change the daemon.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from sipedge.calls.media_link import media_metrics
from sipedge.calls.service import B2BUA
from sipedge.sip.transport.metrics import transport_metrics
from sipedge.sipd.daemon import SipDaemonBase

Family = CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily


class SipdCollector(Collector):
    """Reads the daemon's plain counters at scrape time: the SIP hot path never touches a lock."""

    def __init__(self, daemon: SipDaemonBase) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Family]:
        d = self.daemon
        t = d.transport_stats
        yield from d.gc_watch.metrics()

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(f"sipedge_{name}", doc, value=value)

        if d.fleet_stats is not None:
            f = d.fleet_stats
            yield counter(
                "fleet_stats_queries", "Fleet statistics answered from PostgreSQL", f.queries
            )
            yield counter("fleet_stats_failures", "Fleet statistics PostgreSQL did not answer",
                          f.failures)  # fmt: skip
            yield counter(
                "fleet_calls_published", "Calls-in-progress rows written to PostgreSQL", f.published
            )
            yield counter(
                "fleet_calls_publish_failures",
                "Calls-in-progress rows PostgreSQL did not take",
                f.publish_failures,
            )
        yield counter("sip_messages_in", "SIP messages received (UDP, TCP, TLS)", t.messages_in)
        yield counter("sip_messages_out", "SIP messages sent (UDP, TCP, TLS)", t.messages_out)
        yield counter("sip_parse_errors", "Datagrams that failed to parse", t.parse_errors)
        yield counter("sip_dropped", "Unparseable datagrams dropped", t.dropped)
        yield counter("sip_bad_requests", "Requests answered with 400", t.bad_requests_answered)
        methods = CounterMetricFamily(
            "sipedge_sip_requests_in", "Requests received by method", labels=["method"]
        )
        for method, count in sorted(t.by_method_in.items()):
            methods.add_metric([method], count)
        yield methods
        if d.cdrs is not None:
            yield counter("cdrs_written", "CDRs committed", d.cdrs.written)
            yield GaugeMetricFamily(
                "sipedge_cdr_queued", "CDRs waiting for the writer's commit", value=d.cdrs.queued
            )
            yield counter(
                "cdr_batches",
                "CDR transactions committed (group commit: one fsync each when durable)",
                d.cdrs.batches,
            )
            yield counter(
                "cdr_sync_writes",
                "CDRs committed on the event loop because the writer's queue was full",
                d.cdrs.sync_writes,
            )
            yield counter(
                "cdr_write_failures",
                "CDRs that could not be committed after a retry (logged with their call ids)",
                d.cdrs.write_failures,
            )
            yield GaugeMetricFamily(
                "sipedge_cdr_db_bytes", "Bytes the CDRs take on disk", value=d.cdrs.size_bytes()
            )
            yield counter("cdr_pruned", "CDRs removed by retention", d.cdr_pruned)
            for m in d.cdrs.backend_metrics():
                if m.kind == "counter":
                    yield counter(m.name, m.doc, m.value)
                else:
                    yield GaugeMetricFamily(f"sipedge_{m.name}", m.doc, value=m.value)
            yield GaugeMetricFamily(
                "sipedge_cdr_durable",
                "1: each CDR commit (a batch) is fsynced (storage.cdr_durable, synchronous=FULL)",
                value=1 if d.storage.cdr_durable else 0,
            )
        if d._b2bua is None:
            return
        s = d.b2bua.stats
        tl = d.b2bua.transactions
        yield counter("calls", "Calls admitted", s.calls)
        yield counter("calls_answered", "Calls answered", s.answered)
        yield counter("calls_failed", "Calls that ended without an answer", s.failed)
        yield counter("attempts", "INVITE attempts to routing gateways", s.attempts)
        yield counter(
            "attempts_unresolved", "Attempts whose gateway name did not resolve", s.unresolved
        )
        yield counter(
            "late_answers", "2xx from abandoned attempts (ACKed and BYEd)", s.late_answers
        )
        yield counter(
            "session_timer_ends",
            "Calls ended because a leg was not refreshed (RFC 4028)",
            s.session_timer_ends,
        )
        yield GaugeMetricFamily(
            "sipedge_calls_active", "Calls in progress", value=len(d.b2bua.calls)
        )
        yield counter(
            "carrier_challenges_answered",
            "Routing gateways' 401/407 answered with credentials",
            s.challenges_answered,
        )
        yield by_label(
            "carrier_challenges_failed",
            "Routing gateways' 401/407 that ended the attempt, by reason",
            "reason",
            s.challenges_failed,
        )
        yield by_label("calls_rejected", "New calls refused, by status", "status", s.rejected)
        yield by_label(
            "mapping_auth",
            "Digest of mapping gateways' INVITEs (auth: digest, source+digest), by result",
            "result",
            d.b2bua.mapping_auth.results,
        )
        yield by_label("switch_stops", "Why gateway switching stopped", "reason", s.stop_reasons)
        tx = GaugeMetricFamily("sipedge_transactions", "Live SIP transactions", labels=["side"])
        for side, count in tl.counts().items():
            tx.add_metric([side], count)
        yield tx
        yield counter("transactions_created", "SIP transactions created", tl.created)
        yield counter("retransmissions", "SIP retransmissions sent", tl.retransmissions)
        yield counter("transaction_timeouts", "Transactions that timed out", tl.timeouts)
        yield counter("transactions_stateless", "Finals sent once, nothing kept", tl.stateless)
        yield counter(
            "sip_tu_errors", "Requests whose handling raised (answered 500)", tl.tu_errors
        )
        yield counter("sip_unanswered", "Requests the call layer never answered", tl.unanswered)
        yield counter("sip_screened", "Datagrams dropped unparsed by the guard", t.screened)
        refused = CounterMetricFamily(
            "sipedge_sip_refused", "Requests refused by the SIP stack, by status", labels=["status"]
        )
        dropped = CounterMetricFamily(
            "sipedge_sip_drops",
            "Messages dropped by the SIP stack, by reason",
            labels=["reason"],
        )
        gates = [tl.gate]
        if d.transports is not None:
            gates += [u.gate for u in d.transports.udp]
            if d.transports.streams is not None:
                gates.append(d.transports.streams.gate)
        for status in sorted({s for g in gates for s in g.refused}):
            refused.add_metric([str(status)], sum(g.refused.get(status, 0) for g in gates))
        for reason in sorted({r for g in gates for r in g.dropped}):
            dropped.add_metric([reason], sum(g.dropped.get(reason, 0) for g in gates))
        yield refused
        yield dropped
        if d.transports is not None:
            yield from transport_metrics(d.transports, tl.transport_failures)
        expiry = GaugeMetricFamily(
            "sipedge_sip_tls_cert_expiry_days",
            "Days until the certificate of a tls:// listener expires (negative: expired)",
            labels=["listener"],
        )
        for listener, not_after in sorted(d.tls_not_after.items()):
            expiry.add_metric([listener], (not_after - time.time()) / 86400)
        yield expiry
        yield from d.guard.metrics()
        yield from d.resolver.metrics()
        yield from capacity_metrics(d.b2bua)
        yield from d.carrier_stats.metrics()
        yield counter("config_reloads", "Successful config reloads", d.reloads)
        yield counter("config_reload_failures", "Refused config reloads", d.reload_failures)
        yield from media_metrics(d.b2bua.media.stats)
        if d.registrar is not None:
            yield from d.registrar.metrics()


def by_label(
    name: str, doc: str, label: str, counts: Mapping[str, int] | Mapping[int, int]
) -> CounterMetricFamily:
    """A counter family `sipedge_<name>` with one sample per key of `counts`, sorted."""
    family = CounterMetricFamily(f"sipedge_{name}", doc, labels=[label])
    for key, count in sorted(counts.items()):
        family.add_metric([str(key)], count)
    return family


def capacity_metrics(b2bua: B2BUA) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
    over = CounterMetricFamily(
        "sipedge_calls_over_capacity",
        "New calls refused with 503 by a call limit",
        labels=["limit"],
    )
    for limit, count in b2bua.caps.rejected.items():
        over.add_metric([limit], count)
    yield over
    per_gateway = GaugeMetricFamily(
        "sipedge_gateway_calls_active",
        "Calls in progress per mapping gateway",
        labels=["gateway"],
    )
    for name in sorted(b2bua.caps.limits):
        per_gateway.add_metric([name], b2bua.caps.active.get(name, 0))
    yield per_gateway
    backlog = b2bua.caps.backlog
    yield GaugeMetricFamily(
        "sipedge_sip_receive_queue_bytes",
        "Bytes waiting in the SIP UDP sockets' receive queues at the last sample (0.1 s)",
        value=backlog.queued,
    )
    yield GaugeMetricFamily(
        "sipedge_calls_shedding",
        "1 while new calls get 503 because sipd is behind on SIP (SS_SIP_OVERLOAD_QUEUE)",
        value=int(backlog.behind),
    )
    yield CounterMetricFamily(
        "sipedge_calls_shedding_episodes",
        "Times sipd fell behind on SIP and began refusing new calls",
        value=backlog.episodes,
    )
