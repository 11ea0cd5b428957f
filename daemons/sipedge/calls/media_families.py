"""Which relay address families mediad has, as sipd knows it (docs/ipv6.md).

Learnt from mediad's `ping` (its `families`: IP4, and IP6 with media.bind_address_v6), asked
at start and then every FAMILY_POLL seconds (every UNKNOWN_POLL while not known, so a mediad
that starts after sipd, or restarts with another config, is seen within seconds), and from an
`address-family-unavailable` answer to any offer or answer. Not known (mediad unreachable
since sipd started, or too old to say) refuses nobody: those calls go on as before.

Owns: `watch_families` (the poll), `family_lost`, `caller_refusal` (the check a call makes when
it arrives, `media_policy.family_refusal` on what is known). Must not: send SIP, decide what is
refused (media_policy does), or import media_link.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sipedge.calls.media_metrics import MediaStats
from sipedge.calls.media_policy import MEDIA_FAMILY_UNAVAILABLE, MediaRefusal, family_refusal
from sipedge.media.client import MediaError
from sipedge.sip.sdp import SdpError, is_sdp, parse

log = logging.getLogger(__name__)
FAMILY_POLL = 30.0  # mediad's families known: asked again this often (a restart may change them)
UNKNOWN_POLL = 1.0  # not known yet (mediad not up): asked this often

__all__ = ["FAMILY_POLL", "caller_refusal", "family_lost", "watch_families"]


async def watch_families(
    stats: MediaStats,
    ask: Callable[[], Awaitable[frozenset[str] | None]],
    answered: Callable[[], None],
) -> None:
    """Keep `stats.relay_families` what mediad says (runs until cancelled). `ask` goes to
    mediad directly, not through `MediaService.request`: a ping failing while mediad is down
    must not hold calls off (UNREACHABLE_HOLD_OFF); `answered` says mediad is reachable."""
    while True:
        try:
            stats.relay_families = await ask()
            answered()
        except MediaError:
            pass  # unreachable: what was known stays until mediad answers again
        await asyncio.sleep(FAMILY_POLL if stats.relay_families is not None else UNKNOWN_POLL)


def family_lost(stats: MediaStats, family: str) -> None:
    """mediad answered `address-family-unavailable` for `family` (an IPv4 relay is assumed
    when nothing was known: mediad always has one)."""
    known = stats.relay_families if stats.relay_families is not None else frozenset({"IP4"})
    stats.relay_families = known - {family}


def caller_refusal(
    stats: MediaStats, call_id: str, caller_family: str, body: bytes, content_type: str | None
) -> MediaRefusal | None:
    """Why a new call's caller cannot be anchored (a family mediad has no relay address of),
    counted in `refused` and logged; None: go on (also when mediad's families are not known)."""
    if stats.relay_families is None:
        return None
    sdp = None
    if is_sdp(content_type, body):
        try:
            sdp = parse(body)
        except SdpError:
            pass  # the caller's family alone; the offer counts it as bad-sdp
    refusal = family_refusal(caller_family, sdp, stats.relay_families)
    if refusal is not None:
        stats.count(stats.refused, MEDIA_FAMILY_UNAVAILABLE)
        log.warning("call %s: caller refused: %s", call_id, refusal.detail)
    return refusal
