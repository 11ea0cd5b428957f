"""Control API of sipedge-mediad (aiohttp on media.control_socket).

`POST /ng` with a JSON object `{"command": "offer" | "answer" | "delete" | "query" | "list" |
"touch" | "ping", ...}` (rtpengine ng style; `POST /<command>` takes the same object without
"command"). Every answer is JSON with "result": "ok", or "result": "error" with "error-code"
and "error-reason" and a 4xx/5xx status. `GET /healthz`, `GET /metrics` (Prometheus text).

`build_metrics_app` is the second, TCP-facing app (`media.metrics_listen`): only `GET /metrics`
(bearer token from `media.metrics_token_file`, compared in constant time) and `GET /healthz`;
never the ng commands.

Owns: the URLs, the request parsing, the error answers and the metric names of mediad, and
`MediaControl`, the Protocol of what they need of the daemon (`daemon.MediaDaemon` implements
it) with `MediaCounters`, the numbers one scrape reads.
Must not: import daemon.py, or touch sessions, sockets or BPF maps except through
`MediaControl`.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from sipedge.media.session import ControlError

COMMANDS = ("offer", "answer", "delete", "query", "list", "touch", "ping")
DROP_REASONS = ("foreign-source", "unlearned-source", "no-session")


@dataclass(frozen=True)
class UserspaceCounters:
    packets_in: int
    packets_out: int
    dropped: int
    cross_family: int = 0  # relayed by userspace from IPv4 to IPv6 or back


@dataclass(frozen=True)
class XdpCounters:
    packets: int  # retired (ended calls, earlier runs) + live sessions
    bytes: int


@dataclass(frozen=True)
class MediaCounters:
    """What `/metrics` shows, read from the daemon at scrape time."""

    sessions: int
    ports_in_use: int  # RTP+RTCP
    ports_capacity: int  # RTP/RTCP pairs in media.port_range
    path: str  # xdp-native, xdp-generic or userspace
    userspace: UserspaceCounters | None  # None before the relay runs
    xdp: XdpCounters  # zero without the XDP path (unless earlier runs had it)
    requests: dict[str, int]  # control requests by command
    errors: dict[str, int]  # refused control requests by error code
    dropped: dict[str, int]  # packets dropped by reason (DROP_REASONS), monotonic
    expired: int  # sessions deleted for idleness, monotonic
    xdp_ready_seconds: float | None = None  # start to the hand-over to XDP (None: not yet)
    xdp_loading: bool = False  # the XDP loader child still compiles and attaches


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
        yield GaugeMetricFamily(
            "sipedge_media_xdp_loading",
            "1 while the XDP program is being compiled and attached (relaying in userspace)",
            value=1.0 if c.xdp_loading else 0.0,
        )
        if c.xdp_ready_seconds is not None:
            yield GaugeMetricFamily(
                "sipedge_media_xdp_ready_seconds",
                "Seconds from mediad's start until its sessions moved onto the XDP path",
                value=c.xdp_ready_seconds,
            )
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
            yield CounterMetricFamily(
                "sipedge_media_cross_family_packets",
                "Packets the userspace relay relayed from IPv4 to IPv6 or back",
                value=relay.cross_family,
            )
        yield CounterMetricFamily(
            "sipedge_media_xdp_packets", "Packets relayed by XDP", value=c.xdp.packets
        )
        yield CounterMetricFamily(
            "sipedge_media_xdp_bytes", "Bytes relayed by XDP", value=c.xdp.bytes
        )
        dropped = CounterMetricFamily(
            "sipedge_media_dropped_packets",
            "Packets dropped: source not the latched/SDP one, or no session on the port",
            labels=["reason"],
        )
        for reason in DROP_REASONS:
            dropped.add_metric([reason], c.dropped.get(reason, 0))
        yield dropped
        yield CounterMetricFamily(
            "sipedge_media_sessions_expired",
            "Sessions deleted after media.idle_timeout without packets or commands",
            value=c.expired,
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


TOKEN_KEY: web.AppKey[str] = web.AppKey("media_metrics_token")


def _registry(daemon: MediaControl) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MediaCollector(daemon))
    return registry


async def guarded_metrics(request: web.Request) -> web.Response:
    token = request.app[TOKEN_KEY]
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return web.json_response(
                {"error": "unauthorized"},
                status=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
    return await metrics(request)


def build_metrics_app(daemon: MediaControl, token: str) -> web.Application:
    """GET /metrics (bearer `token` unless empty) and GET /healthz; nothing else."""
    app = web.Application(client_max_size=1024)
    app[DAEMON_KEY] = daemon
    app[REGISTRY_KEY] = _registry(daemon)
    app[TOKEN_KEY] = token
    app.router.add_get("/metrics", guarded_metrics)
    app.router.add_get("/healthz", healthz)
    return app


def build_app(daemon: MediaControl) -> web.Application:
    app = web.Application()
    app[DAEMON_KEY] = daemon
    app[REGISTRY_KEY] = _registry(daemon)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/ng", ng)
    app.router.add_post("/{command}", named)
    return app
