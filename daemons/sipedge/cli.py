"""`sipedge`: the operator's command line (check-config, cdr, cdr export, token show,
db migrate)."""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sipedge import __version__

if TYPE_CHECKING:
    from sipedge.store import CdrReader, PostgresSettings


def _cmd_check_config(args: argparse.Namespace) -> int:
    from sipedge.config import check_config_main

    return check_config_main(args.file)


def _storage(args: argparse.Namespace) -> tuple[Path, PostgresSettings | None] | None:
    """The storage directory and, when the config picks PostgreSQL, its settings (--storage:
    that SQLite directory, whatever the config says)."""
    from sipedge.config import ConfigError, load_config
    from sipedge.store import PostgresSettings

    if getattr(args, "storage", None):
        return Path(args.storage), None
    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return None
    return config.storage.path, PostgresSettings.of(config.storage, config.node_name)


def parse_when(text: str) -> float:
    """A point in time for --since/--until: epoch seconds, or an ISO 8601 date or date-time
    (local time unless it carries an offset or Z)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither epoch seconds nor an ISO 8601 date/time"
        ) from None
    return when.timestamp()


def _reader(args: argparse.Namespace) -> CdrReader | int:
    """The CDR reader of the config's (or --storage's) directory, or the exit code."""
    from sipedge.store import open_cdr_reader

    storage = _storage(args)
    if storage is None:
        return 2
    try:
        return open_cdr_reader(*storage)
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 1


def _cmd_cdr_export(args: argparse.Namespace) -> int:
    """Stream every CDR that ended in [since, until) to stdout, oldest first (billing)."""
    reader = _reader(args)
    if isinstance(reader, int):
        return reader
    out = sys.stdout
    count = 0
    try:
        records = reader.export(args.since, args.until)
        if args.format == "csv":
            from sipedge.api.console import CSV_COLUMNS, csv_row

            writer = csv.writer(out)
            writer.writerow(CSV_COLUMNS)
            for r in records:
                writer.writerow(csv_row(r))
                count += 1
        else:  # one JSON array, written record by record
            out.write("[")
            for r in records:
                out.write(",\n" if count else "\n")
                out.write(json.dumps(r, separators=(",", ":")))
                count += 1
            out.write("\n]\n")
    finally:
        reader.close()
    print(f"sipedge cdr export: {count} records", file=sys.stderr)
    return 0


def _cmd_cdr(args: argparse.Namespace) -> int:
    if getattr(args, "cdr_command", None) == "export":
        return _cmd_cdr_export(args)
    reader = _reader(args)
    if isinstance(reader, int):
        return reader
    try:
        records = reader.recent(args.limit, args.call_id)
    finally:
        reader.close()
    if args.json:
        json.dump(records, sys.stdout, indent=2)
        print()
        return 0
    for r in records:
        setup = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["setup_time"]))
        print(
            f"{setup}  {r['caller']} -> {r['callee']}  {r['cause']}  "
            f"gw={r['routing_gateway'] or '-'}  dur={r['duration']:.1f}s  "
            f"released_by={r['release_side']}  call_id={r['call_id']}"
        )
        for i, a in enumerate(r["attempts"]):
            stop = f"  stop: {a['stop_reason']}" if a["stop_reason"] else ""
            at = f" @{a['target']}" if a.get("target") else ""  # older rows have no target
            print(f"    #{i + 1} {a['gateway']}{at}: {a['result']}{stop}")
    return 0


def _cmd_token_show(args: argparse.Namespace) -> int:
    """The API tokens of the config: scope, where it is kept, value (root only: the files are
    root:sipedge 0640). With --scope, only that token's value (for scripts)."""
    from sipedge.api import CredentialError, load_token
    from sipedge.config import ConfigError, load_config

    try:
        api = load_config(args.config).api
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    found: list[tuple[str, str, str]] = []
    failed = False
    for scope, inline, file, key in (
        ("admin", api.token, api.token_file, "api.token"),
        ("read", api.read_token, api.read_token_file, "api.read_token"),
    ):
        if args.scope not in (None, scope):
            continue
        if inline is not None:
            found.append((scope, f"{key} (inline in {args.config})", inline))
        elif file is not None:
            try:
                found.append((scope, str(file), load_token(file, f"{key}_file")))
            except CredentialError as err:
                hint = " (run as root)" if "denied" in str(err) else ""
                print(f"{err}{hint}", file=sys.stderr)
                failed = True
    if not found and not failed:
        which = f"{args.scope} token" if args.scope else "API token"
        print(f"{args.config}: no {which} configured", file=sys.stderr)
        return 1
    for scope, where, value in found:
        print(value if args.scope else f"{scope}\t{where}\t{value}")
    return 1 if failed else 0


def _cmd_db_migrate(args: argparse.Namespace) -> int:
    """Every database of the configured backend to the latest schema; exit 1 on a refusal
    (a database newer than this sipedge) or an unreachable server."""
    from sipedge.store import SchemaError, migrate_databases

    storage = _storage(args)
    if storage is None:
        return 2
    try:
        done = migrate_databases(*storage)
    except (SchemaError, OSError, TimeoutError) as err:
        print(f"sipedge db migrate: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # the server's refusals (asyncpg's errors): the message says why
        print(f"sipedge db migrate: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    for what, before, after in done:
        state = "up to date" if before == after else f"migrated from {before}"
        print(f"{what}: schema version {after} ({state})")
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sipedge", description="sipedge operator tools")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check-config", help="validate a config file; exit 1 on errors")
    check.add_argument("file")
    check.set_defaults(func=_cmd_check_config)

    cdr = sub.add_parser("cdr", help="list recent CDRs, newest first")
    cdr.add_argument("--config", default="/etc/sipedge/sipedge.yaml")
    cdr.add_argument("--storage", help="storage directory (overrides the config's)")
    cdr.add_argument("--limit", type=int, default=20)
    cdr.add_argument("--call-id")
    cdr.add_argument("--json", action="store_true")
    cdr.set_defaults(func=_cmd_cdr)
    cdr_sub = cdr.add_subparsers(dest="cdr_command")
    export = cdr_sub.add_parser(
        "export", help="every CDR that ended in a time window, oldest first, for billing"
    )
    export.add_argument("--config", default="/etc/sipedge/sipedge.yaml")
    export.add_argument("--storage", help="storage directory (overrides the config's)")
    export.add_argument(
        "--since", type=parse_when, required=True, help="epoch seconds or ISO 8601 (local time)"
    )
    export.add_argument("--until", type=parse_when, help="exclusive end (default: now)")
    export.add_argument("--format", choices=("csv", "json"), default="csv")

    token = sub.add_parser("token", help="the management API's tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    show = token_sub.add_parser(
        "show", help="print the configured API tokens: scope, file, value (root only)"
    )
    show.add_argument("--config", default="/etc/sipedge/sipedge.yaml")
    show.add_argument("--scope", choices=("admin", "read"), help="print only this token's value")
    show.set_defaults(func=_cmd_token_show)

    db = sub.add_parser("db", help="the databases of storage.backend")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    migrate = db_sub.add_parser(
        "migrate", help="apply the schema migrations this sipedge has (SQLite and PostgreSQL)"
    )
    migrate.add_argument("--config", default="/etc/sipedge/sipedge.yaml")
    migrate.add_argument("--storage", help="a SQLite storage directory (instead of the config)")
    migrate.set_defaults(func=_cmd_db_migrate)

    args = parser.parse_args(argv)
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
