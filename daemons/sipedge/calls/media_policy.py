"""What sipd refuses in an SDP before it asks mediad to anchor it.

Two rules, checked on every SDP offer and answer that would be anchored:

* **Refused connection addresses.** The effective `c=` of every active stream (its own, else
  the session-level one) must not lie in `media.refused_networks` (by default "this network",
  loopback, link-local, multicast, reserved; their IPv6 counterparts: loopback, link-local,
  multicast, IPv4-mapped `::ffff:0:0/96`, discard-only `100::/64`). Otherwise a peer could
  point the relay at the box itself or at internal hosts. An IPv4-mapped IPv6 address is also
  checked as the IPv4 address it maps (when the operator takes `::ffff:0:0/96` off the list).
  An address that is not an IP address of its `c=` type (a host name, garbage, `IP4` with an
  IPv6 literal) is refused too: the relay only takes
  literal addresses, and what we cannot check we do not forward. The hold address (`0.0.0.0`,
  `::`) is not a destination and is never refused.
* **Stream cap.** More active `m=` lines (port not 0) than `media.max_streams_per_call` is
  refused: each one costs a relay port pair.

A third rule, checked once when a call arrives (`family_refusal`): the caller's family (of its
signalling, and of its streams' `c=`) must be one mediad has a relay address of, or the caller
gets 488 before any attempt (docs/ipv6.md).

Owns: `MediaPolicy` (the two limits), `MediaRefusal` (a reason code for the CDR and metrics,
a sentence for the log and the Warning header, the SIP status), `check_sdp`, `family_refusal`,
`address_refusal`, `ip_or_none` and the reason codes.
Must not: parse SDP bytes (`sip.sdp` does), talk to mediad, send SIP, read the clock, or import
config/ or another module of calls/.
Driven by: `calls/media_link.py`, before any offer or answer reaches mediad; `calls/call.py` and
`calls/in_dialog.py` turn a refusal into SIP (488, or the attempt fails).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network

from sipedge.sip.message import host_text
from sipedge.sip.sdp import HOLD_ADDRESSES, Sdp

ADDRESS_REFUSED = "media-address-refused"
TOO_MANY_STREAMS = "too-many-streams"
# An encrypted leg mediad could not anchor (the CDR text predates the reason codes).
MEDIA_UNAVAILABLE = "media unavailable"
# mediad has no relay address of the family the receiving party speaks (IPv6, docs/ipv6.md)
MEDIA_FAMILY_UNAVAILABLE = "media-family-unavailable"

Network = IPv4Network | IPv6Network


# A call asks of the same few addresses (its parties', the relay's) each time; parsing them with
# `ipaddress` on every call was 2-4 % of sipd's CPU. The answers are pure functions of the
# address, so they are memoised, bounded (a flood of distinct addresses only churns the memo).
_MEMO = 4096


@dataclass(frozen=True)
class MediaPolicy:
    refused_networks: tuple[Network, ...] = ()
    max_streams: int = 8
    # (address, address type) -> address_refusal's sentence, "" for none. It lives here, beside
    # the networks it depends on: a reload makes a new policy and so a new memo, and the key
    # stays two strings (an lru_cache keyed by the networks hashed each of them on every call).
    _refusals: dict[tuple[str, str], str] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def refusal(self, address: str, address_type: str) -> str | None:
        """`address_refusal` against this policy's networks, memoised."""
        key = (address, address_type)
        refusals = self._refusals
        why = refusals.get(key)
        if why is None:
            if len(refusals) >= _MEMO:
                refusals.clear()
            why = refusals[key] = (
                address_refusal(address, address_type, self.refused_networks) or ""
            )
        return why or None


@dataclass(frozen=True)
class MediaRefusal:
    """Why an SDP was not anchored. `reason` is the code the CDR and the metrics carry,
    `detail` a sentence for the log and the Warning header, `status` the SIP answer."""

    reason: str
    detail: str
    status: int = 488
    warn_code: int = 399  # RFC 3261 20.43: 301 incompatible network address, 399 misc

    def warning(self, agent: str) -> str:
        """The value of a Warning header naming us as `agent`."""
        text = f"{self.reason}: {self.detail}".replace("\\", "").replace('"', "'")
        return f'{self.warn_code} {host_text(agent)} "{text}"'


def address_refusal(address: str, address_type: str, networks: tuple[Network, ...]) -> str | None:
    """Why a `c=` address is refused (a sentence), or None when it may be anchored."""
    if address in HOLD_ADDRESSES:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"c= address {address[:64]!r} is not an IP address"
    expected = {"IP4": 4, "IP6": 6}.get(address_type.upper())
    if expected != ip.version:
        return f"c= address {ip} does not match its address type {address_type[:8]!r}"
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        candidates.append(ip.ipv4_mapped)
    for candidate in candidates:
        for net in networks:
            if candidate.version == net.version and candidate in net:
                return f"c= address {ip} lies in the refused network {net}"
    return None


@lru_cache(maxsize=_MEMO)
def ip_or_none(address: str) -> str | None:
    """`address` when it is an IP literal, IPv4 or IPv6 (mediad's signal-address), in one
    normal form (IPv6 compressed; an IPv4-mapped address as its IPv4 address), else None (a
    host name, or a scoped IPv6 address, which mediad refuses)."""
    if "%" in address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def family_refusal(
    party_family: str, sdp: Sdp | None, relay_families: frozenset[str]
) -> MediaRefusal | None:
    """The refusal of a caller whose media the relay cannot carry: it signals from
    (`party_family`, the relay address it would receive) or puts in an active stream's `c=` a
    family mediad has no relay address of (IPv6 without media.bind_address_v6)."""
    needed = {party_family}
    if sdp is not None:
        needed.update(
            s.address_type.upper()
            for s in sdp.streams
            if not s.disabled and s.address is not None and s.address not in HOLD_ADDRESSES
        )
    missing = sorted((needed & {"IP4", "IP6"}) - relay_families)
    if not missing:
        return None
    return MediaRefusal(
        MEDIA_FAMILY_UNAVAILABLE,
        f"the relay has no {missing[0]} address for the caller's media",
        status=488,
        warn_code=301,  # RFC 3261 20.43: incompatible network address formats
    )


def check_sdp(sdp: Sdp, policy: MediaPolicy) -> MediaRefusal | None:
    """The refusal for this SDP, or None when every active stream may be anchored."""
    active = [s for s in sdp.streams if not s.disabled]
    if len(active) > policy.max_streams:
        return MediaRefusal(
            TOO_MANY_STREAMS,
            f"{len(active)} active m= lines, at most {policy.max_streams} allowed",
        )
    for stream in active:
        if stream.address is None:
            continue  # no c= at all: nothing to send media to, nothing to check
        why = policy.refusal(stream.address, stream.address_type)
        if why is not None:
            return MediaRefusal(ADDRESS_REFUSED, f"stream {stream.index}: {why}", warn_code=301)
    return None


__all__ = [
    "ADDRESS_REFUSED",
    "MEDIA_FAMILY_UNAVAILABLE",
    "MEDIA_UNAVAILABLE",
    "TOO_MANY_STREAMS",
    "MediaPolicy",
    "MediaRefusal",
    "address_refusal",
    "check_sdp",
    "family_refusal",
    "ip_or_none",
]
