"""Who may do what on the management API: the Host check, token scopes, the verdict.

Owns: `AccessPolicy` (the tokens of each scope, the accepted Host names, whether /metrics is
open), `accepted_hosts`, `host_allowed`, `required_scope`, `granted_scope` and `decide`, which
turns one request's method, path, Host and Authorization into a `Verdict`.
Must not: do I/O (token files and TLS are `api/credentials.py`), read the clock, or import
aiohttp, config/ or anything of the daemon. Driven by: the middleware in `api/routes.py`.

Rules (docs/security.md, "Management API"):

* The Host header is checked first, for every request (DNS rebinding: a web page whose name
  resolves to the appliance sends its own name). Accepted: any IP literal (a browser sends one
  only when it was pointed at that address), `localhost`, the listen host and `api.hosts`,
  each with or without a port. Anything else, or no Host at all: 421.
* With no token configured (loopback only, the config guarantees it) everything is open.
* `/healthz` is open; what it shows depends on the token (the route asks `granted`).
* `/console` and below pass here on the Host check alone: a browser sends no bearer token, so
  the operator console exchanges one for a session cookie and checks that itself
  (`api/console/access.py`, docs/console.md).
* `GET /metrics` is open with `metrics_open`, else read scope like every other GET (and HEAD).
* Any other method (POST, DELETE: drain, undrain, reload, bans) needs the admin scope.
* No or an unknown token: 401 with `WWW-Authenticate: Bearer`; a read token on an admin route:
  403. Tokens are compared with `hmac.compare_digest` against every configured one.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

OPEN = "open"
READ = "read"
ADMIN = "admin"
REALM = 'Bearer realm="sipedge"'
BUILTIN_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
CONSOLE = "/console"


@dataclass(frozen=True)
class AccessPolicy:
    """What the API accepts; sipd builds it from `api:` and the token files."""

    admin_tokens: tuple[str, ...] = field(default=(), repr=False)
    read_tokens: tuple[str, ...] = field(default=(), repr=False)
    hosts: frozenset[str] = BUILTIN_HOSTS
    metrics_open: bool = False

    @property
    def open(self) -> bool:
        """No token at all: everything is open (allowed on loopback only)."""
        return not self.admin_tokens and not self.read_tokens


@dataclass(frozen=True)
class Verdict:
    """`status` 0: go on to the route with `granted` (None: no valid token); else refuse with
    that status, a JSON `{"error": error}` and, for 401/403, a `WWW-Authenticate` header."""

    status: int
    granted: str | None = None
    error: str = ""
    www_authenticate: str | None = None


def _normal(name: str) -> str:
    return name.strip().lower().rstrip(".")


def accepted_hosts(listen_host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The Host names accepted: the built-in ones, the listen host (unless a wildcard) and
    `api.hosts`."""
    names = set(BUILTIN_HOSTS)
    if listen_host not in ("0.0.0.0", "::"):
        names.add(_normal(listen_host))
    names.update(_normal(h) for h in extra)
    return frozenset(names)


def _host_name(header: str) -> str | None:
    """The name part of a Host header (`name`, `name:port`, `[v6]`, `[v6]:port`)."""
    header = header.strip()
    if header.startswith("["):
        end = header.find("]")
        if end < 0:
            return None
        name, rest = header[1:end], header[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        return name
    name, colon, port = header.partition(":")
    if colon and not port.isdigit():
        return None
    return name


def host_allowed(policy: AccessPolicy, header: str | None) -> bool:
    if not header:
        return False
    name = _host_name(header)
    if not name:
        return False
    try:
        ipaddress.ip_address(name)
        return True  # an IP literal cannot be a rebound name
    except ValueError:
        pass
    return _normal(name) in policy.hosts


def required_scope(method: str, path: str, metrics_open: bool) -> str:
    if path == "/healthz" or path == CONSOLE or path.startswith(CONSOLE + "/"):
        return OPEN  # the console checks its own session cookie (api/console/access.py)
    if method in ("GET", "HEAD"):
        return OPEN if path == "/metrics" and metrics_open else READ
    return ADMIN


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def _matches(given: bytes, tokens: tuple[str, ...]) -> bool:
    found = False
    for token in tokens:  # every one, whatever matched before
        found |= hmac.compare_digest(given, token.encode())
    return found


def granted_scope(policy: AccessPolicy, authorization: str | None) -> str | None:
    """The scope the Authorization header's bearer token grants (None: none or unknown)."""
    token = _bearer(authorization)
    if token is None:
        return None
    given = token.encode("utf-8", "replace")
    if _matches(given, policy.admin_tokens):
        return ADMIN
    if _matches(given, policy.read_tokens):
        return READ
    return None


def decide(
    policy: AccessPolicy,
    method: str,
    path: str,
    host: str | None,
    authorization: str | None,
) -> Verdict:
    if not host_allowed(policy, host):
        return Verdict(421, error="Host not accepted here (add the name to api.hosts)")
    if policy.open:
        return Verdict(0, ADMIN)
    granted = granted_scope(policy, authorization)
    required = required_scope(method, path, policy.metrics_open)
    if required == OPEN:
        return Verdict(0, granted)
    if granted is None:
        if authorization:
            challenge = f'{REALM}, error="invalid_token"'
            return Verdict(401, error="invalid token", www_authenticate=challenge)
        return Verdict(401, error="a bearer token is required", www_authenticate=REALM)
    if required == ADMIN and granted != ADMIN:
        challenge = f'{REALM}, error="insufficient_scope", scope="admin"'
        return Verdict(403, granted, "this needs the admin token", challenge)
    return Verdict(0, granted)
