"""sipedge.config: the example and demo files, parameters.md defaults and ranges, cross-checks."""

from __future__ import annotations

import copy
import dataclasses
import re
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest
import yaml

from sipedge.config import (
    PARAMETER_NAMES,
    SIPEDGE_PARAMETERS,
    Config,
    ConfigError,
    ConfigProblem,
    DialPlanRule,
    Endpoint,
    ListenAddress,
    MappingGateway,
    MediaConfig,
    Parameters,
    Registration,
    Route,
    RoutingGateway,
    check_config_main,
    load_config,
    parameter_field,
    parse_config,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "daemons" / "conf" / "sipedge.example.yaml"
DEMO = REPO / "daemons" / "conf" / "sipedge.demo.yaml"


def example_data() -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE.read_text())
    assert isinstance(data, dict)
    return data


def problems_of(data: object) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert str(info.value) == "\n".join(str(p) for p in info.value.problems)
    return info.value.problems


def one_problem(data: object) -> ConfigProblem:
    problems = problems_of(data)
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def with_parameter(name: str, value: object) -> dict[str, Any]:
    data = example_data()
    data["parameters"][name] = value
    return data


# -- the shipped files ----------------------------------------------------------------------


def test_example_loads_with_expected_values() -> None:
    config = load_config(EXAMPLE)
    assert config.node_name == "edge-1"
    assert config.sip.listen == (ListenAddress("udp", "0.0.0.0", 5060),)
    assert config.sip.public_address is None
    assert (config.api.host, config.api.port, config.api.token) == ("127.0.0.1", 8080, None)
    assert config.storage.path == Path("/var/lib/sipedge")
    assert config.parameters == Parameters()
    assert config.mapping_gateways == (
        MappingGateway("customer-a", (ip_network("198.51.100.0/24"),), False, False),
    )
    assert config.routing_gateways == (
        RoutingGateway(
            name="carrier-1",
            address="203.0.113.10",
            port=5060,
            transport="udp",
            trusted=True,
            invite_timeout=None,
            stop_switch_after_sdp=None,
            stop_switch_after_invite_timeout=None,
            stop_switching_codes=frozenset({403, 404}),
            privacy="Passthrough",
            p_asserted_identity="Caller",
            p_preferred_identity="None",
            caller_dial_plan=(DialPlanRule(re.compile(r"^0(\d+)$"), r"+44\1"),),
            rtp_encryption=False,
        ),
        RoutingGateway(
            name="carrier-2",
            address="203.0.113.20",
            port=5060,
            transport="udp",
            trusted=False,
            invite_timeout=5.0,
            stop_switch_after_sdp=None,
            stop_switch_after_invite_timeout=None,
            stop_switching_codes=frozenset(),
            privacy="Id",
            p_asserted_identity="None",
            p_preferred_identity="None",
            caller_dial_plan=(),
            rtp_encryption=False,
        ),
    )
    rule = config.routing_gateways[0].caller_dial_plan[0]
    assert rule.match.sub(rule.replace, "02071234567") == "+442071234567"
    assert config.routes == (Route("44", ("carrier-1", "carrier-2")), Route("", ("carrier-2",)))
    assert config.endpoints == (Endpoint("1001", "change-me"),)
    assert config.registrations == (
        Registration("upstream-1", "203.0.113.30", 5060, "edge1", "change-me", None, None),
    )
    assert config.media == MediaConfig(
        Path("/run/sipedge/mediad.sock"), (20000, 29999), "auto", ("eth0",)
    )
    assert config.routing_gateway("carrier-2").invite_timeout == 5.0
    with pytest.raises(KeyError):
        config.routing_gateway("nowhere")


def test_example_file_is_the_shared_spec_copy() -> None:
    spec = Path("/work/shared/spec/sipedge.example.yaml")
    if not spec.exists():
        pytest.skip("shared spec not present here")
    assert EXAMPLE.read_bytes() == spec.read_bytes()


def test_demo_loads_and_stays_on_loopback() -> None:
    config = load_config(DEMO)
    assert config.sip.listen == (
        ListenAddress("udp", "127.0.0.1", 5060),
        ListenAddress("tcp", "127.0.0.1", 5060),
        ListenAddress("tls", "127.0.0.1", 5061),
    )
    assert config.sip.tls_cert == Path("/tmp/sipedge-demo/sip-demo.crt")
    assert (config.api.host, config.api.port) == ("127.0.0.1", 8080)
    assert config.storage.path == Path("/tmp/sipedge-demo")
    assert config.mapping_gateways[0].name == "demo-caller"
    assert config.mapping_gateways[0].addresses == (ip_network("127.0.0.0/8"),)
    gw1, gw2 = config.routing_gateways
    assert (gw1.name, gw1.address, gw1.port, gw1.invite_timeout) == (
        "demo-gw-1",
        "127.0.0.1",
        5071,
        3.0,
    )
    assert (gw2.name, gw2.address, gw2.port, gw2.invite_timeout) == (
        "demo-gw-2",
        "127.0.0.1",
        5072,
        None,
    )
    assert config.routes == (Route("", ("demo-gw-1", "demo-gw-2")),)
    assert config.registrations == ()
    assert len(config.endpoints) == 1
    assert config.media == MediaConfig(
        Path("/tmp/sipedge-demo/mediad.sock"),
        (30000, 30999),
        "userspace",
        ("lo",),
        bind_address="127.0.0.1",
        refused_networks=tuple(
            ip_network(n)
            for n in (
                *("0.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4"),
                *("::/128", "::ffff:0:0/96", "100::/64", "fe80::/10", "ff00::/8"),
            )
        ),
        state_path=Path("/tmp/sipedge-demo/mediad-sessions.journal"),
    )
    # the demo's peers are all on loopback: its own media must not be refused
    assert not any(ip_address("127.0.0.1") in n for n in config.media.refused_networks)
    assert config.parameters == Parameters()


# -- parameters.md defaults -----------------------------------------------------------------


def test_parameters_defaults_match_parameters_md() -> None:
    p = Parameters()
    assert p.sip_timeout_invite == 10
    assert p.sip_resend_interval == (0.5, 1, 2, 4, 4, 4, 4, 4, 4, 4)
    assert p.sip_timeout_trying == 20
    assert p.sip_timeout_ringing == 120
    assert p.sip_timeout_session_progress == 20
    assert p.sip_stop_switch_after_sdp is True
    assert p.sip_user_agent_stop_switch_after_invite_timeout is False
    assert p.gateway_switch_limit is None
    assert p.gateway_switch_stop_after_rtp_start is True
    assert p.gateway_switch_stop_after_user_busy is True
    assert p.gateway_switch_until_connect is False
    assert p.sip_user_agent_privacy == "Ignore"
    assert p.sip_e164_display_from == "Ignore"
    assert p.sip_user_agent_expire is None
    assert p.sip_user_agent_retry_delay == 60
    assert p.sip_user_agent_send_unregister is True
    assert p.endpoint_expire == 3600
    assert p.endpoint_nat_expire == 300
    assert p.endpoint_register_retry == 6
    assert p.endpoint_register_suspend == 180
    assert p.endpoint_register_replace is True
    assert p.sip_nat_keep_alive_message == "HELLO"
    assert p.sip_nat_keep_alive_period == 30
    assert p.sip_nat_keep_alive_send_interval == 500
    assert p.sip_nat_keep_alive_send_one_time == 3000
    assert p.media_proxy_behind_nat is True
    assert p.rtpencryptionmode == 0
    assert p.rtpencryptionkey == ""


def test_every_parameter_has_a_field_and_the_example_lists_them_all() -> None:
    assert {parameter_field(n) for n in PARAMETER_NAMES} == {
        f.name for f in dataclasses.fields(Parameters)
    }
    assert set(example_data()["parameters"]) == set(PARAMETER_NAMES) - SIPEDGE_PARAMETERS
    demo = yaml.safe_load(DEMO.read_text())
    assert set(demo["parameters"]) == set(PARAMETER_NAMES)
    assert len(PARAMETER_NAMES) == 40


def test_minimal_config_takes_defaults() -> None:
    config = parse_config({})
    assert config == Config()
    assert config.sip.listen == (ListenAddress("udp", "0.0.0.0", 5060),)
    assert (config.api.host, config.api.port) == ("127.0.0.1", 8080)
    assert config.storage.path == Path("/var/lib/sipedge")
    assert config.media == MediaConfig(
        Path("/run/sipedge-media/mediad.sock"), (20000, 29999), "auto", ("eth0",)
    )
    # null sections are the same as absent ones
    assert parse_config({"parameters": None, "endpoints": None, "routes": None}) == Config()


# -- good values in other spellings -----------------------------------------------------------

GOOD_VALUES: list[tuple[str, object, object]] = [
    ("SS_SIP_TIMEOUT_INVITE", 1, 1.0),
    ("SS_SIP_TIMEOUT_INVITE", 300, 300.0),
    ("SS_SIP_TIMEOUT_INVITE", 2.5, 2.5),
    ("SS_SIP_TIMEOUT_INVITE", "15", 15.0),
    ("SS_SIP_RESEND_INTERVAL", "0.5, 1 ,2", (0.5, 1.0, 2.0)),
    ("SS_SIP_RESEND_INTERVAL", [0.1, 60], (0.1, 60.0)),
    ("SS_SIP_RESEND_INTERVAL", 3, (3.0,)),
    ("SS_SIP_RESEND_INTERVAL", ",".join(["1"] * 20), (1.0,) * 20),
    ("SS_SIP_TIMEOUT_TRYING", 600, 600.0),
    ("SS_SIP_TIMEOUT_RINGING", 3600, 3600.0),
    ("SS_SIP_TIMEOUT_SESSION_PROGRESS", 0.5e1, 5.0),
    ("SS_SIP_STOP_SWITCH_AFTER_SDP", False, False),
    ("SS_SIP_STOP_SWITCH_AFTER_SDP", "off", False),
    ("SS_SIP_STOP_SWITCH_AFTER_SDP", "ON", True),
    ("SS_SIP_USER_AGENT_STOP_SWITCH_AFTER_INVITE_TIMEOUT", "On", True),
    ("SS_GATEWAY_SWITCH_LIMIT", 1, 1),
    ("SS_GATEWAY_SWITCH_LIMIT", 100, 100),
    ("SS_GATEWAY_SWITCH_LIMIT", "none", None),
    ("SS_GATEWAY_SWITCH_STOP_AFTER_RTP_START", "Off", False),
    ("SS_GATEWAY_SWITCH_STOP_AFTER_USER_BUSY", False, False),
    ("SS_GATEWAY_SWITCH_UNTIL_CONNECT", True, True),
    ("SS_SIP_USER_AGENT_PRIVACY", "id", "Id"),
    ("SS_SIP_USER_AGENT_PRIVACY", "None", "None"),
    ("SS_SIP_E164_DISPLAY_FROM", "e164", "E164"),
    ("SS_SIP_E164_DISPLAY_FROM", "Original", "Original"),
    ("SS_SIP_USER_AGENT_EXPIRE", 20, 20),
    ("SS_SIP_USER_AGENT_EXPIRE", 7200, 7200),
    ("SS_SIP_USER_AGENT_EXPIRE", "AUTO", None),
    ("SS_SIP_USER_AGENT_RETRY_DELAY", 30, 30),
    ("SS_SIP_USER_AGENT_SEND_UNREGISTER", False, False),
    ("SS_ENDPOINT_EXPIRE", 86400, 86400),
    ("SS_ENDPOINT_NAT_EXPIRE", 60, 60),
    ("SS_ENDPOINT_REGISTER_RETRY", 100, 100),
    ("SS_ENDPOINT_REGISTER_SUSPEND", 1, 1),
    ("SS_ENDPOINT_REGISTER_REPLACE", False, False),
    ("SS_SIP_NAT_KEEP_ALIVE_MESSAGE", "", ""),
    ("SS_SIP_NAT_KEEP_ALIVE_MESSAGE", "\r\n\r\n", "\r\n\r\n"),
    ("SS_SIP_NAT_KEEP_ALIVE_PERIOD", 10, 10),
    ("SS_SIP_NAT_KEEP_ALIVE_SEND_INTERVAL", 10, 10),
    ("SS_SIP_NAT_KEEP_ALIVE_SEND_INTERVAL", 10000, 10000),
    ("SS_SIP_NAT_KEEP_ALIVE_SEND_ONE_TIME", 100000, 100000),
    ("SS_MEDIA_PROXY_BEHIND_NAT", False, False),
    ("SS_RTPENCRYPTIONMODE", 3, 3),
    ("SS_RTPENCRYPTIONKEY", "0123456789abcdef", "0123456789abcdef"),
    ("SS_MEDIA_RTP_TIMEOUT", "Off", None),
    ("SS_MEDIA_RTP_TIMEOUT", 2.5, 2.5),
    ("SS_MAX_CALL_DURATION", 7200, 7200),
    ("SS_MAX_CALL_DURATION", "None", None),
    ("SS_SIP_SESSION_TIMER", "Off", False),
    ("SS_SIP_SESSION_TIMER", True, True),
    ("SS_SIP_SESSION_EXPIRES", 90, 90),
    ("SS_SIP_SESSION_EXPIRES", 86400, 86400),
    ("SS_SIP_MIN_SE", 90, 90),
    ("SS_SIP_MIN_SE", 86400, 86400),
]


@pytest.mark.parametrize(("name", "value", "expected"), GOOD_VALUES)
def test_good_parameter_values(name: str, value: object, expected: object) -> None:
    config = parse_config(with_parameter(name, value))
    assert getattr(config.parameters, parameter_field(name)) == expected


def test_yaml_on_off_spellings() -> None:
    text = EXAMPLE.read_text()
    for word, expected in [("yes", True), ("no", False), ("true", True), ("OFF", False)]:
        changed = text.replace("SS_GATEWAY_SWITCH_UNTIL_CONNECT: Off", f"X: {word}")
        changed = changed.replace("X:", "SS_GATEWAY_SWITCH_UNTIL_CONNECT:")
        config = parse_config(yaml.safe_load(changed))
        assert config.parameters.gateway_switch_until_connect is expected


# -- bad values: every parameter, below / above range, wrong type, bad word ------------------

BAD_VALUES: list[tuple[str, object, str, str]] = [
    # (parameter, value, how the value is shown, allowed)
    ("SS_SIP_TIMEOUT_INVITE", 0, "0", "1-300"),
    ("SS_SIP_TIMEOUT_INVITE", 301, "301", "1-300"),
    ("SS_SIP_TIMEOUT_INVITE", True, "true", "1-300"),
    ("SS_SIP_TIMEOUT_INVITE", "ten", "'ten'", "1-300"),
    ("SS_SIP_TIMEOUT_INVITE", float("nan"), "nan", "1-300"),
    ("SS_SIP_TIMEOUT_INVITE", None, "null", "1-300"),
    ("SS_SIP_TIMEOUT_TRYING", 0.5, "0.5", "1-600"),
    ("SS_SIP_TIMEOUT_TRYING", 601, "601", "1-600"),
    ("SS_SIP_TIMEOUT_TRYING", [20], "[20]", "1-600"),
    ("SS_SIP_TIMEOUT_RINGING", 0, "0", "1-3600"),
    ("SS_SIP_TIMEOUT_RINGING", 3601, "3601", "1-3600"),
    ("SS_SIP_TIMEOUT_RINGING", False, "false", "1-3600"),
    ("SS_SIP_TIMEOUT_SESSION_PROGRESS", 0, "0", "1-3600"),
    ("SS_SIP_TIMEOUT_SESSION_PROGRESS", 3600.5, "3600.5", "1-3600"),
    ("SS_SIP_TIMEOUT_SESSION_PROGRESS", "Auto", "'Auto'", "1-3600"),
    ("SS_SIP_STOP_SWITCH_AFTER_SDP", "maybe", "'maybe'", "On/Off"),
    ("SS_SIP_STOP_SWITCH_AFTER_SDP", 1, "1", "On/Off"),
    ("SS_SIP_STOP_SWITCH_AFTER_SDP", "Default", "'Default'", "On/Off"),
    ("SS_SIP_USER_AGENT_STOP_SWITCH_AFTER_INVITE_TIMEOUT", 0, "0", "On/Off"),
    ("SS_SIP_USER_AGENT_STOP_SWITCH_AFTER_INVITE_TIMEOUT", "x", "'x'", "On/Off"),
    ("SS_GATEWAY_SWITCH_LIMIT", 0, "0", "None or 1-100"),
    ("SS_GATEWAY_SWITCH_LIMIT", 101, "101", "None or 1-100"),
    ("SS_GATEWAY_SWITCH_LIMIT", 2.5, "2.5", "None or 1-100"),
    ("SS_GATEWAY_SWITCH_LIMIT", True, "true", "None or 1-100"),
    ("SS_GATEWAY_SWITCH_LIMIT", "All", "'All'", "None or 1-100"),
    ("SS_GATEWAY_SWITCH_STOP_AFTER_RTP_START", "yes please", "'yes please'", "On/Off"),
    ("SS_GATEWAY_SWITCH_STOP_AFTER_RTP_START", None, "null", "On/Off"),
    ("SS_GATEWAY_SWITCH_STOP_AFTER_USER_BUSY", 2, "2", "On/Off"),
    ("SS_GATEWAY_SWITCH_UNTIL_CONNECT", [], "[]", "On/Off"),
    ("SS_SIP_USER_AGENT_PRIVACY", "Passthrough", "'Passthrough'", "Ignore/Id/None"),
    ("SS_SIP_USER_AGENT_PRIVACY", True, "true", "Ignore/Id/None"),
    ("SS_SIP_USER_AGENT_PRIVACY", 1, "1", "Ignore/Id/None"),
    ("SS_SIP_E164_DISPLAY_FROM", "E.164", "'E.164'", "Ignore/E164/Original"),
    ("SS_SIP_E164_DISPLAY_FROM", None, "null", "Ignore/E164/Original"),
    ("SS_SIP_USER_AGENT_EXPIRE", 19, "19", "Auto or 20-7200"),
    ("SS_SIP_USER_AGENT_EXPIRE", 7201, "7201", "Auto or 20-7200"),
    ("SS_SIP_USER_AGENT_EXPIRE", "Never", "'Never'", "Auto or 20-7200"),
    ("SS_SIP_USER_AGENT_EXPIRE", False, "false", "Auto or 20-7200"),
    ("SS_SIP_USER_AGENT_RETRY_DELAY", 29, "29", "30-600"),
    ("SS_SIP_USER_AGENT_RETRY_DELAY", 601, "601", "30-600"),
    ("SS_SIP_USER_AGENT_RETRY_DELAY", "soon", "'soon'", "30-600"),
    ("SS_SIP_USER_AGENT_SEND_UNREGISTER", "Of", "'Of'", "On/Off"),
    ("SS_ENDPOINT_EXPIRE", 59, "59", "60-86400"),
    ("SS_ENDPOINT_EXPIRE", 86401, "86401", "60-86400"),
    ("SS_ENDPOINT_EXPIRE", True, "true", "60-86400"),
    ("SS_ENDPOINT_NAT_EXPIRE", 59, "59", "60-3600"),
    ("SS_ENDPOINT_NAT_EXPIRE", 3601, "3601", "60-3600"),
    ("SS_ENDPOINT_NAT_EXPIRE", "300s", "'300s'", "60-3600"),
    ("SS_ENDPOINT_REGISTER_RETRY", 0, "0", "1-100"),
    ("SS_ENDPOINT_REGISTER_RETRY", 101, "101", "1-100"),
    ("SS_ENDPOINT_REGISTER_RETRY", 6.5, "6.5", "1-100"),
    ("SS_ENDPOINT_REGISTER_SUSPEND", 0, "0", "1-86400"),
    ("SS_ENDPOINT_REGISTER_SUSPEND", 86401, "86401", "1-86400"),
    ("SS_ENDPOINT_REGISTER_SUSPEND", {"s": 1}, "{'s': 1}", "1-86400"),
    ("SS_ENDPOINT_REGISTER_REPLACE", "replace", "'replace'", "On/Off"),
    ("SS_SIP_NAT_KEEP_ALIVE_MESSAGE", 42, "42", "a string (empty: keep-alive off)"),
    ("SS_SIP_NAT_KEEP_ALIVE_MESSAGE", False, "false", "a string (empty: keep-alive off)"),
    ("SS_SIP_NAT_KEEP_ALIVE_PERIOD", 9, "9", "10-86400"),
    ("SS_SIP_NAT_KEEP_ALIVE_PERIOD", 86401, "86401", "10-86400"),
    ("SS_SIP_NAT_KEEP_ALIVE_PERIOD", "half a minute", "'half a minute'", "10-86400"),
    ("SS_SIP_NAT_KEEP_ALIVE_SEND_INTERVAL", 9, "9", "10-10000"),
    ("SS_SIP_NAT_KEEP_ALIVE_SEND_INTERVAL", 10001, "10001", "10-10000"),
    ("SS_SIP_NAT_KEEP_ALIVE_SEND_INTERVAL", 0.5, "0.5", "10-10000"),
    ("SS_SIP_NAT_KEEP_ALIVE_SEND_ONE_TIME", 0, "0", "1-100000"),
    ("SS_SIP_NAT_KEEP_ALIVE_SEND_ONE_TIME", 100001, "100001", "1-100000"),
    ("SS_SIP_NAT_KEEP_ALIVE_SEND_ONE_TIME", True, "true", "1-100000"),
    ("SS_MEDIA_PROXY_BEHIND_NAT", "nat", "'nat'", "On/Off"),
    ("SS_RTPENCRYPTIONMODE", -1, "-1", "0-3"),
    ("SS_RTPENCRYPTIONMODE", 4, "4", "0-3"),
    ("SS_RTPENCRYPTIONMODE", "AES128", "'AES128'", "0-3"),
    ("SS_RTPENCRYPTIONMODE", 1.0, "1.0", "0-3"),
    ("SS_RTPENCRYPTIONKEY", 1234567890123456, "1234567890123456", "a string (quote it)"),
    ("SS_RTPENCRYPTIONKEY", None, "null", "a string (quote it)"),
    ("SS_MEDIA_RTP_TIMEOUT", 0, "0", "Off or 1-3600"),
    ("SS_MEDIA_RTP_TIMEOUT", 3601, "3601", "Off or 1-3600"),
    ("SS_MEDIA_RTP_TIMEOUT", "None", "'None'", "Off or 1-3600"),
    ("SS_MAX_CALL_DURATION", 0, "0", "None or 1-604800"),
    ("SS_MAX_CALL_DURATION", 1.5, "1.5", "None or 1-604800"),
    ("SS_MAX_CALL_DURATION", "Off", "'Off'", "None or 1-604800"),
    ("SS_SIP_SESSION_TIMER", "maybe", "'maybe'", "On/Off"),
    ("SS_SIP_SESSION_EXPIRES", 89, "89", "90-86400"),
    ("SS_SIP_SESSION_EXPIRES", 86401, "86401", "90-86400"),
    ("SS_SIP_MIN_SE", 30, "30", "90-86400"),
    ("SS_SIP_MIN_SE", 86401, "86401", "90-86400"),
    ("SS_SIP_MAX_MESSAGE_SIZE", 1023, "1023", "1024-65535"),
    ("SS_SIP_MAX_MESSAGE_SIZE", 65536, "65536", "1024-65535"),
    ("SS_SIP_MAX_URI_LENGTH", 63, "63", "64-8192"),
    ("SS_SIP_MAX_URI_LENGTH", "long", "'long'", "64-8192"),
    ("SS_SIP_MAX_HEADERS", 15, "15", "16-1024"),
    ("SS_SIP_MAX_HEADERS", 1025, "1025", "16-1024"),
    ("SS_SIP_MAX_TRANSACTIONS", 99, "99", "100-1000000"),
    ("SS_SIP_MAX_TRANSACTIONS", None, "null", "100-1000000"),
    ("SS_SIP_MAX_CALLS", 0, "0", "1-200000"),
    ("SS_SIP_MAX_CALLS", 2.5, "2.5", "1-200000"),
    ("SS_SIP_RETRY_AFTER", 0, "0", "1-3600"),
    ("SS_SIP_RETRY_AFTER", 3601, "3601", "1-3600"),
    ("SS_SIP_OVERLOAD_QUEUE", -1, "-1", "0-1048576"),
    ("SS_SIP_OVERLOAD_QUEUE", "Off", "'Off'", "0-1048576"),
]


@pytest.mark.parametrize(("name", "value", "shown", "allowed"), BAD_VALUES)
def test_bad_parameter_values(name: str, value: object, shown: str, allowed: str) -> None:
    problem = one_problem(with_parameter(name, value))
    assert problem.path == f"parameters.{name}"
    assert problem.allowed == allowed
    assert str(problem) == f"parameters.{name}: {shown} is not allowed (allowed: {allowed})"


def test_every_parameter_has_bad_value_cases() -> None:
    covered = {name for name, *_ in BAD_VALUES} | {"SS_SIP_RESEND_INTERVAL"}
    assert covered == set(PARAMETER_NAMES)


def test_message_format_from_the_brief() -> None:
    problem = one_problem(with_parameter("SS_SIP_TIMEOUT_INVITE", 0))
    assert str(problem) == "parameters.SS_SIP_TIMEOUT_INVITE: 0 is not allowed (allowed: 1-300)"
    assert problem.value == 0


@pytest.mark.parametrize(
    ("value", "path", "allowed"),
    [
        ("", "parameters.SS_SIP_RESEND_INTERVAL[0]", "0.1-60"),
        ("0.5,,1", "parameters.SS_SIP_RESEND_INTERVAL[1]", "0.1-60"),
        ("0.5,0.05", "parameters.SS_SIP_RESEND_INTERVAL[1]", "0.1-60"),
        ("1,2,61", "parameters.SS_SIP_RESEND_INTERVAL[2]", "0.1-60"),
        ([1, True], "parameters.SS_SIP_RESEND_INTERVAL[1]", "0.1-60"),
        ([1, "x"], "parameters.SS_SIP_RESEND_INTERVAL[1]", "0.1-60"),
        ([], "parameters.SS_SIP_RESEND_INTERVAL", "a list of 1-20 numbers, each 0.1-60"),
        (",".join(["1"] * 21), "parameters.SS_SIP_RESEND_INTERVAL", "a list of 1-20 numbers"),
        (True, "parameters.SS_SIP_RESEND_INTERVAL", "a list of 1-20 numbers, each 0.1-60"),
        ({"a": 1}, "parameters.SS_SIP_RESEND_INTERVAL", "a list of 1-20 numbers, each 0.1-60"),
    ],
)
def test_bad_resend_interval(value: object, path: str, allowed: str) -> None:
    problem = one_problem(with_parameter("SS_SIP_RESEND_INTERVAL", value))
    assert problem.path == path
    assert allowed in problem.allowed
    assert str(problem).startswith(f"{path}: ")


def test_resend_interval_reports_every_bad_entry() -> None:
    problems = problems_of(with_parameter("SS_SIP_RESEND_INTERVAL", "0,1,99"))
    assert [p.path for p in problems] == [
        "parameters.SS_SIP_RESEND_INTERVAL[0]",
        "parameters.SS_SIP_RESEND_INTERVAL[2]",
    ]


# -- unknown keys -----------------------------------------------------------------------------


def test_unknown_parameter_is_named_with_a_suggestion() -> None:
    data = example_data()
    data["parameters"]["SS_SIP_TIMEOUT_INVTE"] = 5
    problem = one_problem(data)
    assert problem.path == "parameters.SS_SIP_TIMEOUT_INVTE"
    assert "SS_SIP_TIMEOUT_INVTE" in str(problem)
    assert "did you mean SS_SIP_TIMEOUT_INVITE" in problem.allowed


def test_lower_case_parameter_name_is_unknown() -> None:
    data = example_data()
    data["parameters"]["ss_sip_timeout_invite"] = 5
    assert one_problem(data).path == "parameters.ss_sip_timeout_invite"


@pytest.mark.parametrize(
    ("where", "path"),
    [
        ((), "colour"),
        (("sip",), "sip.colour"),
        (("api",), "api.colour"),
        (("media",), "media.colour"),
        (("node",), "node.colour"),
        (("storage",), "storage.colour"),
        (("routing_gateways", 1), "routing_gateways[1].colour"),
        (("mapping_gateways", 0), "mapping_gateways[0].colour"),
        (("routes", 0), "routes[0].colour"),
        (("endpoints", 0), "endpoints[0].colour"),
        (("registrations", 0), "registrations[0].colour"),
        (
            ("routing_gateways", 0, "caller_dial_plan", 0),
            "routing_gateways[0].caller_dial_plan[0].colour",
        ),
    ],
)
def test_unknown_keys_anywhere(where: tuple[Any, ...], path: str) -> None:
    data = example_data()
    target: Any = data
    for step in where:
        target = target[step]
    target["colour"] = "blue"
    problem = one_problem(data)
    assert problem.path == path
    assert "'colour'" in str(problem)


def test_unknown_gateway_key_lists_the_known_ones() -> None:
    data = example_data()
    data["routing_gateways"][0]["invite_timout"] = 3
    problem = one_problem(data)
    assert problem.path == "routing_gateways[0].invite_timout"
    assert "invite_timeout" in problem.allowed


# -- files ------------------------------------------------------------------------------------


def test_yaml_syntax_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("parameters:\n  SS_SIP_TIMEOUT_INVITE: [1\nroutes: x\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    (problem,) = info.value.problems
    assert problem.path == ""
    assert "YAML syntax error" in str(problem)
    assert "line 3" in str(problem)


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "dup.yaml"
    bad.write_text("parameters:\n  SS_SIP_TIMEOUT_INVITE: 5\n  SS_SIP_TIMEOUT_INVITE: 50\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert "duplicate key 'SS_SIP_TIMEOUT_INVITE'" in str(info.value)


def test_yaml_merge_keys_still_work(tmp_path: Path) -> None:
    good = tmp_path / "merge.yaml"
    good.write_text(
        "routing_gateways:\n"
        "  - &gw {name: a, address: 127.0.0.1, port: 5071}\n"
        "  - {<<: *gw, name: b, port: 5072}\n"
    )
    config = load_config(good)
    assert [(g.name, g.port) for g in config.routing_gateways] == [("a", 5071), ("b", 5072)]


def test_unreadable_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.yaml")
    assert info.value.problems[0].path == ""
    assert "cannot read" in str(info.value)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError) as info:
        load_config(empty)
    assert "empty document" in str(info.value)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n")
    with pytest.raises(ConfigError):
        load_config(listy)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError) as info:
        load_config(binary)
    assert "UTF-8" in str(info.value)


# -- several problems at once ------------------------------------------------------------------


def test_all_problems_are_reported_together() -> None:
    data = example_data()
    data["parameters"]["SS_SIP_TIMEOUT_INVITE"] = 0
    data["parameters"]["SS_ENDPOINT_EXPIRE"] = "forever"
    data["routing_gateways"][1]["privacy"] = "Hidden"
    data["routing_gateways"][0]["port"] = 70000
    data["routes"][0]["gateways"].append("carrier-9")
    data["media"]["fast_path"] = "warp"
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    paths = [p.path for p in info.value.problems]
    assert sorted(paths) == sorted(
        [
            "parameters.SS_SIP_TIMEOUT_INVITE",
            "parameters.SS_ENDPOINT_EXPIRE",
            "routing_gateways[1].privacy",
            "routing_gateways[0].port",
            "routes[0].gateways[2]",
            "media.fast_path",
        ]
    )
    lines = str(info.value).splitlines()
    assert len(lines) == 6
    assert (
        "routing_gateways[1].privacy: 'Hidden' is not allowed (allowed: None/Passthrough/Id)"
        in lines
    )


# -- gateways, routes, cross-checks -------------------------------------------------------------


def test_route_to_unknown_gateway() -> None:
    data = example_data()
    data["routes"][1]["gateways"] = ["carrier-2", "nowhere"]
    problem = one_problem(data)
    assert problem.path == "routes[1].gateways[1]"
    assert problem.value == "nowhere"
    assert "carrier-1, carrier-2" in problem.allowed


def test_partial_file_with_route_to_unknown_gateway(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("routes:\n  - prefix: '44'\n    gateways: [nowhere]\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert [p.path for p in info.value.problems] == ["routes[0].gateways[0]"]


def test_bad_regex_in_dial_plan() -> None:
    data = example_data()
    data["routing_gateways"][0]["caller_dial_plan"].append({"match": "^(0", "replace": "x"})
    problem = one_problem(data)
    assert problem.path == "routing_gateways[0].caller_dial_plan[1].match"
    assert problem.value == "^(0"
    assert "regular expression" in problem.allowed


def test_bad_replacement_in_dial_plan() -> None:
    data = example_data()
    data["routing_gateways"][0]["caller_dial_plan"][0]["replace"] = r"+44\2"
    problem = one_problem(data)
    assert problem.path == "routing_gateways[0].caller_dial_plan[0].replace"


def gateway_data(**overrides: object) -> dict[str, Any]:
    data = example_data()
    data["routing_gateways"][1].update(overrides)
    return data


@pytest.mark.parametrize(
    ("key", "value", "path", "allowed"),
    [
        ("privacy", "Caller", "routing_gateways[1].privacy", "None/Passthrough/Id"),
        ("p_asserted_identity", "Id", "routing_gateways[1].p_asserted_identity", "Caller"),
        ("p_preferred_identity", 1, "routing_gateways[1].p_preferred_identity", "Caller"),
        ("invite_timeout", 0, "routing_gateways[1].invite_timeout", "Default or 1-300"),
        ("invite_timeout", 301, "routing_gateways[1].invite_timeout", "Default or 1-300"),
        ("invite_timeout", "Global", "routing_gateways[1].invite_timeout", "Default or 1-300"),
        ("stop_switch_after_sdp", "Maybe", "routing_gateways[1].stop_switch_after_sdp", "Default"),
        (
            "stop_switch_after_invite_timeout",
            3,
            "routing_gateways[1].stop_switch_after_invite_timeout",
            "Default/On/Off",
        ),
        ("stop_switching_codes", [486, 299], "routing_gateways[1].stop_switching_codes[1]", "300"),
        ("stop_switching_codes", [700], "routing_gateways[1].stop_switching_codes[0]", "699"),
        ("stop_switching_codes", "486", "routing_gateways[1].stop_switching_codes", "a list"),
        ("port", 0, "routing_gateways[1].port", "1-65535"),
        ("port", 65536, "routing_gateways[1].port", "1-65535"),
        ("port", True, "routing_gateways[1].port", "1-65535"),
        ("transport", "sctp", "routing_gateways[1].transport", "udp/tcp"),
        ("trusted", "Default", "routing_gateways[1].trusted", "On/Off"),
        ("rtp_encryption", "maybe", "routing_gateways[1].rtp_encryption", "On/Off"),
        ("address", "not an address!", "routing_gateways[1].address", "host name"),
        ("address", "10.0.0.256", "routing_gateways[1].address", "IP address"),
        ("name", "carrier-1", "routing_gateways[1].name", "no other routing gateway"),
        ("name", "", "routing_gateways[1].name", "a name"),
        (
            "caller_dial_plan",
            [{"match": "x"}],
            "routing_gateways[1].caller_dial_plan[0].replace",
            "a replacement string",
        ),
    ],
)
def test_bad_routing_gateway_values(key: str, value: object, path: str, allowed: str) -> None:
    problems = problems_of(gateway_data(**{key: value}))
    (problem,) = [p for p in problems if p.path == path]
    assert allowed in problem.allowed
    # renaming carrier-2 away also breaks the routes that name it; nothing else may fail
    assert all(p is problem or p.path.startswith("routes[") for p in problems)


def test_gateway_overrides_and_defaults() -> None:
    data = gateway_data(
        invite_timeout=2.5,
        stop_switch_after_sdp="Off",
        stop_switch_after_invite_timeout=True,
        transport="TCP",
        privacy="passthrough",
        address="sip.example.net",
    )
    data["sip"]["listen"].append("tcp://0.0.0.0:5060")  # a TCP gateway needs a TCP listener
    gw = parse_config(data).routing_gateways[1]
    assert gw.invite_timeout == 2.5
    assert gw.stop_switch_after_sdp is False
    assert gw.stop_switch_after_invite_timeout is True
    assert gw.transport == "tcp"
    assert gw.privacy == "Passthrough"
    assert gw.address == "sip.example.net"
    minimal = parse_config({"routing_gateways": [{"name": "g", "address": "192.0.2.1"}]})
    assert minimal.routing_gateways[0] == RoutingGateway(
        name="g", address="192.0.2.1", port_given=False
    )
    assert minimal.routing_gateways[0].port == 5060
    assert minimal.routing_gateways[0].transport == "udp"


def test_missing_required_gateway_fields() -> None:
    problems = problems_of({"routing_gateways": [{"port": 5060}]})
    assert sorted(p.path for p in problems) == [
        "routing_gateways[0].address",
        "routing_gateways[0].name",
    ]
    assert all(
        str(p).split(": ", 1)[1].startswith("a missing value is not allowed") for p in problems
    )


def test_gateway_auth_keys() -> None:
    gw = parse_config(
        gateway_data(auth_user="edge-7", auth_password="pw with spaces", auth_realm="carrier")
    ).routing_gateways[1]
    assert (gw.auth_user, gw.auth_password, gw.auth_realm) == (
        "edge-7",
        "pw with spaces",
        "carrier",
    )
    assert gw.auth_password_file is None and "pw with spaces" not in repr(gw)
    gw = parse_config(
        gateway_data(auth_user="edge", auth_password_file="/etc/sipedge/carrier.pw")
    ).routing_gateways[1]
    assert gw.auth_password_file == Path("/etc/sipedge/carrier.pw") and gw.auth_password is None
    assert gw.auth_realm is None
    nulls = dict.fromkeys(("auth_user", "auth_password", "auth_password_file", "auth_realm"))
    gw = parse_config(gateway_data(**nulls)).routing_gateways[1]
    assert gw.auth_user is None and gw.auth_password is None


@pytest.mark.parametrize(
    ("keys", "path", "allowed"),
    [
        ({"auth_password": "pw"}, "auth_user", "a user name beside auth_password"),
        ({"auth_realm": "r"}, "auth_user", "a user name"),
        ({"auth_user": "edge"}, "auth_password", "auth_password or auth_password_file"),
        (
            {"auth_user": "edge", "auth_password": "pw", "auth_password_file": "/etc/pw"},
            "auth_password_file",
            "null when auth_password is set",
        ),
        ({"auth_user": "a b", "auth_password": "pw"}, "auth_user", "without spaces"),
        ({"auth_user": "edge", "auth_password": ""}, "auth_password", "a non-empty"),
        ({"auth_user": "edge", "auth_password_file": "pw"}, "auth_password_file", "absolute"),
        ({"auth_user": "edge", "auth_password": "pw", "auth_realm": ""}, "auth_realm", "non-empty"),
    ],
)
def test_bad_gateway_auth(keys: dict[str, object], path: str, allowed: str) -> None:
    problem = one_problem(gateway_data(**keys))
    assert problem.path == f"routing_gateways[1].{path}"
    assert allowed in problem.allowed


def test_gateway_password_is_not_echoed() -> None:
    problem = one_problem(gateway_data(auth_user="edge", auth_password=123456))
    assert problem.path == "routing_gateways[1].auth_password"
    assert "123456" not in str(problem)


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"prefix": "44a"}, "routes[0].prefix"),
        ({"prefix": 44}, "routes[0].prefix"),
        ({"prefix": "4+4"}, "routes[0].prefix"),
        ({"prefix": ""}, "routes[1].prefix"),  # the second "" is the duplicate
        ({"gateways": []}, "routes[0].gateways"),
        ({"gateways": ["carrier-1", "carrier-1"]}, "routes[0].gateways[1]"),
    ],
)
def test_bad_routes(change: dict[str, Any], path: str) -> None:
    data = example_data()
    data["routes"][0].update(change)
    assert one_problem(data).path == path


def test_plus_prefix_is_allowed() -> None:
    data = example_data()
    data["routes"][0]["prefix"] = "+44"
    assert parse_config(data).routes[0].prefix == "+44"


@pytest.mark.parametrize(
    ("addresses", "path"),
    [
        (["198.51.100.1/24"], "mapping_gateways[0].addresses[0]"),
        (["not-an-ip"], "mapping_gateways[0].addresses[0]"),
        (["10.0.0.0/33"], "mapping_gateways[0].addresses[0]"),
        ([], "mapping_gateways[0].addresses"),
        ("198.51.100.0/24", "mapping_gateways[0].addresses"),
    ],
)
def test_bad_mapping_addresses(addresses: object, path: str) -> None:
    data = example_data()
    data["mapping_gateways"][0]["addresses"] = addresses
    assert one_problem(data).path == path


def test_mapping_addresses_accept_single_ips_and_ipv6() -> None:
    data = example_data()
    data["mapping_gateways"][0]["addresses"] = ["192.0.2.7", "2001:db8::/32"]
    gw = parse_config(data).mapping_gateways[0]
    assert gw.addresses == (ip_network("192.0.2.7/32"), ip_network("2001:db8::/32"))


def test_duplicate_names_per_kind() -> None:
    data = example_data()
    data["mapping_gateways"].append(dict(data["mapping_gateways"][0], addresses=["192.0.2.0/24"]))
    data["endpoints"].append({"account": "1001", "password": "x"})
    data["registrations"].append(dict(data["registrations"][0]))
    problems = problems_of(data)
    assert sorted(p.path for p in problems) == [
        "endpoints[1].account",
        "mapping_gateways[1].name",
        "registrations[1].name",
    ]
    # the same name in two different kinds is fine
    data = example_data()
    data["mapping_gateways"][0]["name"] = "carrier-1"
    parse_config(data)


@pytest.mark.parametrize(
    ("section", "change", "path"),
    [
        ("sip", {"listen": ["sctp://0.0.0.0:5060"]}, "sip.listen[0]"),
        ("sip", {"listen": ["udp://0.0.0.0"]}, "sip.listen[0]"),
        ("sip", {"listen": ["udp://0.0.0.0:0"]}, "sip.listen[0]"),
        ("sip", {"listen": ["udp://::1:5060"]}, "sip.listen[0]"),
        ("sip", {"listen": []}, "sip.listen"),
        ("sip", {"listen": ["udp://0.0.0.0:5060", "udp://0.0.0.0:5060"]}, "sip.listen[1]"),
        ("sip", {"public_address": "bad address!"}, "sip.public_address"),
        ("api", {"listen": "127.0.0.1"}, "api.listen"),
        ("api", {"listen": "127.0.0.1:99999"}, "api.listen"),
        ("api", {"token": ""}, "api.token"),
        ("storage", {"path": "relative/dir"}, "storage.path"),
        ("media", {"control_socket": 5}, "media.control_socket"),
        ("media", {"port_range": [20001, 29999]}, "media.port_range"),
        ("media", {"port_range": [30000, 20000]}, "media.port_range"),
        ("media", {"port_range": [1000, 2000]}, "media.port_range"),
        ("media", {"port_range": [20000, 70000]}, "media.port_range"),
        ("media", {"port_range": [20000]}, "media.port_range"),
        ("media", {"port_range": [20000, 20000]}, "media.port_range"),
        ("media", {"port_range": [4000, 6000]}, "media.port_range"),  # holds SIP port 5060
        ("media", {"fast_path": "kernel"}, "media.fast_path"),
        ("media", {"interfaces": ["eth0", "eth0"]}, "media.interfaces[1]"),
        ("media", {"interfaces": ["a/b"]}, "media.interfaces[0]"),
        ("media", {"interfaces": [], "fast_path": "xdp"}, "media.interfaces"),
        ("node", {"name": ""}, "node.name"),
    ],
)
def test_bad_section_values(section: str, change: dict[str, Any], path: str) -> None:
    data = example_data()
    data[section].update(change)
    assert one_problem(data).path == path


def test_listen_addresses() -> None:
    data = example_data()
    data["sip"]["listen"] = ["udp://[::1]:5060", "TCP://0.0.0.0:5061"]
    data["api"]["listen"] = "[::1]:9000"
    config = parse_config(data)
    assert config.sip.listen == (
        ListenAddress("udp", "::1", 5060),
        ListenAddress("tcp", "0.0.0.0", 5061),
    )
    assert (config.api.host, config.api.port) == ("::1", 9000)


def test_endpoint_and_registration_checks() -> None:
    data = example_data()
    data["endpoints"] = [{"account": 1001, "password": "x"}, {"account": "1002"}]
    data["registrations"][0].update(register_period=10, port=0, realm="")
    problems = problems_of(data)
    assert sorted(p.path for p in problems) == [
        "endpoints[0].account",
        "endpoints[1].password",
        "registrations[0].port",
        "registrations[0].realm",
        "registrations[0].register_period",
    ]
    data = example_data()
    data["registrations"][0].update(register_period=600, realm="example.net")
    reg = parse_config(data).registrations[0]
    assert (reg.register_period, reg.realm) == (600, "example.net")


def test_passwords_are_not_echoed() -> None:
    data = example_data()
    data["endpoints"][0]["password"] = 123456
    problem = one_problem(data)
    assert problem.path == "endpoints[0].password"
    assert "123456" not in str(problem)
    assert "change-me" not in repr(parse_config(example_data()))


# -- RTP encryption key ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "key", "ok"),
    [
        (1, "", False),
        (1, "k", True),
        (1, "k" * 64, True),
        (1, "k" * 65, False),
        (2, "four", False),
        (2, "fives", True),
        (2, "k" * 64, True),
        (2, "k" * 65, False),
        (3, "k" * 15, False),
        (3, "k" * 16, True),
        (3, "k" * 17, False),
        (3, "é" * 8, True),  # 16 bytes in UTF-8
    ],
)
def test_rtp_key_length_per_mode(mode: int, key: str, ok: bool) -> None:
    data = example_data()
    data["parameters"].update(SS_RTPENCRYPTIONMODE=mode, SS_RTPENCRYPTIONKEY=key)
    # no gateway encrypts: any key is fine
    assert parse_config(copy.deepcopy(data)).parameters.rtpencryptionkey == key
    data["routing_gateways"][1]["rtp_encryption"] = "On"
    if ok:
        parse_config(data)
        return
    problem = one_problem(data)
    assert problem.path == "parameters.SS_RTPENCRYPTIONKEY"
    assert f"SS_RTPENCRYPTIONMODE {mode}" in problem.allowed
    assert "carrier-2" in problem.allowed
    if key:
        assert key not in str(problem)


def test_rtp_key_checked_for_mapping_gateways_too_and_not_in_mode_0() -> None:
    data = example_data()
    data["parameters"].update(SS_RTPENCRYPTIONMODE=3, SS_RTPENCRYPTIONKEY="short")
    data["mapping_gateways"][0]["rtp_encryption"] = True
    assert one_problem(copy.deepcopy(data)).path == "parameters.SS_RTPENCRYPTIONKEY"
    data["parameters"]["SS_RTPENCRYPTIONMODE"] = 0
    parse_config(data)


# -- check-config ------------------------------------------------------------------------------


def test_check_config_main_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_config_main(str(EXAMPLE)) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"OK: {EXAMPLE}: 2 routing gateways, 2 routes, 1 mapping gateway")


def test_check_config_main_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = example_data()
    data["parameters"]["SS_SIP_TIMEOUT_INVITE"] = 0
    data["routes"][0]["gateways"] = ["nowhere"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    assert check_config_main(str(bad)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "parameters.SS_SIP_TIMEOUT_INVITE: 0 is not allowed (allowed: 1-300)" in captured.err
    assert "routes[0].gateways[0]: 'nowhere' is not allowed" in captured.err


def test_config_is_frozen_and_comparable() -> None:
    a, b = load_config(EXAMPLE), load_config(EXAMPLE)
    assert a == b
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.node_name = "x"  # type: ignore[misc]
