"""Gateway names to addresses (RFC 3263 over UDP), without blocking the event loop.

* `targets`: pure: the RFC 3263 steps (`Lookup`), RFC 2782 SRV order (`srv_order`), NAPTR
  selection, the records and results (`Resolution`, `Targets`) and their TTLs;
* `cache`: pure: `TtlCache`, bounded, entries expire after their own TTL;
* `hosts`: pure: the hosts file's names (`parse_hosts`), ``localhost`` (RFC 6761);
* `client`: I/O: `DnsResolver` (dnspython's asyncio resolver, the hosts file, the cache, the
  addresses of gateway names for the guard, the ``sipedge_dns_*`` metrics), `DnsSettings`.

Public names: `DnsResolver`, `DnsSettings`, `DnsStats`, `Targets`, `Resolution`, `srv_order`,
`is_literal`.

Dependency direction: a leaf beside sip/ and store/: imports only `typedefs` (and dnspython);
calls/ and uplinks/ import its records; sipd builds the `DnsResolver` from the config.
"""

from __future__ import annotations

from sipedge.resolver.client import DnsResolver, DnsSettings, DnsStats
from sipedge.resolver.targets import Resolution, Targets, is_literal, srv_order

__all__ = [
    "DnsResolver",
    "DnsSettings",
    "DnsStats",
    "Resolution",
    "Targets",
    "is_literal",
    "srv_order",
]
