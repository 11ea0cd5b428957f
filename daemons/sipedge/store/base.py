"""The store interface: what call control, the registrar, the API and the CLI may ask of a
backend. SQLite (`sipedge.store.sqlite`) is the first backend; a fleet backend implements the
same Protocols.

Owns: the `CdrStore`, `CdrReader`, `BindingStore` and `FleetView` Protocols, the `OnCommitted`
callback type, `StoreMetric` and the `Unsupported` error.
Must not: import a database driver or anything from sipedge outside store/ (but the
leaf `sipedge.typedefs`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sipedge.store.records import Binding, CallRecord, RemoteBinding


class Unsupported(Exception):
    """A backend cannot do what was asked; it says so rather than behaving differently."""


@dataclass(frozen=True)
class StoreMetric:
    """One metric a backend adds to sipd's (`sipedge_<name>`)."""

    kind: Literal["counter", "gauge"]
    name: str
    doc: str
    value: float


OnCommitted = Callable[[], object]
"""Called once a CDR given to `CdrStore.write` is committed (or its failure logged); what it
returns is ignored."""


CdrFilters = Mapping[str, str | float | bool]
"""A CDR search (`CdrReader.recent`), every key optional: `caller` and `callee` (the number
contains the text), `gateway` (the routing or the mapping gateway is this one), `since` and
`until` (end time, epoch seconds, [since, until)), `answered` (True: answered calls only, False:
unanswered only). Any other key is a ValueError."""


class CdrReader(Protocol):
    """Reading CDRs: the API's `/api/cdrs` and `sipedge cdr`."""

    def recent(
        self,
        limit: int = 50,
        call_id: str | None = None,
        before: int | None = None,
        filters: CdrFilters | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first, each a JSON-ready dict with its attempts decoded and its `id`, the
        cursor: `before=id` continues with the records older than that one. `filters`: see
        `CdrFilters` (the operator console's search)."""
        ...

    def export(self, since: float, until: float | None = None) -> Iterator[dict[str, Any]]:
        """Every record that ended in [since, until), oldest first, read in batches (billing
        exports of millions of calls never sit in memory at once)."""
        ...

    def close(self) -> None: ...


class CdrStore(CdrReader, Protocol):
    """Append-only CDRs: one committed record per finished call.

    Writes are group-committed off the event loop: `write()` only queues the record; a writer
    of the backend's own commits everything queued in one transaction (one fsync when durable)
    while the next records queue up, and then calls each record's `on_committed` on the event
    loop that was running when it was written. Every other change (`prune`) goes through the
    same writer, after the records queued before it. Reads see committed records only.
    """

    @property
    def written(self) -> int:
        """Records committed since this store was opened (a metric)."""
        ...

    @property
    def queued(self) -> int:
        """Records written and not yet committed (a gauge)."""
        ...

    @property
    def batches(self) -> int:
        """Transactions of records committed, one fsync each when durable (a metric)."""
        ...

    @property
    def sync_writes(self) -> int:
        """Records committed on the caller's thread because the queue was full (a metric)."""
        ...

    @property
    def write_failures(self) -> int:
        """Records that could not be committed, even on a second try (a metric; each is
        logged with its call id)."""
        ...

    def write(self, record: CallRecord, on_committed: OnCommitted | None = None) -> None:
        """Queue one finished call for the writer (a snapshot of it: later changes to the
        record are not written). `on_committed` runs on the caller's event loop, never inside
        `write()`, once the record survives a crash of the daemon (and a power cut too when
        the store was opened durable); callbacks run in the order of their writes, except for
        a write that found the queue full (below). A failed transaction is tried once more;
        if it fails again, its records are logged with their call ids, counted in
        `write_failures`, and their callbacks run all the same: nothing is lost silently and
        no caller waits forever.

        Bounded: when the queue holds its limit of records, the record is committed at once
        on the caller's thread (back-pressure: the event loop waits for the disk), counted in
        `sync_writes`; it is never dropped. Called outside an event loop (a script, the CLI),
        `write()` commits before it returns and then calls `on_committed` itself.
        Raises RuntimeError once the store is closed (and then never calls `on_committed`).
        """
        ...

    def size_bytes(self) -> int:
        """Bytes the records take on disk (a metric; what retention by size compares)."""
        ...

    def backend_metrics(self) -> list[StoreMetric]:
        """What only this backend measures (PostgreSQL: its spool and shipments)."""
        ...

    def prune(self, now: float, max_age: float | None, max_bytes: int | None) -> int:
        """Retention: remove records older than `max_age` seconds, then the oldest ones while
        the store is larger than `max_bytes`; bounded work per call (a batch), so call it
        again while it returns a full batch. Returns how many were removed. Runs on the
        writer, after the records queued before it, and blocks until done: call it from a
        worker thread (`asyncio.to_thread`), not on the event loop."""
        ...

    def close(self) -> None:
        """Commit everything queued (bounded wait; what could not be committed in time is
        logged with its call ids), stop the writer and release the backend."""
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


class FleetView(Protocol):
    """The other edges' live bindings, as this edge last read them from the shared database
    (docs/fleet.md). Reads never wait for the database: `refresh()` starts a read (and this
    edge's heartbeat) in the background; `lookup()` answers from the last completed one."""

    @property
    def up(self) -> bool:
        """The last refresh reached the database."""
        ...

    @property
    def failures(self) -> int:
        """Refreshes that failed (a metric)."""
        ...

    def refresh(self, now: float, accounts: Collection[str]) -> bool:
        """Say this edge is alive at `now` and read the others' live bindings of `accounts`;
        False (nothing started) while the previous refresh is still in flight."""
        ...

    def lookup(self, account: str) -> list[RemoteBinding]:
        """The other edges' bindings of `account` from the last refresh (maybe stale: the
        caller checks `expires_at` and `node_seen_at`)."""
        ...

    def size(self) -> int:
        """Remote bindings held (a gauge)."""
        ...

    def close(self) -> None:
        """Withdraw this edge (the others stop sending to it at once), release the backend."""
        ...
