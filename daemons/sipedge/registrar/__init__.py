"""The registrar: phones and PBXs register to us, call from us and are called through us.

* `rules.py`: bindings, expiry, NAT detection, replace, brute-force suspension; pure (the time
  comes in as an argument, no sockets, no storage);
* `service.py`: `EndpointService`, the registrar on SIP (REGISTER with digest), INVITEs from
  endpoints (407) and calls to endpoints; it implements `sipedge.calls.EndpointHooks`, which
  the B2BUA calls;
* `component.py`: `RegistrarComponent`, what sipd starts, reloads and stops: the endpoint
  service, the outbound registrations (uplinks/), the binding store and the natd link, with
  their API routes and metrics.

Public names: `RegistrarComponent`, `EndpointService`, `RegistrarStats`.

Dependency direction: registrar/ imports calls/ (its public names: `GatewayTarget`,
`SwitchingPolicy`, `effective_policy`, `B2BUA` for typing), sip/, store/, config/, uplinks/ and
natd's link; nothing in calls/, sip/, store/, uplinks/ or natd/ imports registrar/. Modules
inside registrar/ import each other by module path, never through this package.
"""

from sipedge.registrar.component import RegistrarComponent
from sipedge.registrar.service import EndpointService, RegistrarStats

__all__ = ["EndpointService", "RegistrarComponent", "RegistrarStats"]
