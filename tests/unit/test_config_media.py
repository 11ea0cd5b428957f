"""The `media:` keys of issue 14: defaults, valid values, refusals with clear messages."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest

from sipedge.config import ConfigError, MediaConfig, parse_config
from tests.unit.test_config import example_data, one_problem, problems_of

DEFAULT_REFUSED = (
    "0.0.0.0/8",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "::ffff:0:0/96",
    "100::/64",
    "fe80::/10",
    "ff00::/8",
)


def media(**keys: Any) -> dict[str, Any]:
    data = example_data()
    data["media"].update(keys)
    return data


def test_defaults_exactly_as_the_spec() -> None:
    m = parse_config({}).media
    assert m.control_socket == Path("/run/sipedge-media/mediad.sock")
    assert m.bind_address is None and m.advertise_address is None
    assert m.refused_networks == tuple(ip_network(n) for n in DEFAULT_REFUSED)
    assert m.max_streams_per_call == 8
    assert m.max_sessions is None
    assert m.idle_timeout == 120.0  # Auto: (SS_MEDIA_RTP_TIMEOUT 60) + 60
    assert m.state_path == Path("/var/lib/sipedge-mediad/sessions.journal")
    assert m.metrics_listen is None and m.metrics_token_file is None and m.run_as is None
    assert MediaConfig() == m
    # the example (the shared spec's copy) gives none of the new keys: every default applies
    assert parse_config(example_data()).media == MediaConfig(
        Path("/run/sipedge/mediad.sock"), m.port_range, m.fast_path, m.interfaces
    )


@pytest.mark.parametrize(
    ("rtp_timeout", "idle", "expected"),
    [
        (None, "Auto", 120.0),
        (30, "Auto", 90.0),
        (30, "auto", 90.0),
        ("Off", "Auto", 120.0),  # RTP timeout off: 60 + 60
        (3600, None, 3660.0),  # absent: Auto
        (30, 10, 10.0),
        (30, "86400", 86400.0),
        (30, 45.5, 45.5),
    ],
)
def test_idle_timeout_auto_resolved_at_load(rtp_timeout: Any, idle: Any, expected: float) -> None:
    data = media() if idle is None else media(idle_timeout=idle)
    data["media"].pop("idle_timeout", None) if idle is None else None
    if rtp_timeout is not None:
        data["parameters"]["SS_MEDIA_RTP_TIMEOUT"] = rtp_timeout
    assert parse_config(data).media.idle_timeout == expected


def test_valid_values() -> None:
    m = parse_config(
        media(
            bind_address="192.0.2.10",
            advertise_address="203.0.113.10",
            refused_networks=["10.0.0.0/8", "192.168.1.1", "fd00::/8"],
            max_streams_per_call=64,
            max_sessions=5000,
            state_path="/var/lib/x/j",
            metrics_listen="0.0.0.0:9101",
            metrics_token_file="/etc/sipedge/mediad-token",
            run_as="sipedge-media",
        )
    ).media
    assert (m.bind_address, m.advertise_address) == ("192.0.2.10", "203.0.113.10")
    assert m.refused_networks == (
        ip_network("10.0.0.0/8"),
        ip_network("192.168.1.1/32"),
        ip_network("fd00::/8"),
    )
    assert (m.max_streams_per_call, m.max_sessions) == (64, 5000)
    assert m.state_path == Path("/var/lib/x/j")
    assert m.metrics_listen == "0.0.0.0:9101"
    assert m.metrics_token_file == Path("/etc/sipedge/mediad-token")
    assert m.run_as == "sipedge-media"
    # an empty list refuses nothing; loopback metrics need no token; IPv6 keeps its brackets
    m = parse_config(media(refused_networks=[], metrics_listen="[::1]:9101")).media
    assert m.refused_networks == ()
    assert m.metrics_listen == "[::1]:9101"
    assert parse_config(media(metrics_listen="localhost:9101")).media.metrics_listen


@pytest.mark.parametrize(
    ("keys", "path", "allowed"),
    [
        ({"bind_address": "0.0.0.0"}, "media.bind_address", "IPv4"),
        ({"bind_address": "::1"}, "media.bind_address", "IPv4"),
        ({"bind_address": "eth0"}, "media.bind_address", "IPv4"),
        ({"advertise_address": "224.0.0.1"}, "media.advertise_address", "IPv4"),
        ({"advertise_address": 5}, "media.advertise_address", "IPv4"),
        ({"refused_networks": ["10.0.0.1/8"]}, "media.refused_networks[0]", "CIDR"),
        ({"refused_networks": ["nonsense"]}, "media.refused_networks[0]", "CIDR"),
        ({"refused_networks": "10.0.0.0/8"}, "media.refused_networks", "list"),
        ({"refused_networks": None}, "media.refused_networks", "refuses nothing"),
        ({"refused_networks": ["10.0.0.0/8", "10.0.0.0/8"]}, "media.refused_networks[1]", "once"),
        ({"max_streams_per_call": 0}, "media.max_streams_per_call", "1-64"),
        ({"max_streams_per_call": 65}, "media.max_streams_per_call", "1-64"),
        ({"max_streams_per_call": True}, "media.max_streams_per_call", "1-64"),
        ({"max_sessions": 0}, "media.max_sessions", "null or 1-"),
        ({"max_sessions": "many"}, "media.max_sessions", "null or 1-"),
        ({"idle_timeout": 9}, "media.idle_timeout", "Auto or 10-86400"),
        ({"idle_timeout": 86401}, "media.idle_timeout", "Auto or 10-86400"),
        ({"idle_timeout": "Never"}, "media.idle_timeout", "Auto or 10-86400"),
        ({"state_path": "relative/j"}, "media.state_path", "absolute path"),
        ({"state_path": None}, "media.state_path", "absolute path"),
        ({"metrics_listen": "9101"}, "media.metrics_listen", "host:port"),
        ({"metrics_listen": "0.0.0.0:9101"}, "media.metrics_listen", "metrics_token_file"),
        ({"metrics_token_file": "token"}, "media.metrics_token_file", "absolute path"),
        ({"run_as": "root"}, "media.run_as", "not root"),
        ({"run_as": "Bad User"}, "media.run_as", "user name"),
        ({"colour": "blue"}, "media.colour", "one of control_socket"),
        ({"max_stream_per_call": 4}, "media.max_stream_per_call", "max_streams_per_call"),
    ],
)
def test_invalid_values(keys: dict[str, Any], path: str, allowed: str) -> None:
    problem = one_problem(media(**keys))
    assert problem.path == path
    assert allowed in problem.allowed, str(problem)


def test_every_problem_reported_together() -> None:
    problems = problems_of(media(bind_address="x", max_streams_per_call=99, idle_timeout=1))
    assert sorted(p.path for p in problems) == [
        "media.bind_address",
        "media.idle_timeout",
        "media.max_streams_per_call",
    ]
    with pytest.raises(ConfigError, match=r"media\.bind_address: 'x' is not allowed"):
        parse_config(media(bind_address="x"))
