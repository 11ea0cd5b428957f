"""The config sections sipd converts for the packages that may not read config/.

Owns: the carrier and mapping-gateway passwords, the API access policy, the DNS settings, the
names to watch, the TLS expiry, which listeners a public address applies to. Must not: keep
state (plain functions of the config, reading the credential files they name).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from sipedge.api import (
    AccessPolicy,
    CredentialError,
    accepted_hosts,
    load_password,
    load_token,
)
from sipedge.calls import MAPPING_PASSWORD
from sipedge.config import ApiConfig, Config, SipConfig
from sipedge.resolver import DnsSettings, is_literal


def carrier_passwords(config: Config) -> dict[str, str]:
    """The routing gateways' auth_password_file contents by name, and the mapping gateways'
    password_file by MAPPING_PASSWORD + name, read now (CredentialError)."""
    out = {
        gw.name: load_password(gw.auth_password_file, f"routing_gateways[{i}].auth_password_file")
        for i, gw in enumerate(config.routing_gateways)
        if gw.auth_password_file is not None
    }
    for i, m in enumerate(config.mapping_gateways):
        if m.password_file is not None:
            where = f"mapping_gateways[{i}].password_file"
            out[MAPPING_PASSWORD + m.name] = load_password(m.password_file, where)
    return out


def cert_not_after(path: str | Path) -> float:
    """When the first certificate of a PEM file (the leaf) expires, as a Unix time; the file
    was just loaded by `server_context`, so it parses. cryptography is imported here, by the
    sipd that has a TLS listener, not by every sipd's start (0.3 s of it under emulation)."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    return cert.not_valid_after_utc.timestamp()


def gateway_list(config: Config) -> tuple[list[str], list[str]]:
    """The names of the routing and the mapping gateways: what the carrier statistics track."""
    return [g.name for g in config.routing_gateways], [m.name for m in config.mapping_gateways]


def dns_settings(sip: SipConfig) -> DnsSettings:
    """AAAA records count only when there is an IPv6 listener to reach them from."""
    ipv6 = any(":" in listen.host for listen in sip.listen)
    return DnsSettings(tuple(sip.dns_servers), sip.dns_timeout, sip.hosts_file, ipv6=ipv6)


def gateway_names(config: Config) -> list[tuple[str, int | None, str]]:
    """The host names among the routing gateways and registration proxies, with their port
    when one was given (None: NAPTR/SRV apply) and their transport."""
    names = [
        (g.address, g.port if g.port_given else None, g.transport) for g in config.routing_gateways
    ]
    names += [(r.proxy, r.port if r.port_given else None, "udp") for r in config.registrations]
    return [name for name in names if not is_literal(name[0])]


def access_policy(api: ApiConfig) -> AccessPolicy:
    """The API's policy: inline tokens, or the token files read now (CredentialError)."""
    admin = api.token or (load_token(api.token_file, "api.token_file") if api.token_file else None)
    read = api.read_token or (
        load_token(api.read_token_file, "api.read_token_file") if api.read_token_file else None
    )
    if admin is not None and admin == read:
        raise CredentialError("api.read_token_file: holds the admin token (use another one)")
    return AccessPolicy(
        admin_tokens=(admin,) if admin else (),
        read_tokens=(read,) if read else (),
        hosts=accepted_hosts(api.host, api.hosts),
        metrics_open=api.metrics_open,
    )


def same_family(public_address: str, host: str) -> bool:
    """sip.public_address applies to the listeners of its family (a name: to all), so an
    IPv6 listener does not advertise an IPv4 public address (docs/ipv6.md)."""
    try:
        family = ipaddress.ip_address(public_address).version
    except ValueError:
        return True
    return family == (6 if ":" in host else 4)
