"""sipedge-sipd: the SIP daemon (transport, transactions, B2BUA, CDRs, management API).

Runs in the foreground, logs to stderr, tells systemd when it is ready (Type=notify), reloads
its config on SIGHUP, and on SIGTERM stops taking calls, ends the calls in progress with BYE
(or 503 during setup), writes their CDRs and exits. It refuses to start (exit 2) on a config
that fails validation (an API off loopback without an admin token among others) or whose token
files, API certificate or SIP TLS certificates cannot be used.

The package: `daemon.py` composes sipd (the transports of every sip.listen address, B2BUA,
stores, registrations, media link, API) and runs its lifecycle; `metrics.py` is its /metrics
collector; `settings.py` converts the config sections for the packages that may not read
config/ (credentials, the API policy, DNS settings, TLS expiry). This module puts the daemon
and its collector together (`SipDaemon`, which implements `sipedge.api.Managed`) and runs it
(`serve`, `main`). Once it has started, the garbage collector is tuned (`sipedge.gcwatch.tune`:
start-up objects frozen, full collections only when memory grows, `gcwatch.valve`, and once a
peak of calls has drained, `gcwatch.heap`), every
collection's pause is exported in /metrics, and the heap's free pages are given back after a
peak of calls (`gcwatch.heap`; whoever starts sipd sets its `ALLOCATOR_ENV`). `preload.py`
imports aiohttp before anything else does, without parsing the CA store for nothing.
Must not: be imported by anything but the entry points (it is the composition root).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from pathlib import Path

import sipedge.sipd.preload  # noqa: F401 - first: aiohttp without the CA store (see there)

# isort: split
from sipedge.api import CredentialError
from sipedge.appliance import notify
from sipedge.config import Config, ConfigError, load_config
from sipedge.gcwatch import FullCollectionValve, HeapTrim, run_heap_trim, run_valve, tune
from sipedge.gcwatch.valve import resident_bytes
from sipedge.sip.transport import TlsError
from sipedge.sipd.daemon import SipDaemonBase
from sipedge.sipd.metrics import SipdCollector
from sipedge.sipd.settings import access_policy
from sipedge.store import SchemaError

__all__ = ["SipDaemon", "access_policy", "main", "serve"]

log = logging.getLogger("sipedge.sipd")


class SipDaemon(SipDaemonBase):
    """The daemon with its /metrics collector (see the module docstring)."""

    def __init__(self, config_path: Path, config: Config) -> None:
        super().__init__(config_path, config)
        self.metrics_registry.register(SipdCollector(self))


async def serve(config_path: Path) -> int:
    try:
        config = load_config(config_path)
    except ConfigError as err:
        log.error("invalid config %s:\n%s", config_path, err)
        return 2
    daemon = SipDaemon(config_path, config)
    try:
        daemon.load_credentials()
        daemon.load_sip_tls()
    except (CredentialError, TlsError) as err:
        log.error("cannot start: %s", err)
        return 2
    loop = asyncio.get_running_loop()
    try:
        await daemon.start()
    except (OSError, SchemaError) as err:  # SchemaError: the database is ahead or behind
        log.error("cannot start: %s", err)
        await daemon.stop(0)
        return 1
    loop.add_signal_handler(signal.SIGTERM, daemon.request_stop)
    loop.add_signal_handler(signal.SIGINT, daemon.request_stop)
    loop.add_signal_handler(signal.SIGHUP, daemon.reload)
    # Everything start-up builds exists now: freeze it and make full collections rare; then
    # time every collection from here on (tune's own full collection is start-up's).
    frozen = tune()
    daemon.gc_watch.install()
    # Full collections: the valve's when memory grows, and the heap trim's once calls drained.
    valve = loop.create_task(run_valve(FullCollectionValve()))
    trim = loop.create_task(
        run_heap_trim(HeapTrim(), daemon.held, resident_bytes, compact=daemon.compact)
    )
    log.info(
        "garbage collector: %d start-up objects frozen, thresholds %s", frozen, gc.get_threshold()
    )
    notify("READY=1")
    await daemon.run_until_stopped()
    valve.cancel()
    trim.cancel()
    log.info("stopping")
    await daemon.stop()
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sipedge-sipd", description=__doc__)
    parser.add_argument("--config", required=True, type=Path, help="path of sipedge.yaml")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency, but run without it anyway
        pass
    sys.exit(asyncio.run(serve(args.config)))


if __name__ == "__main__":
    main()
