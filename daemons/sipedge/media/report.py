"""What `query` and `delete` answer about one leg: userspace and XDP counters added up.

Owns: the shape of a leg in the ng answers. Must not: read BPF maps or sockets (the daemon
passes the XDP counters it read), or change a session.
"""

from __future__ import annotations

from typing import Any

from sipedge.media.crypto import MODE_NAMES
from sipedge.media.session import FOREIGN, UNLEARNED, Leg
from sipedge.media.xdp import Stats


def leg_info(leg: Leg, rtp_x: Stats | None, rtcp_x: Stats | None) -> dict[str, Any]:
    """One leg: `rtp_x`/`rtcp_x` are its ports' XDP counters (None off the XDP path)."""
    packets = leg.rtp.packets + (rtp_x.packets if rtp_x else 0)
    last = max(leg.rtp.last_seen, rtp_x.last_seen if rtp_x else 0.0)
    xdp_foreign = (rtp_x.dropped if rtp_x else 0) + (rtcp_x.dropped if rtcp_x else 0)
    remote = leg.remote
    return {
        "tag": leg.tag,
        "local-port": leg.port,
        "local-rtcp-port": leg.rtcp_port,
        "remote-address": remote[0] if remote else None,
        "remote-port": remote[1] if remote else None,
        "latched": leg.latched,
        "latched-address": _where(leg.rtp_peer),
        "signal-address": leg.signal,
        "relay-family": f"IP{leg.af}",
        "dropped": {
            FOREIGN: leg.dropped[FOREIGN] + xdp_foreign,
            UNLEARNED: leg.dropped[UNLEARNED],
        },
        "encryption": MODE_NAMES[leg.transform.mode],
        "packets": packets,
        "bytes": leg.rtp.bytes + (rtp_x.bytes if rtp_x else 0),
        "last-packet": last or None,
        "rtp-started": packets > 0,
        "packets-xdp": rtp_x.packets if rtp_x else 0,
        "packets-userspace": leg.rtp.packets,
        "rtcp-packets": leg.rtcp.packets + (rtcp_x.packets if rtcp_x else 0),
        "rtcp-bytes": leg.rtcp.bytes + (rtcp_x.bytes if rtcp_x else 0),
    }


def _where(addr: tuple[str, int] | None) -> str | None:
    """ "ip:port", IPv6 in brackets."""
    if addr is None:
        return None
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"
