"""The resolver's I/O half: gateway names to addresses on the event loop, never blocking it.

`DnsResolver.resolve(host, port, done, transport)` answers at once (``done`` called before it
returns) for an IP literal, a name of the hosts file, or a name whose last answer is still
within its TTL; otherwise it starts one task per name, port and transport (callers asking for
one already being looked up wait for the same answer) that runs `targets.Lookup` with
dnspython's asyncio resolver, caches the `Resolution` for its TTL and calls every ``done`` with
`Targets` in a fresh RFC 2782 order.

Nothing raises out of a lookup: a name that does not resolve, a server that does not answer, a
bug, all end as `Targets` with an ``error`` (``dns-failure: <name>: <error>`` in the CDR).

Owns: `DnsResolver` (the dnspython resolver, built at the first query so that a daemon with no
gateway name never reads ``/etc/resolv.conf``; the hosts file, read at start and on
`reload_hosts`; the TTL cache; the addresses of the names it resolved, for the guard),
`DnsSettings`, `DnsStats` and the ``sipedge_dns_*`` metrics. The queries themselves go
through `query.DnsQuerier`, imported at the first one.
Must not: decide the RFC 3263 steps or the order of targets (`targets.py` does), or import
anything of sipedge outside resolver/ but `typedefs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from sipedge.resolver.cache import TtlCache
from sipedge.resolver.hosts import hosts_lookup, parse_hosts
from sipedge.resolver.targets import (
    ERROR,
    MAX_TTL,
    Answer,
    Entry,
    Lookup,
    Query,
    Resolution,
    Targets,
    default_port,
    failure_label,
    literal,
)
from sipedge.typedefs import Addr

if TYPE_CHECKING:
    from sipedge.resolver.query import DnsQuerier

log = logging.getLogger(__name__)

Done = Callable[[Targets], None]
Key = tuple[str, int | None, str]  # name, port (None: not given), transport
Name = tuple[str, int | None] | tuple[str, int | None, str]  # as `watch` takes it
FIXED_ANSWERS = 4096  # ready-made answers for addresses and hosts-file names (then cleared)


@dataclass(frozen=True)
class DnsSettings:
    """How names are resolved (config: ``sip.dns_servers``, ``sip.dns_timeout``,
    ``sip.hosts_file``)."""

    servers: tuple[Addr, ...] = ()  # empty: the system's (/etc/resolv.conf, at first query)
    timeout: float = 2.0  # seconds for one query, all servers tried
    hosts_file: Path | None = Path("/etc/hosts")
    cache_size: int = 1024  # names (with their port) whose answers are kept
    ipv6: bool = False  # AAAA too, IPv6 hosts-file lines too: sipd has an IPv6 listener


@dataclass
class DnsStats:
    queries: dict[str, int] = field(default_factory=dict)  # by type (A, AAAA, SRV, NAPTR)
    failures: dict[str, int] = field(default_factory=dict)  # lookups that failed, by label
    cache_hits: int = 0  # answered from a live cached answer, positive or negative
    hosts_hits: int = 0  # answered from the hosts file


class DnsResolver:
    def __init__(
        self,
        settings: DnsSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings or DnsSettings()
        self.clock = clock
        self.rand = rand
        self.stats = DnsStats()
        self.cache: TtlCache[Key, Resolution] = TtlCache(self.settings.cache_size)
        self.hosts: dict[str, tuple[str, ...]] = {}
        self._dns: DnsQuerier | None = None  # built at the first query (query.py)
        self._waiting: dict[Key, list[Done]] = {}
        # answers that need neither DNS nor a fresh SRV draw, ready-made: the hot path of a
        # call to a gateway given by address (1 if it came from the hosts file)
        self._fixed: dict[Key, tuple[Targets, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # name -> addresses of its last good answer: who the gateways are, for the guard
        self._known: dict[str, frozenset[str]] = {}
        self._all_known: frozenset[str] = frozenset()
        self.on_change: Callable[[], None] | None = None  # the known addresses changed
        self.reload_hosts()

    # -- settings ---------------------------------------------------------------------------
    def reload_hosts(self) -> None:
        """Read the hosts file again (start, reload); a missing file is no names."""
        self._fixed = {}
        path = self.settings.hosts_file
        if path is None:
            self.hosts = {}
            return
        try:
            self.hosts = parse_hosts(path.read_text(errors="replace"), self.settings.ipv6)
        except OSError as err:
            log.warning("hosts file %s not read: %s", path, err)
            self.hosts = {}

    # -- lookups ----------------------------------------------------------------------------
    def resolve(self, host: str, port: int | None, done: Done, transport: str = "udp") -> None:
        """The targets of `host` (``port`` None: no port given, so NAPTR/SRV apply, for
        `transport`) to ``done``: before returning when no query is needed, else when the
        lookup ends."""
        fixed = self._fixed.get((host, port, transport))
        if fixed is not None:  # an address, or a hosts-file name: the same answer every time
            self.stats.hosts_hits += fixed[1]
            done(fixed[0])
            return
        found = self.lookup_now(host, port, transport)
        if found is not None:
            targets = found.ordered(self.rand)
            if found.source != "dns":
                if len(self._fixed) >= FIXED_ANSWERS:
                    self._fixed.clear()
                self._fixed[(host, port, transport)] = (targets, int(found.source == "hosts"))
            done(targets)
            return
        key: Key = (host.rstrip(".").lower(), port, transport)
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.append(done)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a test driving the B2BUA by hand): nothing can be asked
            done(Targets(key[0], (), ERROR))
            return
        self._waiting[key] = [done]
        task = loop.create_task(self._run(key), name=f"dns {key[0]}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def lookup_now(self, host: str, port: int | None, transport: str = "udp") -> Resolution | None:
        """An answer that needs no query: IP literal, hosts file, or cached (None: ask)."""
        found = literal(host, port, transport)
        if found is not None:
            return found
        name = host.rstrip(".").lower()
        known = hosts_lookup(self.hosts, name)
        if known is not None:
            self.stats.hosts_hits += 1
            entry = Entry(0, 0, default_port(transport) if port is None else port, known)
            return Resolution(name, (entry,), None, MAX_TTL, "hosts")
        cached = self.cache.get((name, port, transport), self.clock())
        if cached is not None:
            self.stats.cache_hits += 1
        return cached

    def watch(self, names: Iterable[Name]) -> None:
        """The gateway names of the config (start, reload), as (host, port) or (host, port,
        transport): forget the addresses of names no longer listed, and look the others up
        now, so that the guard knows them before any call does."""
        wanted = {
            (name[0].rstrip(".").lower(), name[1], name[2] if len(name) > 2 else "udp")
            for name in names
        }
        keep = {key[0] for key in wanted}
        if set(self._known) - keep:
            self._known = {n: a for n, a in self._known.items() if n in keep}
            self._changed()
        for host, port, transport in sorted(wanted, key=lambda k: (k[0], k[1] or 0, k[2])):
            self.resolve(host, port, _ignore, transport)

    def knows(self, address: str) -> bool:
        """Whether `address` is one that a gateway name resolved to (its latest good answer)."""
        return address in self._all_known

    async def _run(self, key: Key) -> None:
        name = key[0]
        try:
            resolution = await self._lookup(*key)
        except asyncio.CancelledError:
            self._waiting.pop(key, None)
            raise
        except Exception:  # a bug must not leave a call waiting: it becomes a failed lookup
            log.exception("DNS lookup of %s failed", name)
            resolution = Resolution(name, (), ERROR, 0.0)
        self._store(key, resolution)
        for done in self._waiting.pop(key, []):
            try:
                done(resolution.ordered(self.rand))
            except Exception:
                log.exception("a caller of the DNS lookup of %s failed", name)

    async def _lookup(self, name: str, port: int | None, transport: str) -> Resolution:
        lookup = Lookup(
            name, port, partial(hosts_lookup, self.hosts), transport, ipv6=self.settings.ipv6
        )
        step = lookup.start()
        while isinstance(step, Query):
            step = lookup.on_answer(step, await self._query(step))
        return step

    def _store(self, key: Key, resolution: Resolution) -> None:
        self.cache.put(key, resolution, resolution.ttl, self.clock())
        if resolution.error is not None:
            label = failure_label(resolution.error)
            self.stats.failures[label] = self.stats.failures.get(label, 0) + 1
            log.info("DNS: %s: %s", key[0], resolution.error)
            return
        addresses = resolution.addresses
        if self._known.get(key[0]) != addresses:
            self._known[key[0]] = addresses
            self._changed()

    def _changed(self) -> None:
        self._all_known = frozenset(a for addresses in self._known.values() for a in addresses)
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                log.exception("telling that gateway addresses changed failed")

    async def _query(self, query: Query) -> Answer:
        self.stats.queries[query.rdtype] = self.stats.queries.get(query.rdtype, 0) + 1
        if self._dns is None:
            # dnspython is imported by the first query, not by every sipd's start (half a
            # second of it under emulation, for appliances whose gateways are all addresses)
            from sipedge.resolver.query import DnsQuerier

            self._dns = DnsQuerier(self.settings.servers, self.settings.timeout)
        return await self._dns.ask(query)

    async def close(self) -> None:
        """Shutdown: stop the lookups in flight (their callers are ending anyway)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._waiting.clear()

    # -- metrics ----------------------------------------------------------------------------
    def metrics(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        s = self.stats
        queries = CounterMetricFamily(
            "sipedge_dns_queries", "DNS queries sent, by type", labels=["type"]
        )
        for rdtype, count in sorted(s.queries.items()):
            queries.add_metric([rdtype], count)
        yield queries
        failures = CounterMetricFamily(
            "sipedge_dns_failures", "Gateway name lookups that failed, by reason", labels=["reason"]
        )
        for label, count in sorted(s.failures.items()):
            failures.add_metric([label], count)
        yield failures
        yield CounterMetricFamily(
            "sipedge_dns_cache_hits", "Lookups answered from the TTL cache", value=s.cache_hits
        )
        yield CounterMetricFamily(
            "sipedge_dns_hosts_hits", "Lookups answered from the hosts file", value=s.hosts_hits
        )
        yield GaugeMetricFamily(
            "sipedge_dns_cache_entries", "Answers held in the TTL cache", value=len(self.cache)
        )


def _ignore(targets: Targets) -> None:
    return None
