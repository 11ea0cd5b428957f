"""The `api:` section: where sipd's management API listens, its tokens, TLS and Host names
(docs/configuration.md, docs/security.md "Management API").

Owns: `api_section`, which builds `ApiConfig` from the YAML with the collector, and the rule
that an API off loopback needs an admin token (the problem names `api.listen` and the token
keys, so `check-config` and sipd's refusal to start say the same thing).
Must not: read the token or certificate files (sipd reads them at start), check across
sections, or import anything from sipedge outside config/.
"""

from __future__ import annotations

import ipaddress
import re

from sipedge.config.collector import _Collector
from sipedge.config.errors import Described, _Bad
from sipedge.config.schema import ApiConfig
from sipedge.config.values import _host, _host_port, _on_off, _optional_absolute_path

_API_KEYS = (
    "listen",
    "token",
    "token_file",
    "read_token",
    "read_token_file",
    "hosts",
    "tls_cert",
    "tls_key",
    "metrics_open",
)
LISTEN_ALLOWED = "host:port (IPv6 in brackets), port 1-65535"
TOKEN_ALLOWED = "null or a non-empty string of printable ASCII without spaces"
OFF_LOOPBACK_ALLOWED = (
    "a loopback address (127.0.0.1, [::1], localhost), or any address once an admin token is "
    "set with api.token_file (or api.token)"
)
_TOKEN_RE = re.compile(r"^[\x21-\x7e]+$")


def _token(value: object) -> str | None:
    """A bearer token as written in the config (it goes verbatim into a header)."""
    if value is None:
        return None
    if not isinstance(value, str) or not _TOKEN_RE.match(value):
        raise _Bad(TOKEN_ALLOWED)
    return value


def _hosts(c: _Collector, raw: object) -> tuple[str, ...]:
    """api.hosts: Host header names (or addresses), without a port; kept lower case."""
    found: list[str] = []
    items = [raw] if isinstance(raw, str) else raw
    for j, item in enumerate(c.sequence("api.hosts", items, "a list of host names")):
        name = c.value(f"api.hosts[{j}]", item, _host, "")
        name = name.lower().rstrip(".")
        if name and name not in found:
            found.append(name)
    return tuple(found)


def is_loopback_host(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower().rstrip(".") == "localhost"


def api_section(c: _Collector, raw: object) -> ApiConfig:
    data = c.mapping("api", raw, _API_KEYS)
    d = ApiConfig()
    host, port = d.host, d.port
    listen_ok = True
    if "listen" in data:
        before = len(c.problems)
        host, port = c.value(
            "api.listen", data["listen"], lambda v: _host_port(v, LISTEN_ALLOWED), (host, port)
        )
        listen_ok = len(c.problems) == before
    token = _secret(c, data, "token")
    token_file = c.get("api", data, "token_file", _optional_absolute_path, None)
    read_token = _secret(c, data, "read_token")
    read_token_file = c.get("api", data, "read_token_file", _optional_absolute_path, None)
    for inline, file, key in (
        (token, token_file, "token"),
        (read_token, read_token_file, "read_token"),
    ):
        if inline is not None and file is not None:
            c.problem(
                f"api.{key}_file", str(file), f"null when api.{key} is set (one or the other)"
            )
    has_admin = token is not None or token_file is not None
    if (read_token is not None or read_token_file is not None) and not has_admin:
        key = "read_token_file" if read_token_file is not None else "read_token"
        c.problem(
            f"api.{key}",
            Described("a read-only token"),
            "a read-only token only beside an admin token (api.token_file or api.token)",
        )
    if token is not None and token == read_token:
        c.problem("api.read_token", Described("the admin token"), "a token other than api.token")
    cert = c.get("api", data, "tls_cert", _optional_absolute_path, None)
    key_path = c.get("api", data, "tls_key", _optional_absolute_path, None)
    cert_given, key_given = data.get("tls_cert") is not None, data.get("tls_key") is not None
    if cert_given != key_given:  # (judged on what was written: a bad path is reported once)
        missing, given = ("tls_key", cert) if not key_given else ("tls_cert", key_path)
        c.problem(
            f"api.{missing}",
            None,
            f"an absolute path: api.tls_cert and api.tls_key go together (one is {given})",
        )
    hosts = _hosts(c, data["hosts"]) if "hosts" in data else ()
    if listen_ok and not has_admin and not is_loopback_host(host):
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        c.problem("api.listen", shown, OFF_LOOPBACK_ALLOWED)
    return ApiConfig(
        host=host,
        port=port,
        token=token,
        token_file=token_file,
        read_token=read_token,
        read_token_file=read_token_file,
        hosts=hosts,
        tls_cert=cert,
        tls_key=key_path,
        metrics_open=c.get("api", data, "metrics_open", _on_off, d.metrics_open),
    )


def _secret(c: _Collector, data: dict[str, object], key: str) -> str | None:
    """api.token / api.read_token; a refused value is described, never shown."""
    if key not in data:
        return None
    raw = data[key]
    try:
        return _token(raw)
    except _Bad as bad:
        shown: object = raw if raw == "" else Described(f"a {type(raw).__name__} value")
        if isinstance(raw, str) and raw:
            shown = Described("a string with spaces or non-ASCII characters")
        c.problem(f"api.{key}", shown, bad.allowed)
        return None
