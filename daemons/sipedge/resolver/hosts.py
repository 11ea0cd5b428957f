"""The hosts file, read the way the C library reads it (hosts(5)): names to IPv4 addresses.

dnspython asks DNS servers only, so names such as ``localhost`` that live in ``/etc/hosts``
are looked up here first. We read the file ourselves rather than ask ``getaddrinfo`` (in a
thread) for every name: getaddrinfo would go on to the system's DNS servers for a name the file
lacks, bypassing ``sip.dns_servers``, our timeout and our TTL cache, and tie up a worker thread
per lookup; reading a small file at start and on reload costs nothing per call.

Owns: `parse_hosts` (text in, names to addresses out) and `LOCALHOST`, the loopback answer for
``localhost`` and ``*.localhost`` when the file does not list them (RFC 6761 6.3).
Must not: open files (`client.py` reads it), query DNS, or import anything of sipedge.
"""

from __future__ import annotations

import ipaddress

__all__ = ["LOCALHOST", "hosts_lookup", "parse_hosts"]

LOCALHOST = ("127.0.0.1",)


def parse_hosts(text: str, ipv6: bool = False) -> dict[str, tuple[str, ...]]:
    """Lower-case names (and aliases) to their addresses, in file order, IPv4 before IPv6.
    IPv6 lines are skipped unless `ipv6` (sipd has an IPv6 listener, docs/ipv6.md)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        try:
            address = ipaddress.ip_address(fields[0])
        except ValueError:
            continue
        if address.version != 4 and not ipv6:
            continue
        for name in fields[1:]:
            addresses = found.setdefault(name.lower().rstrip("."), [])
            if str(address) not in addresses:
                addresses.append(str(address))
    return {name: tuple(sorted(a, key=lambda x: ":" in x)) for name, a in found.items()}


def hosts_lookup(hosts: dict[str, tuple[str, ...]], name: str) -> tuple[str, ...] | None:
    """The addresses of `name` in the hosts file; loopback for ``localhost`` (RFC 6761)."""
    key = name.lower().rstrip(".")
    known = hosts.get(key)
    if known:
        return known
    if key == "localhost" or key.endswith(".localhost"):
        return LOCALHOST
    return None
