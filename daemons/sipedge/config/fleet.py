"""The `fleet:` section: shared registrations across the edges of a fleet (docs/fleet.md).

Owns: `fleet_section`, which builds `FleetConfig` with the collector, and the checks of the
section's own keys (an address needs peers). The checks against other sections (a fleet needs
`storage.backend: postgresql` and a UDP listener) are the loader's cross-checks.
Must not: connect anywhere, or import anything from sipedge outside config/.
"""

from __future__ import annotations

import ipaddress

from sipedge.config.collector import _Collector
from sipedge.config.errors import _Bad
from sipedge.config.schema import FleetConfig
from sipedge.config.values import _integer, _number

_FLEET_KEYS = ("address", "port", "peers", "node_timeout")
FLEET_ADDRESS_ALLOWED = "null (no fleet) or one unicast IP address of this edge"


def _fleet_address(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Bad(FLEET_ADDRESS_ALLOWED)
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        raise _Bad(FLEET_ADDRESS_ALLOWED) from None
    if address.is_unspecified or address.is_multicast:
        raise _Bad(FLEET_ADDRESS_ALLOWED)
    return str(address)


def _optional_port(value: object) -> int | None:
    return None if value is None else _integer(1, 65535, "null or 1-65535")(value)


def fleet_section(c: _Collector, raw: object) -> FleetConfig:
    data = c.mapping("fleet", raw, _FLEET_KEYS)
    d = FleetConfig()
    peers = c.networks("fleet.peers", data.get("peers"))
    fleet = FleetConfig(
        address=c.get("fleet", data, "address", _fleet_address, d.address),
        port=c.get("fleet", data, "port", _optional_port, d.port),
        peers=peers,
        node_timeout=c.get("fleet", data, "node_timeout", _number(3, 3600), d.node_timeout),
    )
    if fleet.enabled and not peers and not any(p.path.startswith("fleet.") for p in c.problems):
        c.problem("fleet.peers", [], "the other edges' addresses: fleet.address is set")
    return fleet
