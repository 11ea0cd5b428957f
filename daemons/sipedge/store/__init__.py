"""Persistent state: CDRs and registrations, behind one interface with backends behind it.

Public names: the records (`CallRecord`, `AttemptRecord`, `Binding`), the Protocols
(`CdrStore`, `CdrReader`, `BindingStore`), `OnCommitted` (what `CdrStore.write` calls back once
a CDR is committed), `Unsupported`, and the openers below, which pick the backend (SQLite
today, under `storage.path`; its CDRs are group-committed by a writer thread).

Dependency direction: calls/, registrar/, api/, sipd and the CLI import store/; store/
imports nothing else from sipedge. Only store/ talks to a database driver.
"""

from __future__ import annotations

from pathlib import Path

from sipedge.store.base import BindingStore, CdrReader, CdrStore, OnCommitted, Unsupported
from sipedge.store.records import AttemptRecord, Binding, CallRecord
from sipedge.store.sqlite.bindings import SqliteBindingStore
from sipedge.store.sqlite.cdr import SqliteCdrReader, SqliteCdrStore

__all__ = [
    "AttemptRecord",
    "Binding",
    "BindingStore",
    "CallRecord",
    "CdrReader",
    "CdrStore",
    "OnCommitted",
    "Unsupported",
    "open_binding_store",
    "open_cdr_reader",
    "open_cdr_store",
]


def open_cdr_store(directory: Path, *, durable: bool = False) -> CdrStore:
    """The CDR store a daemon writes to; `close()` it (it commits what is still queued)."""
    return SqliteCdrStore(directory, durable=durable)


def open_cdr_reader(directory: Path) -> CdrReader:
    """Read-only CDR access while a daemon writes (`sipedge cdr`); FileNotFoundError if none."""
    return SqliteCdrReader(directory)


def open_binding_store(directory: Path) -> BindingStore:
    """The registrar's binding store."""
    return SqliteBindingStore(directory)
