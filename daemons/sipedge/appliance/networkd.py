"""Network config version 2 (the seed's) rendered as systemd-networkd files.

The subset an edge needs: `ethernets` (matched by `name` or `macaddress`, `set-name`,
`dhcp4`/`dhcp6`, static `addresses`, `gateway4`/`gateway6`, `routes` with `to`/`via`/`metric`,
`nameservers` with `addresses`/`search`, `mtu`) and `vlans` (`id`, `link`, and the same
address keys). One extension: `sipedge-media: true` on an interface marks it for the XDP fast
path (mediad attaches to the marked interfaces instead of `eth0`). Any other key is refused with
its place named: an appliance that half-applies a network config is worse than one that says
why it did not.

Owns: the rendering and its checks. Must not: write files or touch links (provision.py does).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from sipedge.appliance.seed import SeedError

IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
ADDRESS_KEYS = {"dhcp4", "dhcp6", "addresses", "gateway4", "gateway6", "routes", "nameservers",
                "mtu", "sipedge-media"}  # fmt: skip
MAX_INTERFACES = 32


@dataclass(frozen=True)
class Rendered:
    files: dict[str, str]  # file name under /etc/systemd/network -> its text
    media_interfaces: tuple[str, ...]  # names of the interfaces marked sipedge-media


def _ip(where: str, value: Any, interface: bool) -> str:
    try:
        if interface:
            return str(ipaddress.ip_interface(str(value)))
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise SeedError(
            f"{where}: {value!r} is not an IP {'prefix' if interface else 'address'}"
        ) from None


def _bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SeedError(f"{where}: true or false expected")
    return value


def _network_section(where: str, spec: dict[str, Any]) -> list[str]:
    lines = ["[Network]"]
    dhcp4 = _bool(f"{where}.dhcp4", spec.get("dhcp4", False))
    dhcp6 = _bool(f"{where}.dhcp6", spec.get("dhcp6", False))
    lines.append(
        f"DHCP={'yes' if dhcp4 and dhcp6 else 'ipv4' if dhcp4 else 'ipv6' if dhcp6 else 'no'}"
    )
    if not dhcp6:
        lines.append("IPv6AcceptRA=no")  # a static edge does not take addresses from the wire
    addresses = spec.get("addresses", [])
    if not isinstance(addresses, list) or len(addresses) > 64:
        raise SeedError(f"{where}.addresses: a list is expected")
    lines += [f"Address={_ip(f'{where}.addresses[{i}]', a, True)}" for i, a in enumerate(addresses)]
    for key in ("gateway4", "gateway6"):
        if spec.get(key) is not None:
            lines.append(f"Gateway={_ip(f'{where}.{key}', spec[key], False)}")
    ns = spec.get("nameservers") or {}
    if not isinstance(ns, dict) or set(ns) - {"addresses", "search"}:
        raise SeedError(f"{where}.nameservers: a mapping of addresses and search expected")
    for i, a in enumerate(ns.get("addresses") or []):
        lines.append(f"DNS={_ip(f'{where}.nameservers.addresses[{i}]', a, False)}")
    search = ns.get("search") or []
    if search:
        if not isinstance(search, list) or not all(
            isinstance(d, str) and re.fullmatch(r"[A-Za-z0-9.-]{1,253}", d) for d in search
        ):
            raise SeedError(f"{where}.nameservers.search: a list of domain names expected")
        lines.append("Domains=" + " ".join(search))
    routes = spec.get("routes") or []
    if not isinstance(routes, list) or len(routes) > 64:
        raise SeedError(f"{where}.routes: a list is expected")
    for i, r in enumerate(routes):
        if not isinstance(r, dict) or set(r) - {"to", "via", "metric"} or "to" not in r:
            raise SeedError(f"{where}.routes[{i}]: to, via and metric are read")
        to = "0.0.0.0/0" if r["to"] == "default" else _ip(f"{where}.routes[{i}].to", r["to"], True)
        lines += ["", "[Route]", f"Destination={to}"]
        if r.get("via") is not None:
            lines.append(f"Gateway={_ip(f'{where}.routes[{i}].via', r['via'], False)}")
        if r.get("metric") is not None:
            if not isinstance(r["metric"], int) or not 0 <= r["metric"] <= 0xFFFFFFFF:
                raise SeedError(f"{where}.routes[{i}].metric: a number expected")
            lines.append(f"Metric={r['metric']}")
    return lines


def _link_section(where: str, spec: dict[str, Any]) -> list[str]:
    if spec.get("mtu") is None:
        return []
    mtu = spec["mtu"]
    if not isinstance(mtu, int) or not 576 <= mtu <= 9216:
        raise SeedError(f"{where}.mtu: 576 to 9216 expected")
    return ["[Link]", f"MTUBytes={mtu}", ""]


def render(config: dict[str, Any]) -> Rendered:
    """Files for /etc/systemd/network from a network config v2 mapping."""
    unknown = set(config) - {"version", "ethernets", "vlans", "renderer"}
    if unknown:
        raise SeedError(f"network-config: unsupported keys {sorted(unknown)}")
    ethernets = config.get("ethernets") or {}
    vlans = config.get("vlans") or {}
    if not isinstance(ethernets, dict) or not isinstance(vlans, dict):
        raise SeedError("network-config: ethernets and vlans are mappings")
    if len(ethernets) + len(vlans) > MAX_INTERFACES:
        raise SeedError(f"network-config: more than {MAX_INTERFACES} interfaces")
    files: dict[str, str] = {}
    media: list[str] = []
    names: dict[str, str] = {}  # config id -> interface name
    vlans_of: dict[str, list[str]] = {}
    for vid, vspec in vlans.items():
        if isinstance(vspec, dict) and isinstance(vspec.get("link"), str):
            vlans_of.setdefault(vspec["link"], []).append(str(vid))
    for n, (eid, spec) in enumerate(sorted(ethernets.items())):
        where = f"network-config ethernets.{eid}"
        if not isinstance(spec, dict):
            raise SeedError(f"{where}: a mapping is expected")
        extra = set(spec) - ADDRESS_KEYS - {"match", "set-name"}
        if extra:
            raise SeedError(f"{where}: unsupported keys {sorted(extra)}")
        match = spec.get("match") or {}
        if not isinstance(match, dict) or set(match) - {"name", "macaddress"}:
            raise SeedError(f"{where}.match: name and macaddress are read")
        name = spec.get("set-name") or match.get("name") or str(eid)
        if not IFNAME.match(str(name)) or ("*" in str(name)):
            raise SeedError(f"{where}: {name!r} is not an interface name")
        names[str(eid)] = str(name)
        head = ["[Match]"]
        if match.get("macaddress") is not None:
            if not MAC.match(str(match["macaddress"])):
                raise SeedError(f"{where}.match.macaddress: not a MAC address")
            head.append(f"MACAddress={str(match['macaddress']).lower()}")
        else:
            head.append(f"Name={match.get('name', eid)}")
        head.append("")
        if spec.get("set-name"):
            if match.get("macaddress") is None:
                raise SeedError(f"{where}.set-name: needs match.macaddress")
            files[f"10-sipedge-{name}.link"] = "\n".join([*head, "[Link]", f"Name={name}", ""])
            head = ["[Match]", f"Name={name}", ""]
        body = _network_section(where, spec)
        body += [f"VLAN={v}" for v in sorted(vlans_of.get(str(eid), []))]
        files[f"{20 + n:02d}-sipedge-{name}.network"] = "\n".join(
            [*head, *_link_section(where, spec), *body, ""]
        )
        if _bool(f"{where}.sipedge-media", spec.get("sipedge-media", False)):
            media.append(str(name))
    for vid, spec in sorted(vlans.items()):
        where = f"network-config vlans.{vid}"
        if not isinstance(spec, dict) or set(spec) - ADDRESS_KEYS - {"id", "link"}:
            raise SeedError(f"{where}: id, link and address keys are read")
        if not IFNAME.match(str(vid)):
            raise SeedError(f"{where}: {vid!r} is not an interface name")
        tag = spec.get("id")
        if not isinstance(tag, int) or not 1 <= tag <= 4094:
            raise SeedError(f"{where}.id: 1 to 4094 expected")
        if spec.get("link") not in names:
            raise SeedError(f"{where}.link: {spec.get('link')!r} is not one of the ethernets")
        files[f"15-sipedge-{vid}.netdev"] = "\n".join(
            ["[NetDev]", f"Name={vid}", "Kind=vlan", "", "[VLAN]", f"Id={tag}", ""]
        )
        body = _network_section(where, spec)
        files[f"60-sipedge-{vid}.network"] = "\n".join(
            ["[Match]", f"Name={vid}", "", *_link_section(where, spec), *body, ""]
        )
        if _bool(f"{where}.sipedge-media", spec.get("sipedge-media", False)):
            media.append(str(vid))
    return Rendered(files, tuple(media))
