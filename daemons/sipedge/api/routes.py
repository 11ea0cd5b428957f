"""The routes of sipd's management API and its bearer-token middleware.

Owns: the URLs, the request parsing and the JSON bodies of sipd's own routes (`build_app`).
registrar/component.py adds `/api/registrations` and `/api/endpoints` to the same app.
Must not: import sipd, calls/ or store/, or reach past `Managed` into the daemon.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sipedge.api.managed import Managed

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DAEMON_KEY: web.AppKey[Managed] = web.AppKey("daemon")


@web.middleware
async def bearer_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[DAEMON_KEY].api_token()
    if token and request.path.startswith("/api/"):
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return web.json_response({"error": "unauthorized"}, status=401)
    return await handler(request)


async def healthz(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    return web.json_response(daemon.health())


async def metrics(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    body = generate_latest(daemon.metrics_registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def calls(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    return web.json_response(daemon.calls())


async def cdrs(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    try:
        limit = min(int(request.query.get("limit", "50")), 10000)
    except ValueError:
        return web.json_response({"error": "limit must be a whole number"}, status=400)
    call_id = request.query.get("call_id")
    return web.json_response(daemon.recent_cdrs(limit, call_id))


async def reload_config(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    ok, message = daemon.reload()
    return web.json_response({"ok": ok, "message": message}, status=200 if ok else 422)


async def drain(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    daemon.set_draining(True)
    return web.json_response({"draining": True, "active_calls": daemon.active_calls()})


async def undrain(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    daemon.set_draining(False)
    return web.json_response({"draining": False})


async def bans(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    return web.json_response(daemon.bans())


async def clear_bans(request: web.Request) -> web.Response:
    """DELETE /api/bans lifts every ban, DELETE /api/bans/{address} one (404: not banned)."""
    daemon = request.app[DAEMON_KEY]
    address = request.match_info.get("address")
    cleared = daemon.clear_bans(address)
    if address is not None and cleared == 0:
        return web.json_response({"error": f"{address} is not banned"}, status=404)
    return web.json_response({"cleared": cleared})


def build_app(daemon: Managed) -> web.Application:
    app = web.Application(middlewares=[bearer_auth])
    app[DAEMON_KEY] = daemon
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/calls", calls)
    app.router.add_get("/api/cdrs", cdrs)
    app.router.add_post("/api/config/reload", reload_config)
    app.router.add_post("/api/drain", drain)
    app.router.add_post("/api/undrain", undrain)
    app.router.add_get("/api/bans", bans)
    app.router.add_delete("/api/bans", clear_bans)
    app.router.add_delete("/api/bans/{address}", clear_bans)
    return app
