"""`sipedge`: the operator's command line (check-config, cdr)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sipedge import __version__


def _cmd_check_config(args: argparse.Namespace) -> int:
    from sipedge.config import check_config_main

    return check_config_main(args.file)


def _cmd_cdr(args: argparse.Namespace) -> int:
    from sipedge.config import ConfigError, load_config
    from sipedge.store import open_cdr_reader

    directory: Path
    if args.storage:
        directory = Path(args.storage)
    else:
        try:
            directory = load_config(args.config).storage.path
        except ConfigError as err:
            print(err, file=sys.stderr)
            return 2
    try:
        reader = open_cdr_reader(directory)
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 1
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
            print(f"    #{i + 1} {a['gateway']}: {a['result']}{stop}")
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

    args = parser.parse_args(argv)
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
