"""The resolver's I/O half against a real DNS server on 127.0.0.1 (tests/dns_server.py).

Never the host's resolver: every `DnsResolver` here is given the test server (and a hosts file
of the test's own, or none), so /etc/resolv.conf is not read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvloop

from sipedge.resolver import DnsResolver, DnsSettings, Targets
from tests.dns_server import NXDOMAIN, SERVFAIL, SILENT, DnsTestServer

RECORDS = {
    "a.test": ["300 A 192.0.2.1", "300 A 192.0.2.2"],
    "short.test": ["2 A 192.0.2.7"],
    "_sip._udp.srv.test": ["60 SRV 10 0 5070 a.test.", "60 SRV 20 0 5071 b.test."],
    "b.test": ["A 192.0.2.3"],
    "naptr.test": ['NAPTR 10 10 "s" "SIP+D2U" "" _sip._udp.pool.test.'],
    "_sip._udp.pool.test": ["SRV 5 0 5090 localhost."],
    "nx.test": NXDOMAIN,
    "broken.test": SERVFAIL,
    "silent.test": SILENT,
    "v6.test": ["AAAA 2001:db8::5"],
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server() -> Iterator[DnsTestServer]:
    with DnsTestServer(RECORDS) as s:
        yield s


def resolver_for(
    server: DnsTestServer, clock: FakeClock | None = None, hosts: Path | None = None
) -> DnsResolver:
    settings = DnsSettings(servers=(("127.0.0.1", server.port),), timeout=0.3, hosts_file=hosts)
    return DnsResolver(settings, clock=clock or time.monotonic)


async def resolve(resolver: DnsResolver, host: str, port: int | None) -> Targets:
    future: asyncio.Future[Targets] = asyncio.get_running_loop().create_future()
    resolver.resolve(host, port, future.set_result)
    return await asyncio.wait_for(future, 5)


async def test_a_records_with_an_explicit_port(server: DnsTestServer) -> None:
    resolver = resolver_for(server)
    targets = await resolve(resolver, "a.test", 5080)
    # the A records of one name come in the answer's order, which dnspython does not keep
    assert set(targets.addresses) == {("192.0.2.1", 5080), ("192.0.2.2", 5080)}
    assert server.queries == [("a.test", "A")]  # RFC 3263 4.2: a port given, A only
    assert resolver.knows("192.0.2.2") and not resolver.knows("192.0.2.3")


async def test_srv_in_priority_order_then_naptr(server: DnsTestServer) -> None:
    resolver = resolver_for(server)
    targets = await resolve(resolver, "srv.test", None)
    assert set(targets.addresses[:2]) == {("192.0.2.1", 5070), ("192.0.2.2", 5070)}
    assert targets.addresses[2] == ("192.0.2.3", 5071)
    targets = await resolve(resolver, "naptr.test", None)
    assert targets.addresses == (("127.0.0.1", 5090),)  # SRV target localhost: no A query
    assert server.asked("localhost") == 0
    assert resolver.stats.queries["NAPTR"] == 2 and resolver.stats.queries["SRV"] == 2


@pytest.mark.parametrize(
    ("name", "error"),
    [("nx.test", "NXDOMAIN"), ("broken.test", "SERVFAIL"), ("silent.test", "timeout")],
)
async def test_failures_end_as_targets_with_an_error(
    server: DnsTestServer, name: str, error: str
) -> None:
    resolver = resolver_for(server)
    started = time.monotonic()
    targets = await resolve(resolver, name, None)
    assert targets.addresses == () and targets.error == error
    assert targets.failure == f"dns-failure: {name}: {error}"
    assert time.monotonic() - started < 2  # one query's timeout (0.3 s), not more
    label = error.lower()
    assert resolver.stats.failures == {label: 1}


async def test_ipv6_only_names_are_refused_and_say_why(server: DnsTestServer) -> None:
    targets = await resolve(resolver_for(server), "v6.test", 5060)
    assert targets.error is not None and "IPv6" in targets.error


async def test_answers_are_kept_for_their_ttl(server: DnsTestServer) -> None:
    clock = FakeClock()
    resolver = resolver_for(server, clock)
    await resolve(resolver, "short.test", 5060)
    await resolve(resolver, "short.test", 5060)
    assert server.asked("short.test") == 1 and resolver.stats.cache_hits == 1
    clock.now += 1.9
    await resolve(resolver, "short.test", 5060)
    assert server.asked("short.test") == 1
    clock.now += 0.2  # past the 2 s TTL: asked again
    server.records["short.test"] = ["2 A 192.0.2.8"]
    targets = await resolve(resolver, "short.test", 5060)
    assert server.asked("short.test") == 2 and targets.addresses == (("192.0.2.8", 5060),)
    assert resolver.knows("192.0.2.8") and not resolver.knows("192.0.2.7")


async def test_negative_answers_are_cached_briefly(server: DnsTestServer) -> None:
    clock = FakeClock()
    resolver = resolver_for(server, clock)
    for _ in range(3):
        assert (await resolve(resolver, "nx.test", 5060)).error == "NXDOMAIN"
    assert server.asked("nx.test") == 1
    clock.now += 5.1  # the server's SOA minimum is 5 s
    await resolve(resolver, "nx.test", 5060)
    assert server.asked("nx.test") == 2
    for _ in range(2):
        await resolve(resolver, "silent.test", 5060)
    assert server.asked("silent.test", "A") <= 2  # one query (dnspython may retry once)


async def test_callers_of_one_name_share_one_lookup(server: DnsTestServer) -> None:
    resolver = resolver_for(server)
    results = await asyncio.gather(*(resolve(resolver, "srv.test", None) for _ in range(5)))
    assert len({r.addresses[-1] for r in results}) == 1
    assert server.asked("_sip._udp.srv.test") == 1


async def test_hosts_file_first_then_dns(server: DnsTestServer, tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n192.0.2.50 gw.lab gw-alias\n")
    resolver = resolver_for(server, hosts=hosts)
    assert (await resolve(resolver, "gw-alias", None)).addresses == (("192.0.2.50", 5060),)
    assert (await resolve(resolver, "localhost", 5070)).addresses == (("127.0.0.1", 5070),)
    assert (await resolve(resolver, "gw.lab", 5060)).addresses == (("192.0.2.50", 5060),)
    assert server.queries == [] and resolver.stats.hosts_hits == 3
    hosts.write_text("192.0.2.51 gw.lab\n")
    resolver.reload_hosts()
    assert (await resolve(resolver, "gw.lab", 5060)).addresses == (("192.0.2.51", 5060),)
    # without a hosts file, localhost still is loopback (RFC 6761)
    bare = resolver_for(server)
    assert (await resolve(bare, "localhost", 5070)).addresses == (("127.0.0.1", 5070),)


async def test_literals_answer_before_resolve_returns(server: DnsTestServer) -> None:
    got: list[Targets] = []
    resolver_for(server).resolve("192.0.2.77", 5062, got.append)
    assert got and got[0].addresses == (("192.0.2.77", 5062),)
    assert server.queries == []


async def test_watch_looks_names_up_and_tells_the_guard(server: DnsTestServer) -> None:
    resolver = resolver_for(server)
    changes: list[frozenset[str]] = []
    resolver.on_change = lambda: changes.append(resolver._all_known)
    resolver.watch([("a.test", 5060), ("b.test", None)])
    for _ in range(100):
        if resolver.knows("192.0.2.3") and resolver.knows("192.0.2.1"):
            break
        await asyncio.sleep(0.02)
    assert resolver.knows("192.0.2.1") and resolver.knows("192.0.2.3")
    resolver.watch([("b.test", None)])  # a.test left the config: its addresses are forgotten
    assert not resolver.knows("192.0.2.1") and resolver.knows("192.0.2.3")
    assert len(changes) == 3


async def test_a_failing_callback_does_not_stop_the_others(server: DnsTestServer) -> None:
    resolver = resolver_for(server)
    got: list[Targets] = []

    def bad(targets: Targets) -> None:
        raise RuntimeError("bug in a caller")

    resolver.resolve("b.test", 5060, bad)
    resolver.resolve("b.test", 5060, got.append)
    for _ in range(100):
        if got:
            break
        await asyncio.sleep(0.02)
    assert got[0].addresses == (("192.0.2.3", 5060),)


async def test_close_cancels_lookups_in_flight(server: DnsTestServer) -> None:
    resolver = DnsResolver(
        DnsSettings(servers=(("127.0.0.1", server.port),), timeout=5, hosts_file=None)
    )
    resolver.resolve("silent.test", 5060, lambda t: None)
    await asyncio.sleep(0.05)
    await asyncio.wait_for(resolver.close(), 1)
    assert not resolver._tasks


def test_works_under_uvloop(server: DnsTestServer) -> None:
    """sipd runs on uvloop: dnspython's asyncio backend must work there too."""

    async def main() -> tuple[Targets, Targets]:
        resolver = resolver_for(server)
        return await resolve(resolver, "srv.test", None), await resolve(resolver, "nx.test", 1)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        found, missing = runner.run(main())
    assert found.addresses[2] == ("192.0.2.3", 5071)
    assert missing.error == "NXDOMAIN"


async def test_metrics_name_queries_and_failures(server: DnsTestServer) -> None:
    resolver = resolver_for(server)
    await resolve(resolver, "nx.test", None)
    await resolve(resolver, "a.test", 5060)
    families = {f.name: f for f in resolver.metrics()}
    queries = {s.labels["type"]: s.value for s in families["sipedge_dns_queries"].samples}
    assert queries == {"A": 1, "NAPTR": 1}
    failures = [s for s in families["sipedge_dns_failures"].samples]
    assert [(s.labels["reason"], s.value) for s in failures] == [("nxdomain", 1)]
