"""The `sip:` section: the listeners (udp://, tcp://, tls://), their TLS certificate, the
public address, the bounds on TCP/TLS connections (docs/configuration.md,
docs/transports.md) and how gateway names are looked up (DNS servers, timeout, hosts file:
docs/call-control.md, "Gateways by host name").

A listener is a URI (`tls://0.0.0.0:5061`) or a mapping with the URI under `uri` and its own
`tls_cert`, `tls_key`, `tls_ca`, `tls_verify_client` (otherwise those of `sip:` apply).

Owns: `sip_section` and the rules within the section: each listener once (by transport,
address and port), at least one udp:// listener (REGISTER to carriers and NAT keep-alives
leave from it), a certificate for every tls:// listener, a CA where client certificates are
verified, certificate and key together.
Must not: read the certificate files (sipd loads them at start and on reload), check across
sections (loader does: gateways' transports against the listeners), or import anything from
sipedge outside config/.
"""

from __future__ import annotations

from pathlib import Path

from sipedge.config.collector import _Collector
from sipedge.config.errors import MISSING, Described
from sipedge.config.schema import ConnectionLimits, ListenAddress, SipConfig
from sipedge.config.values import (
    DNS_SERVER_ALLOWED,
    LISTEN_ALLOWED,
    _dns_server,
    _integer,
    _listen_uri,
    _number,
    _on_off,
    _optional_absolute_path,
    _optional_host,
)

_SIP_KEYS = (
    "listen",
    "public_address",
    "tls_cert",
    "tls_key",
    "tls_ca",
    "tls_verify_client",
    "connections",
    "dns_servers",
    "dns_timeout",
    "hosts_file",
)
_LISTENER_KEYS = ("uri", "tls_cert", "tls_key", "tls_ca", "tls_verify_client")
_CONNECTION_KEYS = (
    "max",
    "max_per_source",
    "idle_timeout",
    "message_timeout",
    "connect_timeout",
    "write_buffer",
)
ENTRY_ALLOWED = f"{LISTEN_ALLOWED}, or a mapping with uri and tls_* keys"


def sip_section(c: _Collector, raw: object) -> SipConfig:
    data = c.mapping("sip", raw, _SIP_KEYS)
    d = SipConfig()
    cert = c.get("sip", data, "tls_cert", _optional_absolute_path, None)
    key = c.get("sip", data, "tls_key", _optional_absolute_path, None)
    _pair(c, "sip", data, cert, key)
    ca = c.get("sip", data, "tls_ca", _optional_absolute_path, None)
    verify = c.get("sip", data, "tls_verify_client", _on_off, False)
    listen = (_listeners(c, data) if "listen" in data else None) or list(d.listen)
    if listen and not any(a.transport == "udp" for a in listen):
        c.problem(
            "sip.listen",
            [f"{a.transport}://{a.host}:{a.port}" for a in listen],
            "at least one udp:// address (REGISTER to carriers and NAT keep-alives use it)",
        )
    for i, addr in enumerate(listen):
        if addr.transport != "tls":
            continue
        if (addr.tls_cert or cert) is None:
            c.problem(
                f"sip.listen[{i}]",
                f"tls://{addr.host}:{addr.port}",
                "a tls:// address with a certificate: sip.tls_cert and sip.tls_key (or "
                "tls_cert and tls_key on the listener)",
            )
        verifies = addr.tls_verify_client if addr.tls_verify_client is not None else verify
        if verifies and (addr.tls_ca or ca) is None:
            c.problem(
                f"sip.listen[{i}].tls_verify_client",
                True,
                "On only with a CA bundle for client certificates (tls_ca, or sip.tls_ca)",
            )
    return SipConfig(
        listen=tuple(listen),
        public_address=c.get("sip", data, "public_address", _optional_host, None),
        tls_cert=cert,
        tls_key=key,
        tls_ca=ca,
        tls_verify_client=verify,
        connections=_connections(c, data.get("connections")),
        dns_servers=_dns_servers(c, data.get("dns_servers")),
        dns_timeout=c.get("sip", data, "dns_timeout", _number(0.1, 30), d.dns_timeout),
        hosts_file=c.get("sip", data, "hosts_file", _optional_absolute_path, d.hosts_file),
    )


def _dns_servers(c: _Collector, raw: object) -> tuple[tuple[str, int], ...]:
    """sip.dns_servers: null or [] (the system's), else 1-8 servers, each once."""
    path = "sip.dns_servers"
    servers: list[tuple[str, int]] = []
    entries = c.sequence(path, raw, "null or a list of " + DNS_SERVER_ALLOWED)
    if len(entries) > 8:
        c.problem(path, Described(f"{len(entries)} servers"), "at most 8 servers")
    for i, item in enumerate(entries[:8]):
        server = c.value(f"{path}[{i}]", item, _dns_server, None)
        if server is not None and server in servers:
            c.problem(f"{path}[{i}]", item, "each server once")
        elif server is not None:
            servers.append(server)
    return tuple(servers)


def _listeners(c: _Collector, data: dict[str, object]) -> list[ListenAddress]:
    raw = data["listen"]
    items = [raw] if isinstance(raw, str) else raw
    entries = c.sequence("sip.listen", items, "a list of " + LISTEN_ALLOWED)
    if not entries and isinstance(items, list):
        c.problem("sip.listen", raw, "at least one " + LISTEN_ALLOWED)
    out: list[ListenAddress] = []
    seen: set[tuple[str, str, int]] = set()
    for i, item in enumerate(entries):
        path = f"sip.listen[{i}]"
        addr = _listener(c, path, item)
        if addr is None:
            continue
        if addr.address in seen:
            c.problem(path, item, "each listen address once")
        seen.add(addr.address)
        out.append(addr)
    return out


def _listener(c: _Collector, path: str, item: object) -> ListenAddress | None:
    if not isinstance(item, dict):
        if not isinstance(item, str):
            c.problem(path, item, ENTRY_ALLOWED)
            return None
        return c.value(path, item, _listen_uri, None)
    data = c.mapping(path, item, _LISTENER_KEYS)
    if "uri" not in data:
        c.problem(f"{path}.uri", MISSING, LISTEN_ALLOWED)
        return None
    addr = c.value(f"{path}.uri", data["uri"], _listen_uri, None)
    if addr is None:
        return None
    cert = c.get(path, data, "tls_cert", _optional_absolute_path, None)
    key = c.get(path, data, "tls_key", _optional_absolute_path, None)
    _pair(c, path, data, cert, key)
    ca = c.get(path, data, "tls_ca", _optional_absolute_path, None)
    verify = c.get(path, data, "tls_verify_client", _on_off, None)
    if addr.transport != "tls" and any(k in data for k in _LISTENER_KEYS[1:]):
        c.problem(path, item, "tls_* keys on a tls:// address only")
    return ListenAddress(addr.transport, addr.host, addr.port, cert, key, ca, verify)


def _pair(
    c: _Collector, path: str, data: dict[str, object], cert: Path | None, key: Path | None
) -> None:
    """tls_cert and tls_key go together (judged on what was written: one problem per key)."""
    cert_given, key_given = data.get("tls_cert") is not None, data.get("tls_key") is not None
    if cert_given != key_given:
        missing, given = ("tls_key", cert) if not key_given else ("tls_cert", key)
        c.problem(
            f"{path}.{missing}",
            None,
            f"an absolute path: tls_cert and tls_key go together (one is {given})",
        )


def _connections(c: _Collector, raw: object) -> ConnectionLimits:
    data = c.mapping("sip.connections", raw, _CONNECTION_KEYS)
    d = ConnectionLimits()
    p = "sip.connections"
    return ConnectionLimits(
        max=c.get(p, data, "max", _integer(1, 1_000_000), d.max),
        max_per_source=c.get(p, data, "max_per_source", _integer(1, 100_000), d.max_per_source),
        idle_timeout=c.get(p, data, "idle_timeout", _number(1, 86400), d.idle_timeout),
        message_timeout=c.get(p, data, "message_timeout", _number(0.1, 600), d.message_timeout),
        connect_timeout=c.get(p, data, "connect_timeout", _number(0.1, 60), d.connect_timeout),
        write_buffer=c.get(
            p, data, "write_buffer", _integer(16384, 64 * 1024 * 1024), d.write_buffer
        ),
    )
