"""Endpoints registered over TCP are called over their connection (RFC 3261 18.2.2, RFC
5626-lite; docs/transports.md, "Endpoints over TCP and TLS").

* an endpoint (tests/sip_peer.py over TCP; it listens nowhere) registers, a SIPp caller over
  UDP dials it: the INVITE reaches it over the REGISTER's connection, the call completes;
* SIPp over TCP (`-t t1`) registers and exits, closing its connection: a call to it then fails
  at once with `transport: connection-closed` in the CDR, never a connect to its address.

SIPp takes the registration side of the second test only: a SIPp that registers cannot also
answer an INVITE on the same connection (it drops requests whose Call-ID it did not start).
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

from tests.conftest import free_port, gateway
from tests.sip_peer import Peer
from tests.sipp.harness import Sipp, SippResult

pytestmark = [pytest.mark.sipp, pytest.mark.slow]

ENDPOINTS = [{"account": "alice", "password": "secret"}]


def start(sipd_factory: Any) -> tuple[Any, int]:
    listen = free_port(socket.SOCK_STREAM)
    sipd = sipd_factory(
        [gateway("gw1", free_port())],
        mapping_addresses=["127.0.0.2/32"],
        extra={"endpoints": ENDPOINTS},
        listen=[f"tcp://127.0.0.1:{listen}"],
    )
    return sipd, listen


def call_alice(sipd: Any, scenario: str, **keys: str) -> SippResult:
    caller = Sipp(
        scenario,
        local="127.0.0.2",
        port=free_port(),
        remote=sipd.sip_target,
        service="alice",
        timeout=30,
        keys=keys,
    )
    caller.start()
    return caller.wait(40)


def test_an_endpoint_registered_over_tcp_is_called_over_its_connection(
    sipd_factory: Any,
) -> None:
    sipd, listen = start(sipd_factory)
    with Peer(transport="tcp") as phone:
        ok = phone.register("127.0.0.1", listen, None, "alice", "secret")
        assert ok.status == 200, sipd.log()
        binding = sipd.api("/api/endpoints")["bindings"][0]
        assert binding["source"] == f"127.0.0.1:{phone.port}"
        result = call_alice(sipd, "uac_basic", hold="300")
        assert result.returncode == 0, result.describe() + sipd.log()
        invite = next(m for m in phone.received if getattr(m, "method", "") == "INVITE")
        bye = [m for m in phone.received if getattr(m, "method", "") == "BYE"]
    assert phone.connections == 1  # the REGISTER's: nothing else reached it
    assert invite.top_via.transport.upper() == "TCP"
    assert invite.uri == f"sip:alice@127.0.0.1:{phone.port};transport=tcp"
    assert f":{listen};transport=tcp>" in (invite.headers.get("Contact") or "")
    assert bye, "the caller's BYE reached the endpoint over the same connection"
    cdr = sipd.cdrs(wait_for=1)[0]
    assert cdr["routing_gateway"] == "endpoint:alice" and cdr["answer_time"] is not None
    assert [a["result"] for a in cdr["attempts"]] == ["answered"]
    metrics = sipd.metrics()
    assert metrics['sipedge_sip_connections_made_total{transport="tcp"}'] == 0


def test_a_call_to_an_endpoint_whose_connection_closed_fails_at_once(sipd_factory: Any) -> None:
    sipd, listen = start(sipd_factory)
    port = free_port(socket.SOCK_STREAM)
    registered = Sipp(
        "uac_register",
        port=port,
        remote=f"127.0.0.1:{listen}",
        transport="t1",
        keys={"contact_port": str(port), "user": "alice", "password": "secret"},
        timeout=15,
    )
    registered.start()
    assert registered.wait(20).returncode == 0, sipd.log()  # SIPp exits: its connection closes
    assert sipd.api("/api/endpoints")["bindings"][0]["account"] == "alice"
    result = call_alice(sipd, "uac_expect_fail", expect_code="408")
    assert result.received(408), result.describe() + sipd.log()  # as an INVITE timeout
    cdr = sipd.cdrs(wait_for=1)[0]
    (attempt,) = cdr["attempts"]
    assert attempt["result"] == "transport: connection-closed", cdr
    assert attempt["end"] - attempt["start"] < 1.0  # at once: no connect, no INVITE timeout
    metrics = sipd.metrics()
    assert metrics.get('sipedge_sip_connections_made_total{transport="tcp"}', 0) == 0
