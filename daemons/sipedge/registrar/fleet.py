"""Shared registrations: which edge of the fleet a call to an account goes through when this
edge has no binding of it (docs/fleet.md). Pure: the rows, the time and the trust come in as
arguments.

The rules, in order, for the other edges' bindings of one account (`choose`):

1. an expired binding is skipped (`expired`);
2. a binding whose edge has not said it is alive for `node_timeout` seconds is skipped
   (`node_down`): that edge is down or cut off, and the phone's NAT binding is with it;
3. a binding whose edge's address is not one of this edge's `fleet.peers` (or whose port is
   no port) is skipped (`not_peer`): a row in the shared database must not be able to send
   calls anywhere else;
4. of the rest, the binding registered last wins (the device the phone registered most
   recently, as `SS_ENDPOINT_REGISTER_REPLACE` does on one edge).

A call relayed to us by a peer is never relayed again (`relay_allowed`): one hop, no loops.

Owns: `choose`, `Choice`, `relay_uri`, `relay_allowed`, `FLEET_PREFIX` and the names of
the outcomes (`OUTCOMES`, the labels of `sipedge_fleet_routes_total`).
Must not: read the clock, the database or the config, or send anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sipedge.store import RemoteBinding

FLEET_PREFIX = "fleet:"  # the mapping name of a call a peer edge relayed to us: fleet:<its IP>

# what a call to an account found: its binding here, another edge's (relayed), none live,
# or only bindings of edges that are down or not peers; and calls peers relayed to us
OUTCOMES = ("local", "relayed", "not_registered", "node_down", "not_peer", "relayed_in")


@dataclass(frozen=True)
class Choice:
    binding: RemoteBinding | None
    outcome: str  # "relayed" when `binding` is set, else why none: OUTCOMES


def choose(
    rows: Sequence[RemoteBinding],
    now: float,
    node_timeout: float,
    is_peer: Callable[[str], bool],
) -> Choice:
    """The other edge's binding a call goes through, or why there is none."""
    best: RemoteBinding | None = None
    why = "not_registered"
    for row in rows:
        if row.expires_at <= now:
            continue
        if now - row.node_seen_at > node_timeout:
            why = "node_down" if why == "not_registered" else why
            continue
        if not (0 < row.node_port < 65536 and is_peer(row.node_host)):
            why = "not_peer"
            continue
        if best is None or row.registered_at > best.registered_at:
            best = row
    if best is None:
        return Choice(None, why)
    return Choice(best, "relayed")


def relay_uri(account: str, binding: RemoteBinding) -> str:
    """The Request-URI of the INVITE to the owning edge: the account at that edge's fleet
    address (it looks the account up in its own bindings)."""
    host = binding.node_host
    if ":" in host:
        host = f"[{host}]"
    return f"sip:{account}@{host}:{binding.node_port}"


def relay_allowed(mapping: str | None) -> bool:
    """A call may go on to another edge unless a peer relayed it to us."""
    return not (mapping or "").startswith(FLEET_PREFIX)
