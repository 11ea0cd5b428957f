"""The `media:` section: where sipd reaches mediad and what both relay daemons are allowed
(docs/configuration.md, docs/media.md).

Owns: `media_section`, which builds `MediaConfig` from the YAML with the collector, resolving
`idle_timeout: Auto` from SS_MEDIA_RTP_TIMEOUT; the known keys of `media`.
Must not: read files, check across sections other than that one parameter, or import anything
from sipedge outside config/.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from ipaddress import IPv4Network, IPv6Network
from typing import TypeVar

from sipedge.config.collector import _Collector
from sipedge.config.errors import _Bad
from sipedge.config.schema import DEFAULT_RTP_TIMEOUT_FOR_IDLE, IDLE_TIMEOUT_GRACE, MediaConfig
from sipedge.config.values import (
    ADDRESS_ALLOWED,
    _absolute_path,
    _ifname,
    _integer,
    _network,
    _number,
    _optional_absolute_path,
    _optional_ipv4,
    _optional_listen,
    _optional_unix_user,
    _port_range,
    _word_or,
    _words,
)

T = TypeVar("T")

_MEDIA_KEYS = (
    "control_socket",
    "port_range",
    "fast_path",
    "interfaces",
    "bind_address",
    "advertise_address",
    "bind_address_v6",
    "advertise_address_v6",
    "refused_networks",
    "max_streams_per_call",
    "max_sessions",
    "idle_timeout",
    "state_path",
    "metrics_listen",
    "metrics_token_file",
    "run_as",
)


def media_section(c: _Collector, raw: object, rtp_timeout: float | None = None) -> MediaConfig:
    """The `media:` section; `rtp_timeout` (SS_MEDIA_RTP_TIMEOUT, None: Off) resolves
    `idle_timeout: Auto`."""
    data = c.mapping("media", raw, _MEDIA_KEYS)
    d = MediaConfig()
    socket = c.get("media", data, "control_socket", _absolute_path, d.control_socket)
    port_range = d.port_range
    if "port_range" in data:
        port_range = c.value("media.port_range", data["port_range"], _port_range, d.port_range)
    fast_path = c.get("media", data, "fast_path", _words("auto", "xdp", "userspace"), d.fast_path)
    interfaces = d.interfaces
    if "interfaces" in data:
        found: list[str] = []
        raw_ifaces = data["interfaces"]
        items = [raw_ifaces] if isinstance(raw_ifaces, str) else raw_ifaces
        for j, item in enumerate(c.sequence("media.interfaces", items)):
            name = c.value(f"media.interfaces[{j}]", item, _ifname, "")
            if name and name in found:
                c.problem(f"media.interfaces[{j}]", item, "each interface once")
            elif name:
                found.append(name)
        interfaces = tuple(found)
    if fast_path == "xdp" and not interfaces:
        c.problem(
            "media.interfaces", list(interfaces), "at least one interface when fast_path is xdp"
        )
    idle_auto = (rtp_timeout or DEFAULT_RTP_TIMEOUT_FOR_IDLE) + IDLE_TIMEOUT_GRACE
    idle = c.get(
        "media",
        data,
        "idle_timeout",
        _word_or("Auto", _number(10, 86400), "Auto or 10-86400 (seconds)"),
        None,
    )
    bind6 = c.get("media", data, "bind_address_v6", _optional_ipv6, None)
    advertise6 = c.get("media", data, "advertise_address_v6", _optional_ipv6, None)
    if advertise6 is not None and bind6 is None:
        c.problem(
            "media.advertise_address_v6",
            advertise6,
            "null unless media.bind_address_v6 is set (the IPv6 relay binds there)",
        )
    metrics_listen = c.get("media", data, "metrics_listen", _optional_listen, None)
    token_file = c.get("media", data, "metrics_token_file", _optional_absolute_path, None)
    if metrics_listen is not None and token_file is None and not _loopback(metrics_listen):
        c.problem(
            "media.metrics_listen",
            metrics_listen,
            "a loopback address, or any address with media.metrics_token_file set",
        )
    return MediaConfig(
        control_socket=socket,
        port_range=port_range,
        fast_path=fast_path,
        interfaces=interfaces,
        bind_address=c.get("media", data, "bind_address", _optional_ipv4, None),
        advertise_address=c.get("media", data, "advertise_address", _optional_ipv4, None),
        bind_address_v6=bind6,
        advertise_address_v6=advertise6,
        refused_networks=_refused_networks(c, data),
        max_streams_per_call=c.get(
            "media", data, "max_streams_per_call", _integer(1, 64), d.max_streams_per_call
        ),
        max_sessions=c.get(
            "media",
            data,
            "max_sessions",
            _null_or(_integer(1, 10_000_000), "null or 1-10000000"),
            None,
        ),
        idle_timeout=idle_auto if idle is None else idle,
        state_path=c.get("media", data, "state_path", _absolute_path, d.state_path),
        metrics_listen=metrics_listen,
        metrics_token_file=token_file,
        run_as=c.get("media", data, "run_as", _optional_unix_user, None),
    )


def _refused_networks(
    c: _Collector, data: dict[str, object]
) -> tuple[IPv4Network | IPv6Network, ...]:
    """media.refused_networks: a list of CIDRs (or single addresses), [] refuses nothing."""
    path = "media.refused_networks"
    if "refused_networks" not in data:
        return MediaConfig.refused_networks
    raw = data["refused_networks"]
    allowed = "a list of " + ADDRESS_ALLOWED + " ([] refuses nothing)"
    if raw is None:
        c.problem(path, raw, allowed)
        return MediaConfig.refused_networks
    networks: list[IPv4Network | IPv6Network] = []
    for j, item in enumerate(c.sequence(path, raw, allowed)):
        net = c.value(f"{path}[{j}]", item, _network, None)
        if net is None:
            continue
        if net in networks:
            c.problem(f"{path}[{j}]", item, "each network once")
            continue
        networks.append(net)
    return tuple(networks)


IPV6_ALLOWED = (
    "null or one unicast IPv6 address of this host (not ::, multicast, link-local fe80::/10 "
    "or IPv4-mapped ::ffff:0:0/96)"
)


def _optional_ipv6(value: object) -> str | None:
    """null, or one unicast IPv6 address (media.bind_address_v6, media.advertise_address_v6),
    in its compressed form (the form mediad answers with)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Bad(IPV6_ALLOWED)
    try:
        address = ipaddress.IPv6Address(value.strip())
    except ValueError:
        raise _Bad(IPV6_ALLOWED) from None
    if (
        address.is_unspecified
        or address.is_multicast
        or address.is_link_local
        or address.ipv4_mapped is not None
        or address.scope_id
    ):
        raise _Bad(IPV6_ALLOWED)
    return str(address)


def _null_or(inner: Callable[[object], T], allowed: str) -> Callable[[object], T | None]:
    def parse(value: object) -> T | None:
        if value is None:
            return None
        try:
            return inner(value)
        except _Bad:
            raise _Bad(allowed) from None

    return parse


def _loopback(host_port: str) -> bool:
    host = host_port.rsplit(":", 1)[0].strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
