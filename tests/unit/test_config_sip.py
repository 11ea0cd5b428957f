"""The `sip:` section: tcp:// and tls:// listeners, their certificates, sip.connections, and
the routing gateways' TLS keys (config/sip.py, collector.py, loader.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sipedge.config import ListenAddress, parse_config
from sipedge.config.schema import ConnectionLimits
from tests.unit.test_config import example_data, one_problem, problems_of

PIN = "sha256:" + ":".join(["AB"] * 32)


def with_sip(**sip: Any) -> dict[str, Any]:
    data = example_data()
    data["sip"].update(sip)
    return data


def test_listeners_of_every_transport_with_certificates() -> None:
    data = with_sip(
        listen=[
            "udp://0.0.0.0:5060",
            "tcp://0.0.0.0:5060",
            "tls://0.0.0.0:5061",
            {
                "uri": "tls://[::1]:5062",
                "tls_cert": "/etc/x.crt",
                "tls_key": "/etc/x.key",
                "tls_ca": "/etc/ca.crt",
                "tls_verify_client": "On",
            },
        ],
        tls_cert="/etc/sipedge/sip.crt",
        tls_key="/etc/sipedge/sip.key",
        connections={"max": 100, "max_per_source": 4, "message_timeout": 2.5},
    )
    sip = parse_config(data).sip
    assert [a.address for a in sip.listen] == [
        ("udp", "0.0.0.0", 5060),
        ("tcp", "0.0.0.0", 5060),
        ("tls", "0.0.0.0", 5061),
        ("tls", "::1", 5062),
    ]
    assert sip.listen[3] == ListenAddress(
        "tls", "::1", 5062, Path("/etc/x.crt"), Path("/etc/x.key"), Path("/etc/ca.crt"), True
    )
    assert sip.tls_cert == Path("/etc/sipedge/sip.crt") and sip.tls_verify_client is False
    assert sip.connections == ConnectionLimits(max=100, max_per_source=4, message_timeout=2.5)


@pytest.mark.parametrize(
    ("sip", "path", "allowed"),
    [
        ({"listen": ["tls://0.0.0.0:5061", "udp://0.0.0.0:5060"]}, "sip.listen[0]", "certificate"),
        ({"listen": ["tcp://0.0.0.0:5060"]}, "sip.listen", "udp://"),
        ({"listen": ["sctp://0.0.0.0:5060"]}, "sip.listen[0]", "tls://"),
        ({"listen": ["udp://0.0.0.0:5060", "udp://0.0.0.0:5060"]}, "sip.listen[1]", "once"),
        ({"tls_cert": "/etc/a.crt"}, "sip.tls_key", "together"),
        ({"tls_cert": "relative.crt", "tls_key": "/k"}, "sip.tls_cert", "absolute"),
        ({"connections": {"max": 0}}, "sip.connections.max", "1-1000000"),
        ({"connections": {"idle": 3}}, "sip.connections.idle", "idle_timeout"),
        (
            {
                "listen": ["udp://0.0.0.0:5060", {"uri": "tcp://0.0.0.0:5060", "tls_ca": "/ca"}],
            },
            "sip.listen[1]",
            "tls:// address only",
        ),
        (
            {
                "listen": ["udp://0.0.0.0:5060", "tls://0.0.0.0:5061"],
                "tls_cert": "/c",
                "tls_key": "/k",
                "tls_verify_client": True,
            },
            "sip.listen[1].tls_verify_client",
            "CA bundle",
        ),
    ],
)
def test_sip_problems(sip: dict[str, Any], path: str, allowed: str) -> None:
    problem = one_problem(with_sip(**sip))
    assert problem.path == path and allowed in problem.allowed, str(problem)


def gateway_data(**gw: Any) -> dict[str, Any]:
    data = example_data()
    data["sip"]["listen"] = ["udp://0.0.0.0:5060", "tcp://0.0.0.0:5060", "tls://0.0.0.0:5061"]
    data["sip"]["tls_cert"], data["sip"]["tls_key"] = "/etc/s.crt", "/etc/s.key"
    data["routing_gateways"][1].update(gw)
    return data


def test_tls_gateway_settings() -> None:
    gw = parse_config(
        gateway_data(
            transport="tls",
            port=5061,
            tls_ca="/etc/ca.pem",
            tls_server_name="sbc.carrier.example",
            tls_fingerprint=PIN,
            tls_cert="/etc/me.crt",
            tls_key="/etc/me.key",
        )
    ).routing_gateways[1]
    assert gw.transport == "tls"
    assert gw.tls_ca == Path("/etc/ca.pem") and gw.tls_server_name == "sbc.carrier.example"
    assert gw.tls_fingerprint == bytes([0xAB] * 32)
    assert (gw.tls_cert, gw.tls_key) == (Path("/etc/me.crt"), Path("/etc/me.key"))


@pytest.mark.parametrize(
    ("gw", "path", "allowed"),
    [
        ({"transport": "tls", "tls_fingerprint": "md5:abcd"}, "tls_fingerprint", "sha256:"),
        ({"transport": "tls", "tls_fingerprint": "sha256:" + "a" * 63}, "tls_fingerprint", "64"),
        ({"transport": "udp", "tls_ca": "/etc/ca.pem"}, "tls_ca", "unless transport is tls"),
        ({"transport": "tls", "tls_cert": "/etc/me.crt"}, "tls_key", "together"),
    ],
)
def test_tls_gateway_problems(gw: dict[str, Any], path: str, allowed: str) -> None:
    problem = one_problem(gateway_data(**gw))
    assert problem.path == f"routing_gateways[1].{path}" and allowed in problem.allowed


def test_a_stream_gateway_needs_a_listener_of_its_transport() -> None:
    data = example_data()
    data["routing_gateways"][1]["transport"] = "tls"
    problem = one_problem(data)
    assert problem.path == "routing_gateways[1].transport"
    assert "tls://" in problem.allowed


def test_api_port_must_differ_from_a_tls_listener() -> None:
    data = with_sip(
        listen=["udp://127.0.0.1:5060", "tls://127.0.0.1:8080"],
        tls_cert="/etc/s.crt",
        tls_key="/etc/s.key",
    )
    problems = problems_of(data)
    assert [p.path for p in problems] == ["api.listen"]
    assert "TLS listener" in problems[0].allowed
