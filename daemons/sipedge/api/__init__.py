"""Management API of sipedge-sipd (aiohttp, on the daemon's own event loop).

`/healthz` and `/metrics` are open (monitoring scrapes them); everything under `/api/` needs
`Authorization: Bearer <api.token>` when a token is configured.

Public names: `build_app(daemon)` (routes.py) and `Managed` (managed.py), the Protocol of what
the routes need of the daemon; `sipedge.sipd.SipDaemon` implements it.

Dependency direction: sipd imports api/; api/ imports nothing from sipd, calls/ or store/.
registrar/ adds its own routes to the app that `build_app` returns.
"""

from __future__ import annotations

from sipedge.api.managed import Managed
from sipedge.api.routes import build_app

__all__ = ["Managed", "build_app"]
