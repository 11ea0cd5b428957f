"""Who may use the console: the session cookie, CSRF, security headers, login and the admin
actions.

Owns: `secure`, which gives every response of the console's sub-application the security
headers (among them the Content-Security-Policy); the middleware `access` (every page but the
login form and the static files needs a live session; every POST needs a same-origin `Origin`
when the browser sends one, at most `MAX_FORM` bytes, and, but the login, the session's CSRF
token; the actions need the admin scope); the login and logout handlers and the admin actions
(drain, undrain, reload, lift bans).
Must not: accept a token anywhere but the login form's body, put one in a URL, a log line or a
page, or reach past `Managed` into the daemon. The sessions themselves are `sessions.py`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp_jinja2
from aiohttp import web

from sipedge.api.auth import CONSOLE
from sipedge.api.console.sessions import Session, SessionTable, csrf_matches
from sipedge.api.routes import DAEMON_KEY

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
COOKIE = "sipedge_console"
PART_HEADER = "X-Console-Part"  # console.js asks for the live part of a page only
SESSIONS_KEY: web.AppKey[SessionTable] = web.AppKey("console_sessions")
SESSION_KEY: web.RequestKey[Session] = web.RequestKey("console_session")
PAGES = ("calls", "gateways", "registrations", "bans", "cdrs")
MAX_FORM = 16 * 1024
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer would make Chrome send `Origin: null`
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def _public(path: str) -> bool:
    return path in (f"{CONSOLE}/login", f"{CONSOLE}/static") or path.startswith(
        f"{CONSOLE}/static/"
    )


def _same_origin(request: web.Request) -> bool:
    """A POST from a page of ours: no Origin (an old browser, curl) or one naming our Host."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc == request.headers.get("Host")


async def secure(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: every response of the console, errors and downloads included,
    gets the security headers before its headers go out."""
    response.headers.update(SECURITY_HEADERS)
    static = request.path.startswith(f"{CONSOLE}/static/") and response.status == 200
    response.headers["Cache-Control"] = "private, max-age=300" if static else "no-store"


@web.middleware
async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method == "POST" and not _same_origin(request):
        raise web.HTTPForbidden(text="cross-origin request refused")
    if request.method == "POST":
        if request.content_length is None and request.body_exists:
            raise web.HTTPLengthRequired(text="a form needs a Content-Length")
        if (request.content_length or 0) > MAX_FORM:
            raise web.HTTPRequestEntityTooLarge(MAX_FORM, request.content_length or 0)
    if _public(request.path):
        return await handler(request)
    table = request.app[SESSIONS_KEY]
    policy = request.config_dict[DAEMON_KEY].access_policy()
    session = table.lookup(policy, request.cookies.get(COOKIE), time.time())
    if session is None:
        if request.method == "GET" and PART_HEADER not in request.headers:
            raise web.HTTPSeeOther(f"{CONSOLE}/login")
        raise web.HTTPUnauthorized(text="log in again")
    request[SESSION_KEY] = session
    if request.method == "POST":
        form = await request.post()
        csrf = form.get("csrf")
        if not csrf_matches(session, csrf if isinstance(csrf, str) else None):
            raise web.HTTPForbidden(text="stale or missing form token: reload the page")
    return await handler(request)


def session_of(request: web.Request) -> Session:
    return request[SESSION_KEY]


# -- login, logout ------------------------------------------------------------------------------
async def login_form(request: web.Request) -> web.StreamResponse:
    if request.config_dict[DAEMON_KEY].access_policy().open:
        raise web.HTTPSeeOther(f"{CONSOLE}/calls")
    return aiohttp_jinja2.render_template("login.html", request, {"error": ""})


async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    token = form.get("token")
    policy = request.config_dict[DAEMON_KEY].access_policy()
    table = request.app[SESSIONS_KEY]
    session = table.login(policy, token, time.time()) if isinstance(token, str) else None
    if session is None:
        context = {"error": "That token is not accepted here."}
        return aiohttp_jinja2.render_template("login.html", request, context, status=401)
    response = web.HTTPSeeOther(f"{CONSOLE}/calls")
    response.set_cookie(
        COOKIE,
        session.sid,
        path=CONSOLE,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    request.app[SESSIONS_KEY].logout(request.cookies.get(COOKIE))
    response = web.HTTPSeeOther(f"{CONSOLE}/login")
    response.del_cookie(COOKIE, path=CONSOLE)
    raise response


# -- admin actions ------------------------------------------------------------------------------
async def action(request: web.Request) -> web.StreamResponse:
    """POST /console/actions/{name}: drain, undrain, reload, unban (form `address`, empty: all).
    Then back to the page the form names (one of `PAGES`), with the outcome as a notice."""
    session = session_of(request)
    if not session.admin:
        raise web.HTTPForbidden(text="this needs the admin token")
    daemon = request.config_dict[DAEMON_KEY]
    form = await request.post()
    name = request.match_info["name"]
    if name == "drain":
        daemon.set_draining(True)
        notice = f"Draining: no new calls; {daemon.active_calls()} in progress."
    elif name == "undrain":
        daemon.set_draining(False)
        notice = "Taking new calls again."
    elif name == "reload":
        ok, message = daemon.reload()
        notice = f"Reload {'applied' if ok else 'refused'}: {message}"
    elif name == "unban":
        address = form.get("address")
        if not isinstance(address, str) or len(address) > 64:
            raise web.HTTPBadRequest(text="address: at most 64 characters")
        cleared = daemon.clear_bans(address or None)
        notice = f"Lifted {cleared} ban(s)."
    else:
        raise web.HTTPNotFound()
    session.notice = notice
    back = form.get("back")
    raise web.HTTPSeeOther(f"{CONSOLE}/{back if back in PAGES else 'calls'}")
