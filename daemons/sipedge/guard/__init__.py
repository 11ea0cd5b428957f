"""Flood and scanner defence in front of the transaction layer (docs/security.md).

Per source address: a request rate limit with temporary bans (Kamailio's pike and an htable
of bans), trusted networks that are never limited, a list of scanner User-Agents banned at
once, and the optional silent drop of requests from unknown sources.

Public names: `GuardService` and its `Peers` Protocol (service.py, the glue sipd calls once per
datagram), `GuardRules`, `GuardSettings`, `Standing`, `DROP_REASONS`, `BAN_REASONS` (rules.py,
pure), `RateTable`, `BanTable`, `Ban` (tables.py, pure).

Dependency direction: guard/ imports sip/ (the message types), calls/ (`SourceTable` only),
config/ (types only) and the leaves; sipd wires it; nothing in sip/, calls/ or registrar/
imports guard/.
"""

from __future__ import annotations

from sipedge.guard.rules import (
    BAN_REASONS,
    DROP_REASONS,
    Decision,
    GuardRules,
    GuardSettings,
    Standing,
    source_key,
)
from sipedge.guard.service import GuardService, GuardStats, Peers
from sipedge.guard.tables import Ban, BanTable, RateTable

__all__ = [
    "BAN_REASONS",
    "DROP_REASONS",
    "Ban",
    "BanTable",
    "Decision",
    "GuardRules",
    "GuardService",
    "GuardSettings",
    "GuardStats",
    "Peers",
    "RateTable",
    "Standing",
    "source_key",
]
