"""What the management API needs of the daemon it manages: the `Managed` Protocol.

Owns: the interface between the routes and sipd. `sipedge.sipd.SipDaemon` implements it; a
fake does in tests.
Must not: import sipd, calls/ or store/ (the routes see the daemon only through this).
"""

from __future__ import annotations

from typing import Any, Protocol

from prometheus_client import CollectorRegistry


class Managed(Protocol):
    """The daemon as the routes see it."""

    @property
    def metrics_registry(self) -> CollectorRegistry:
        """What `/metrics` exposes."""
        ...

    def api_token(self) -> str | None:
        """The bearer token of `/api/` (None or empty: no authentication); read per request."""
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

    def recent_cdrs(self, limit: int, call_id: str | None) -> list[dict[str, Any]]:
        """The newest CDRs, newest first (empty without a CDR store)."""
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
