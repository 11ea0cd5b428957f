"""The `api:` and `storage:` keys of issue 15: defaults, valid values, refusals and messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sipedge.config import ApiConfig, StorageConfig, check_config_main, parse_config
from tests.unit.test_config import example_data, one_problem, problems_of


def section(name: str, **keys: Any) -> dict[str, Any]:
    data = example_data()
    data[name] = {**(data.get(name) or {}), **keys}
    return data


def test_defaults() -> None:
    config = parse_config({})
    assert config.api == ApiConfig()
    assert config.api.token is None and config.api.token_file is None
    assert config.api.read_token is None and config.api.read_token_file is None
    assert config.api.hosts == () and config.api.metrics_open is False
    assert config.api.tls_cert is None and config.api.tls_key is None
    assert config.storage == StorageConfig(Path("/var/lib/sipedge"), True, 90, 128)
    # the example file (the shared spec's copy) gives none of the new keys
    assert parse_config(example_data()).storage.cdr_durable is True


def test_every_api_key() -> None:
    api = parse_config(
        section(
            "api",
            listen="0.0.0.0:8443",
            token=None,
            token_file="/etc/sipedge/api-admin.token",
            read_token_file="/etc/sipedge/api-read.token",
            hosts=["Edge1.Example.NET.", "192.0.2.10", "edge1.example.net"],
            tls_cert="/etc/sipedge/api.crt",
            tls_key="/etc/sipedge/api.key",
            metrics_open="on",
        )
    ).api
    assert (api.host, api.port) == ("0.0.0.0", 8443)
    assert api.token_file == Path("/etc/sipedge/api-admin.token")
    assert api.read_token_file == Path("/etc/sipedge/api-read.token")
    assert api.hosts == ("edge1.example.net", "192.0.2.10")
    assert api.tls_cert == Path("/etc/sipedge/api.crt")
    assert api.tls_key == Path("/etc/sipedge/api.key")
    assert api.metrics_open is True and api.has_admin_token


def test_inline_tokens_and_a_single_host_name() -> None:
    api = parse_config(
        section("api", listen="[::]:8080", token="t" * 32, read_token="r" * 32, hosts="edge")
    ).api
    assert (api.token, api.read_token, api.hosts) == ("t" * 32, "r" * 32, ("edge",))
    assert "t" * 32 not in repr(api)  # secrets stay out of logs


@pytest.mark.parametrize("listen", ["127.0.0.1:8080", "127.0.0.53:80", "[::1]:8080", "localhost:1"])
def test_loopback_needs_no_token(listen: str) -> None:
    assert parse_config(section("api", listen=listen, token=None)).api.token is None


@pytest.mark.parametrize(
    ("listen", "shown"),
    [
        ("0.0.0.0:8080", "'0.0.0.0:8080'"),
        ("192.0.2.1:8080", "'192.0.2.1:8080'"),
        ("[::]:8080", "'[::]:8080'"),
        ("edge.example.net:8080", "'edge.example.net:8080'"),
    ],
)
def test_off_loopback_without_an_admin_token_is_refused(listen: str, shown: str) -> None:
    problem = one_problem(section("api", listen=listen, token=None))
    assert problem.path == "api.listen"
    text = str(problem)
    assert text.startswith(f"api.listen: {shown} is not allowed")
    assert "api.token_file" in text and "api.token" in text and "loopback" in text
    # a read-only token does not open it either (and needs an admin token anyway)
    problems = problems_of(section("api", listen=listen, token=None, read_token="r" * 20))
    assert {p.path for p in problems} == {"api.listen", "api.read_token"}


def test_check_config_says_the_same(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sipedge.yaml"
    path.write_text(yaml.safe_dump(section("api", listen="0.0.0.0:8080", token=None)))
    assert check_config_main(str(path)) == 1
    err = capsys.readouterr().err
    assert "api.listen: '0.0.0.0:8080' is not allowed" in err and "api.token_file" in err
    path.write_text(yaml.safe_dump(section("api", listen="0.0.0.0:8080", token_file="/t")))
    assert check_config_main(str(path)) == 0


@pytest.mark.parametrize(
    ("keys", "path", "allowed"),
    [
        ({"token": ""}, "api.token", "printable ASCII"),
        ({"token": "two words"}, "api.token", "without spaces"),
        ({"token": 12345678}, "api.token", "printable ASCII"),
        ({"read_token": "tab\there", "token": "x" * 16}, "api.read_token", "without spaces"),
        ({"token": "x" * 16, "token_file": "/etc/t"}, "api.token_file", "one or the other"),
        (
            {"token": "x" * 16, "read_token": "y" * 16, "read_token_file": "/etc/r"},
            "api.read_token_file",
            "one or the other",
        ),
        ({"token_file": "relative/token"}, "api.token_file", "absolute path"),
        ({"read_token_file": "/etc/r"}, "api.read_token_file", "beside an admin token"),
        ({"token": "x" * 16, "read_token": "x" * 16}, "api.read_token", "other than api.token"),
        ({"tls_cert": "/etc/c.pem"}, "api.tls_key", "go together"),
        ({"tls_key": "/etc/k.pem"}, "api.tls_cert", "go together"),
        ({"tls_cert": "c.pem", "tls_key": "/k"}, "api.tls_cert", "absolute path"),
        ({"hosts": ["bad name!"]}, "api.hosts[0]", "host name"),
        ({"hosts": {"a": 1}}, "api.hosts", "a list of host names"),
        ({"metrics_open": "sometimes"}, "api.metrics_open", "On/Off"),
        ({"listen": "127.0.0.1"}, "api.listen", "host:port"),
        ({"tokens": "x"}, "api.tokens", "did you mean token"),
    ],
)
def test_bad_api_values(keys: dict[str, Any], path: str, allowed: str) -> None:
    problem = one_problem(section("api", **keys))
    assert problem.path == path
    assert allowed in str(problem)


def test_a_refused_token_is_never_printed() -> None:
    secret = "s3cret with a space"
    problem = one_problem(section("api", token=secret))
    assert secret not in str(problem)


@pytest.mark.parametrize(
    ("keys", "durable", "days", "mib"),
    [
        ({}, True, 90, 128),
        ({"cdr_durable": False}, False, 90, 128),
        ({"cdr_durable": "Off"}, False, 90, 128),
        ({"cdr_retention_days": "Off", "cdr_max_mib": "off"}, True, None, None),
        ({"cdr_retention_days": False, "cdr_max_mib": False}, True, None, None),  # bare Off
        ({"cdr_retention_days": 1, "cdr_max_mib": 1}, True, 1, 1),
        ({"cdr_retention_days": "3650", "cdr_max_mib": 1048576}, True, 3650, 1048576),
    ],
)
def test_storage_keys(
    keys: dict[str, Any], durable: bool, days: int | None, mib: int | None
) -> None:
    storage = parse_config(section("storage", **keys)).storage
    assert (storage.cdr_durable, storage.cdr_retention_days, storage.cdr_max_mib) == (
        durable,
        days,
        mib,
    )


def test_bare_off_in_yaml_means_off() -> None:
    data = yaml.safe_load("storage: {cdr_retention_days: Off, cdr_max_mib: Off}")
    storage = parse_config(data).storage
    assert storage.cdr_retention_days is None and storage.cdr_max_mib is None


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("cdr_durable", "maybe", "On/Off"),
        ("cdr_retention_days", 0, "Off or 1-3650 (days)"),
        ("cdr_retention_days", 3651, "Off or 1-3650 (days)"),
        ("cdr_retention_days", 1.5, "Off or 1-3650 (days)"),
        ("cdr_retention_days", None, "Off or 1-3650 (days)"),
        ("cdr_retention_days", True, "Off or 1-3650 (days)"),
        ("cdr_max_mib", 0, "Off or 1-1048576 (MiB)"),
        ("cdr_max_mib", 1048577, "Off or 1-1048576 (MiB)"),
        ("cdr_max_mib", "lots", "Off or 1-1048576 (MiB)"),
    ],
)
def test_bad_storage_values(key: str, value: object, allowed: str) -> None:
    problem = one_problem(section("storage", **{key: value}))
    assert problem.path == f"storage.{key}"
    assert str(problem).endswith(f"(allowed: {allowed})")
