"""The `storage:` section: where CDRs and registrations live (docs/storage.md,
docs/configuration.md).

Owns: `storage_section`, which builds `StorageConfig` with the collector, and the rules of
the backend choice: `postgresql` needs `storage.dsn`; the DSN never carries a password (it
comes from `storage.password_file`, so the config file can be shown and versioned).
Must not: read the password file (the store reads it at open), connect anywhere, or import
anything from sipedge outside config/.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from sipedge.config.collector import _Collector
from sipedge.config.errors import Described, _Bad
from sipedge.config.schema import BACKENDS, StorageConfig
from sipedge.config.values import (
    _absolute_path,
    _integer,
    _off_or,
    _on_off,
    _optional_absolute_path,
)

_STORAGE_KEYS = (
    "path",
    "cdr_durable",
    "cdr_retention_days",
    "cdr_max_mib",
    "backend",
    "dsn",
    "password_file",
    "pool_size",
    "migrate_on_start",
)
BACKEND_ALLOWED = " or ".join(BACKENDS)
DSN_ALLOWED = (
    "null or postgresql://[user@]host[:port]/database[?options] without a password"
    " (the password goes in storage.password_file)"
)


def _backend(value: object) -> str:
    if not isinstance(value, str) or value.strip().lower() not in BACKENDS:
        raise _Bad(BACKEND_ALLOWED)
    return value.strip().lower()


def _dsn(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("postgresql://", "postgres://")):
        raise _Bad(DSN_ALLOWED)
    try:
        parts = urlsplit(value)
        has_password = parts.password is not None
    except ValueError:
        raise _Bad(DSN_ALLOWED) from None
    if has_password or "password" in parse_qs(parts.query):
        # never echo it back: the problem would print the secret
        raise _Bad(DSN_ALLOWED)
    return value


def storage_section(c: _Collector, raw: object) -> StorageConfig:
    data = c.mapping("storage", raw, _STORAGE_KEYS)
    d = StorageConfig()
    backend = c.get("storage", data, "backend", _backend, d.backend)
    raw_dsn = data.get("dsn")
    dsn = None
    try:
        dsn = _dsn(raw_dsn)
    except _Bad as bad:  # not shown: it may hold the password
        c.problem("storage.dsn", Described("that DSN (not shown)"), bad.allowed)
    if backend == "postgresql" and raw_dsn is None:
        c.problem("storage.dsn", Described("no DSN"), "a DSN: storage.backend is postgresql")
    return StorageConfig(
        path=c.get("storage", data, "path", _absolute_path, d.path),
        cdr_durable=c.get("storage", data, "cdr_durable", _on_off, d.cdr_durable),
        cdr_retention_days=c.get(
            "storage",
            data,
            "cdr_retention_days",
            _off_or(_integer(1, 3650), "Off or 1-3650 (days)"),
            d.cdr_retention_days,
        ),
        cdr_max_mib=c.get(
            "storage",
            data,
            "cdr_max_mib",
            _off_or(_integer(1, 1048576), "Off or 1-1048576 (MiB)"),
            d.cdr_max_mib,
        ),
        backend=backend,
        dsn=dsn,
        password_file=c.get("storage", data, "password_file", _optional_absolute_path, None),
        pool_size=c.get("storage", data, "pool_size", _integer(1, 64), d.pool_size),
        migrate_on_start=c.get("storage", data, "migrate_on_start", _on_off, d.migrate_on_start),
    )
