"""The store interface: what call control, the registrar, the API and the CLI may ask of a
backend. SQLite (`sipedge.store.sqlite`) is the first backend; a fleet backend implements the
same Protocols.

Owns: the `CdrStore`, `CdrReader` and `BindingStore` Protocols and the `Unsupported` error.
Must not: import a database driver or anything from sipedge outside store/ (but the
leaf `sipedge.typedefs`).
"""

from __future__ import annotations

from typing import Any, Protocol

from sipedge.store.records import Binding, CallRecord


class Unsupported(Exception):
    """A backend cannot do what was asked; it says so rather than behaving differently."""


class CdrReader(Protocol):
    """Reading CDRs: the API's `/api/cdrs` and `sipedge cdr`."""

    def recent(self, limit: int = 50, call_id: str | None = None) -> list[dict[str, Any]]:
        """Newest first, each a JSON-ready dict with its attempts decoded."""
        ...

    def close(self) -> None: ...


class CdrStore(CdrReader, Protocol):
    """Append-only CDRs: one committed record per finished call."""

    @property
    def written(self) -> int:
        """Records written since this store was opened (a metric)."""
        ...

    def write(self, record: CallRecord) -> None:
        """Commit one finished call; it survives a crash of the daemon once this returns."""
        ...


class BindingStore(Protocol):
    """Registrations kept across restarts; writes are batched until `flush()`."""

    @property
    def pending(self) -> int:
        """Accounts changed since the last flush."""
        ...

    @property
    def writes(self) -> int:
        """Rows written or deleted since this store was opened (a metric)."""
        ...

    def load(self, now: float) -> list[Binding]:
        """The bindings still live at `now`; expired ones are removed from the store."""
        ...

    def put(self, binding: Binding) -> None: ...

    def delete(self, account: str) -> None: ...

    def flush(self) -> int:
        """Write every pending change in one transaction; returns how many."""
        ...

    def close(self) -> None:
        """Flush, then release the backend."""
        ...
