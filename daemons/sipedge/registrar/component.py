"""Registrations inside sipd: the registrar's bindings, outbound registrations, the natd link.

One object (`RegistrarComponent`) that `SipDaemon` creates at start, re-configures on reload
and stops at shutdown, so the daemon needs only a few lines for all of it:

* `EndpointService` (registrar, endpoint calls) hooked into the B2BUA as ``b2bua.endpoints``;
* `RegistrationManager` (we register to carriers);
* `BindingStore` (SQLite under storage.path, or PostgreSQL), flushed and swept every 0.5 s;
* `NatLinkServer` (``<storage.path>/natd.sock``) for sipedge-natd;
* with `fleet.address`, the `FleetView` (the other edges' bindings, this edge's heartbeat),
  refreshed every second (docs/fleet.md);
* the API routes ``/api/registrations`` and ``/api/endpoints`` and their metrics.

Owns: `RegistrarComponent`, the lifetime of those five and the housekeeping tick.
Must not: hold registrar rules or SIP handling itself (that is `rules` and `service`), or be
imported by calls/: the B2BUA knows only the `EndpointHooks` it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from sipedge.natd import NatLinkServer, link_path, sip_socket_fd
from sipedge.registrar.fleet import OUTCOMES
from sipedge.registrar.service import EndpointService
from sipedge.store import FleetView, PostgresSettings, open_binding_store, open_fleet_view
from sipedge.uplinks import RegistrationManager, RegState

if TYPE_CHECKING:
    from sipedge.calls import B2BUA
    from sipedge.config import Config
    from sipedge.sip.transport.udp import UdpTransport

log = logging.getLogger(__name__)

TICK = 0.5
FLEET_REFRESH = 1.0  # seconds between two reads of the other edges' bindings (and heartbeats)


def fleet_port(config: Config) -> int:
    """Where the other edges send calls for our phones: fleet.port, else the first UDP
    listener's port."""
    if config.fleet.port is not None:
        return config.fleet.port
    return next(a.port for a in config.sip.listen if a.transport == "udp")


class RegistrarComponent:
    def __init__(
        self,
        config: Config,
        b2bua: B2BUA,
        transport: UdpTransport,
        listeners: Sequence[UdpTransport] = (),
    ) -> None:
        """`transport` is the primary UDP listener; `listeners` all of them (natd is handed
        the first of each family)."""
        self.config = config
        self.store = open_binding_store(
            config.storage.path,
            PostgresSettings.of(config.storage, config.node_name),
            migrate=config.storage.migrate_on_start,
        )
        self.registrations = RegistrationManager(
            # our address toward a carrier from the listener of its family (IPv4 or IPv6)
            b2bua.transactions,
            lambda destination: b2bua.via_for(destination)[0],
            transport.port,
            b2bua.resolver,
        )
        self.fleet: FleetView | None = None
        if config.fleet.address is not None:
            self.fleet = open_fleet_view(
                PostgresSettings.of(config.storage, config.node_name),
                config.fleet.address,
                fleet_port(config),
            )
        self._fleet_at = 0.0
        self.endpoints = EndpointService(config, self.store, self.registrations, fleet=self.fleet)
        b2bua.endpoints = self.endpoints
        b2bua.mapping_auth.share(self.endpoints.digest)  # one nonce table for both

        def udp_fds() -> list[int]:
            fds = (sip_socket_fd(t) for t in (transport, *listeners))
            return [fd for fd in fds if fd is not None]

        self.natlink = NatLinkServer(link_path(config.storage.path), udp_fds, self._nat_devices)
        self._tick_task: asyncio.Task[None] | None = None

    def _nat_devices(self) -> tuple[int, list[tuple[str, int]]]:
        return self.endpoints.table.version, self.endpoints.nat_devices()

    async def start(self) -> None:
        await self.natlink.start()
        self.registrations.apply_config(self.config.registrations, self.config.parameters)
        self._tick_task = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                self.endpoints.tick()
                self._refresh_fleet()
            except Exception:
                log.exception("registrar housekeeping failed")

    def _refresh_fleet(self) -> None:
        now = time.monotonic()
        if self.fleet is None or now - self._fleet_at < FLEET_REFRESH:
            return
        if self.fleet.refresh(self.endpoints.clock(), self.endpoints.passwords.keys()):
            self._fleet_at = now

    def apply_config(self, config: Config) -> None:
        before = (self.config.fleet.address, self.config.fleet.port)
        if (config.fleet.address, config.fleet.port) != before:
            log.warning("fleet.address and fleet.port take effect at the next restart")
        self.config = config
        self.endpoints.apply_config(config)
        self.registrations.apply_config(config.registrations, config.parameters)

    async def stop(self) -> None:
        """Withdraw from the fleet, un-register (bounded, 2 s), close the natd link, write the
        bindings."""
        if self._tick_task is not None:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
        if self.fleet is not None:
            # first, so the other edges stop sending calls here (bounded, on a worker thread)
            await asyncio.to_thread(self.fleet.close)
        await self.registrations.stop(self.config.parameters.sip_user_agent_send_unregister)
        await self.natlink.close()
        self.store.close()

    # -- API ---------------------------------------------------------------------------------
    def registration_summaries(self) -> list[dict[str, object]]:
        """Our registrations to carriers (`/api/registrations`, the console)."""
        return self.registrations.summaries()

    def endpoint_summary(self) -> dict[str, object]:
        """Endpoints registered to us (`/api/endpoints`, the console)."""
        now = self.endpoints.clock()
        return {
            "bindings": self.endpoints.bindings(),
            "suspended": self.endpoints.guard.suspended_now(now),
            "nat_devices": len(self.endpoints.nat_devices()),
        }

    def add_routes(self, app: web.Application) -> None:
        async def registrations(request: web.Request) -> web.Response:
            return web.json_response(self.registration_summaries())

        async def endpoints(request: web.Request) -> web.Response:
            return web.json_response(self.endpoint_summary())

        app.router.add_get("/api/registrations", registrations)
        app.router.add_get("/api/endpoints", endpoints)

    # -- metrics -----------------------------------------------------------------------------
    def metrics(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        s = self.endpoints.stats

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(f"sipedge_{name}", doc, value=value)

        now = self.endpoints.clock()
        bindings = [b for b in self.endpoints.table.bindings.values() if b.live(now)]
        yield GaugeMetricFamily(
            "sipedge_registrar_bindings", "Live endpoint registrations", value=len(bindings)
        )
        yield GaugeMetricFamily(
            "sipedge_registrar_nat_bindings",
            "Live endpoint registrations behind NAT",
            value=sum(1 for b in bindings if b.nat),
        )
        yield GaugeMetricFamily(
            "sipedge_registrar_tracked_failures",
            "Accounts and sources with failed authentications on record (bounded)",
            value=len(self.endpoints.guard),
        )
        yield GaugeMetricFamily(
            "sipedge_registrar_tracked_nonces",
            "Nonces whose counts are tracked (bounded by security.max_nonces)",
            value=len(self.endpoints.digest.counts),
        )
        yield counter("registrar_registers", "REGISTER requests received", s.registers)
        yield counter("registrar_challenges", "Digest challenges sent (401/407)", s.challenges)
        yield counter("registrar_auth_failures", "Failed digest authentications", s.auth_failures)
        yield counter(
            "registrar_suspended_rejects",
            "Credentials refused (403 Forbidden) while the account or source was suspended",
            s.suspended_rejects,
        )
        yield counter("registrar_suspensions", "Accounts/sources suspended", s.suspensions)
        yield counter(
            "registrar_replays",
            "Right digest answers refused: nonce count used or uri not the Request-URI",
            s.replays,
        )
        yield counter("registrar_too_brief", "REGISTERs answered 423", s.too_brief)
        yield counter("registrar_expired", "Bindings that expired", s.expired)
        yield counter(
            "endpoint_invites_authenticated",
            "INVITEs from endpoints admitted",
            s.invites_authenticated,
        )
        if self.fleet is not None:
            yield from self._fleet_metrics()
        r = self.registrations.stats
        yield counter("registration_requests", "Outbound REGISTERs sent", r.sent)
        yield counter("registration_successes", "Outbound registrations granted", r.registered)
        yield counter("registration_failures", "Outbound registration failures", r.failures)
        state = GaugeMetricFamily(
            "sipedge_registration_up",
            "1 when the outbound registration is registered",
            labels=["name"],
        )
        for name, reg in sorted(self.registrations.entries.items()):
            state.add_metric([name], 1 if reg.machine.state is RegState.REGISTERED else 0)
        yield state
        yield GaugeMetricFamily(
            "sipedge_natd_link_connected", "natd connections to sipd", value=self.natlink.connected
        )

    def _fleet_metrics(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        assert self.fleet is not None
        yield GaugeMetricFamily(
            "sipedge_fleet_up",
            "1 when the last read of the other edges' bindings reached the database",
            value=1 if self.fleet.up else 0,
        )
        yield GaugeMetricFamily(
            "sipedge_fleet_remote_bindings",
            "Other edges' live bindings of our accounts, as last read",
            value=self.fleet.size(),
        )
        yield CounterMetricFamily(
            "sipedge_fleet_refresh_failures",
            "Reads of the other edges' bindings that failed (the last view is kept)",
            value=self.fleet.failures,
        )
        routes = CounterMetricFamily(
            "sipedge_fleet_routes",
            "Calls to endpoint accounts by where they went (docs/fleet.md)",
            labels=["result"],
        )
        for outcome in OUTCOMES:
            routes.add_metric([outcome], self.endpoints.stats.fleet[outcome])
        yield routes
