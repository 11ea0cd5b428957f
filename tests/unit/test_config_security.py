"""The `security:` section, per-mapping-gateway call limits and per-endpoint digest algorithms."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from sipedge.config import ConfigError, RateLimit, SecurityConfig, parse_config
from sipedge.config.schema import DEFAULT_SCANNER_USER_AGENTS


def problems(data: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    return [str(p) for p in err.value.problems]


def test_defaults_offer_md5_only_and_answer_unknown_sources() -> None:
    security = parse_config({}).security
    assert security == SecurityConfig()
    assert security.digest_algorithms == ("MD5",)
    assert security.unknown_sources == "answer"
    assert "friendly-scanner" in security.scanner_user_agents
    assert security.rate_limit == RateLimit(40, 2.0, 300)


def test_a_full_security_section() -> None:
    security = parse_config(
        {
            "security": {
                "trusted": ["127.0.0.0/8", "2001:db8::1"],
                "rate_limit": {"requests": 10, "window": 1.5, "ban": 60},
                "unknown_sources": "drop",
                "scanner_user_agents": ["Friendly-Scanner", "  evil  "],
                "digest_algorithms": ["sha256", "MD5"],
                "max_tracked_sources": 2048,
                "max_nonces": 4096,
                "log_interval": 0,
            }
        }
    ).security
    assert security.trusted == (ip_network("127.0.0.0/8"), ip_network("2001:db8::1/128"))
    assert security.rate_limit == RateLimit(10, 1.5, 60)
    assert security.unknown_sources == "drop"
    assert security.scanner_user_agents == ("friendly-scanner", "evil")
    assert security.digest_algorithms == ("SHA-256", "MD5")
    assert (security.max_tracked_sources, security.max_nonces) == (2048, 4096)
    assert security.log_interval == 0


def test_an_empty_scanner_list_turns_the_check_off() -> None:
    assert (
        parse_config({"security": {"scanner_user_agents": []}}).security.scanner_user_agents == ()
    )
    assert DEFAULT_SCANNER_USER_AGENTS


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"trusted": ["10.0.0.1/8"]}, "security.trusted[0]: '10.0.0.1/8' is not allowed"),
        ({"rate_limit": {"requests": 0}}, "security.rate_limit.requests: 0 is not allowed"),
        ({"rate_limit": {"burst": 3}}, "security.rate_limit.burst"),
        ({"unknown_sources": "ignore"}, "security.unknown_sources: 'ignore' is not allowed"),
        ({"scanner_user_agents": [""]}, "security.scanner_user_agents[0]: '' is not allowed"),
        ({"digest_algorithms": ["SHA-1"]}, "security.digest_algorithms[0]: 'SHA-1' is not"),
        ({"digest_algorithms": ["MD5", "md5"]}, "each algorithm once"),
        ({"digest_algorithms": []}, "at least one of MD5 or SHA-256"),
        ({"max_nonces": 10}, "security.max_nonces: 10 is not allowed"),
        ({"rate_limits": {}}, "did you mean rate_limit?"),
    ],
)
def test_bad_security_values_are_named(section: dict[str, object], expected: str) -> None:
    found = problems({"security": section})
    assert any(expected in p for p in found), found


def test_mapping_gateway_limits() -> None:
    gw = {"name": "customer", "addresses": ["192.0.2.0/24"], "max_calls": 30, "max_cps": 2.5}
    parsed = parse_config({"mapping_gateways": [gw]}).mapping_gateways[0]
    assert (parsed.max_calls, parsed.max_cps) == (30, 2.5)
    plain = parse_config({"mapping_gateways": [{"name": "c", "addresses": ["192.0.2.1"]}]})
    assert (plain.mapping_gateways[0].max_calls, plain.mapping_gateways[0].max_cps) == (None, None)
    found = problems({"mapping_gateways": [{**gw, "max_calls": 0, "max_cps": "fast"}]})
    assert any("mapping_gateways[0].max_calls: 0" in p for p in found)
    assert any("mapping_gateways[0].max_cps: 'fast'" in p for p in found)


def test_endpoint_digest_algorithms() -> None:
    endpoints = parse_config(
        {
            "endpoints": [
                {"account": "1001", "password": "x", "digest_algorithms": "SHA-256"},
                {"account": "1002", "password": "y"},
            ]
        }
    ).endpoints
    assert endpoints[0].digest_algorithms == ("SHA-256",)
    assert endpoints[1].digest_algorithms is None
