"""Call control: the B2BUA, its calls, and the rules they follow (docs/call-control.md).

A new INVITE is admitted and routed by `service.B2BUA`; each call (`call.Call`) tries the
routing gateways one after the other as `switching` decides, anchors its media at mediad
(`media_link`), keeps both legs' session timers (`refresh`) and forwards in-dialog requests
between its legs (`in_dialog`).

Modules, from the leaves up (a module imports only those above it in this list):

* pure, no I/O: `routing` (prefix and source tables), `switching` (gateway switching),
  `capacity` (call limits: calls in progress, calls per second per mapping gateway),
  `identity` (caller identity and privacy), `session_timer` (RFC 4028 negotiation),
  `media_policy` (SDP refused before anchoring: refused c= networks, stream cap),
  `carrier_auth` (whether a routing gateway's 401/407 is answered, and with what);
* reporting: `carrier_events` (the `CarrierEvents` Protocol the carrier statistics implement,
  and the reasons they count);
* plain records: `attempt` (GatewayTarget, Attempt, CallState, CallStats),
  `media_session` (leg names, relay sessions, watch settings), `media_metrics` (counters);
* glue: `watchdog` (RTP timeout, maximum duration), `media_reconcile` (orphans and keep-alive
  at mediad), `media_service` (the B2BUA's mediad client, counters, hold-off), `media_queue`
  (one call's mediad work in SIP order) <- `media_link` (a call's media at mediad) ;
  `refresh` (session timers) <- `in_dialog` (forwarding) <- `call` <- `service`;
  `mapping_auth` (mapping gateways' digest: the decision and the 407/403) <- `service`.

A call owns its helpers (`CallMedia`, `LegTimers`, `Forwarder`); they reach it back through a
weak reference, so that a finished call is freed by reference counting alone (no cycle for the
garbage collector to find; tests/unit/test_call_garbage.py).

A module that reports back to its owner declares what it needs as a Protocol and the owner
implements it: `media_link.MediaEvents`, `watchdog.WatchedMedia`, `refresh.TimedCall` /
`RefreshHost`, `in_dialog.ForwardingCall` / `ForwardingHost`, `call.CallHost`,
`carrier_events.CarrierEvents` (implemented by `sipedge.stats.CarrierStats`) and
`service.EndpointHooks` (implemented by `registrar.EndpointService`).

Dependency direction: calls/ may import sip/, store/, config/ and media's client; nothing in
sip/, store/ or media/ imports calls/. registrar/ and uplinks/ may import calls/ (its records,
pure modules and the names below), and guard/ its `SourceTable`; calls/ never imports
registrar/, uplinks/ or guard/. Modules inside
calls/ import each other by module path, never through this package.

Public names: `B2BUA`, `EndpointHooks`, `Call`, `CallStats`, `GatewayTarget`, `MediaBackend`,
`MediaService`, `media_metrics`, `SourceTable`, `SwitchingPolicy`, `effective_policy`,
`switching_policy`, `ua_privacy_header`, `MAPPING_PASSWORD`.
"""

from sipedge.calls.attempt import CallStats, GatewayTarget
from sipedge.calls.call import Call
from sipedge.calls.identity import ua_privacy_header
from sipedge.calls.mapping_auth import MAPPING_PASSWORD
from sipedge.calls.media_link import MediaBackend, media_metrics
from sipedge.calls.media_service import MediaService
from sipedge.calls.routing import SourceTable
from sipedge.calls.service import B2BUA, EndpointHooks, switching_policy
from sipedge.calls.switching import SwitchingPolicy, effective_policy

__all__ = [
    "B2BUA",
    "MAPPING_PASSWORD",
    "Call",
    "CallStats",
    "EndpointHooks",
    "GatewayTarget",
    "MediaBackend",
    "MediaService",
    "SourceTable",
    "SwitchingPolicy",
    "effective_policy",
    "media_metrics",
    "switching_policy",
    "ua_privacy_header",
]
