"""The records every store backend keeps: plain dataclasses, no I/O.

Owns: `CallRecord` and `AttemptRecord` (one CDR and its attempts), `Binding` (one
registration of an endpoint account) and `RemoteBinding` (another edge's, read from a shared
database: docs/fleet.md).
Must not: import anything from sipedge but its leaves (`typedefs`, `entropy`), open files or
sockets. The records carry only trivial views of themselves (`duration`, `live`, `to_json`);
rules about them live with their users (`sipedge.calls`, `sipedge.registrar`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from sipedge.entropy import time_ordered_uuid
from sipedge.typedefs import Addr


@dataclass
class AttemptRecord:
    """One INVITE to one routing gateway (or its name's failed lookup: no INVITE then)."""

    gateway: str
    start: float
    end: float | None = None
    # What ended it: a SIP status ("503"), "timeout: invite|trying|ringing|session progress",
    # "cancelled", "answered" (for the winning attempt), "dns-failure: <name>: <error>".
    result: str = ""
    status: int | None = None
    # Why switching stopped after this attempt (the last attempt only), or "" if it went on.
    stop_reason: str = ""
    # Authentication toward the carrier (calls/carrier_auth.py): the gateway answered 401/407;
    # the digest algorithm our one answer used (None: not answered); why a challenge ended the
    # attempt ("rechallenged", "no_credentials", "realm_mismatch", "unsupported"), or "".
    challenged: bool = False
    auth_algorithm: str | None = None
    auth_failure: str = ""
    target: str = ""  # the address the INVITE went to, "host:port" ("" when none was sent)
    # Its first 18x/2xx (wall clock) and its PDD (first INVITE out to that, seconds): what
    # the fleet's carrier statistics read back from the CDRs (docs/monitoring.md).
    progress: float | None = None
    pdd: float | None = None


@dataclass
class CallRecord:
    call_id: str
    caller: str
    callee: str
    source: str
    mapping_gateway: str | None
    setup_time: float
    answer_time: float | None = None
    end_time: float = 0.0
    release_side: str = ""  # caller / callee / system
    cause: str = ""
    final_status: int = 0
    routing_gateway: str | None = None
    switch_stop_reason: str = ""
    attempts: list[AttemptRecord] = field(default_factory=list)
    # The CDR's idempotent key, made when the call is: a backend that may be handed the same
    # record twice (the PostgreSQL spool after a crash) keeps it once. In time order (UUID
    # version 7), so that the unique index on it grows at its end (`entropy`).
    uuid: str = field(default_factory=time_ordered_uuid)

    @property
    def duration(self) -> float:
        if self.answer_time is None:
            return 0.0
        return max(0.0, self.end_time - self.answer_time)


@dataclass
class Binding:
    account: str
    contact: str  # the Contact URI as registered (the Request-URI of calls to it)
    source: Addr  # where the REGISTER came from (the NAT's public side when behind NAT)
    nat: bool
    expires_at: float  # wall clock
    call_id: str
    cseq: int
    registered_at: float
    user_agent: str = ""

    def live(self, now: float) -> bool:
        return self.expires_at > now

    def to_json(self, now: float) -> dict[str, Any]:
        # not asdict(): `source` may be a transport Destination (over TCP or TLS, or a
        # REGISTER that came to another UDP listener, the IPv6 one say), which asdict cannot
        # rebuild
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        host = f"[{self.source[0]}]" if ":" in self.source[0] else self.source[0]
        out["source"] = f"{host}:{self.source[1]}"
        out["expires_in"] = max(0, round(self.expires_at - now))
        return out


@dataclass(frozen=True)
class RemoteBinding:
    """A live binding another edge of the fleet owns, with how to reach that edge: its fleet
    address (`fleet.address`, `fleet.port`) and when it last said it is alive (wall clock)."""

    node: str
    account: str
    contact: str
    expires_at: float
    registered_at: float
    node_host: str
    node_port: int
    node_seen_at: float
