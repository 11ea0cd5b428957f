"""calls/media_policy.py: which SDP sipd refuses before asking mediad (pure)."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from sipedge.calls.media_policy import (
    ADDRESS_REFUSED,
    TOO_MANY_STREAMS,
    MediaPolicy,
    MediaRefusal,
    address_refusal,
    check_sdp,
    family_refusal,
    ip_or_none,
)
from sipedge.config import MediaConfig
from sipedge.sip.sdp import parse

DEFAULT = MediaConfig().refused_networks
POLICY = MediaPolicy(DEFAULT, 8)


@pytest.mark.parametrize(
    ("address", "kind", "refused_by"),
    [
        # allowed: public and private unicast (private ranges are not refused by default)
        ("198.51.100.7", "IP4", None),
        ("10.1.2.3", "IP4", None),
        ("192.168.0.10", "IP4", None),
        ("2001:db8::1", "IP6", None),
        ("fd00::1", "IP6", None),
        # hold is not a destination
        ("0.0.0.0", "IP4", None),
        ("::", "IP6", None),
        # refused by the default list
        ("127.0.0.1", "IP4", "127.0.0.0/8"),
        ("127.255.255.254", "IP4", "127.0.0.0/8"),
        ("0.1.2.3", "IP4", "0.0.0.0/8"),
        ("169.254.1.1", "IP4", "169.254.0.0/16"),
        ("224.0.0.1", "IP4", "224.0.0.0/4"),
        ("239.255.255.255", "IP4", "224.0.0.0/4"),
        ("240.0.0.1", "IP4", "240.0.0.0/4"),
        ("255.255.255.255", "IP4", "240.0.0.0/4"),
        ("::1", "IP6", "::1/128"),
        ("fe80::1", "IP6", "fe80::/10"),
        ("FE80::abcd", "IP6", "fe80::/10"),
        ("febf::1", "IP6", "fe80::/10"),
        ("::", "IP6", None),  # hold
        ("100::1", "IP6", "100::/64"),
        ("ff02::1", "IP6", "ff00::/8"),
        ("ff0e::fb", "IP6", "ff00::/8"),
        ("FF0E::1234", "IP6", "ff00::/8"),
        # IPv4-mapped IPv6: the whole range by default (an IPv4 peer is written IN IP4)
        ("::ffff:127.0.0.1", "IP6", "::ffff:0:0/96"),
        ("::ffff:192.0.2.7", "IP6", "::ffff:0:0/96"),
        ("::ffff:198.51.100.7", "IP6", "::ffff:0:0/96"),
    ],
)
def test_address_against_the_default_networks(
    address: str, kind: str, refused_by: str | None
) -> None:
    why = address_refusal(address, kind, DEFAULT)
    if refused_by is None:
        assert why is None
    else:
        assert why is not None and refused_by in why


def test_mapped_address_checked_as_its_ipv4_address() -> None:
    """Without ::ffff:0:0/96 in the list, a mapped address meets the IPv4 networks."""
    nets = (ip_network("10.0.0.0/8"),)
    why = address_refusal("::ffff:10.1.2.3", "IP6", nets)
    assert why is not None and "10.0.0.0/8" in why
    assert address_refusal("::ffff:192.0.2.7", "IP6", nets) is None


@pytest.mark.parametrize(
    ("address", "refused_by"),
    [
        ("::ffff:127.0.0.1", "127.0.0.0/8"),
        ("::ffff:169.254.9.9", "169.254.0.0/16"),
        ("::ffff:198.51.100.7", None),
    ],
)
def test_mapped_addresses_are_checked_as_ipv4_when_the_mapped_range_is_allowed(
    address: str, refused_by: str | None
) -> None:
    """An operator who takes ::ffff:0:0/96 off the list still has the IPv4 rules apply."""
    networks = tuple(n for n in DEFAULT if str(n) != "::ffff:0:0/96")
    why = address_refusal(address, "IP6", networks)
    assert (why is None) if refused_by is None else (why is not None and refused_by in why)


def test_documentation_prefix_is_refused_only_when_configured() -> None:
    assert address_refusal("2001:db8::5", "IP6", DEFAULT) is None
    why = address_refusal("2001:db8::5", "IP6", (*DEFAULT, ip_network("2001:db8::/32")))
    assert why is not None and "2001:db8::/32" in why


@pytest.mark.parametrize(
    ("address", "kind", "words"),
    [
        ("media.example.com", "IP4", "not an IP address"),
        ("", "IP4", "not an IP address"),
        ("10.0.0.256", "IP4", "not an IP address"),
        ("1.2.3", "IP4", "not an IP address"),
        ("198.51.100.7", "IP6", "does not match"),
        ("2001:db8::1", "IP4", "does not match"),
        ("198.51.100.7", "ATM", "does not match"),
        ("x" * 500, "IP4", "not an IP address"),
    ],
)
def test_malformed_addresses_are_refused(address: str, kind: str, words: str) -> None:
    why = address_refusal(address, kind, DEFAULT)
    assert why is not None and words in why
    assert len(why) < 200  # the text goes into a Warning header: bounded


def test_configured_networks_and_the_empty_list() -> None:
    nets = (ip_network("10.0.0.0/8"), ip_network("2001:db8::/32"))
    assert address_refusal("10.9.9.9", "IP4", nets) is not None
    assert address_refusal("2001:db8::5", "IP6", nets) is not None
    assert address_refusal("127.0.0.1", "IP4", nets) is None
    assert address_refusal("127.0.0.1", "IP4", ()) is None
    assert address_refusal("::ffff:10.0.0.1", "IP6", nets) is not None


def sdp(*streams: str, session_c: str | None = "198.51.100.7") -> bytes:
    lines = ["v=0", "o=- 1 1 IN IP4 198.51.100.7", "s=-"]
    if session_c is not None:
        lines.append(f"c=IN IP4 {session_c}")
    lines.append("t=0 0")
    for s in streams:
        lines.extend(s.split("|"))
    return ("\r\n".join(lines) + "\r\n").encode()


AUDIO = "m=audio 4000 RTP/AVP 0"


def test_check_sdp_session_and_media_level_connection() -> None:
    assert check_sdp(parse(sdp(AUDIO)), POLICY) is None
    refused = check_sdp(parse(sdp(AUDIO, session_c="127.0.0.1")), POLICY)
    assert refused is not None and refused.reason == ADDRESS_REFUSED
    assert "stream 0" in refused.detail and "127.0.0.0/8" in refused.detail
    assert refused.status == 488
    # the stream's own c= overrides the session-level one, both ways
    assert (
        check_sdp(parse(sdp(AUDIO + "|c=IN IP4 10.0.0.1", session_c="127.0.0.1")), POLICY) is None
    )
    refused = check_sdp(parse(sdp(AUDIO, AUDIO + "|c=IN IP4 169.254.0.9")), POLICY)
    assert refused is not None and "stream 1" in refused.detail
    # IPv6 stream
    refused = check_sdp(parse(sdp(AUDIO + "|c=IN IP6 fe80::1")), POLICY)
    assert refused is not None and refused.reason == ADDRESS_REFUSED


def test_disabled_streams_and_hold_are_not_refused() -> None:
    assert check_sdp(parse(sdp("m=video 0 RTP/AVP 31|c=IN IP4 127.0.0.1", AUDIO)), POLICY) is None
    assert check_sdp(parse(sdp(AUDIO, session_c="0.0.0.0")), POLICY) is None
    # no c= anywhere: nothing to send media to, nothing to check
    assert check_sdp(parse(sdp(AUDIO, session_c=None)), POLICY) is None


def test_stream_cap_counts_active_m_lines_only() -> None:
    policy = MediaPolicy(DEFAULT, 2)
    assert check_sdp(parse(sdp(AUDIO, AUDIO)), policy) is None
    assert check_sdp(parse(sdp(AUDIO, AUDIO, "m=video 0 RTP/AVP 31")), policy) is None
    refused = check_sdp(parse(sdp(AUDIO, AUDIO, AUDIO)), policy)
    assert refused is not None and refused.reason == TOO_MANY_STREAMS
    assert "3 active m= lines, at most 2" in refused.detail
    # the cap is checked before the addresses (no per-stream work for a flood of m= lines)
    many = sdp(*[AUDIO] * 2500, session_c="127.0.0.1")
    refused = check_sdp(parse(many), POLICY)
    assert refused is not None and refused.reason == TOO_MANY_STREAMS


def test_warning_header_value() -> None:
    refusal = MediaRefusal(ADDRESS_REFUSED, 'stream 0: c= address "x" bad', warn_code=301)
    assert refusal.warning("10.0.0.9") == (
        "301 10.0.0.9 \"media-address-refused: stream 0: c= address 'x' bad\""
    )


def test_ip_or_none() -> None:
    assert ip_or_none("198.51.100.7") == "198.51.100.7"
    assert ip_or_none("2001:DB8:0::1") == "2001:db8::1"  # IPv6 too, in mediad's normal form
    assert ip_or_none("::ffff:198.51.100.7") == "198.51.100.7"
    assert ip_or_none("fe80::1%eth0") is None  # scoped: mediad refuses it
    assert ip_or_none("gw.example.com") is None


def test_family_refusal() -> None:
    v4_only, both = frozenset({"IP4"}), frozenset({"IP4", "IP6"})
    sdp6 = parse(
        b"v=0\r\no=- 1 1 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::1\r\n"
        b"t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    )
    hold6 = parse(
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP6 ::\r\n"
        b"t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    )
    assert family_refusal("IP4", None, v4_only) is None
    assert family_refusal("IP6", sdp6, both) is None
    refusal = family_refusal("IP6", None, v4_only)  # an IPv6 caller, late offer
    assert refusal is not None and refusal.reason == "media-family-unavailable"
    assert (refusal.status, refusal.warn_code) == (488, 301) and "IP6" in refusal.detail
    assert family_refusal("IP4", sdp6, v4_only) is not None  # IPv4 signalling, IPv6 media
    assert family_refusal("IP4", hold6, v4_only) is None  # the hold address is no destination


def test_policy_memo_gives_the_pure_answer_and_stays_bounded() -> None:
    policy = MediaPolicy(DEFAULT, 8)
    for _ in range(2):  # the second round is answered from the memo
        assert policy.refusal("10.1.2.3", "IP4") == address_refusal("10.1.2.3", "IP4", DEFAULT)
        assert policy.refusal("192.0.2.7", "IP4") is None
        assert policy.refusal("192.0.2.7", "IP6") is not None  # the type is part of the key
    for n in range(5000):  # a flood of distinct addresses only churns the memo
        assert policy.refusal(f"192.0.{n // 256 % 256}.{n % 256}", "IP4") is None
        assert len(policy._refusals) <= 4096
    # two policies never share answers: a reload that refuses a new network is heard at once
    assert MediaPolicy((), 8).refusal("10.1.2.3", "IP4") is None
    assert policy == MediaPolicy(DEFAULT, 8)  # the memo is not part of what a policy is
