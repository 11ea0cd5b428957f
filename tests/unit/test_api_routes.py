"""The management API's routes on a fake daemon: the guard middleware, /healthz's two bodies,
/api/cdrs' bounds, cursor and Link header (read off the event loop), and the credential files."""

from __future__ import annotations

import ssl
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from sipedge.api import (
    AccessPolicy,
    CredentialError,
    accepted_hosts,
    build_app,
    load_token,
    reload_tls,
    tls_context,
)
from sipedge.stats import CarrierStats
from tests.conftest import self_signed_cert

ADMIN = "admin-" + "a" * 40
READ = "read-" + "r" * 40


class FakeDaemon:
    """Implements `sipedge.api.Managed` with 120 CDRs, ids 1..120."""

    def __init__(self, policy: AccessPolicy) -> None:
        self.policy = policy
        self.metrics_registry = CollectorRegistry()
        self.draining = False
        self.read_threads: list[int] = []
        self.cdr_ids = list(range(120, 0, -1))
        self.carriers = CarrierStats(lambda: 500.0)
        self.carriers.configure(["gw-a"], ["pbx"])
        self.fleet: dict[str, object] | Exception | None = None  # None: SQLite backend

    def access_policy(self) -> AccessPolicy:
        return self.policy

    def health(self) -> dict[str, object]:
        return {"status": "ok", "version": "1.2.3", "uptime": 5.0, "active_calls": 0}

    def calls(self) -> list[dict[str, object]]:
        return []

    def active_calls(self) -> int:
        return 0

    def gateway_stats(self) -> dict[str, object]:
        return self.carriers.snapshot()

    async def fleet_gateway_stats(self) -> dict[str, object] | None:
        if isinstance(self.fleet, Exception):
            raise self.fleet
        return self.fleet

    def read_cdrs(
        self, limit: int, call_id: str | None, before: int | None
    ) -> list[dict[str, Any]]:
        self.read_threads.append(threading.get_ident())
        ids = [i for i in self.cdr_ids if before is None or i < before]
        return [{"id": i, "call_id": call_id or f"c{i}"} for i in ids[:limit]]

    def reload(self) -> tuple[bool, str]:
        return True, "reloaded"

    def set_draining(self, on: bool) -> None:
        self.draining = on

    def bans(self) -> list[dict[str, object]]:
        return []

    def clear_bans(self, address: str | None) -> int:
        return 0


def secured() -> AccessPolicy:
    return AccessPolicy((ADMIN,), (READ,), accepted_hosts("127.0.0.1"))


@pytest.fixture
async def client() -> AsyncIterator[tuple[TestClient[Any, Any], FakeDaemon]]:
    daemon = FakeDaemon(secured())
    async with TestClient(TestServer(build_app(daemon))) as c:
        yield c, daemon


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_scopes_through_the_middleware(
    client: tuple[TestClient[Any, Any], FakeDaemon],
) -> None:
    c, daemon = client
    r = await c.get("/metrics")
    assert r.status == 401 and r.headers["WWW-Authenticate"] == 'Bearer realm="sipedge"'
    assert (await r.json()) == {"error": "a bearer token is required"}
    assert (await c.get("/metrics", headers=bearer(READ))).status == 200
    r = await c.post("/api/drain", headers=bearer(READ))
    assert r.status == 403 and "insufficient_scope" in r.headers["WWW-Authenticate"]
    assert not daemon.draining
    assert (await c.post("/api/drain", headers=bearer(ADMIN))).status == 200
    assert daemon.draining
    r = await c.get("/api/calls", headers={**bearer(ADMIN), "Host": "evil.example"})
    assert r.status == 421 and "error" in await r.json()


async def test_gateway_stats_need_a_token_and_show_the_windows(
    client: tuple[TestClient[Any, Any], FakeDaemon],
) -> None:
    c, daemon = client
    assert (await c.get("/api/gateways/stats")).status == 401
    daemon.carriers.attempt_started("gw-a")
    daemon.carriers.attempt_ended("gw-a", None, 0.25)
    r = await c.get("/api/gateways/stats", headers=bearer(READ))
    assert r.status == 200
    body = await r.json()
    assert body["windows"] == {"5m": 300, "1h": 3600, "24h": 86400}
    gw = body["routing_gateways"]["gw-a"]
    assert gw["current_calls"] == 1
    assert gw["windows"]["5m"] == {
        "attempts": 1,
        "answered": 1,
        "asr": 1.0,
        "acd_seconds": None,
        "pdd_seconds": 0.25,
        "switch_reasons": {},
    }
    assert body["mapping_gateways"]["pbx"]["windows"]["24h"]["asr"] is None


async def test_healthz_shows_only_the_status_without_a_token(
    client: tuple[TestClient[Any, Any], FakeDaemon],
) -> None:
    c, _ = client
    assert await (await c.get("/healthz")).json() == {"status": "ok"}
    assert await (await c.get("/healthz", headers=bearer("wrong"))).json() == {"status": "ok"}
    full = await (await c.get("/healthz", headers=bearer(READ))).json()
    assert full["version"] == "1.2.3" and full["active_calls"] == 0


async def test_healthz_is_full_when_no_token_is_configured() -> None:
    daemon = FakeDaemon(AccessPolicy(hosts=accepted_hosts("127.0.0.1")))
    async with TestClient(TestServer(build_app(daemon))) as c:
        assert (await (await c.get("/healthz")).json())["version"] == "1.2.3"
        assert (await c.post("/api/undrain")).status == 200


@pytest.mark.parametrize(
    "query",
    ["limit=-1", "limit=0", "limit=1001", "limit=100000", "limit=abc", "limit=1e3", "limit=5_0",
     "limit=", "limit=%2B5", "before=0", "before=-3", "before=x", "before="],
)  # fmt: skip
async def test_cdr_query_bounds(
    client: tuple[TestClient[Any, Any], FakeDaemon], query: str
) -> None:
    c, daemon = client
    r = await c.get(f"/api/cdrs?{query}", headers=bearer(READ))
    assert r.status == 400
    error = (await r.json())["error"]
    assert ("1 to 1000" in error) if query.startswith("limit") else ("id of a CDR" in error)
    assert daemon.read_threads == []


async def test_cdr_pages_follow_the_link_header_and_read_off_the_loop(
    client: tuple[TestClient[Any, Any], FakeDaemon],
) -> None:
    c, daemon = client
    url: str | None = "/api/cdrs?limit=50"
    seen: list[int] = []
    pages = 0
    while url is not None:
        r = await c.get(url, headers=bearer(READ))
        assert r.status == 200
        seen += [record["id"] for record in await r.json()]
        pages += 1
        link = r.headers.get("Link")
        url = None
        if link is not None:
            assert link.endswith('>; rel="next"') and link.startswith("</api/cdrs?")
            url = link[1 : link.index(">")]
    assert seen == list(range(120, 0, -1)) and pages == 3
    assert threading.get_ident() not in daemon.read_threads  # never on the event loop
    # defaults and the filter travel with the cursor
    r = await c.get("/api/cdrs?call_id=abc&limit=1000", headers=bearer(READ))
    assert len(await r.json()) == 120 and "Link" not in r.headers
    r = await c.get("/api/cdrs?call_id=abc&limit=2", headers=bearer(READ))
    assert "call_id=abc" in r.headers["Link"] and "before=119" in r.headers["Link"]
    assert len(await (await c.get("/api/cdrs", headers=bearer(READ))).json()) == 50


def test_load_token(tmp_path: Path) -> None:
    path = tmp_path / "api-admin.token"
    path.write_text("  abc123  \n")
    assert load_token(path, "api.token_file") == "abc123"
    for text, why in (("", "empty"), ("\n\n", "empty"), ("two words\n", "one token")):
        path.write_text(text)
        with pytest.raises(CredentialError, match=rf"api\.token_file: .*{why}"):
            load_token(path, "api.token_file")
    with pytest.raises(CredentialError, match=r"api\.read_token_file: cannot read .*missing"):
        load_token(tmp_path / "missing", "api.read_token_file")


def test_tls_context_is_tls12_at_least_and_reload_keeps_a_good_chain(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    context = tls_context(cert, key)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    other_cert, other_key = self_signed_cert(tmp_path, "other")
    with pytest.raises(CredentialError, match=r"api\.tls_cert/api\.tls_key"):
        tls_context(cert, other_key)  # a key that is not the certificate's
    with pytest.raises(CredentialError, match="cannot read"):
        tls_context(tmp_path / "none.crt", key)
    with pytest.raises(CredentialError):
        reload_tls(context, cert, other_key)
    reload_tls(context, other_cert, other_key)


async def test_gateway_stats_scope_fleet_refusals_and_answer(
    client: tuple[TestClient[Any, Any], FakeDaemon],
) -> None:
    c, daemon = client
    assert (await c.get("/api/gateways/stats?scope=fleet")).status == 401
    r = await c.get("/api/gateways/stats?scope=everything", headers=bearer(READ))
    assert r.status == 400 and "node or fleet" in (await r.json())["error"]
    r = await c.get("/api/gateways/stats?scope=fleet", headers=bearer(READ))
    assert r.status == 409 and "storage.backend postgresql" in (await r.json())["error"]
    daemon.fleet = ConnectionError("PostgreSQL did not answer: connection refused")
    r = await c.get("/api/gateways/stats?scope=fleet", headers=bearer(READ))
    assert r.status == 503 and "connection refused" in (await r.json())["error"]
    daemon.fleet = {"scope": "fleet", "nodes": ["a", "b"]}
    r = await c.get("/api/gateways/stats?scope=fleet", headers=bearer(READ))
    assert r.status == 200 and (await r.json()) == daemon.fleet
    r = await c.get("/api/gateways/stats?scope=node", headers=bearer(READ))
    assert r.status == 200 and "scope" not in await r.json()  # this edge's, from memory
