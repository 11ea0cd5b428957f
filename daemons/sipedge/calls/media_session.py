"""The relay side of a call as plain data: leg names, per-leg encryption, one attempt's session.

Owns: the leg tags `CALLER` / `CALLEE` used toward mediad, `LegCrypto`, `WatchSettings` (RTP
timeout, maximum duration, RTP-start polling) and `Session` (what mediad holds for one attempt).
Must not: talk to mediad, arm timers, or import another module of calls/. `media_link` fills
these records and `watchdog` reads them; neither is imported here.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from sipedge.sip.sdp import RelayEndpoint

CALLER = "caller"
CALLEE = "callee"


def other(leg: str) -> str:
    return CALLEE if leg == CALLER else CALLER


@dataclass(frozen=True)
class LegCrypto:
    encrypted: bool = False
    mode: int = 0
    key: str = ""


@dataclass(frozen=True)
class WatchSettings:
    rtp_timeout: float | None = 60.0  # None: off
    max_call_duration: float | None = None  # None: no limit
    rtp_start_poll: float = 0.25  # seconds between "RTP started?" queries during setup


@dataclass
class Session:
    """The relay side of one attempt (all its streams)."""

    key: str  # the attempt's Call-ID: mediad call-ids are `<key>/<stream>`
    crypto: dict[str, LegCrypto]
    relay_for: dict[str, dict[int, RelayEndpoint]] = field(
        default_factory=lambda: {CALLER: {}, CALLEE: {}}
    )  # where peer X must send stream i
    streams: set[int] = field(default_factory=set)  # created at mediad
    offer_from: str | None = None  # leg whose offer awaits its final answer
    hold: dict[str, bool] = field(default_factory=lambda: {CALLER: False, CALLEE: False})
    sdp_changed: float = field(default_factory=time.time)  # wall clock of the last SDP
    deleted: bool = False
    rtp_watch: asyncio.Task[Any] | None = None
    # per leg: the source IP of the SIP message that carried its SDP (mediad "signal-address",
    # a latching candidate); IPv4 only, None when unknown
    signal: dict[str, str | None] = field(default_factory=lambda: {CALLER: None, CALLEE: None})
    # per leg: the address family its party speaks (IP4 / IP6), so the SDP it receives carries
    # a relay address it can reach (mediad's "address-family", docs/ipv6.md)
    family: dict[str, str] = field(default_factory=lambda: {CALLER: "IP4", CALLEE: "IP4"})

    def mediad_id(self, stream: int) -> str:
        return f"{self.key}/{stream}"

    @property
    def on_hold(self) -> bool:
        return any(self.hold.values())
