"""The store interface: what call control, the registrar, the API and the CLI may ask of a
backend. SQLite (`sipedge.store.sqlite`) is the first backend; a fleet backend implements the
same Protocols.

Owns: the `CdrStore`, `CdrReader` and `BindingStore` Protocols and the `Unsupported` error.
Must not: import a database driver or anything from sipedge outside store/ (but the
leaf `sipedge.typedefs`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from sipedge.store.records import Binding, CallRecord


class Unsupported(Exception):
    """A backend cannot do what was asked; it says so rather than behaving differently."""


class CdrReader(Protocol):
    """Reading CDRs: the API's `/api/cdrs` and `sipedge cdr`."""

    def recent(
        self, limit: int = 50, call_id: str | None = None, before: int | None = None
    ) -> list[dict[str, Any]]:
        """Newest first, each a JSON-ready dict with its attempts decoded and its `id`, the
        cursor: `before=id` continues with the records older than that one."""
        ...

    def export(self, since: float, until: float | None = None) -> Iterator[dict[str, Any]]:
        """Every record that ended in [since, until), oldest first, read in batches (billing
        exports of millions of calls never sit in memory at once)."""
        ...

    def close(self) -> None: ...


class CdrStore(CdrReader, Protocol):
    """Append-only CDRs: one committed record per finished call."""

    @property
    def written(self) -> int:
        """Records written since this store was opened (a metric)."""
        ...

    def write(self, record: CallRecord) -> None:
        """Commit one finished call; it survives a crash of the daemon once this returns
        (and a power cut too when the store was opened durable)."""
        ...

    def size_bytes(self) -> int:
        """Bytes the records take on disk (a metric; what retention by size compares)."""
        ...

    def prune(self, now: float, max_age: float | None, max_bytes: int | None) -> int:
        """Retention: remove records older than `max_age` seconds, then the oldest ones while
        the store is larger than `max_bytes`; bounded work per call (a batch), so call it
        again while it returns a full batch. Returns how many were removed."""
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
