"""The operator console: server-rendered pages under `/console` on sipd's management API
(docs/console.md).

Public names: `add_console(app, registrar)` mounts it on the app of `sipedge.api.build_app`;
`RegistrarView` (pages.py) is what it needs of the registrar; `CSV_COLUMNS` and `csv_row`
(search.py) are the CDR CSV layout, which `sipedge cdr export` shares.

Modules: `sessions` (token -> session cookie, pure), `access` (middleware: session, CSRF,
security headers; login, logout, admin actions), `pages` (one handler per page), `search` (the
CDR search's bounded parameters, pure), `charts` (sparkline geometry, pure), `templates/`
(Jinja2, autoescaped) and `static/` (one stylesheet, one script; no third-party code).

Dependency direction: api/console/ imports api.auth, api.routes (the app keys) and nothing of
sipd, calls/, store/ or registrar/; sipd calls `add_console` after `build_app`.
"""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from sipedge.api.auth import CONSOLE
from sipedge.api.console import access, pages
from sipedge.api.console.pages import RegistrarView
from sipedge.api.console.search import CSV_COLUMNS, csv_row
from sipedge.api.console.sessions import SessionTable

__all__ = ["CSV_COLUMNS", "RegistrarView", "add_console", "csv_row"]

STATIC = Path(__file__).parent / "static"
NONE = "\N{EN DASH}"  # no data (not 0)


def _percent(value: object) -> str:
    return f"{value * 100:.0f} %" if isinstance(value, int | float) else NONE


def _seconds(value: object) -> str:
    if not isinstance(value, int | float):
        return NONE
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def _utc(value: object) -> str:
    if not isinstance(value, int | float):
        return NONE
    return datetime.datetime.fromtimestamp(value, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _console_app(registrar: RegistrarView | None) -> web.Application:
    app = web.Application(middlewares=[access.access])
    app.on_response_prepare.append(access.secure)
    app[access.SESSIONS_KEY] = SessionTable()
    app[pages.REGISTRAR_KEY] = registrar
    app[pages.SEARCH_SLOTS_KEY] = asyncio.Semaphore(pages.SEARCHES)
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("sipedge.api.console", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(percent=_percent, seconds=_seconds, utc=_utc)
    app.router.add_get("/", pages.index)
    app.router.add_get("/login", access.login_form)
    app.router.add_post("/login", access.login)
    app.router.add_post("/logout", access.logout)
    app.router.add_get("/calls", pages.calls)
    app.router.add_get("/gateways", pages.gateways)
    app.router.add_get("/registrations", pages.registrations)
    app.router.add_get("/bans", pages.bans)
    app.router.add_get("/cdrs", pages.cdrs)
    app.router.add_get("/cdrs.csv", pages.cdrs_csv)
    app.router.add_post("/actions/{name}", access.action)
    app.router.add_static("/static/", STATIC)
    return app


def add_console(app: web.Application, registrar: RegistrarView | None) -> None:
    """Mount the console under `/console` (the guard of `build_app` has let it through on the
    Host check; the console's own middleware asks for the session)."""

    async def bare(request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther(f"{CONSOLE}/calls")

    app.router.add_get(CONSOLE, bare)
    app.add_subapp(CONSOLE, _console_app(registrar))
