"""The console's pages: live calls, gateways, registrations, bans, the CDR search and its CSV.

Owns: one handler per page, each rendering `templates/page.html` around `parts/<page>.html`
(or, for console.js's polling, only `part.html`: the status line and `parts/<page>.html`), and
`cdrs_csv`, the search as a download.
Must not: reach past `Managed` and `RegistrarView` into the daemon, read CDRs on the event loop
(searches run in a worker thread, at most `SEARCHES` at a time), or change anything (the admin
actions are `access.py`'s).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import aiohttp_jinja2
from aiohttp import web

from sipedge.api.auth import CONSOLE
from sipedge.api.console.access import PART_HEADER, session_of
from sipedge.api.console.charts import sparkline
from sipedge.api.console.search import CSV_COLUMNS, CSV_MAX_ROWS, Search, csv_row, parse_search
from sipedge.api.routes import DAEMON_KEY

SEARCHES = 2  # CDR searches in worker threads at once; more wait for a 503 "busy"
CHART_WINDOWS = ("5m", "1h", "24h")
REFRESH_SECONDS = 2


class RegistrarView(Protocol):
    """What the registrations page needs of the registrar (registrar/component.py)."""

    def registration_summaries(self) -> list[dict[str, object]]: ...

    def endpoint_summary(self) -> dict[str, object]: ...


REGISTRAR_KEY: web.AppKey[RegistrarView | None] = web.AppKey("console_registrar")
SEARCH_SLOTS_KEY: web.AppKey[asyncio.Semaphore] = web.AppKey("console_searches")


def _render(
    request: web.Request, page: str, context: Mapping[str, Any], status: int = 200
) -> web.Response:
    session = session_of(request)
    daemon = request.config_dict[DAEMON_KEY]
    full = {
        "page": page,
        "session": session,
        "open": daemon.access_policy().open,
        "health": daemon.health(),
        "refresh": REFRESH_SECONDS if page != "cdrs" else 0,
        "now": time.time(),
        **context,
    }
    if PART_HEADER in request.headers:
        response = aiohttp_jinja2.render_template("part.html", request, full, status=status)
    else:
        full["notice"], session.notice = session.notice, ""
        response = aiohttp_jinja2.render_template("page.html", request, full, status=status)
    response.headers["Vary"] = PART_HEADER
    return response


async def index(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther(f"{CONSOLE}/calls")


async def calls(request: web.Request) -> web.Response:
    return _render(request, "calls", {"calls": request.config_dict[DAEMON_KEY].calls()})


async def gateways(request: web.Request) -> web.Response:
    daemon = request.config_dict[DAEMON_KEY]
    window = request.query.get("chart", "1h")
    if window not in CHART_WINDOWS:
        window = "1h"
    series = daemon.gateway_series(window)
    charts: dict[tuple[str, str], Any] = {}
    for kind in ("routing", "mapping"):
        group = series.get(f"{kind}_gateways")
        if isinstance(group, dict):
            for name, buckets in group.items():
                charts[(kind, name)] = sparkline(buckets)
    context = {
        "stats": daemon.gateway_stats(),
        "charts": charts,
        "chart_window": window,
        "chart_windows": CHART_WINDOWS,
        "bucket_seconds": series.get("bucket_seconds"),
    }
    return _render(request, "gateways", context)


async def registrations(request: web.Request) -> web.Response:
    registrar = request.app[REGISTRAR_KEY]
    context: dict[str, Any] = {"outbound": [], "endpoints": None}
    if registrar is not None:
        context = {
            "outbound": registrar.registration_summaries(),
            "endpoints": registrar.endpoint_summary(),
        }
    return _render(request, "registrations", context)


async def bans(request: web.Request) -> web.Response:
    return _render(request, "bans", {"bans": request.config_dict[DAEMON_KEY].bans()})


def _search(request: web.Request) -> Search | list[str]:
    return parse_search(request.query, len(request.query_string))


@contextlib.asynccontextmanager
async def _search_slot(request: web.Request) -> AsyncIterator[None]:
    slots = request.app[SEARCH_SLOTS_KEY]
    if slots.locked():
        raise web.HTTPServiceUnavailable(text="busy: other CDR searches are running")
    async with slots:
        yield


async def _read(request: web.Request, search: Search, limit: int, before: int | None) -> Any:
    daemon = request.config_dict[DAEMON_KEY]
    return await asyncio.to_thread(daemon.read_cdrs, limit, search.call_id, before, search.filters)


async def cdrs(request: web.Request) -> web.Response:
    search = _search(request)
    if isinstance(search, list):
        context = {"errors": search, "records": [], "search": Search(), "form": request.query}
        return _render(request, "cdrs", context, status=400)
    async with _search_slot(request):
        records = await _read(request, search, search.limit, search.before)
    following = None
    if len(records) == search.limit:
        following = search.query(before=records[-1]["id"])
    context = {
        "errors": [],
        "records": records,
        "search": search,
        "form": search.form,
        "following": following,
        "csv_query": search.query(),
    }
    return _render(request, "cdrs", context)


async def cdrs_csv(request: web.Request) -> web.StreamResponse:
    """The search's records, newest first, at most `CSV_MAX_ROWS`, as a CSV attachment."""
    search = _search(request)
    if isinstance(search, list):
        raise web.HTTPBadRequest(text="; ".join(search))
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="sipedge-cdrs-{stamp}.csv"',
        }
    )
    async with _search_slot(request):
        await response.prepare(request)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        before, sent = search.before, 0
        while sent < CSV_MAX_ROWS:
            want = min(1000, CSV_MAX_ROWS - sent)
            page = await _read(request, search, want, before)
            for record in page:
                writer.writerow(csv_row(record))
            await response.write(out.getvalue().encode())
            out.seek(0)
            out.truncate()
            sent += len(page)
            if len(page) < want:
                break
            before = page[-1]["id"]
        await response.write(out.getvalue().encode())
    await response.write_eof()
    return response
