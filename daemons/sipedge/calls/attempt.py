"""Plain records of call control: what a call tries, where it stands, what the B2BUA counts.

Owns: `GatewayTarget` (a routing gateway as a call sees it; the registrar builds one for a
registered endpoint), `Attempt` (one INVITE to one gateway), `CallState` and `CallStats`.
Must not: send, arm timers, read the clock, or import a module of calls/ other than the pure
`switching` and `carrier_auth`. Every module of calls/ (and registrar/) may import it; it
imports none of them back.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from sipedge.calls.carrier_auth import ANSWERED, CarrierCredentials
from sipedge.calls.switching import AttemptTracker, StopReason, SwitchingPolicy
from sipedge.config import RoutingGateway
from sipedge.sip.dialog import Dialog
from sipedge.sip.message import Request
from sipedge.sip.timers import TimerHandle
from sipedge.sip.transaction import InviteClientTransaction
from sipedge.sip.transport.destination import destination_for
from sipedge.store import AttemptRecord
from sipedge.typedefs import Addr


@dataclass(frozen=True)
class GatewayTarget:
    """What a call needs of a routing gateway, frozen at the time the attempt starts."""

    name: str
    address: str
    port: int
    config: RoutingGateway
    request_uri: str = ""  # a registered endpoint's contact (else sip:callee@address:port)
    credentials: CarrierCredentials | None = None  # answers its 401/407 (carrier_auth.py)
    port_given: bool = True  # False: `address` is a name whose NAPTR/SRV give the port
    # a registered endpoint's flow (RFC 5626-lite): the TCP/TLS connection its REGISTER came
    # on, which every request of the attempt goes over (docs/transports.md)
    flow: Addr | None = None


class CallState(enum.Enum):
    SETUP = "setup"
    CONFIRMED = "confirmed"
    ENDED = "ended"


@dataclass
class Attempt:
    """One INVITE to one routing gateway, at one of its targets (the addresses its name
    resolved to, in the order to try them; `target_index` is this attempt's)."""

    index: int
    gateway: GatewayTarget
    policy: SwitchingPolicy
    tracker: AttemptTracker
    invite: Request
    record: AttemptRecord
    tx: InviteClientTransaction | None = None
    timer: TimerHandle | None = None
    abandoned: bool = False
    cancel_sent: bool = False
    dialog: Dialog | None = None  # set by a 2xx
    ack_bytes: bytes = b""  # our ACK for its 2xx, re-sent on each retransmitted 2xx
    provisional: bool = False
    retried_422: bool = False  # RFC 4028 section 7.1: one retry with the gateway's Min-SE
    targets: tuple[Addr, ...] = ()
    target_index: int = 0
    sent_at: float | None = None  # its first INVITE left (wall clock; carrier_events.py)
    progress_at: float | None = None  # its first 18x/2xx arrived: PDD ends

    @property
    def destination(self) -> Addr:
        """Where the attempt's requests go: where its INVITE went (RFC 3261 18.1.1 may have
        moved it to TCP), else a registered endpoint's flow, else its target (a gateway name's
        resolved address, or the gateway's address) over the gateway's transport (a
        Destination unless UDP)."""
        if self.tx is not None:
            return self.tx.destination
        gw = self.gateway
        if gw.flow is not None:
            return gw.flow
        host, port = self.targets[self.target_index] if self.targets else (gw.address, gw.port)
        return destination_for(gw.config.transport, host, port)

    @property
    def next_target(self) -> int | None:
        """The index of the gateway's next target, None when this was the last."""
        following = self.target_index + 1
        return following if following < len(self.targets) else None


@dataclass
class CallStats:
    calls: int = 0
    active: int = 0
    answered: int = 0
    failed: int = 0
    attempts: int = 0
    unresolved: int = 0  # attempts that failed on their gateway's name (no INVITE sent)
    late_answers: int = 0
    session_timer_ends: int = 0
    rejected: dict[int, int] = field(default_factory=dict)
    stop_reasons: dict[str, int] = field(default_factory=dict)
    challenges_answered: int = 0  # carriers' 401/407 answered with credentials
    challenges_failed: dict[str, int] = field(default_factory=dict)  # by carrier_auth refusal

    def count_stop(self, reason: StopReason) -> None:
        self.stop_reasons[reason.value] = self.stop_reasons.get(reason.value, 0) + 1

    def count_challenge(self, result: str) -> None:
        if result == ANSWERED:
            self.challenges_answered += 1
        else:
            self.challenges_failed[result] = self.challenges_failed.get(result, 0) + 1

    def count_reject(self, status: int) -> None:
        self.rejected[status] = self.rejected.get(status, 0) + 1
