"""Our registrations to carriers: sipd registers as a user agent (`registrations:`).

* `machine.py`: `RegistrationMachine`, pure (events in, a `Step` out; no sockets, no clock);
* `client.py`: the asyncio driver (`OutboundRegistration` per entry, `RegistrationManager`
  for all of them, through the transaction layer).

Public names: `RegistrationManager`, `OutboundRegistration`, `RegistrationStats`,
`RegistrationMachine`, `RegState`, `Send`, `Step`, `ResponseInfo`, `asked_expires`,
`response_info`.

Dependency direction: registrar/ (its component and endpoint service) imports uplinks/;
uplinks/ imports sip/ and `calls.identity` (the Privacy header), never registrar/, sipd or
config/ at run time.
"""

from __future__ import annotations

from sipedge.uplinks.client import OutboundRegistration, RegistrationManager, RegistrationStats
from sipedge.uplinks.machine import (
    RegistrationMachine,
    RegState,
    ResponseInfo,
    Send,
    Step,
    asked_expires,
    response_info,
)

__all__ = [
    "OutboundRegistration",
    "RegState",
    "RegistrationMachine",
    "RegistrationManager",
    "RegistrationStats",
    "ResponseInfo",
    "Send",
    "Step",
    "asked_expires",
    "response_info",
]
