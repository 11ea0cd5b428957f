"""Management API of sipedge-sipd (aiohttp, on the daemon's own event loop).

Every request passes the Host check; with tokens configured, `/metrics` and every GET need the
read or admin token, every other method the admin token, and `/healthz` shows only its status
without one (docs/security.md, "Management API").

Public names: `build_app(daemon)` (routes.py) and `Managed` (managed.py), the Protocol of what
the routes need of the daemon; `sipedge.sipd.SipDaemon` implements it. `AccessPolicy` and
`accepted_hosts` (auth.py: the pure decisions), `load_token`, `load_password` (a carrier's
digest password file), `tls_context`, `reload_tls` and `CredentialError` (credentials.py: the
files).

Dependency direction: sipd imports api/; api/ imports nothing from sipd, calls/ or store/.
registrar/ adds its own routes to the app that `build_app` returns.
"""

from __future__ import annotations

from sipedge.api.auth import AccessPolicy, accepted_hosts
from sipedge.api.credentials import (
    CredentialError,
    load_password,
    load_token,
    reload_tls,
    tls_context,
)
from sipedge.api.managed import Managed
from sipedge.api.routes import build_app

__all__ = [
    "AccessPolicy",
    "CredentialError",
    "Managed",
    "accepted_hosts",
    "build_app",
    "load_password",
    "load_token",
    "reload_tls",
    "tls_context",
]
