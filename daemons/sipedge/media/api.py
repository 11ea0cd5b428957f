"""Control API of sipedge-mediad (aiohttp on media.control_socket).

`POST /ng` with a JSON object `{"command": "offer" | "answer" | "delete" | "query" | "list",
...}` (rtpengine ng style; `POST /<command>` takes the same object without "command").
Every answer is JSON with "result": "ok", or "result": "error" with "error-code" and
"error-reason" and a 4xx/5xx status. `GET /healthz`, `GET /metrics` (Prometheus text).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from sipedge.media.session import ControlError

if TYPE_CHECKING:
    from sipedge.media.daemon import MediaDaemon

DAEMON_KEY: web.AppKey[MediaDaemon] = web.AppKey("media_daemon")
REGISTRY_KEY: web.AppKey[CollectorRegistry] = web.AppKey("media_registry")
COMMANDS = ("offer", "answer", "delete", "query", "list", "ping")


def _error(exc: ControlError) -> web.Response:
    return web.json_response(exc.to_json(), status=exc.status)


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ControlError("bad-json", f"request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ControlError("bad-request", "request body must be a JSON object")
    return body


def _run(daemon: MediaDaemon, body: dict[str, Any]) -> web.Response:
    try:
        return web.json_response(daemon.command(body))
    except ControlError as exc:
        daemon.errors[exc.code] = daemon.errors.get(exc.code, 0) + 1
        return _error(exc)


async def ng(request: web.Request) -> web.Response:
    try:
        body = await _body(request)
    except ControlError as exc:
        return _error(exc)
    return _run(request.app[DAEMON_KEY], body)


async def named(request: web.Request) -> web.Response:
    command = request.match_info["command"]
    if command not in COMMANDS:
        return _error(ControlError("unknown-command", f"unknown command {command!r}", 404))
    try:
        body = await _body(request)
    except ControlError as exc:
        return _error(exc)
    body["command"] = command
    return _run(request.app[DAEMON_KEY], body)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response(request.app[DAEMON_KEY].health())


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY_KEY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


class MediaCollector:
    def __init__(self, daemon: MediaDaemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Any]:
        d = self.daemon
        yield GaugeMetricFamily("sipedge_media_sessions", "Relay sessions", value=len(d.table))
        yield GaugeMetricFamily(
            "sipedge_media_ports_in_use",
            "Relay ports in use (RTP+RTCP)",
            value=2 * len(d.table.ports.in_use),
        )
        yield GaugeMetricFamily(
            "sipedge_media_ports_capacity",
            "RTP/RTCP port pairs in media.port_range",
            value=d.table.ports.capacity,
        )
        path = GaugeMetricFamily(
            "sipedge_media_fast_path", "Relay path in use (1 for the active one)", labels=["path"]
        )
        for name in ("xdp-native", "xdp-generic", "userspace"):
            path.add_metric([name], 1.0 if d.path == name else 0.0)
        yield path
        relay = d.relay
        if relay is not None:
            yield CounterMetricFamily(
                "sipedge_media_userspace_packets_in",
                "Packets read by the userspace relay",
                value=relay.packets_in,
            )
            yield CounterMetricFamily(
                "sipedge_media_userspace_packets_out",
                "Packets sent by the userspace relay",
                value=relay.packets_out,
            )
            yield CounterMetricFamily(
                "sipedge_media_userspace_dropped",
                "Packets the userspace relay dropped",
                value=relay.dropped,
            )
        if d.xdp is not None:
            packets = bytes_ = 0
            for session in d.table:
                if session.needs_userspace:
                    continue
                for leg in session.legs:
                    for port in (leg.port, leg.rtcp_port):
                        st = d.xdp.stats(d.settings.bind_address, port)
                        packets += st.packets
                        bytes_ += st.bytes
            yield CounterMetricFamily(
                "sipedge_media_xdp_packets",
                "Packets relayed by XDP (live sessions)",
                value=packets,
            )
            yield CounterMetricFamily(
                "sipedge_media_xdp_bytes", "Bytes relayed by XDP (live sessions)", value=bytes_
            )
        req = CounterMetricFamily("sipedge_media_requests", "Control requests", labels=["command"])
        for cmd, n in sorted(d.requests.items()):
            if cmd in COMMANDS:
                req.add_metric([cmd], n)
        yield req
        err = CounterMetricFamily(
            "sipedge_media_errors", "Refused control requests", labels=["code"]
        )
        for code, n in sorted(d.errors.items()):
            err.add_metric([code], n)
        yield err


def build_app(daemon: MediaDaemon) -> web.Application:
    app = web.Application()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MediaCollector(daemon))
    app[DAEMON_KEY] = daemon
    app[REGISTRY_KEY] = registry
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/ng", ng)
    app.router.add_post("/{command}", named)
    return app
