"""Config of gateway names: sip.dns_servers, sip.dns_timeout, sip.hosts_file, and whether a
gateway's or registration's port was given (RFC 3263: no port, NAPTR and SRV apply)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sipedge.config import ConfigError, SipConfig, check_config_main, parse_config


def with_sip(**sip: Any) -> dict[str, Any]:
    return {"sip": {"listen": ["udp://127.0.0.1:5060"], **sip}}


def test_defaults_are_the_system_resolver_and_etc_hosts() -> None:
    sip = parse_config(with_sip()).sip
    assert sip.dns_servers == () and sip.dns_timeout == 2.0
    assert sip.hosts_file == Path("/etc/hosts")
    assert SipConfig().dns_servers == ()


def test_dns_servers_take_addresses_with_or_without_a_port() -> None:
    sip = parse_config(
        with_sip(
            dns_servers=["192.0.2.53", "127.0.0.1:5353", "[2001:db8::53]:53", "2001:db8::35"],
            dns_timeout="0.5",
            hosts_file=None,
        )
    ).sip
    assert sip.dns_servers == (
        ("192.0.2.53", 53),
        ("127.0.0.1", 5353),
        ("2001:db8::53", 53),
        ("2001:db8::35", 53),
    )
    assert sip.dns_timeout == 0.5 and sip.hosts_file is None
    assert parse_config(with_sip(dns_servers=None)).sip.dns_servers == ()
    assert parse_config(with_sip(dns_servers=[])).sip.dns_servers == ()


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"dns_servers": ["ns1.example.net"]}, "sip.dns_servers[0]"),  # not a name
        ({"dns_servers": ["192.0.2.53:0"]}, "sip.dns_servers[0]"),
        ({"dns_servers": ["192.0.2.53:99999"]}, "sip.dns_servers[0]"),
        ({"dns_servers": [53]}, "sip.dns_servers[0]"),
        ({"dns_servers": "192.0.2.53"}, "sip.dns_servers"),  # a list
        ({"dns_servers": ["192.0.2.53", "192.0.2.53:53"]}, "sip.dns_servers[1]"),
        ({"dns_servers": [f"192.0.2.{i}" for i in range(1, 10)]}, "sip.dns_servers"),
        ({"dns_timeout": 0}, "sip.dns_timeout"),
        ({"dns_timeout": 31}, "sip.dns_timeout"),
        ({"dns_timeout": True}, "sip.dns_timeout"),
        ({"hosts_file": "etc/hosts"}, "sip.hosts_file"),
        ({"dns_server": ["192.0.2.53"]}, "sip.dns_server"),  # did you mean dns_servers?
    ],
)
def test_bad_dns_values_name_the_key(change: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(with_sip(**change))
    assert [p.path for p in info.value.problems] == [path], str(info.value)


def test_a_port_given_or_not_for_gateways_and_registrations() -> None:
    config = parse_config(
        {
            "routing_gateways": [
                {"name": "by-srv", "address": "carrier.example.net"},
                {"name": "by-a", "address": "carrier.example.net", "port": 5080},
            ],
            "registrations": [
                {"name": "r1", "proxy": "reg.example.net", "user": "u", "password": "p"},
                {
                    "name": "r2",
                    "proxy": "reg.example.net",
                    "port": 5060,
                    "user": "u",
                    "password": "p",
                },
            ],
        }
    )
    by_srv, by_a = config.routing_gateways
    assert (by_srv.port, by_srv.port_given) == (5060, False)
    assert (by_a.port, by_a.port_given) == (5080, True)
    r1, r2 = config.registrations
    assert (r1.port_given, r2.port_given) == (False, True)


def test_check_config_validates_the_dns_keys(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "sipedge.yaml"
    path.write_text(yaml.safe_dump(with_sip(dns_servers=["127.0.0.1:5353"], dns_timeout=1)))
    assert check_config_main(str(path)) == 0
    path.write_text(yaml.safe_dump(with_sip(dns_servers=["dns.example"])))
    assert check_config_main(str(path)) == 1
    err = capsys.readouterr().err
    assert "sip.dns_servers[0]: 'dns.example' is not allowed" in err
    assert "an IP address, or IP:port" in err


def test_a_tls_gateway_without_a_port_is_on_5061() -> None:
    """RFC 3261 19.1.2 / RFC 3263 4.2: TLS's default port; a port given stays as given."""
    data: dict[str, Any] = {
        "sip": {"listen": ["udp://127.0.0.1:5060", "tcp://127.0.0.1:5060", "tls://127.0.0.1:5061"]},
        "routing_gateways": [
            {"name": "a", "address": "tls.example", "transport": "tls"},
            {"name": "b", "address": "tls.example", "transport": "tls", "port": 5071},
            {"name": "c", "address": "tcp.example", "transport": "tcp"},
        ],
    }
    data["sip"]["tls_cert"] = "/etc/sipedge/sip-tls.crt"
    data["sip"]["tls_key"] = "/etc/sipedge/sip-tls.key"
    gws = parse_config(data).routing_gateways
    assert [(g.port, g.port_given) for g in gws] == [(5061, False), (5071, True), (5060, False)]
