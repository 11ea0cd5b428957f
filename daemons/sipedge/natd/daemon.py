"""sipedge-natd: NAT keep-alives to registered devices, sent from sipd's SIP socket.

Every ``SS_SIP_NAT_KEEP_ALIVE_PERIOD`` seconds a cycle starts: the registered devices behind
NAT (fetched from sipd at the start of the cycle) are sent ``SS_SIP_NAT_KEEP_ALIVE_MESSAGE``
as a raw UDP payload, in batches of ``SS_SIP_NAT_KEEP_ALIVE_SEND_ONE_TIME`` devices, one batch
every ``SS_SIP_NAT_KEEP_ALIVE_SEND_INTERVAL`` ms. A cycle that cannot reach every device within
its period stops there (the next one starts from the beginning, as the manual says); the
devices it missed are counted. An empty message turns the feature off.

The messages leave from sipd's signaling socket: sipd hands natd the descriptor over a unix
socket (`sipedge.natd.link`). When sipd is down natd waits and reconnects (bounded retries per
second, forever); when sipd restarts natd closes the old descriptor, fetches the new one and
the device list again. sipd does not need natd.

Owns: the daemon (`KeepAliveDaemon`: the link to sipd, the device list, the cycle loop, config
reloads), its HTTP API (`/healthz`, `/api/status`, `/metrics`), `serve` and `main` (console
script `sipedge-natd`).
Must not: plan batches (keepalive.py, pure) or time a cycle's sends (sender.py); it runs them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from sipedge import __version__
from sipedge.appliance import notify
from sipedge.config import Config, ConfigError, load_config
from sipedge.natd.keepalive import KeepAliveSettings
from sipedge.natd.link import fetch_devices, fetch_socket, link_path
from sipedge.natd.sender import NatdStats, run_cycle
from sipedge.typedefs import Addr

log = logging.getLogger("sipedge.natd")


@dataclass
class KeepAliveDaemon:
    config_path: Path
    config: Config
    stats: NatdStats = field(default_factory=NatdStats)
    link: socket.socket | None = None
    udp: socket.socket | None = None  # sipd's primary UDP listener
    local: Addr | None = None
    by_family: dict[int, socket.socket] = field(default_factory=dict)  # 4/6 -> listener
    listeners: list[Addr] = field(default_factory=list)  # every socket's local address
    version: int | None = None
    devices: list[Addr] = field(default_factory=list)
    reloads: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def settings(self) -> KeepAliveSettings:
        return KeepAliveSettings.from_parameters(self.config.parameters)

    @property
    def path(self) -> Path:
        return link_path(self.config.storage.path)

    # link ------------------------------------------------------------------------------------
    async def _connect(self) -> bool:
        try:
            link, socks, locals_ = await asyncio.to_thread(fetch_socket, self.path)
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.debug("sipd not reachable at %s: %s", self.path, err)
            return False
        self.link, self.udp, self.local, self.listeners = link, socks[0], locals_[0], locals_
        self.by_family = {6 if s.family == socket.AF_INET6 else 4: s for s in reversed(socks)}
        self.version = None
        self.devices = []
        self.stats.link_up = True
        self.stats.link_connects += 1
        link.setblocking(False)
        asyncio.get_running_loop().add_reader(link.fileno(), self._on_link_readable)
        log.info("got sipd's SIP sockets %s", ", ".join(f"{h}:{p}" for h, p in locals_))
        return True

    def _on_link_readable(self) -> None:
        # sipd never writes on an idle link: readable means EOF (sipd gone) or garbage
        assert self.link is not None
        try:
            data = self.link.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            log.info("sipd went away: letting its socket go")
            self._drop_link()

    def _drop_link(self) -> None:
        if self.link is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self.link.fileno())
            self.link.close()
        for udp in self.by_family.values():
            udp.close()
        self.by_family = {}
        self.link = self.udp = None
        self.stats.link_up = False
        self._wake.set()

    async def _refresh_devices(self) -> None:
        try:
            answer = await asyncio.to_thread(fetch_devices, self.path, self.version)
        except (OSError, ValueError) as err:
            log.debug("device fetch failed: %s", err)
            return
        version = answer.get("version")
        if not answer.get("unchanged"):
            raw = answer.get("devices")
            if isinstance(raw, list):
                self.devices = [(str(d[0]), int(d[1])) for d in raw]
        self.version = version if isinstance(version, int) else None
        self.stats.devices = len(self.devices)

    def _send(self, data: bytes, addr: Addr) -> None:
        """From sipd's listener of the device's family (IPv6 devices registered over IPv6),
        else the primary one (the kernel refuses a family it cannot send: a send error)."""
        udp = self.by_family.get(6 if ":" in addr[0] else 4, self.udp)
        if udp is None:
            raise OSError("no socket")
        udp.sendto(data, addr)

    # main loop -------------------------------------------------------------------------------
    async def run(self) -> None:
        while not self._stop.is_set():
            if self.udp is None and not await self._connect():
                await self._sleep(1.0)
                continue
            s = self.settings
            start = time.monotonic()
            self.stats.last_cycle_start = time.time()
            if s.enabled:
                await self._refresh_devices()
                if self.udp is not None:
                    cycle = asyncio.create_task(run_cycle(self.devices, s, self._send, self.stats))
                    stop = asyncio.create_task(self._stop.wait())
                    await asyncio.wait({cycle, stop}, return_when=asyncio.FIRST_COMPLETED)
                    stop.cancel()
                    if not cycle.done():
                        cycle.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await cycle
            if self.udp is not None:  # else: sipd went away, reconnect at once
                await self._sleep(max(0.0, start + s.period - time.monotonic()))

    async def _sleep(self, seconds: float) -> None:
        """Sleep, waking early on stop or when the link drops (to reconnect at once)."""
        self._wake.clear()
        waits = {asyncio.create_task(self._stop.wait()), asyncio.create_task(self._wake.wait())}
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            task.cancel()

    def reload(self) -> None:
        try:
            self.config = load_config(self.config_path)
            self.reloads += 1
            log.info("config reloaded")
        except ConfigError as err:
            log.error("config reload failed, keeping the running config:\n%s", err)

    def request_stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._drop_link()

    def status(self) -> dict[str, object]:
        s = self.settings
        st = self.stats
        return {
            "version": __version__,
            "enabled": s.enabled,
            "link_up": st.link_up,
            "sip_socket": list(self.local) if self.local else None,
            "sip_sockets": [list(a) for a in self.listeners],
            "devices": st.devices,
            "capacity_per_cycle": s.capacity,
            "sent": st.sent,
            "cycles": st.cycles,
            "missed_last_cycle": st.missed_last_cycle,
            "cycle_duration": round(st.cycle_duration, 6),
        }


class NatdCollector(Collector):
    def __init__(self, daemon: KeepAliveDaemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        st = self.daemon.stats
        s = self.daemon.settings

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"sipedge_natd_{name}", doc, value=value)

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(f"sipedge_natd_{name}", doc, value=value)

        yield gauge("enabled", "1 when SS_SIP_NAT_KEEP_ALIVE_MESSAGE is not empty", s.enabled)
        yield gauge("link_up", "1 while natd holds sipd's SIP socket", st.link_up)
        yield gauge("devices", "Registered devices behind NAT", st.devices)
        yield gauge("capacity", "Devices one cycle can reach", s.capacity)
        yield counter("sent", "Keep-alive messages sent", st.sent)
        yield counter("send_errors", "Keep-alive sends that failed", st.send_errors)
        yield counter("cycles", "Keep-alive cycles run", st.cycles)
        yield counter(
            "incomplete_cycles", "Cycles that could not reach every device", st.incomplete_cycles
        )
        yield gauge(
            "cycle_duration_seconds", "First to last batch of the last cycle", st.cycle_duration
        )
        yield gauge(
            "missed_last_cycle", "Devices the last cycle did not reach", st.missed_last_cycle
        )
        yield counter("missed", "Devices missed, summed over cycles", st.missed_total)
        yield gauge("batch_lag_max_seconds", "Worst lateness of a batch", st.batch_lag_max)
        yield counter("link_connects", "Times natd (re)connected to sipd", st.link_connects)


DAEMON_KEY: web.AppKey[KeepAliveDaemon] = web.AppKey("natd")


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response(request.app[DAEMON_KEY].status())


def build_app(daemon: KeepAliveDaemon, registry: CollectorRegistry) -> web.Application:
    app = web.Application()
    app[DAEMON_KEY] = daemon

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/api/status", _healthz)
    app.router.add_get("/metrics", metrics)
    return app


async def serve(config_path: Path, api: str) -> int:
    try:
        config = load_config(config_path)
    except ConfigError as err:
        log.error("invalid config %s:\n%s", config_path, err)
        return 2
    daemon = KeepAliveDaemon(config_path, config)
    registry = CollectorRegistry()
    registry.register(NatdCollector(daemon))
    runner = web.AppRunner(build_app(daemon, registry), access_log=None, handle_signals=False)
    await runner.setup()
    host, _, port = api.rpartition(":")
    try:
        await web.TCPSite(runner, host or "127.0.0.1", int(port)).start()
    except OSError as err:
        log.error("cannot serve the API on %s: %s", api, err)
        await runner.cleanup()
        return 1
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, daemon.request_stop)
    loop.add_signal_handler(signal.SIGINT, daemon.request_stop)
    loop.add_signal_handler(signal.SIGHUP, daemon.reload)
    log.info("sipedge-natd %s: link %s, API on http://%s", __version__, daemon.path, api)
    notify("READY=1")
    try:
        await daemon.run()
    finally:
        notify("STOPPING=1")
        daemon.close()
        await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sipedge-natd", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, type=Path, help="path of sipedge.yaml")
    parser.add_argument(
        "--api", default="127.0.0.1:8082", help="host:port of natd's /healthz and /metrics"
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    sys.exit(asyncio.run(serve(args.config, args.api)))


if __name__ == "__main__":
    main()
