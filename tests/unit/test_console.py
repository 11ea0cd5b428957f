"""The operator console's handlers on a fake daemon (aiohttp's test client): login and the
session cookie, the security headers, CSRF and Origin on the admin actions, read vs admin,
a rotated token ending its sessions, the polled live part, escaping of hostile data, the CDR
search's bounds and the CSV download. The browser test is
tests/integration/test_console_browser.py."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from sipedge.api import AccessPolicy, accepted_hosts, build_app
from sipedge.api.console import add_console
from sipedge.api.console.access import CSP, PART_HEADER
from tests.unit.test_api_routes import ADMIN, READ, FakeDaemon, bearer, secured

HOSTILE = '<img src=x onerror="alert(1)">'


class ConsoleDaemon(FakeDaemon):
    """`FakeDaemon` with what the console asks beyond the API: series, filtered CDRs."""

    def __init__(self, policy: AccessPolicy) -> None:
        super().__init__(policy)
        self.searches: list[tuple[int, str | None, int | None, dict[str, Any]]] = []
        self.live: list[dict[str, object]] = []
        self.banned: list[dict[str, object]] = []

    def calls(self) -> list[dict[str, object]]:
        return self.live

    def bans(self) -> list[dict[str, object]]:
        return self.banned

    def gateway_series(self, window: str) -> dict[str, object]:
        return self.carriers.series(window)

    def read_cdrs(
        self,
        limit: int,
        call_id: str | None,
        before: int | None,
        filters: Mapping[str, str | float | bool] | None = None,
    ) -> list[dict[str, Any]]:
        self.searches.append((limit, call_id, before, dict(filters or {})))
        rows = super().read_cdrs(limit, call_id, before)
        return [{**r, "caller": HOSTILE, "callee": "2002", "attempts": []} for r in rows]


class Registrar:
    def registration_summaries(self) -> list[dict[str, object]]:
        return [{"name": "up1", "proxy": "192.0.2.1:5060", "user": "u", "state": "registered"}]

    def endpoint_summary(self) -> dict[str, object]:
        return {"bindings": [], "suspended": [], "nat_devices": 0}


Client = TestClient[Any, Any]


async def console(policy: AccessPolicy) -> tuple[Client, ConsoleDaemon]:
    daemon = ConsoleDaemon(policy)
    app = build_app(daemon)
    add_console(app, Registrar())
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    return client, daemon


@pytest.fixture
async def secured_console() -> AsyncIterator[tuple[Client, ConsoleDaemon]]:
    client, daemon = await console(secured())
    yield client, daemon
    await client.close()


async def login(client: Client, token: str) -> str:
    """Log in; the CSRF token of the session (read off the live calls page)."""
    r = await client.post("/console/login", data={"token": token}, allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/console/calls"
    page = await (await client.get("/console/calls")).text()
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


async def test_no_session_means_the_login_form_and_the_headers_are_strict(
    secured_console: tuple[Client, ConsoleDaemon],
) -> None:
    c, _ = secured_console
    r = await c.get("/console/calls", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/console/login"
    assert r.headers["Content-Security-Policy"] == CSP and r.headers["Cache-Control"] == "no-store"
    r = await c.get("/console/calls", headers={PART_HEADER: "1"})
    assert r.status == 401  # console.js goes to the login page
    # a bearer token is for the API: the console takes only its session cookie
    r = await c.get("/console/cdrs.csv", headers=bearer(ADMIN), allow_redirects=False)
    assert r.status == 303
    r = await c.get("/console/login")
    assert r.status == 200 and "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Frame-Options"] == "DENY"
    r = await c.get("/console/static/console.js")
    assert r.status == 200 and r.headers["X-Content-Type-Options"] == "nosniff"
    r = await c.get(URL("/console/static/%2e%2e/pages.py", encoded=True), allow_redirects=False)
    assert r.status in (403, 404) and "import" not in await r.text()
    r = await c.get("/console", headers={"Host": "evil.example"})
    assert r.status == 421  # the API's Host check comes first, for the console too


async def test_login_sets_a_strict_http_only_cookie_and_a_wrong_token_gets_none(
    secured_console: tuple[Client, ConsoleDaemon],
) -> None:
    c, _ = secured_console
    r = await c.post("/console/login", data={"token": "wrong"}, allow_redirects=False)
    assert r.status == 401 and "Set-Cookie" not in r.headers
    assert "not accepted" in await r.text()
    r = await c.post("/console/login", data={"token": "x" * 100_000}, allow_redirects=False)
    assert r.status == 413

    async def chunks() -> AsyncIterator[bytes]:
        yield b"token=" + READ.encode()

    r = await c.post("/console/login", data=chunks(), allow_redirects=False)
    assert r.status == 411 and "Set-Cookie" not in r.headers
    r = await c.post("/console/login", data={"token": READ}, allow_redirects=False)
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert READ not in cookie and READ not in r.headers["Location"]
    r = await c.post(
        "/console/login",
        data={"token": ADMIN},
        headers={"Origin": "http://evil.example"},
        allow_redirects=False,
    )
    assert r.status == 403


async def test_a_read_session_sees_the_pages_but_no_admin_action(
    secured_console: tuple[Client, ConsoleDaemon],
) -> None:
    c, daemon = secured_console
    csrf = await login(c, READ)
    daemon.live = [{"call_id": "x1", "caller": HOSTILE, "callee": "2002", "setup_time": 1.0}]
    daemon.banned = [{"address": "192.0.2.9", "reason": "flood", "age": 1, "expires_in": 5}]
    for page in ("calls", "gateways", "registrations", "bans", "cdrs"):
        r = await c.get(f"/console/{page}")
        body = await r.text()
        assert r.status == 200, page
        assert "admin-actions" not in body and "/console/actions/" not in body, page
        assert "<img" not in body, page  # autoescaped
    assert "&lt;img src=x" in await (await c.get("/console/calls")).text()
    assert "up1" in await (await c.get("/console/registrations")).text()
    r = await c.post("/console/actions/drain", data={"csrf": csrf}, allow_redirects=False)
    assert r.status == 403 and not daemon.draining


async def test_admin_actions_need_the_csrf_token_and_a_same_origin(
    secured_console: tuple[Client, ConsoleDaemon],
) -> None:
    c, daemon = secured_console
    csrf = await login(c, ADMIN)
    assert "admin-actions" in await (await c.get("/console/gateways")).text()
    r = await c.post("/console/actions/drain", data={}, allow_redirects=False)
    assert r.status == 403 and not daemon.draining
    r = await c.post("/console/actions/drain", data={"csrf": "x" * 43}, allow_redirects=False)
    assert r.status == 403 and not daemon.draining
    r = await c.post(
        "/console/actions/drain",
        data={"csrf": csrf},
        headers={"Origin": "null"},
        allow_redirects=False,
    )
    assert r.status == 403 and not daemon.draining
    r = await c.post(
        "/console/actions/drain",
        data={"csrf": csrf, "back": "gateways"},
        headers={"Origin": str(c.make_url("")).rstrip("/")},
        allow_redirects=False,
    )
    assert r.status == 303 and r.headers["Location"] == "/console/gateways"
    assert daemon.draining
    page = await (await c.get("/console/gateways")).text()
    assert "Draining" in page  # the notice, once
    assert "Draining" not in await (await c.get("/console/gateways")).text()
    r = await c.post(
        "/console/actions/undrain", data={"csrf": csrf, "back": "//evil"}, allow_redirects=False
    )
    assert r.headers["Location"] == "/console/calls" and not daemon.draining
    r = await c.post("/console/actions/nonsense", data={"csrf": csrf}, allow_redirects=False)
    assert r.status == 404
    r = await c.post("/console/logout", data={"csrf": csrf}, allow_redirects=False)
    assert r.status == 303
    r = await c.get("/console/calls", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/console/login"


async def test_a_rotated_token_ends_its_sessions(
    secured_console: tuple[Client, ConsoleDaemon],
) -> None:
    c, daemon = secured_console
    await login(c, ADMIN)
    assert (await c.get("/console/calls", allow_redirects=False)).status == 200
    daemon.policy = AccessPolicy(("admin-" + "b" * 40,), (READ,), accepted_hosts("127.0.0.1"))
    r = await c.get("/console/calls", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/console/login"


async def test_the_live_part_is_the_main_element_only(
    secured_console: tuple[Client, ConsoleDaemon],
) -> None:
    c, _ = secured_console
    await login(c, READ)
    r = await c.get("/console/gateways", headers={PART_HEADER: "1"})
    body = await r.text()
    assert r.status == 200 and "<html" not in body and 'id="routing-gateways"' in body
    assert 'id="status"' in body and "<svg" in body
    full = await (await c.get("/console/gateways")).text()
    assert full.startswith("<!doctype html>") and "<script" in full
    assert re.findall(r"<script[^>]*>", full) == [
        '<script src="/console/static/console.js" defer>'
    ]  # no inline script: the CSP would refuse it


async def test_the_cdr_search_is_bounded_and_its_csv_downloads(
    secured_console: tuple[Client, ConsoleDaemon],
) -> None:
    c, daemon = secured_console
    await login(c, READ)
    r = await c.get("/console/cdrs", params={"caller": "<script>", "limit": "7"})
    body = await r.text()
    assert r.status == 400 and "caller:" in body and "limit:" in body and "<script>" not in body
    assert daemon.searches == []
    r = await c.get("/console/cdrs", params={"callee": "1" * 3000})
    assert r.status == 400 and daemon.searches == []
    r = await c.get(
        "/console/cdrs",
        params={"callee": "44", "answered": "yes", "since": "2026-01-01T00:00", "limit": "20"},
    )
    body = await r.text()
    assert r.status == 200 and daemon.searches[-1] == (
        20,
        None,
        None,
        {"callee": "44", "answered": True, "since": 1767225600.0},
    )
    assert body.count("<tr>") == 21  # the header row and 20 records
    assert 'id="older"' in body and "before=101" in body
    r = await c.get("/console/cdrs.csv", params={"gateway": "gw-a", "before": "31"})
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
    assert r.headers["Content-Disposition"].startswith('attachment; filename="sipedge-cdrs-')
    assert r.headers["Content-Security-Policy"] == CSP
    lines = (await r.text()).splitlines()
    assert lines[0].startswith("id,call_id,caller") and len(lines) == 31  # ids 30..1
    assert daemon.searches[-1] == (1000, None, 31, {"gateway": "gw-a"})
    assert (await c.get("/console/cdrs.csv", params={"limit": "x"})).status == 400


async def test_an_open_api_opens_the_console_without_a_login() -> None:
    policy = AccessPolicy(hosts=accepted_hosts("127.0.0.1"))
    c, daemon = await console(policy)
    try:
        r = await c.get("/console/login", allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/console/calls"
        body = await (await c.get("/console/calls")).text()
        assert "admin-actions" in body and "Log out" not in body
        r = await c.post("/console/actions/drain", data={}, allow_redirects=False)
        assert r.status == 403 and not daemon.draining  # CSRF even so
    finally:
        await c.close()
