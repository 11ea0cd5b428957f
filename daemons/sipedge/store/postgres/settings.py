"""How to reach the PostgreSQL server: built by sipd and the CLI from the config.

Owns: `PostgresSettings` and the spool's file name.
Must not: import asyncpg (importing the store must not need it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

SPOOL = "cdr-spool.sqlite"  # under storage.path: CDRs not yet on the server (postgres/cdr.py)


class StorageOptions(Protocol):
    """The part of the config's `storage:` section the backend choice reads (structural: the
    store does not import the config)."""

    @property
    def backend(self) -> str: ...

    @property
    def dsn(self) -> str | None: ...

    @property
    def password_file(self) -> Path | None: ...

    @property
    def pool_size(self) -> int: ...


@dataclass(frozen=True)
class PostgresSettings:
    """storage.dsn, storage.password_file, storage.pool_size and this edge's name (node.name:
    whose CDRs and bindings these are)."""

    dsn: str
    password_file: Path | None = None
    pool_size: int = 4
    node: str = "sipedge"

    def password(self) -> str | None:
        """Read at each open, never kept in the config: a rotated password needs a restart."""
        if self.password_file is None:
            return None
        return self.password_file.read_text().strip("\r\n")

    @classmethod
    def of(cls, storage: StorageOptions, node: str) -> PostgresSettings | None:
        """The settings when the config picks PostgreSQL, else None (SQLite)."""
        if storage.backend != "postgresql" or storage.dsn is None:
            return None
        return cls(storage.dsn, storage.password_file, storage.pool_size, node)
