"""The transports' metrics for sipd's /metrics: listeners, connections, TLS, framing.

Read at scrape time from the plain counters of `stream.StreamStats` and the router; every
label value is one of the closed sets of stream.py and framing.py (transport names, reasons),
never anything from the input.

Owns: `transport_metrics`.
Must not: count anything itself, or import from sipedge outside sip/.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from sipedge.sip.transport.destination import STREAM_TRANSPORTS
from sipedge.sip.transport.router import Transports

__all__ = ["transport_metrics"]

Family = CounterMetricFamily | GaugeMetricFamily


def transport_metrics(transports: Transports, transaction_failures: int) -> Iterator[Family]:
    listeners = GaugeMetricFamily(
        "sipedge_sip_listeners", "SIP listeners served, by transport", labels=["transport"]
    )
    served: dict[str, int] = {"udp": len(transports.udp)}
    streams = transports.streams
    if streams is not None:
        for listener in streams.listeners:
            served[listener.transport] = served.get(listener.transport, 0) + 1
    for name in ("udp", *sorted(STREAM_TRANSPORTS)):
        listeners.add_metric([name], served.get(name, 0))
    yield listeners
    yield CounterMetricFamily(
        "sipedge_sip_mtu_moved_to_tcp",
        "Requests over the UDP size allowance sent over TCP instead (RFC 3261 18.1.1)",
        value=transports.moved_to_tcp,
    )
    yield CounterMetricFamily(
        "sipedge_sip_transport_failures",
        "Client transactions failed at once because the transport gave up on their peer",
        value=transaction_failures,
    )
    if streams is None:
        return
    c = streams.counters
    open_now = streams.open_counts()
    gauge = GaugeMetricFamily(
        "sipedge_sip_connections", "TCP/TLS connections open", labels=["transport"]
    )
    accepted = CounterMetricFamily(
        "sipedge_sip_connections_accepted", "Connections accepted", labels=["transport"]
    )
    made = CounterMetricFamily(
        "sipedge_sip_connections_made", "Connections we opened", labels=["transport"]
    )
    failed = CounterMetricFamily(
        "sipedge_sip_connect_failures",
        "Connections we could not open (refused, timed out, TLS failed)",
        labels=["transport"],
    )
    for name in sorted(STREAM_TRANSPORTS):
        gauge.add_metric([name], open_now.get(name, 0))
        accepted.add_metric([name], c.accepted.get(name, 0))
        made.add_metric([name], c.connected.get(name, 0))
        failed.add_metric([name], c.connect_failures.get(name, 0))
    yield gauge
    yield accepted
    yield made
    yield failed
    refused = CounterMetricFamily(
        "sipedge_sip_connections_refused",
        "Connections closed at accept: limit, per_source, screened",
        labels=["transport", "reason"],
    )
    for (transport, reason), count in sorted(c.refused.items()):
        refused.add_metric([transport, reason], count)
    yield refused
    closed = CounterMetricFamily(
        "sipedge_sip_connections_closed", "Connections closed, by reason", labels=["reason"]
    )
    for reason, count in sorted(c.closed.items()):
        closed.add_metric([reason], count)
    yield closed
    tls = CounterMetricFamily(
        "sipedge_sip_tls_handshake_failures",
        "TLS handshakes that failed (server: accepted, client: toward a gateway)",
        labels=["side", "reason"],
    )
    for (side, reason), count in sorted(c.tls_failures.items()):
        tls.add_metric([side, reason], count)
    yield tls
    framing = CounterMetricFamily(
        "sipedge_sip_framing_errors",
        "Stream messages that closed their connection, by reason",
        labels=["reason"],
    )
    for reason, count in sorted(c.framing_errors.items()):
        framing.add_metric([reason], count)
    yield framing
    yield CounterMetricFamily(
        "sipedge_sip_keepalive_pings", "CRLF keep-alive pings answered", value=c.pings
    )
