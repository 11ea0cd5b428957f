"""Call routing lookups, built once per configuration and used on every new call.

`RouteTable`: dialled-number prefix -> ordered routing gateways. The longest prefix that
matches wins; the empty prefix matches every number. The number is matched as given and also
with one leading ``+`` stripped (so ``+4420...`` finds a route written ``44``); the longest
matching prefix of either form wins, and on equal length the number as given wins. Nothing else
is normalised. A lookup costs one dict probe per distinct prefix length (two for ``+``
numbers), whatever the number of routes.

`SourceTable`: source address -> mapping gateway. Of all networks containing the address the
most specific (longest prefix length) wins; when two mapping gateways list the same network
the first listed wins. IPv4-mapped IPv6 addresses (``::ffff:192.0.2.1``, as a dual-stack socket
reports them) are looked up as the IPv4 address. A lookup costs one dict probe per distinct
prefix length of the address family.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

__all__ = ["RouteTable", "SourceTable", "longest_prefix_route", "match_source"]

Network = IPv4Network | IPv6Network


class RouteTable:
    """Longest-prefix routing of dialled numbers to routing gateway names."""

    __slots__ = ("_by_prefix", "_lengths")

    def __init__(self, routes: Sequence[tuple[str, Sequence[str]]]) -> None:
        by_prefix: dict[str, tuple[str, ...]] = {}
        for prefix, gateways in routes:
            if prefix in by_prefix:
                raise ValueError(f"route prefix {prefix!r} is listed twice")
            if isinstance(gateways, str):
                raise TypeError(f"route {prefix!r}: gateways must be a list of names, not a str")
            by_prefix[prefix] = tuple(gateways)
        self._by_prefix = by_prefix
        self._lengths = tuple(sorted({len(p) for p in by_prefix}, reverse=True))

    def __len__(self) -> int:
        return len(self._by_prefix)

    def lookup(self, number: str) -> tuple[str, ...] | None:
        """The gateways of the longest matching prefix, or None when no route matches."""
        by_prefix = self._by_prefix
        stripped = number[1:] if number.startswith("+") else None
        for length in self._lengths:
            if length <= len(number):
                found = by_prefix.get(number[:length])
                if found is not None:
                    return found
            if stripped is not None and length <= len(stripped):
                found = by_prefix.get(stripped[:length])
                if found is not None:
                    return found
        return None


def longest_prefix_route(
    routes: Sequence[tuple[str, Sequence[str]]], number: str
) -> tuple[str, ...] | None:
    """One-off `RouteTable` lookup (build the table once when routing many calls)."""
    return RouteTable(routes).lookup(number)


SOURCE_ANSWERS = 4096  # sources whose mapping gateway `SourceTable` keeps at most


class SourceTable:
    """Most-specific-network matching of a source address to a mapping gateway name."""

    __slots__ = ("_answers", "_v4", "_v6")

    def __init__(self, networks: Sequence[tuple[str, Sequence[Network | str]]]) -> None:
        # per family: [(prefixlen, {network address as int: gateway name})], longest first
        v4: dict[int, dict[int, str]] = {}
        v6: dict[int, dict[int, str]] = {}
        for name, nets in networks:
            if isinstance(nets, str):
                raise TypeError(f"mapping gateway {name!r}: networks must be a list, not a str")
            for net in nets:
                network = ip_network(net) if isinstance(net, str) else net
                table = v4 if network.version == 4 else v6
                by_addr = table.setdefault(network.prefixlen, {})
                by_addr.setdefault(int(network.network_address), name)
        self._v4 = _levels(v4, 32)
        self._v6 = _levels(v6, 128)
        # Every INVITE asks this of its source, mostly the same few carriers: answers are kept
        # (parsing the address was most of the cost); a table is rebuilt on reload, and a
        # flood of new sources only refills the bounded dict.
        self._answers: dict[str, str] = {}  # source -> its mapping gateway, "" for none

    def lookup(self, ip: str) -> str | None:
        """The mapping gateway whose most specific network holds ``ip`` (None: none, or not an
        address)."""
        answers = self._answers
        name = answers.get(ip)  # one dict lookup for a known source, the common case
        if name is None:
            if len(answers) >= SOURCE_ANSWERS:
                answers.clear()
            name = answers[ip] = self._lookup(ip) or ""
        return name or None

    def _lookup(self, ip: str) -> str | None:
        try:
            address: IPv4Address | IPv6Address = ip_address(ip.split("%", 1)[0])
        except ValueError:
            return None
        if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        levels = self._v4 if address.version == 4 else self._v6
        value = int(address)
        for mask, by_addr in levels:
            name = by_addr.get(value & mask)
            if name is not None:
                return name
        return None


def _levels(table: dict[int, dict[int, str]], bits: int) -> tuple[tuple[int, dict[int, str]], ...]:
    full = (1 << bits) - 1
    return tuple(
        (full ^ ((1 << (bits - prefixlen)) - 1), table[prefixlen])
        for prefixlen in sorted(table, reverse=True)
    )


def match_source(networks: Sequence[tuple[str, Sequence[Network | str]]], ip: str) -> str | None:
    """One-off `SourceTable` lookup (build the table once when matching many calls)."""
    return SourceTable(networks).lookup(ip)
