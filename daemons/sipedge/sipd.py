"""sipedge-sipd: the SIP daemon (transport, transactions, B2BUA, CDRs, management API).

Runs in the foreground, logs to stderr, tells systemd when it is ready (Type=notify), reloads
its config on SIGHUP, and on SIGTERM stops taking calls, ends the calls in progress with BYE
(or 503 during setup), writes their CDRs and exits. It refuses to start (exit 2) on a config
that fails validation (an API off loopback without an admin token among others) or whose token
files, API certificate or SIP TLS certificates cannot be used.

Owns: the composition of sipd (the transports of every sip.listen address, B2BUA, stores,
registrations, media link, API) and its lifecycle. `SipDaemon` implements
`sipedge.api.Managed` for the management API. Once it has started, the garbage collector is
tuned (`sipedge.gcwatch.tune`: start-up objects frozen, full collections only when memory
grows, `gcwatch.valve`) and every collection's pause is exported in /metrics.
Must not: be imported by anything but the entry points (it is the composition root).
Longer than 600 lines because it is the composition root: it converts each config section for
the packages that may not read config/ (the SIP limits, the listeners and their TLS contexts,
the API's credentials) and exports every package's counters; each conversion is a few lines
beside the wiring that uses it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import ipaddress
import logging
import signal
import ssl
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from sipedge import __version__
from sipedge.api import (
    AccessPolicy,
    CredentialError,
    accepted_hosts,
    build_app,
    load_password,
    load_token,
    reload_tls,
    tls_context,
)
from sipedge.appliance import notify
from sipedge.calls import MAPPING_PASSWORD
from sipedge.calls.media_link import MediaService, media_metrics
from sipedge.calls.service import B2BUA, media_policy
from sipedge.config import ApiConfig, Config, ConfigError, SipConfig, StorageConfig, load_config
from sipedge.gcwatch import FullCollectionValve, GcWatch, run_valve, tune
from sipedge.guard import GuardService
from sipedge.media import MediaClient
from sipedge.natd import open_udp_retrying
from sipedge.registrar import RegistrarComponent
from sipedge.resolver import DnsResolver, DnsSettings, is_literal
from sipedge.sip.limits import SipLimits
from sipedge.sip.message import Request, Response
from sipedge.sip.transport import (
    ClientPeer,
    ClientTls,
    ServerTls,
    StreamSettings,
    StreamTransport,
    TlsError,
    Transports,
    TransportStats,
    UdpTransport,
    client_context,
    server_context,
)
from sipedge.sip.transport.metrics import transport_metrics
from sipedge.stats import CarrierStats
from sipedge.store import (
    CdrStore,
    PostgresSettings,
    SchemaError,
    open_cdr_reader,
    open_cdr_store,
)
from sipedge.typedefs import Addr

log = logging.getLogger("sipedge.sipd")
RETENTION_INTERVAL = 60.0  # seconds between two CDR retention passes (the first at start)
RETENTION_BATCHES = 1000  # prune() calls per pass at most (each a bounded batch)
MIB = 1 << 20


class SipDaemon:
    def __init__(self, config_path: Path, config: Config) -> None:
        self.config_path = config_path
        self.config = config
        self.started = time.time()
        self.transport_stats = TransportStats()
        self.transport: UdpTransport | None = None  # the first UDP listener
        self.transports: Transports | None = None  # every listener, one way to send
        # sip.listen and sip.connections apply at start only; the certificates are read again
        self.sip = config.sip
        self._server_tls: dict[int, ssl.SSLContext] = {}  # by index in sip.listen
        self.tls_not_after: dict[str, float] = {}  # tls:// listener -> its certificate's end
        self._peers: dict[tuple[str, int], ClientPeer] = {}  # TLS gateways by address, port
        self.cdrs: CdrStore | None = None
        self.cdr_pruned = 0
        # api and storage apply at start only (a reload says so); the token files and the TLS
        # certificate are read again on reload
        self.api_config: ApiConfig = config.api
        self.storage: StorageConfig = config.storage
        self._policy = AccessPolicy(hosts=accepted_hosts(config.api.host, config.api.hosts))
        self.carrier_passwords: dict[str, str] = {}  # routing gateways' auth_password_file
        self._tls: ssl.SSLContext | None = None
        self._retention: asyncio.Task[None] | None = None
        self._b2bua: B2BUA | None = None
        self._runner: web.AppRunner | None = None
        self._stop = asyncio.Event()
        self.registrar: RegistrarComponent | None = None  # registrar, registrations, natd link
        self.reloads = 0
        self.reload_failures = 0
        # flood and scanner defence in front of the transaction layer (docs/security.md)
        self.guard = GuardService(config.security, self, bool(config.endpoints))
        # gateway and registration-proxy names (sip.dns_servers...: applied at start only);
        # when a name resolves to new addresses, the guard classifies its sources again
        self.resolver = DnsResolver(dns_settings(config.sip))
        self.resolver.on_change = self.guard.peers_changed
        self._endpoint_sources: tuple[int, frozenset[str]] = (-1, frozenset())
        self.gc_watch = GcWatch()  # collector pauses, installed while it serves (serve())
        self.carrier_stats = CarrierStats()  # ASR/ACD/PDD per gateway (docs/monitoring.md)
        self.carrier_stats.configure(*gateway_list(config))
        self.metrics_registry = CollectorRegistry()
        self.metrics_registry.register(SipdCollector(self))

    @property
    def b2bua(self) -> B2BUA:
        assert self._b2bua is not None
        return self._b2bua

    def load_sip_tls(self) -> None:
        """Build the tls:// listeners' and the TLS gateways' contexts from their files (all or
        nothing: TlsError names the key); running listeners take the new ones for new
        connections, as the API's certificate does."""
        sip, servers, peers, expiry = self.sip, {}, {}, {}
        for i, listen in enumerate(sip.listen):
            if listen.transport == "tls":
                cert, key = listen.tls_cert or sip.tls_cert, listen.tls_key or sip.tls_key
                assert cert is not None and key is not None  # the config says so
                verify = listen.tls_verify_client
                settings = ServerTls(
                    cert,
                    key,
                    listen.tls_ca or sip.tls_ca,
                    sip.tls_verify_client if verify is None else verify,
                )
                servers[i] = server_context(settings, f"sip.listen[{i}] (sip.tls_cert/tls_key)")
                host = f"[{listen.host}]" if ":" in listen.host else listen.host
                expiry[f"tls://{host}:{listen.port}"] = cert_not_after(cert)
        for i, gw in enumerate(self.config.routing_gateways):
            if gw.transport == "tls":
                client = ClientTls(
                    gw.tls_ca, gw.tls_server_name, gw.tls_fingerprint, gw.tls_cert, gw.tls_key
                )
                context = client_context(client, f"routing_gateways[{i}] ({gw.name})")
                peers[(gw.address, gw.port)] = ClientPeer(
                    context, gw.tls_server_name, gw.tls_fingerprint
                )
        self._server_tls, self._peers, self.tls_not_after = servers, peers, expiry
        streams = self.transports.streams if self.transports is not None else None
        if streams is not None:
            streams.peers = peers
            tls_indexes = [i for i, a in enumerate(sip.listen) if a.transport != "udp"]
            for n, i in enumerate(tls_indexes):
                if i in servers:
                    streams.set_server_context(n, servers[i])

    def load_credentials(self) -> None:
        """Read the token files, the TLS certificate and the routing gateways' password files;
        CredentialError names the key (and nothing is changed)."""
        api = self.api_config
        policy = access_policy(api)
        passwords = carrier_passwords(self.config)
        if api.tls_cert is not None and api.tls_key is not None:
            if self._tls is None:
                self._tls = tls_context(api.tls_cert, api.tls_key)
            else:
                reload_tls(self._tls, api.tls_cert, api.tls_key)
        self._policy = policy
        self.carrier_passwords = passwords
        if self._b2bua is not None:
            self._b2bua.set_carrier_passwords(passwords)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.cdrs = open_cdr_store(
            self.storage.path,
            durable=self.storage.cdr_durable,
            postgres=PostgresSettings.of(self.storage, self.config.node_name),
            migrate=self.storage.migrate_on_start,
        )
        self._retention = asyncio.create_task(self._retention_loop(), name="cdr-retention")
        transports = self.transports = await self._open_transports()
        self.transport = transports.primary
        self._apply_tcp_peers(self.config)
        self._b2bua = B2BUA(
            self.config,
            loop,
            transports.send_bytes,
            transports.local_host_for,
            self.transport.port,
            self.cdrs,
            self.resolver,
        )
        self._b2bua.set_carrier_passwords(self.carrier_passwords)
        self._b2bua.carriers = self.carrier_stats
        self.resolver.watch(gateway_names(self.config))
        self._b2bua.stream_ports = transports.ports
        self._b2bua.port_for = transports.port_for
        self._b2bua.transactions.prepare = transports.prepare
        self._apply_sip_limits(self.config)
        # Screen sources before parsing from here on, now that gateways can be recognised.
        for udp in transports.udp:
            udp.screen = self.guard.admit_source
        if transports.streams is not None:
            transports.streams.screen = self.guard.admit_source
            transports.streams.on_failed = self._b2bua.transactions.transport_failed
        # media anchoring at sipedge-mediad (calls go unanchored while it is unreachable);
        # reconciliation deletes the sessions a previous sipd left there, now and periodically
        media = self.config.media
        self._b2bua.media = MediaService(
            MediaClient(media.control_socket),
            policy=media_policy(media),
            idle_timeout=media.idle_timeout,
        )
        self._b2bua.media.start()
        self.registrar = RegistrarComponent(self.config, self._b2bua, self.transport)
        await self.registrar.start()
        app = build_app(self)
        self.registrar.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        api = self.api_config
        site = web.TCPSite(self._runner, api.host, api.port, ssl_context=self._tls)
        await site.start()
        log.info(
            "sipedge-sipd %s: SIP on %s; API on %s://%s:%s (%s)",
            __version__,
            ", ".join(transports.describe()),
            "https" if self._tls is not None else "http",
            f"[{api.host}]" if ":" in api.host else api.host,
            api.port,
            "open: no token" if self._policy.open else "tokens required",
        )

    async def _open_transports(self) -> Transports:
        """Every sip.listen address: UDP sockets first (the first is the default way out),
        then one stream transport for the tcp:// and tls:// ones."""
        sip = self.sip
        udps: list[UdpTransport] = []
        for listen in sip.listen:
            if listen.transport == "udp":
                udp = await open_udp_retrying(
                    listen.host, listen.port, self._on_message, self.transport_stats
                )
                if sip.public_address and _same_family(sip.public_address, listen.host):
                    udp.advertised_host = sip.public_address
                udps.append(udp)
        streams = None
        if any(a.transport != "udp" for a in sip.listen):
            settings = StreamSettings(**dataclasses.asdict(sip.connections))
            streams = StreamTransport(self._on_message, self.transport_stats, None, settings)
            streams.peers = self._peers
            for i, listen in enumerate(sip.listen):
                if listen.transport != "udp":
                    context = self._server_tls.get(i)
                    await streams.listen(listen.transport, listen.host, listen.port, context)
        return Transports(udps, streams)

    def _apply_tcp_peers(self, config: Config) -> None:
        """RFC 3261 18.1.1: the peers a large request may go to over TCP instead of UDP."""
        if self.transports is not None:
            self.transports.tcp_peers = frozenset(
                (gw.address, gw.port) for gw in config.routing_gateways if gw.transport == "tcp"
            )

    async def _retention_loop(self) -> None:
        while True:
            await self.prune_cdrs()
            await asyncio.sleep(RETENTION_INTERVAL)

    async def prune_cdrs(self) -> int:
        """One retention pass: bounded batches by age and size, each run by the store's writer
        (after the CDRs queued before it) and awaited from a worker thread, so the loop never
        waits for the disk; a failure is logged and the next pass tries again."""
        s = self.storage
        max_age = s.cdr_retention_days * 86400.0 if s.cdr_retention_days is not None else None
        max_bytes = s.cdr_max_mib * MIB if s.cdr_max_mib is not None else None
        if self.cdrs is None or (max_age is None and max_bytes is None):
            return 0
        total = 0
        try:
            for _ in range(RETENTION_BATCHES):
                prune = self.cdrs.prune
                removed = await asyncio.to_thread(prune, time.time(), max_age, max_bytes)
                total += removed
                self.cdr_pruned += removed
                if not removed:
                    break
        except Exception:
            log.exception("CDR retention failed (tried again in %.0f s)", RETENTION_INTERVAL)
        if total:
            log.info("CDR retention removed %d records", total)
        return total

    def _on_message(self, msg: Request | Response, source: Addr, transport: object) -> None:
        # The source was screened before parsing (guard.admit_source); what is left to decide
        # needs the parsed request (scanner User-Agent, unknown sources).
        if isinstance(msg, Response) or self.guard.admit_request(msg, source):
            self.b2bua.transactions.receive(msg, source)

    # -- sipedge.guard.Peers -------------------------------------------------------------------
    def is_gateway(self, address: str) -> bool:
        return self._b2bua is not None and self._b2bua.is_gateway(address)

    def is_endpoint(self, address: str) -> bool:
        if self.registrar is None:
            return False
        table = self.registrar.endpoints.table
        version, sources = self._endpoint_sources
        if version != table.version:  # rebuilt when a binding appears, moves or goes
            sources = frozenset(b.source[0] for b in table.bindings.values())
            self._endpoint_sources = (table.version, sources)
        return address in sources

    def reload(self) -> tuple[bool, str]:
        """Re-read the config file; on any error keep the running config and say why."""
        try:
            config = load_config(self.config_path)
        except ConfigError as err:
            self.reload_failures += 1
            log.error("config reload failed, keeping the running config:\n%s", err)
            return False, str(err)
        unchanged = ("sip", "api", "storage")
        moved = [name for name in unchanged if getattr(config, name) != getattr(self.config, name)]
        self.config = config
        self.b2bua.apply_config(config)
        self.carrier_stats.configure(*gateway_list(config))
        self._apply_sip_limits(config)
        self.guard.apply_config(config.security, bool(config.endpoints))
        self.resolver.reload_hosts()
        self.resolver.watch(gateway_names(config))
        self._apply_tcp_peers(config)
        if self.registrar is not None:
            self.registrar.apply_config(config)
        self.reloads += 1
        message = "reloaded"
        if moved:
            message += f"; changes to {', '.join(moved)} take effect at the next restart"
        served = {listen.transport for listen in self.sip.listen}
        unserved = sorted({gw.transport for gw in config.routing_gateways} - served - {"udp"})
        if unserved:  # the new listener comes with the restart; until then they time out
            log.error("routing gateways over %s need a restart (no listener yet)", unserved)
            message += f"; routing gateways over {', '.join(unserved)} need a restart"
        try:
            self.load_credentials()  # rotated token and password files, a renewed certificate
        except CredentialError as err:
            log.error("kept the previous tokens, certificate and gateway passwords: %s", err)
            message += f"; kept the previous tokens, certificate and gateway passwords: {err}"
        try:
            self.load_sip_tls()  # renewed SIP certificates, the gateways' TLS settings
        except TlsError as err:
            log.error("kept the previous SIP TLS certificates and settings: %s", err)
            message += f"; kept the previous SIP TLS certificates and settings: {err}"
        log.info("config %s", message)
        return True, message

    def _apply_sip_limits(self, config: Config) -> None:
        """SS_SIP_MAX_* into the SIP stack (sip/ does not read config/)."""
        p = config.parameters
        limits = SipLimits(
            p.sip_max_message_size,
            p.sip_max_uri_length,
            p.sip_max_headers,
            p.sip_max_transactions,
            p.sip_retry_after,
        )
        if self.transports is not None:
            for udp in self.transports.udp:
                udp.limits = limits
            if self.transports.streams is not None:
                self.transports.streams.limits = limits
        # Option tags the B2BUA handles (RFC 4028 session timers); other Require -> 420.
        self.b2bua.transactions.configure(limits, frozenset({"timer"}))

    def health(self) -> dict[str, object]:
        return {
            "status": "draining" if self.b2bua.draining else "ok",
            "version": __version__,
            "uptime": round(time.time() - self.started, 3),
            "active_calls": len(self.b2bua.calls),
        }

    # -- sipedge.api.Managed -------------------------------------------------------------------
    def access_policy(self) -> AccessPolicy:
        return self._policy

    def calls(self) -> list[dict[str, object]]:
        return self.b2bua.summaries()

    def active_calls(self) -> int:
        return len(self.b2bua.calls)

    def gateway_stats(self) -> dict[str, object]:
        return self.carrier_stats.snapshot()

    def read_cdrs(
        self, limit: int, call_id: str | None, before: int | None
    ) -> list[dict[str, Any]]:
        """In a worker thread, on a read-only connection of its own (never the writer's); with
        PostgreSQL through the store's own pool."""
        if self.cdrs is not None and self.storage.backend == "postgresql":
            return self.cdrs.recent(limit, call_id, before)
        try:
            reader = open_cdr_reader(self.storage.path)
        except FileNotFoundError:
            return []
        try:
            return reader.recent(limit, call_id, before)
        finally:
            reader.close()

    def set_draining(self, on: bool) -> None:
        self.b2bua.draining = on

    def bans(self) -> list[dict[str, object]]:
        return self.guard.bans()

    def clear_bans(self, address: str | None) -> int:
        return self.guard.clear(address)

    def request_stop(self) -> None:
        self._stop.set()

    async def run_until_stopped(self) -> None:
        await self._stop.wait()

    async def stop(self, drain_seconds: float = 2.0) -> None:
        """SIGTERM: no new calls, end the ones in progress, flush CDRs, close sockets."""
        notify("STOPPING=1")
        if self._b2bua is not None:
            self.b2bua.draining = True
            self.b2bua.terminate_all("shutdown")
            if self.registrar is not None:
                await self.registrar.stop()  # un-registers (bounded, 2 s)
            # Give the BYEs/503s a moment to go out and be answered (bounded).
            deadline = time.monotonic() + drain_seconds
            while self.b2bua.transactions.client and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await self.b2bua.media.drain(1.0)  # the relay sessions' deletes (bounded)
            await self.b2bua.media.close()
        await self.resolver.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.transports is not None:
            self.transports.close()
        if self._retention is not None:
            self._retention.cancel()
        if self.cdrs is not None:
            self.cdrs.close()  # commits the CDRs still queued (bounded wait), stops the writer
        self.gc_watch.uninstall()


Family = CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily


class SipdCollector(Collector):
    """Reads the daemon's plain counters at scrape time: the SIP hot path never touches a lock."""

    def __init__(self, daemon: SipDaemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Family]:
        d = self.daemon
        t = d.transport_stats
        yield from d.gc_watch.metrics()

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(f"sipedge_{name}", doc, value=value)

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


def carrier_passwords(config: Config) -> dict[str, str]:
    """The routing gateways' auth_password_file contents by name, and the mapping gateways'
    password_file by MAPPING_PASSWORD + name, read now (CredentialError)."""
    out = {
        gw.name: load_password(gw.auth_password_file, f"routing_gateways[{i}].auth_password_file")
        for i, gw in enumerate(config.routing_gateways)
        if gw.auth_password_file is not None
    }
    for i, m in enumerate(config.mapping_gateways):
        if m.password_file is not None:
            where = f"mapping_gateways[{i}].password_file"
            out[MAPPING_PASSWORD + m.name] = load_password(m.password_file, where)
    return out


def cert_not_after(path: str | Path) -> float:
    """When the first certificate of a PEM file (the leaf) expires, as a Unix time; the file
    was just loaded by `server_context`, so it parses."""
    cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    return cert.not_valid_after_utc.timestamp()


def gateway_list(config: Config) -> tuple[list[str], list[str]]:
    """The names of the routing and the mapping gateways: what the carrier statistics track."""
    return [g.name for g in config.routing_gateways], [m.name for m in config.mapping_gateways]


def dns_settings(sip: SipConfig) -> DnsSettings:
    """AAAA records count only when there is an IPv6 listener to reach them from."""
    ipv6 = any(":" in listen.host for listen in sip.listen)
    return DnsSettings(tuple(sip.dns_servers), sip.dns_timeout, sip.hosts_file, ipv6=ipv6)


def gateway_names(config: Config) -> list[tuple[str, int | None, str]]:
    """The host names among the routing gateways and registration proxies, with their port
    when one was given (None: NAPTR/SRV apply) and their transport."""
    names = [
        (g.address, g.port if g.port_given else None, g.transport) for g in config.routing_gateways
    ]
    names += [(r.proxy, r.port if r.port_given else None, "udp") for r in config.registrations]
    return [name for name in names if not is_literal(name[0])]


def access_policy(api: ApiConfig) -> AccessPolicy:
    """The API's policy: inline tokens, or the token files read now (CredentialError)."""
    admin = api.token or (load_token(api.token_file, "api.token_file") if api.token_file else None)
    read = api.read_token or (
        load_token(api.read_token_file, "api.read_token_file") if api.read_token_file else None
    )
    if admin is not None and admin == read:
        raise CredentialError("api.read_token_file: holds the admin token (use another one)")
    return AccessPolicy(
        admin_tokens=(admin,) if admin else (),
        read_tokens=(read,) if read else (),
        hosts=accepted_hosts(api.host, api.hosts),
        metrics_open=api.metrics_open,
    )


async def serve(config_path: Path) -> int:
    try:
        config = load_config(config_path)
    except ConfigError as err:
        log.error("invalid config %s:\n%s", config_path, err)
        return 2
    daemon = SipDaemon(config_path, config)
    try:
        daemon.load_credentials()
        daemon.load_sip_tls()
    except (CredentialError, TlsError) as err:
        log.error("cannot start: %s", err)
        return 2
    loop = asyncio.get_running_loop()
    try:
        await daemon.start()
    except (OSError, SchemaError) as err:  # SchemaError: the database is ahead or behind
        log.error("cannot start: %s", err)
        await daemon.stop(0)
        return 1
    loop.add_signal_handler(signal.SIGTERM, daemon.request_stop)
    loop.add_signal_handler(signal.SIGINT, daemon.request_stop)
    loop.add_signal_handler(signal.SIGHUP, daemon.reload)
    # Everything start-up builds exists now: freeze it and make full collections rare; then
    # time every collection from here on (tune's own full collection is start-up's).
    frozen = tune()
    daemon.gc_watch.install()
    valve = loop.create_task(run_valve(FullCollectionValve()))  # the only full collections
    log.info(
        "garbage collector: %d start-up objects frozen, thresholds %s", frozen, gc.get_threshold()
    )
    notify("READY=1")
    await daemon.run_until_stopped()
    valve.cancel()
    log.info("stopping")
    await daemon.stop()
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sipedge-sipd", description=__doc__)
    parser.add_argument("--config", required=True, type=Path, help="path of sipedge.yaml")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency, but run without it anyway
        pass
    sys.exit(asyncio.run(serve(args.config)))


if __name__ == "__main__":
    main()


def _same_family(public_address: str, host: str) -> bool:
    """sip.public_address applies to the listeners of its family (a name: to all), so an
    IPv6 listener does not advertise an IPv4 public address (docs/ipv6.md)."""
    try:
        family = ipaddress.ip_address(public_address).version
    except ValueError:
        return True
    return family == (6 if ":" in host else 4)
