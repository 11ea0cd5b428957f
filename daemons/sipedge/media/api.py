"""Control API of sipedge-mediad (aiohttp on media.control_socket).

`POST /ng` with a JSON object `{"command": "offer" | "answer" | "delete" | "query" | "list",
...}` (rtpengine ng style; `POST /<command>` takes the same object without "command").
Every answer is JSON with "result": "ok", or "result": "error" with "error-code" and
"error-reason" and a 4xx/5xx status. `GET /healthz`, `GET /metrics` (Prometheus text).

Owns: the URLs, the request parsing, the error answers and the metric names of mediad, and
`MediaControl`, the Protocol of what they need of the daemon (`daemon.MediaDaemon` implements
it) with `MediaCounters`, the numbers one scrape reads.
Must not: import daemon.py, or touch sessions, sockets or BPF maps except through
`MediaControl`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from sipedge.media.session import ControlError

COMMANDS = ("offer", "answer", "delete", "query", "list", "ping")


@dataclass(frozen=True)
class UserspaceCounters:
    packets_in: int
    packets_out: int
    dropped: int


@dataclass(frozen=True)
class XdpCounters:
    packets: int  # summed over the live sessions on the XDP path
    bytes: int


@dataclass(frozen=True)
class MediaCounters:
    """What `/metrics` shows, read from the daemon at scrape time."""

    sessions: int
    ports_in_use: int  # RTP+RTCP
    ports_capacity: int  # RTP/RTCP pairs in media.port_range
    path: str  # xdp-native, xdp-generic or userspace
    userspace: UserspaceCounters | None  # None before the relay runs
    xdp: XdpCounters | None  # None without the XDP path
    requests: dict[str, int]  # control requests by command
    errors: dict[str, int]  # refused control requests by error code


class MediaControl(Protocol):
    """The relay daemon as the control API sees it."""

    def command(self, req: dict[str, Any]) -> dict[str, Any]:
        """Run one ng command; raises `ControlError` to refuse it."""
        ...

    def refused(self, code: str) -> None:
        """Count a command refused with this error code."""
        ...

    def health(self) -> dict[str, Any]:
        """The body of `/healthz`."""
        ...

    def counters(self) -> MediaCounters: ...


DAEMON_KEY: web.AppKey[MediaControl] = web.AppKey("media_daemon")
REGISTRY_KEY: web.AppKey[CollectorRegistry] = web.AppKey("media_registry")


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


def _run(daemon: MediaControl, body: dict[str, Any]) -> web.Response:
    try:
        return web.json_response(daemon.command(body))
    except ControlError as exc:
        daemon.refused(exc.code)
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
    def __init__(self, daemon: MediaControl) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Any]:
        c = self.daemon.counters()
        yield GaugeMetricFamily("sipedge_media_sessions", "Relay sessions", value=c.sessions)
        yield GaugeMetricFamily(
            "sipedge_media_ports_in_use",
            "Relay ports in use (RTP+RTCP)",
            value=c.ports_in_use,
        )
        yield GaugeMetricFamily(
            "sipedge_media_ports_capacity",
            "RTP/RTCP port pairs in media.port_range",
            value=c.ports_capacity,
        )
        path = GaugeMetricFamily(
            "sipedge_media_fast_path", "Relay path in use (1 for the active one)", labels=["path"]
        )
        for name in ("xdp-native", "xdp-generic", "userspace"):
            path.add_metric([name], 1.0 if c.path == name else 0.0)
        yield path
        relay = c.userspace
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
        if c.xdp is not None:
            yield CounterMetricFamily(
                "sipedge_media_xdp_packets",
                "Packets relayed by XDP (live sessions)",
                value=c.xdp.packets,
            )
            yield CounterMetricFamily(
                "sipedge_media_xdp_bytes", "Bytes relayed by XDP (live sessions)", value=c.xdp.bytes
            )
        req = CounterMetricFamily("sipedge_media_requests", "Control requests", labels=["command"])
        for cmd, n in sorted(c.requests.items()):
            if cmd in COMMANDS:
                req.add_metric([cmd], n)
        yield req
        err = CounterMetricFamily(
            "sipedge_media_errors", "Refused control requests", labels=["code"]
        )
        for code, n in sorted(c.errors.items()):
            err.add_metric([code], n)
        yield err


def build_app(daemon: MediaControl) -> web.Application:
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
