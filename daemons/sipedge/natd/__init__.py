"""NAT keep-alives (sipedge-natd) and the link between sipd and natd.

natd sends ``SS_SIP_NAT_KEEP_ALIVE_MESSAGE`` to the registered devices behind NAT, from sipd's
own SIP socket, so the devices' NAT bindings stay open:

* `keepalive.py`: the schedule, pure (`KeepAliveSettings`, `plan_cycle`);
* `sender.py`: one cycle on the event loop (`run_cycle`, `NatdStats`);
* `daemon.py`: the daemon, its HTTP API and `main` (console script `sipedge-natd`);
* `link.py`: both ends of the sipd <-> natd unix socket (sipd serves it with `NatLinkServer`;
  natd asks with `fetch_socket`, `fetch_devices`).

Public names: `KeepAliveSettings`, `CyclePlan`, `plan_cycle`, `NatdStats`, `run_cycle`; and for
sipd's side of the link `NatLinkServer`, `link_path`, `sip_socket_fd`, `open_udp_retrying`.

Dependency direction: sipd and registrar/ import the link; natd/ imports sip/transport (the
link hands over sipd's UDP socket), config/ (daemon.py only) and appliance/; nothing in natd/
imports sipd, calls/ or registrar/. sipd does not need natd running.
"""

from __future__ import annotations

from sipedge.natd.keepalive import CyclePlan, KeepAliveSettings, plan_cycle
from sipedge.natd.link import NatLinkServer, link_path, open_udp_retrying, sip_socket_fd
from sipedge.natd.sender import NatdStats, run_cycle

__all__ = [
    "CyclePlan",
    "KeepAliveSettings",
    "NatLinkServer",
    "NatdStats",
    "link_path",
    "open_udp_retrying",
    "plan_cycle",
    "run_cycle",
    "sip_socket_fd",
]
