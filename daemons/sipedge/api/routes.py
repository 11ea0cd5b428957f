"""The routes of sipd's management API and the middleware that guards them.

Owns: the URLs, the request parsing and the JSON bodies of sipd's own routes (`build_app`),
and `guard`, the middleware that applies `api/auth.py`'s verdict to every request (Host check
first, then the token's scope). registrar/component.py adds `/api/registrations` and
`/api/endpoints` to the same app; they are GETs, so read scope.
Must not: import sipd, calls/ or store/, reach past `Managed` into the daemon, or read CDRs on
the event loop (`/api/cdrs` runs `Managed.read_cdrs` in a worker thread).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sipedge.api.auth import decide
from sipedge.api.managed import Managed

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DAEMON_KEY: web.AppKey[Managed] = web.AppKey("daemon")
GRANTED_KEY: web.RequestKey[str | None] = web.RequestKey("granted")
CDR_LIMIT_MAX = 1000
CDR_LIMIT_DEFAULT = 50
_WHOLE = re.compile(r"^[0-9]{1,18}$")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    daemon = request.app[DAEMON_KEY]
    verdict = decide(
        daemon.access_policy(),
        request.method,
        request.path,
        request.headers.get("Host"),
        request.headers.get("Authorization"),
    )
    if verdict.status:
        headers = {}
        if verdict.www_authenticate:
            headers["WWW-Authenticate"] = verdict.www_authenticate
        return web.json_response({"error": verdict.error}, status=verdict.status, headers=headers)
    request[GRANTED_KEY] = verdict.granted
    return await handler(request)


async def healthz(request: web.Request) -> web.Response:
    """Open (load balancers, systemd readiness); the full body only with a valid token."""
    daemon = request.app[DAEMON_KEY]
    health = daemon.health()
    if request.get(GRANTED_KEY) is None:
        public = {"status": health["status"]}
        provisioning = health.get("provisioning")
        if isinstance(provisioning, dict):  # that it failed, not why (the reason names paths)
            public["provisioning"] = provisioning["status"]
        return web.json_response(public)
    return web.json_response(health)


async def metrics(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    body = generate_latest(daemon.metrics_registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def calls(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    return web.json_response(daemon.calls())


async def gateway_stats(request: web.Request) -> web.Response:
    """Carrier statistics over the 5 min, 1 h and 24 h windows (docs/monitoring.md):
    `scope=node` (the default) this edge's, from memory; `scope=fleet` every edge's, from the
    CDRs in the shared PostgreSQL (409 with another backend, 503 when it does not answer)."""
    daemon = request.app[DAEMON_KEY]
    scope = request.query.get("scope", "node")
    if scope == "node":
        return web.json_response(daemon.gateway_stats())
    if scope != "fleet":
        return web.json_response({"error": "scope must be node or fleet"}, status=400)
    try:
        body = await daemon.fleet_gateway_stats()
    except ConnectionError as err:
        return web.json_response({"error": str(err)}, status=503)
    if body is None:
        return web.json_response(
            {"error": "scope=fleet needs storage.backend postgresql (the fleet's shared"
             " database); this edge keeps its CDRs in SQLite: use scope=node"},
            status=409,
        )  # fmt: skip
    return web.json_response(body)


def _whole(text: str | None) -> int | None:
    return int(text) if text is not None and _WHOLE.match(text) else None


async def cdrs(request: web.Request) -> web.Response:
    """Newest first, `limit` (1-1000) at a time; `before=<id>` continues after a page, whose
    last record's id is the cursor; the next page's URL is in `Link: <...>; rel="next"`."""
    daemon = request.app[DAEMON_KEY]
    query = request.query
    limit = _whole(query.get("limit", str(CDR_LIMIT_DEFAULT)))
    if limit is None or not 1 <= limit <= CDR_LIMIT_MAX:
        return web.json_response(
            {"error": f"limit must be a whole number from 1 to {CDR_LIMIT_MAX}"}, status=400
        )
    before = None
    if "before" in query:
        before = _whole(query["before"])
        if before is None or before < 1:
            return web.json_response(
                {"error": "before must be the id of a CDR (a whole number, 1 or more)"},
                status=400,
            )
    call_id = query.get("call_id")
    records = await asyncio.to_thread(daemon.read_cdrs, limit, call_id, before)
    headers = {}
    if len(records) == limit:
        following = request.rel_url.update_query(limit=limit, before=records[-1]["id"])
        headers["Link"] = f'<{following}>; rel="next"'
    return web.json_response(records, headers=headers)


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
    app = web.Application(middlewares=[guard])
    app[DAEMON_KEY] = daemon
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/calls", calls)
    app.router.add_get("/api/cdrs", cdrs)
    app.router.add_get("/api/gateways/stats", gateway_stats)
    app.router.add_post("/api/config/reload", reload_config)
    app.router.add_post("/api/drain", drain)
    app.router.add_post("/api/undrain", undrain)
    app.router.add_get("/api/bans", bans)
    app.router.add_delete("/api/bans", clear_bans)
    app.router.add_delete("/api/bans/{address}", clear_bans)
    return app
