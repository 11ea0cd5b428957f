"""What the management API needs of the daemon it manages: the `Managed` Protocol.

Owns: the interface between the routes and sipd. `sipedge.sipd.SipDaemon` implements it; a
fake does in tests.
Must not: import sipd, calls/ or store/ (the routes see the daemon only through this).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from sipedge.api.auth import AccessPolicy


class Managed(Protocol):
    """The daemon as the routes see it."""

    @property
    def metrics_registry(self) -> CollectorRegistry:
        """What `/metrics` exposes."""
        ...

    def access_policy(self) -> AccessPolicy:
        """Tokens, Host names, open metrics (api/auth.py); read per request."""
        ...

    def health(self) -> dict[str, object]:
        """The body of `/healthz`."""
        ...

    def calls(self) -> list[dict[str, object]]:
        """One summary per call in progress."""
        ...

    def active_calls(self) -> int:
        """How many calls are in progress."""
        ...

    def gateway_stats(self) -> dict[str, object]:
        """Per routing and mapping gateway: attempts, answered, ASR, ACD, PDD, switch reasons
        per window, and current calls (`sipedge.stats.CarrierStats.snapshot`)."""
        ...

    def gateway_series(self, window: str) -> dict[str, object]:
        """Per gateway, the buckets of one window (`5m`, `1h`, `24h`) oldest first as
        [attempts, answered] (`sipedge.stats.CarrierStats.series`; the console's charts)."""
        ...

    async def fleet_gateway_stats(self) -> dict[str, object] | None:
        """The same from every edge's CDRs in the shared PostgreSQL (`sipedge.stats.fleet`);
        None when the backend is not postgresql; ConnectionError when PostgreSQL does not
        answer. Never blocks the event loop."""
        ...

    def read_cdrs(
        self,
        limit: int,
        call_id: str | None,
        before: int | None,
        filters: Mapping[str, str | float | bool] | None = None,
    ) -> list[dict[str, Any]]:
        """The newest CDRs (older than the id `before` when given, matching `filters`, see
        `sipedge.store.CdrFilters`), newest first, each with its `id`; empty without a CDR
        store. Blocking: the route runs it in a worker thread, so
        it must read through a connection of its own and touch nothing of the event loop."""
        ...

    def reload(self) -> tuple[bool, str]:
        """Re-read the config: (applied?, what happened)."""
        ...

    def set_draining(self, on: bool) -> None:
        """Stop (on) or resume (off) taking new calls."""
        ...

    def bans(self) -> list[dict[str, object]]:
        """The sources banned now (address, reason, age, expires_in, dropped)."""
        ...

    def clear_bans(self, address: str | None) -> int:
        """Lift the ban of `address` (None: every ban); how many were lifted."""
        ...
