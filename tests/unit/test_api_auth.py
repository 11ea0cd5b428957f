"""The management API's access decisions (api/auth.py): Host check, scopes, the verdicts."""

from __future__ import annotations

import pytest

from sipedge.api.auth import (
    ADMIN,
    OPEN,
    READ,
    AccessPolicy,
    accepted_hosts,
    decide,
    granted_scope,
    host_allowed,
    required_scope,
)

ADMIN_TOKEN = "a" * 64
READ_TOKEN = "r" * 64
POLICY = AccessPolicy(
    admin_tokens=(ADMIN_TOKEN,),
    read_tokens=(READ_TOKEN,),
    hosts=accepted_hosts("0.0.0.0", ["edge1.example.net"]),
)
OPEN_POLICY = AccessPolicy(hosts=accepted_hosts("127.0.0.1"))


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("127.0.0.1:8080", True),
        ("127.0.0.1", True),
        ("localhost:8080", True),
        ("LOCALHOST.", True),
        ("[::1]:8080", True),
        ("[::1]", True),
        ("192.0.2.10:8080", True),  # any IP literal: a rebound name never looks like one
        ("[2001:db8::1]:8443", True),
        ("edge1.example.net", True),
        ("Edge1.Example.NET:8080", True),
        ("evil.example", False),
        ("evil.example:8080", False),
        ("127.0.0.1.evil.example", False),
        ("localhost.evil.example", False),
        ("edge1.example.net.evil", False),
        ("", False),
        (None, False),
        ("[::1", False),
        ("[::1]x", False),
        ("localhost:http", False),
        (":8080", False),
    ],
)
def test_host_check(header: str | None, ok: bool) -> None:
    assert host_allowed(POLICY, header) is ok


def test_accepted_hosts_have_the_listen_host_but_never_a_wildcard() -> None:
    assert accepted_hosts("edge.example.org") >= {"edge.example.org", "localhost"}
    assert "0.0.0.0" not in accepted_hosts("0.0.0.0")
    assert "::" not in accepted_hosts("::")


@pytest.mark.parametrize(
    ("method", "path", "metrics_open", "scope"),
    [
        ("GET", "/healthz", False, OPEN),
        ("GET", "/metrics", False, READ),
        ("GET", "/metrics", True, OPEN),
        ("HEAD", "/metrics", True, OPEN),
        ("POST", "/metrics", True, ADMIN),
        ("GET", "/api/calls", True, READ),
        ("GET", "/api/cdrs", False, READ),
        ("GET", "/api/registrations", False, READ),
        ("GET", "/api/bans", False, READ),
        ("GET", "/nowhere", False, READ),  # unknown paths need a token too: nothing leaks
        ("POST", "/api/drain", False, ADMIN),
        ("POST", "/api/undrain", False, ADMIN),
        ("POST", "/api/config/reload", False, ADMIN),
        ("DELETE", "/api/bans", False, ADMIN),
        ("DELETE", "/api/bans/192.0.2.1", False, ADMIN),
        ("PUT", "/api/calls", False, ADMIN),
        ("OPTIONS", "/api/calls", False, ADMIN),
    ],
)
def test_required_scope(method: str, path: str, metrics_open: bool, scope: str) -> None:
    assert required_scope(method, path, metrics_open) == scope


@pytest.mark.parametrize(
    ("authorization", "scope"),
    [
        (f"Bearer {ADMIN_TOKEN}", ADMIN),
        (f"bearer {ADMIN_TOKEN}", ADMIN),
        (f"Bearer {READ_TOKEN}", READ),
        (f"  Bearer   {READ_TOKEN}  ", READ),
        (f"Bearer {ADMIN_TOKEN[:-1]}", None),
        (f"Bearer {ADMIN_TOKEN}x", None),
        (f"Basic {ADMIN_TOKEN}", None),
        (ADMIN_TOKEN, None),
        ("Bearer ", None),
        ("Bearer", None),
        ("Bearer \u00e9\u00e9", None),
        ("", None),
        (None, None),
    ],
)
def test_granted_scope(authorization: str | None, scope: str | None) -> None:
    assert granted_scope(POLICY, authorization) == scope


def test_the_host_is_checked_before_anything_else() -> None:
    verdict = decide(POLICY, "GET", "/healthz", "evil.example", f"Bearer {ADMIN_TOKEN}")
    assert verdict.status == 421 and "api.hosts" in verdict.error
    # even with no token configured (loopback: DNS rebinding is the threat there)
    assert decide(OPEN_POLICY, "POST", "/api/drain", "evil.example:8080", None).status == 421


def test_no_token_configured_opens_everything_on_an_accepted_host() -> None:
    assert OPEN_POLICY.open and not POLICY.open
    verdict = decide(OPEN_POLICY, "POST", "/api/drain", "127.0.0.1:8080", None)
    assert (verdict.status, verdict.granted) == (0, ADMIN)


@pytest.mark.parametrize(
    ("method", "path", "authorization", "status", "challenge"),
    [
        ("GET", "/metrics", None, 401, 'Bearer realm="sipedge"'),
        ("GET", "/api/calls", "Bearer nope", 401, 'Bearer realm="sipedge", error="invalid_token"'),
        ("GET", "/api/calls", f"Bearer {READ_TOKEN}", 0, None),
        ("GET", "/metrics", f"Bearer {READ_TOKEN}", 0, None),
        ("POST", "/api/drain", None, 401, 'Bearer realm="sipedge"'),
        (
            "POST",
            "/api/drain",
            f"Bearer {READ_TOKEN}",
            403,
            'Bearer realm="sipedge", error="insufficient_scope", scope="admin"',
        ),
        ("DELETE", "/api/bans", f"Bearer {READ_TOKEN}", 403, None),
        ("POST", "/api/config/reload", f"Bearer {ADMIN_TOKEN}", 0, None),
        ("GET", "/api/cdrs", f"Bearer {ADMIN_TOKEN}", 0, None),
    ],
)
def test_verdicts(
    method: str, path: str, authorization: str | None, status: int, challenge: str | None
) -> None:
    verdict = decide(POLICY, method, path, "127.0.0.1:8080", authorization)
    assert verdict.status == status
    if challenge is not None:
        assert verdict.www_authenticate == challenge
    if status == 0:
        assert verdict.granted in (ADMIN, READ)


def test_healthz_passes_and_tells_the_route_what_the_token_grants() -> None:
    assert decide(POLICY, "GET", "/healthz", "localhost", None).granted is None
    assert decide(POLICY, "GET", "/healthz", "localhost", "Bearer nope").status == 0
    assert decide(POLICY, "GET", "/healthz", "localhost", f"Bearer {READ_TOKEN}").granted == READ


def test_open_metrics_need_no_token_but_admin_routes_still_do() -> None:
    policy = AccessPolicy((ADMIN_TOKEN,), (), accepted_hosts("127.0.0.1"), metrics_open=True)
    assert decide(policy, "GET", "/metrics", "localhost", None).status == 0
    assert decide(policy, "GET", "/api/calls", "localhost", None).status == 401


def test_tokens_are_not_in_the_repr() -> None:
    assert ADMIN_TOKEN not in repr(POLICY) and READ_TOKEN not in repr(POLICY)
