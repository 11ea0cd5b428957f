"""Routing gateways given by host name, end to end: SIPp caller -> sipd -> SIPp gateways, sipd
resolving the names at a test DNS server on 127.0.0.1 (tests/dns_server.py) or from its hosts
file. Never the host's resolver: every sipd here has `sip.dns_servers` set to the test server.

* `localhost` (the hosts file) and a name with an A record complete calls; so does a name
  without a port, through its SRV records (RFC 3263), the Request-URI keeping the name;
* a name whose first SRV target is silent: the INVITE timer moves the call to the gateway's
  next target, both in the CDR as attempts of the same gateway;
* a name that does not resolve (NXDOMAIN, a server that never answers) fails over to the next
  gateway at once, the CDR saying why, and /metrics counts the queries and the failure.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Sipd, free_port, gateway, make_config, self_signed_cert, start_sipd
from tests.dns_server import NXDOMAIN, SILENT, DnsTestServer, Records
from tests.integration.test_b2bua import call, last_cdr, uas
from tests.sipp.harness import Sipp

pytestmark = [pytest.mark.sipp, pytest.mark.slow]


@pytest.fixture
def named_sipd(tmp_path: Path) -> Iterator[Any]:
    """Call with (records, gateways) to get a test DNS server and a sipd that asks it."""
    running: list[tuple[Sipd, DnsTestServer]] = []

    def factory(
        records: Records, gateways: list[dict[str, Any]], **sip: Any
    ) -> tuple[Sipd, DnsTestServer]:
        server = DnsTestServer(records).start()
        config = make_config(tmp_path, free_port(), free_port(socket.SOCK_STREAM), gateways)
        config["sip"].update({"dns_servers": [server.address], "dns_timeout": 0.5, **sip})
        sipd = start_sipd(tmp_path, config, name=f"sipd{len(running)}")
        running.append((sipd, server))
        return sipd, server

    yield factory
    for sipd, server in running:
        sipd.stop()
        server.stop()


def by_name(name: str, address: str, port: int | None, **over: Any) -> dict[str, Any]:
    gw = gateway(name, port or 5060, address=address, **over)
    if port is None:
        del gw["port"]  # no port: NAPTR and SRV apply
    return gw


def test_localhost_from_the_hosts_file(named_sipd: Any) -> None:
    port = free_port()
    sipd, dns = named_sipd({}, [by_name("gw1", "localhost", port)])
    with uas("uas_answer", port) as gw:
        result = call(sipd)
        gw_result = gw.wait(20)
    assert result.returncode == 0, result.stdout + sipd.log()
    assert gw_result.returncode == 0
    cdr = last_cdr(sipd)
    assert [(a["result"], a["target"]) for a in cdr["attempts"]] == [
        ("answered", f"127.0.0.1:{port}")
    ]
    invite = next(m for m in gw_result.messages if m.first_line.startswith("INVITE"))
    assert invite.first_line.split()[1] == f"sip:4420001@localhost:{port}"
    assert dns.queries == []  # the hosts file answered


def test_a_record_with_a_port(named_sipd: Any) -> None:
    port = free_port()
    sipd, dns = named_sipd({"gw-a.test": ["A 127.0.0.1"]}, [by_name("gw1", "gw-a.test", port)])
    with uas("uas_answer", port) as gw:
        result = call(sipd)
        gw.wait(20)
    assert result.returncode == 0, result.stdout + sipd.log()
    assert last_cdr(sipd)["attempts"][0]["result"] == "answered"
    assert dns.asked("gw-a.test", "A") >= 1
    assert dns.asked("gw-a.test", "NAPTR") == dns.asked("_sip._udp.gw-a.test") == 0  # 4.2


def test_srv_records_without_a_port(named_sipd: Any) -> None:
    port = free_port()
    records = {
        "_sip._udp.pool.test": [f"SRV 10 0 {port} host-a.test."],
        "host-a.test": ["A 127.0.0.1"],
    }
    sipd, dns = named_sipd(records, [by_name("gw1", "pool.test", None)])
    with uas("uas_answer", port) as gw:
        result = call(sipd)
        gw_result = gw.wait(20)
    assert result.returncode == 0, result.stdout + sipd.log()
    invite = next(m for m in gw_result.messages if m.first_line.startswith("INVITE"))
    assert invite.first_line.split()[1] == "sip:4420001@pool.test"  # SRV gave the port
    assert [q for q in dns.queries[:3]] == [
        ("pool.test", "NAPTR"),
        ("_sip._udp.pool.test", "SRV"),
        ("host-a.test", "A"),
    ]
    metrics = sipd.metrics()
    assert metrics['sipedge_dns_queries_total{type="SRV"}'] >= 1
    assert metrics["sipedge_dns_cache_hits_total"] >= 1  # the call used the start-up answer


def test_a_silent_srv_target_moves_the_call_to_the_next_target(named_sipd: Any) -> None:
    silent_port, good_port = free_port(), free_port()
    records = {
        "_sip._udp.pool.test": [
            f"SRV 10 0 {silent_port} host-a.test.",
            f"SRV 20 0 {good_port} host-a.test.",
        ],
        "host-a.test": ["A 127.0.0.1"],
    }
    sipd, _ = named_sipd(
        records,
        [by_name("gw1", "pool.test", None, invite_timeout=2), gateway("gw2", free_port())],
    )
    with uas("uas_no_answer", silent_port) as silent, uas("uas_answer", good_port) as good:
        result = call(sipd)
        good.wait(20)
        silent.stop()
    assert result.returncode == 0, result.stdout + sipd.log()
    cdr = last_cdr(sipd)
    assert cdr["routing_gateway"] == "gw1"
    assert [(a["gateway"], a["target"], a["result"]) for a in cdr["attempts"]] == [
        ("gw1", f"127.0.0.1:{silent_port}", "timeout: invite"),
        ("gw1", f"127.0.0.1:{good_port}", "answered"),
    ]


@pytest.mark.parametrize(
    ("name", "records", "error", "label"),
    [
        ("nx.test", {"nx.test": NXDOMAIN}, "NXDOMAIN", "nxdomain"),
        ("silent.test", {"silent.test": SILENT}, "timeout", "timeout"),
    ],
)
def test_a_name_that_does_not_resolve_fails_over_to_the_next_gateway(
    named_sipd: Any, name: str, records: Records, error: str, label: str
) -> None:
    port = free_port()
    sipd, _ = named_sipd(records, [by_name("gw1", name, None), gateway("gw2", port)])
    with uas("uas_answer", port) as gw:
        result = call(sipd)
        gw.wait(20)
    assert result.returncode == 0, result.stdout + sipd.log()
    cdr = last_cdr(sipd)
    assert cdr["routing_gateway"] == "gw2"
    first, second = cdr["attempts"]
    assert first["gateway"] == "gw1" and first["result"] == f"dns-failure: {name}: {error}"
    assert first["target"] == "" and second["result"] == "answered"
    metrics = sipd.metrics()
    assert metrics[f'sipedge_dns_failures_total{{reason="{label}"}}'] >= 1
    assert metrics["sipedge_attempts_unresolved_total"] == 1
    assert metrics["sipedge_attempts_total"] == 1  # one INVITE: to gw2
    assert sipd.alive() and "Traceback" not in sipd.log()


def test_tcp_gateway_by_name_uses_sip_tcp_srv_and_fails_over_across_its_targets(
    named_sipd: Any,
) -> None:
    """RFC 3263 for TCP: `_sip._tcp.<name>` (not `_sip._udp`), the priority-10 target first; it
    refuses the connection, so the call moves at once to the priority-20 target of the same
    gateway, which answers over TCP."""
    dead, alive, listen = (free_port(socket.SOCK_STREAM) for _ in range(3))
    records = {
        "_sip._udp.pool.test": [f"SRV 10 0 {free_port()} host-a.test."],  # must not be used
        "_sip._tcp.pool.test": [
            f"SRV 20 0 {alive} host-a.test.",
            f"SRV 10 0 {dead} host-a.test.",
        ],
        "host-a.test": ["A 127.0.0.1"],
    }
    sipd, dns = named_sipd(
        records,
        [by_name("gw1", "pool.test", None, transport="tcp")],
        listen=[f"udp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{listen}"],
    )
    with Sipp("uas_answer", port=alive, calls=1, timeout=30, transport="t1") as gw:
        result = call(sipd)
        gw_result = gw.wait(20)
    assert result.returncode == 0, result.stdout + sipd.log()
    assert gw_result.returncode == 0, gw_result.stdout + sipd.log()
    invite = next(m for m in gw_result.messages if m.first_line.startswith("INVITE"))
    assert invite.first_line.split()[1] == "sip:4420001@pool.test;transport=tcp"
    cdr = last_cdr(sipd)
    assert [(a["gateway"], a["target"], a["result"]) for a in cdr["attempts"]] == [
        ("gw1", f"127.0.0.1:{dead}", "transport: connect-failed"),
        ("gw1", f"127.0.0.1:{alive}", "answered"),
    ]
    assert ("_sip._tcp.pool.test", "SRV") in dns.queries
    assert ("_sip._udp.pool.test", "SRV") not in dns.queries


def test_tls_gateway_by_name_asks_sips_tcp_srv(named_sipd: Any, tmp_path: Path) -> None:
    """RFC 3263 for TLS: `_sips._tcp.<name>`; no record there, so A of the name on 5061 (the
    call then fails over to the UDP gateway: nothing listens on 5061; only the lookup is
    checked here, TLS calls are test_transports_tls's)."""
    port = free_port()
    cert, key = self_signed_cert(tmp_path, "sip")
    sipd, dns = named_sipd(
        {"tls.test": ["A 127.0.0.1"]},
        [by_name("gw1", "tls.test", None, transport="tls"), gateway("gw2", port)],
        listen=[
            f"udp://127.0.0.1:{free_port()}",
            f"tls://127.0.0.1:{free_port(socket.SOCK_STREAM)}",
        ],
        tls_cert=str(cert),
        tls_key=str(key),
    )
    with uas("uas_answer", port) as gw:
        result = call(sipd)
        gw.wait(20)
    assert result.returncode == 0, result.stdout + sipd.log()
    cdr = last_cdr(sipd)
    first = cdr["attempts"][0]
    assert first["gateway"] == "gw1" and first["target"] == "127.0.0.1:5061"
    assert ("_sips._tcp.tls.test", "SRV") in dns.queries
    assert ("_sip._udp.tls.test", "SRV") not in dns.queries
