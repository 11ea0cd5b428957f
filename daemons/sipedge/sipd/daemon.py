"""The sipd daemon without its /metrics collector: `sipedge.sipd.SipDaemon` adds it.

Owns: the composition of sipd (the transports of every sip.listen address, B2BUA, stores,
registrations, media link, API) and its lifecycle; `SipDaemon` implements `sipedge.api.Managed`.
Must not: import `sipd.metrics` (the collector reads this class, so the class cannot import it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from sipedge import __version__
from sipedge.api import (
    AccessPolicy,
    CredentialError,
    accepted_hosts,
    build_app,
    reload_tls,
    tls_context,
)
from sipedge.api.console import add_console
from sipedge.appliance import notify
from sipedge.calls.media_service import MediaService
from sipedge.calls.service import B2BUA, media_policy
from sipedge.config import ApiConfig, Config, ConfigError, StorageConfig, load_config
from sipedge.gcwatch import GcWatch
from sipedge.guard import GuardService
from sipedge.media import MediaClient
from sipedge.natd import open_udp_retrying
from sipedge.registrar import RegistrarComponent
from sipedge.resolver import DnsResolver
from sipedge.sip import message as sip_message
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
from sipedge.sipd.provisioning import provisioning_error
from sipedge.sipd.settings import (
    access_policy,
    carrier_passwords,
    cert_not_after,
    dns_settings,
    gateway_list,
    gateway_names,
    same_family,
)
from sipedge.stats import MAPPING, ROUTING, CarrierStats
from sipedge.store import (
    CdrFilters,
    CdrStore,
    PostgresSettings,
    open_cdr_reader,
    open_cdr_store,
)
from sipedge.typedefs import Addr

if TYPE_CHECKING:
    from sipedge.sipd.fleet import FleetStats

log = logging.getLogger("sipedge.sipd")
RETENTION_INTERVAL = 60.0  # seconds between two CDR retention passes (the first at start)
# How often the SIP sockets' receive queues are sampled for load shedding: at 500 calls/s
# about 350 datagrams arrive in between
BACKLOG_INTERVAL = 0.1
RETENTION_BATCHES = 1000  # prune() calls per pass at most (each a bounded batch)
MIB = 1 << 20


class SipDaemonBase:
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
        self._backlog_watch: asyncio.Task[None] | None = None
        self._publish_calls: asyncio.Task[None] | None = None  # scope=fleet's current calls
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
        self.fleet_stats: FleetStats | None = None  # scope=fleet, storage.backend postgresql
        self.metrics_registry = CollectorRegistry()
        # why the first-boot seed was refused, if it was (read again on reload)
        self.provisioning_error = self._read_provisioning()

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
        postgres = PostgresSettings.of(self.storage, self.config.node_name)
        self.cdrs = open_cdr_store(
            self.storage.path,
            durable=self.storage.cdr_durable,
            postgres=postgres,
            migrate=self.storage.migrate_on_start,
        )
        if postgres is not None:
            # asyncpg only with PostgreSQL (as the CDR store does): not at every sipd's start
            from sipedge.sipd.fleet import FleetStats

            self.fleet_stats = FleetStats(postgres)
            self._publish_calls = asyncio.create_task(
                self.fleet_stats.publish_every(self.carrier_stats.current_calls),
                name="fleet-calls",
            )
        self._retention = asyncio.create_task(self._retention_loop(), name="cdr-retention")
        transports = self.transports = await self._open_transports()
        self._backlog_watch = asyncio.create_task(self._watch_backlog(), name="sip-backlog")
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
        self.registrar = RegistrarComponent(
            self.config, self._b2bua, self.transport, transports.udp
        )
        await self.registrar.start()
        app = build_app(self)
        self.registrar.add_routes(app)
        add_console(app, self.registrar)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        api = self.api_config
        site = web.TCPSite(self._runner, api.host, api.port, ssl_context=self._tls)
        await site.start()
        log.info(
            "sipedge-sipd %s: SIP on %s; API on %s://%s:%s (%s; SIP message layer %s)",
            __version__,
            ", ".join(transports.describe()),
            "https" if self._tls is not None else "http",
            f"[{api.host}]" if ":" in api.host else api.host,
            api.port,
            "open: no token" if self._policy.open else "tokens required",
            "compiled" if compiled(sip_message) else "pure Python",  # setup.py: mypyc
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
                if sip.public_address and same_family(sip.public_address, listen.host):
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

    async def _watch_backlog(self) -> None:
        """Load shedding's input: every BACKLOG_INTERVAL, what waits in the SIP UDP sockets
        (`calls.capacity.Backlog`: new calls get 503 while it is over SS_SIP_OVERLOAD_QUEUE)."""
        while True:
            await asyncio.sleep(BACKLOG_INTERVAL)
            if self.transports is None or self._b2bua is None:
                continue
            backlog = self._b2bua.caps.backlog
            queued = sum(udp.queued_bytes() for udp in self.transports.udp)
            if not backlog.observe(queued):
                continue
            if backlog.behind:
                log.warning(
                    "behind on SIP: %d KiB waiting in the UDP sockets (SS_SIP_OVERLOAD_QUEUE"
                    " %d KiB): new calls get 503 until it is down to half",
                    queued // 1024,
                    backlog.limit // 1024,
                )
            else:
                refused = self._b2bua.caps.rejected["overload"]
                log.warning(
                    "caught up on SIP (%d KiB waiting): new calls admitted again; %d refused"
                    " for overload since start",
                    queued // 1024,
                    refused,
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
        # a fleet peer relays calls to our phones: never rate-limited or banned (docs/fleet.md)
        if self.registrar is not None and self.registrar.endpoints.is_fleet_peer(address):
            return True
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
        self.provisioning_error = self._read_provisioning()  # a seed applied again (--force)
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

    def _read_provisioning(self) -> str | None:
        error = provisioning_error(self.storage.path)
        if error is not None:
            log.warning("the first-boot seed was refused: %s", error)
        return error

    def health(self) -> dict[str, object]:
        health: dict[str, object] = {
            "status": "draining" if self.b2bua.draining else "ok",
            "version": __version__,
            "uptime": round(time.time() - self.started, 3),
            "active_calls": len(self.b2bua.calls),
        }
        if self.provisioning_error is not None:
            health["provisioning"] = {"status": "refused", "error": self.provisioning_error}
        return health

    # -- sipedge.api.Managed -------------------------------------------------------------------
    def access_policy(self) -> AccessPolicy:
        return self._policy

    def calls(self) -> list[dict[str, object]]:
        return self.b2bua.summaries()

    def active_calls(self) -> int:
        return len(self.b2bua.calls)

    def held(self) -> int:
        """What most of sipd's memory goes with: its calls and transactions (those of ended
        calls linger 32 s). `gcwatch.heap` trims the heap once this has halved from a peak."""
        transactions = self.b2bua.transactions
        return len(self.b2bua.calls) + len(transactions.server) + len(transactions.client)

    def compact(self) -> None:
        """Little is held (`gcwatch.heap` asks before it trims): the transaction tables, tens
        of thousands of entries at a peak of calls, are rebuilt at their present size."""
        self.b2bua.transactions.compact()

    def gateway_stats(self) -> dict[str, object]:
        return self.carrier_stats.snapshot()

    def gateway_series(self, window: str) -> dict[str, object]:
        return self.carrier_stats.series(window)

    async def fleet_gateway_stats(self) -> dict[str, object] | None:
        if self.fleet_stats is None:
            return None
        gateways = self.carrier_stats.gateways
        return await self.fleet_stats.snapshot(sorted(gateways[ROUTING]), sorted(gateways[MAPPING]))

    def read_cdrs(
        self,
        limit: int,
        call_id: str | None,
        before: int | None,
        filters: CdrFilters | None = None,
    ) -> list[dict[str, Any]]:
        """In a worker thread, on a read-only connection of its own (never the writer's); with
        PostgreSQL through the store's own pool."""
        if self.cdrs is not None and self.storage.backend == "postgresql":
            return self.cdrs.recent(limit, call_id, before, filters)
        try:
            reader = open_cdr_reader(self.storage.path)
        except FileNotFoundError:
            return []
        try:
            return reader.recent(limit, call_id, before, filters)
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
        if self._backlog_watch is not None:
            self._backlog_watch.cancel()
        if self._publish_calls is not None:
            self._publish_calls.cancel()
        if self.fleet_stats is not None:
            await asyncio.to_thread(self.fleet_stats.close)  # bounded: deletes its row
        if self.cdrs is not None:
            self.cdrs.close()  # commits the CDRs still queued (bounded wait), stops the writer
        self.gc_watch.uninstall()


def compiled(module: object) -> bool:
    """True if `module` was built to a C extension (setup.py compiles sipd's hot modules)."""
    return str(getattr(module, "__file__", "")).endswith(".so")
