"""Caller identity on the gateway leg, end to end: SIPp caller -> sipedge-sipd -> SIPp gateways.

The caller presents a From display/user and Privacy, P-Asserted-Identity and
P-Preferred-Identity headers (scenario uac_identity); the gateways (uas_answer) trace the INVITE
they received, and the tests compare its identity lines with the deployment patterns of
docs/identity.md: wholesale passthrough, privacy-required routes (trusted and untrusted),
enterprise PBX, plus Support Privacy Off, the SS_SIP_E164_DISPLAY_FROM modes and the caller dial
plan. The rules themselves are tested exhaustively in tests/unit/test_identity.py; here the
point is that the daemon applies them on the wire, and that the gateway leg stays a dialog of
our own (From tag, Call-ID, Contact).

One daemon per configuration; its routing gateways are chosen by the first digit of the dialled
number, so each daemon serves several patterns, one call per case, each call to its own number.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import free_port, gateway
from tests.sipp.harness import Sipp, SippMessage

pytestmark = [pytest.mark.sipp, pytest.mark.slow]

ALICE = '"Alice Smith" '  # the from_display key: written before the From URI as-is
NUMBER = "02079460123"
E164 = "+442079460123"
UK = [{"match": r"^0(\d+)$", "replace": r"+44\1"}]  # the dial plan of docs/identity.md
UPSTREAM_PAI = "<sip:+442079460123@upstream.example>"
UPSTREAM_PRIVATE = {  # docs/identity.md, "Upstream private"
    "privacy_hdr": "Privacy: id",
    "pai_hdr": f"P-Asserted-Identity: {UPSTREAM_PAI}",
}
ANONYMOUS_URI = "sip:anonymous@anonymous.invalid"
US = "127.0.0.1"  # our address toward the gateways (all on loopback)


def caller_pai(number: str = E164) -> str:
    """The PAI/PPI of the Caller setting: our host, user=phone for an E.164 number."""
    suffix = ";user=phone" if number.startswith("+") else ""
    return f"<sip:{number}@{US}{suffix}>"


@dataclass
class Identity:
    """The identity lines of one INVITE."""

    display: str | None
    uri: str
    tag: str | None
    privacy: list[str]
    pai: list[str]
    ppi: list[str]


_NAME_ADDR = re.compile(
    r'^\s*(?:"(?P<quoted>[^"]*)"|(?P<token>[^<"]*?))\s*<(?P<uri>[^>]*)>(?P<params>.*)$'
)


def identity(invite: SippMessage) -> Identity:
    raw = invite.header("From") or ""
    match = _NAME_ADDR.match(raw)
    assert match, raw
    display = match.group("quoted")
    if display is None:
        display = match.group("token") or None
    tag = re.search(r";\s*tag=([^;\s]+)", match.group("params"))
    return Identity(
        display=display,
        uri=match.group("uri"),
        tag=tag.group(1) if tag else None,
        privacy=invite.headers("Privacy"),
        pai=invite.headers("P-Asserted-Identity"),
        ppi=invite.headers("P-Preferred-Identity"),
    )


@dataclass
class Leg:
    """One call: the INVITE the caller sent and the INVITE the gateway received."""

    sent: SippMessage
    received: SippMessage

    @property
    def out(self) -> Identity:
        return identity(self.received)


@contextmanager
def gateways(ports: dict[str, int]) -> Iterator[dict[str, Sipp]]:
    """A uas_answer per routing gateway, answering any number of calls until stopped."""
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(Sipp("uas_answer", port=port, calls=100, timeout=60))
            for name, port in ports.items()
        }


def place_calls(
    sipd: Any, ports: dict[str, int], calls: dict[str, dict[str, str]]
) -> dict[str, Leg]:
    """Make one call per dialled number (its keys for uac_identity), one after the other, and
    pair each caller INVITE with the INVITE its gateway received (by the dialled number)."""
    with gateways(ports) as peers:
        sent: dict[str, SippMessage] = {}
        for number, keys in calls.items():
            caller = Sipp(
                "uac_identity",
                port=free_port(),
                remote=sipd.sip_target,
                calls=1,
                timeout=20,
                service=number,
                keys=keys,
            )
            caller.start()
            result = caller.wait(30)
            assert result.ok, f"call to {number}:\n{result.describe()}\n{sipd.log()}"
            sent[number] = result.sent("INVITE")[0]
        results = [peer.stop() for peer in peers.values()]
    received: dict[str, SippMessage] = {}
    for result in results:
        for invite in result.received("INVITE"):
            dialled = re.match(r"INVITE sip:([^@;]+)@", invite.first_line)
            assert dialled, invite.first_line
            received.setdefault(dialled.group(1), invite)
    assert set(received) == set(calls), sorted(received)
    return {number: Leg(sent[number], received[number]) for number in calls}


def assert_identity(
    leg: Leg,
    *,
    display: str | None,
    user: str,
    privacy: list[str] | None = None,
    pai: list[str] | None = None,
    ppi: list[str] | None = None,
) -> None:
    """From display and user (on our host, or the anonymous URI), Privacy, PAI, PPI."""
    out = leg.out
    want_uri = ANONYMOUS_URI if user == "anonymous" else f"sip:{user}@{US}"
    got = (out.display, out.uri, out.privacy, out.pai, out.ppi)
    want = (display, want_uri, privacy or [], pai or [], ppi or [])
    assert got == want, f"\nINVITE at the gateway:\n{leg.received.text}"
    # and written as docs/identity.md shows it: display quoted, our tag
    shown = f'"{display}" ' if display else ""
    assert leg.received.header("From") == f"{shown}<{want_uri}>;tag={out.tag}"


def assert_own_dialog(leg: Leg, sipd: Any) -> None:
    """B2BUA: From tag, Call-ID and Contact on the gateway leg are ours, not the caller's."""
    caller, gw = leg.sent, leg.received
    assert identity(gw).tag and identity(gw).tag != identity(caller).tag
    assert gw.call_id and gw.call_id != caller.call_id
    assert gw.header("Contact") == f"<sip:{US}:{sipd.sip_port}>", gw.text
    assert gw.header("Contact") != caller.header("Contact")
    assert ";tag=" not in (gw.header("To") or "")


# ---------------------------------------------------------------------------------------------


def test_wholesale_passthrough_and_privacy_required_routes(sipd_factory: Any) -> None:
    """Support Privacy On (upstream carriers): docs/identity.md "Wholesale passthrough" and
    "Privacy-required routes", each toward a trusted and an untrusted gateway; plus PPI
    Passthrough/Caller, a Privacy that does not anonymise and a dial plan of several rules."""
    ports = {
        name: free_port()
        for name in (
            "term",
            "term-untrusted",
            "private",
            "private-untrusted",
            "all-through",
            "ppi-caller",
        )
    }
    wholesale = {
        "privacy": "Passthrough",
        "p_asserted_identity": "Passthrough",
        "p_preferred_identity": "None",
        "caller_dial_plan": UK,
    }
    private = {
        "privacy": "Id",
        "p_asserted_identity": "Caller",
        "p_preferred_identity": "None",
        "caller_dial_plan": UK,
    }
    sipd = sipd_factory(
        [
            gateway("term", ports["term"], trusted=True, **wholesale),
            gateway("term-untrusted", ports["term-untrusted"], trusted=False, **wholesale),
            gateway("private", ports["private"], trusted=True, **private),
            gateway("private-untrusted", ports["private-untrusted"], trusted=False, **private),
            gateway(
                "all-through",
                ports["all-through"],
                privacy="Passthrough",
                p_asserted_identity="Passthrough",
                p_preferred_identity="Passthrough",
            ),
            gateway(
                "ppi-caller",
                ports["ppi-caller"],
                p_preferred_identity="Caller",
                caller_dial_plan=[
                    {"match": r"^00(\d+)$", "replace": r"+\1"},
                    {"match": "^0", "replace": "+44"},
                ],
            ),
        ],
        parameters={"SS_SIP_USER_AGENT_PRIVACY": "Ignore", "SS_SIP_E164_DISPLAY_FROM": "Ignore"},
        routes=[
            {"prefix": "1", "gateways": ["term"]},
            {"prefix": "2", "gateways": ["term-untrusted"]},
            {"prefix": "3", "gateways": ["private"]},
            {"prefix": "4", "gateways": ["private-untrusted"]},
            {"prefix": "5", "gateways": ["all-through"]},
            {"prefix": "6", "gateways": ["ppi-caller"]},
        ],
        mapping_overrides={"support_privacy": True},
    )
    base = {"from_display": ALICE, "caller": NUMBER}
    ppi_hdr = {"ppi_hdr": "P-Preferred-Identity: <sip:alice@pbx.example>"}
    legs = place_calls(
        sipd,
        ports,
        {
            "1001": {**base, **UPSTREAM_PRIVATE, **ppi_hdr},
            "1002": base,
            "2001": {**base, **UPSTREAM_PRIVATE},
            "2002": {**base, "pai_hdr": f"P-Asserted-Identity: {UPSTREAM_PAI}"},
            "3001": base,
            "3002": {**base, **UPSTREAM_PRIVATE},
            "4001": {**base, **UPSTREAM_PRIVATE},
            "5001": {
                **base,
                "privacy_hdr": "Privacy: none",
                "pai_hdr": "P-Asserted-Identity: <sip:+442079460123@upstream.example>",
                "pai2_hdr": "P-Asserted-Identity: <tel:+442079460123>",
                **ppi_hdr,
            },
            "5002": {**base, "privacy_hdr": "Privacy: user;critical"},
            # a comma inside the quoted display names (From is single-valued, PAI is not)
            "5003": {
                "from_display": '"Smith, Alice" ',
                "caller": NUMBER,
                "pai_hdr": 'P-Asserted-Identity: "Smith, Alice" <sip:+4420@upstream.example>',
            },
            # header names in any case, an unquoted display, a URI parameter in the user part
            "5004": {
                "from_display": "Alice ",
                "caller": NUMBER + ";npdi",
                "privacy_hdr": "privacy: none",
                "pai_hdr": "p-asserted-identity: <sip:+4420@upstream.example>",
            },
            "6001": {"from_display": "", "caller": "0033123456"},
            "6002": {"from_display": "", "caller": NUMBER},
            "6003": {"from_display": '"Alice" ', "caller": "alice"},
        },
    )
    # wholesale, trusted: upstream private -> anonymous From, Privacy and PAI passed on; the
    # PPI is not (p_preferred_identity None)
    assert_identity(
        legs["1001"], display="Anonymous", user="anonymous", privacy=["id"], pai=[UPSTREAM_PAI]
    )
    # no privacy asked for, no PAI received: the caller shown, dial-planned, nothing added
    assert_identity(legs["1002"], display="Alice Smith", user=E164)
    # wholesale, untrusted: the privacy request travels, the assertion never does
    assert_identity(legs["2001"], display="Anonymous", user="anonymous", privacy=["id"])
    assert_identity(legs["2002"], display="Alice Smith", user=E164)
    # privacy-required route, trusted: always anonymous, PAI asserted by us (not the upstream's)
    for number in ("3001", "3002"):
        assert_identity(
            legs[number], display="Anonymous", user="anonymous", privacy=["id"], pai=[caller_pai()]
        )
    # privacy-required route, untrusted: anonymous and nothing of the caller
    assert_identity(legs["4001"], display="Anonymous", user="anonymous", privacy=["id"])
    # Passthrough of everything: Privacy none does not anonymise; both PAI lines in order;
    # no dial plan on this gateway
    assert_identity(
        legs["5001"],
        display="Alice Smith",
        user=NUMBER,
        privacy=["none"],
        pai=["<sip:+442079460123@upstream.example>", "<tel:+442079460123>"],
        ppi=["<sip:alice@pbx.example>"],
    )
    # Privacy: user (with critical) anonymises From like id
    assert_identity(legs["5002"], display="Anonymous", user="anonymous", privacy=["user;critical"])
    assert_identity(
        legs["5003"],
        display="Smith, Alice",
        user=NUMBER,
        pai=['"Smith, Alice" <sip:+4420@upstream.example>'],
    )
    assert_identity(
        legs["5004"],
        display="Alice",
        user=NUMBER,
        privacy=["none"],
        pai=["<sip:+4420@upstream.example>"],
    )
    # dial plan: the first matching rule only (00 -> +, not 0 -> +44); PPI Caller from it;
    # no display received, none sent (Ignore)
    assert_identity(legs["6001"], display=None, user="+33123456", ppi=[caller_pai("+33123456")])
    assert_identity(legs["6002"], display=None, user=E164, ppi=[caller_pai()])
    # a SIP user name as caller: no rule matches, asserted as it is (no user=phone)
    assert_identity(legs["6003"], display="Alice", user="alice", ppi=[f"<sip:alice@{US}>"])
    # whatever the identity settings, the gateway leg is our own dialog
    for leg in legs.values():
        assert_own_dialog(leg, sipd)


def test_enterprise_pbx_support_privacy_off_e164_display(sipd_factory: Any) -> None:
    """Support Privacy Off and SS_SIP_E164_DISPLAY_FROM E164: docs/identity.md "Enterprise
    PBX"; the PBX's own Privacy/PAI/PPI are dropped on entry, even toward a Passthrough
    gateway, while a privacy-required route still hides the caller."""
    ports = {name: free_port() for name in ("carrier", "private", "all-through")}
    sipd = sipd_factory(
        [
            gateway("carrier", ports["carrier"], p_asserted_identity="Caller", caller_dial_plan=UK),
            gateway(
                "private",
                ports["private"],
                privacy="Id",
                p_asserted_identity="Caller",
                caller_dial_plan=UK,
            ),
            gateway(
                "all-through",
                ports["all-through"],
                privacy="Passthrough",
                p_asserted_identity="Passthrough",
                p_preferred_identity="Passthrough",
            ),
        ],
        parameters={"SS_SIP_E164_DISPLAY_FROM": "E164"},
        routes=[
            {"prefix": "1", "gateways": ["carrier"]},
            {"prefix": "3", "gateways": ["private"]},
            {"prefix": "5", "gateways": ["all-through"]},
        ],
        mapping_overrides={"support_privacy": False},
    )
    base = {"from_display": ALICE, "caller": NUMBER}
    legs = place_calls(
        sipd,
        ports,
        {
            "1001": {**base, **UPSTREAM_PRIVATE},
            "1002": {"from_display": "", "caller": "15551234"},
            "1003": {"from_display": '"Alice" ', "caller": "alice"},
            "3001": {**base, **UPSTREAM_PRIVATE},
            "5001": {
                **base,
                **UPSTREAM_PRIVATE,
                "ppi_hdr": "P-Preferred-Identity: <sip:alice@pbx.example>",
            },
        },
    )
    # the PBX's "upstream private" is dropped: caller shown in E.164, asserted by us
    assert_identity(legs["1001"], display=E164, user=E164, pai=[caller_pai()])
    # E164 display adds the + the dial plan did not; the user stays as dial-planned
    assert_identity(
        legs["1002"], display="+15551234", user="15551234", pai=[caller_pai("15551234")]
    )
    # a SIP user name has no E.164 form: the display as received
    assert_identity(legs["1003"], display="Alice", user="alice", pai=[f"<sip:alice@{US}>"])
    # privacy-required route: anonymous whatever the caller sent or did not
    assert_identity(
        legs["3001"], display="Anonymous", user="anonymous", privacy=["id"], pai=[caller_pai()]
    )
    # Support Privacy Off strips on entry: nothing to pass through, From not anonymised
    assert_identity(legs["5001"], display="+" + NUMBER, user=NUMBER)
    for leg in legs.values():
        assert_own_dialog(leg, sipd)


def test_original_display_from(sipd_factory: Any) -> None:
    """SS_SIP_E164_DISPLAY_FROM Original: the display is the number as received, before the
    dial plan; an anonymised From keeps "Anonymous"."""
    port = free_port()
    sipd = sipd_factory(
        [
            gateway(
                "carrier",
                port,
                privacy="Passthrough",
                p_asserted_identity="Caller",
                caller_dial_plan=UK,
            )
        ],
        parameters={"SS_SIP_E164_DISPLAY_FROM": "Original"},
        mapping_overrides={"support_privacy": True},
    )
    legs = place_calls(
        sipd,
        {"carrier": port},
        {
            "1001": {"from_display": ALICE, "caller": NUMBER},
            "1002": {"from_display": "", "caller": NUMBER, "privacy_hdr": "Privacy: none"},
            "1003": {"from_display": ALICE, "caller": NUMBER, "privacy_hdr": "Privacy: id"},
        },
    )
    assert_identity(legs["1001"], display=NUMBER, user=E164, pai=[caller_pai()])
    assert_identity(legs["1002"], display=NUMBER, user=E164, privacy=["none"], pai=[caller_pai()])
    assert_identity(
        legs["1003"], display="Anonymous", user="anonymous", privacy=["id"], pai=[caller_pai()]
    )
    for leg in legs.values():
        assert_own_dialog(leg, sipd)


def test_display_name_with_an_escaped_quote(sipd_factory: Any) -> None:
    """RFC 3261 quoted-pair in the display name: it must reach the gateway still escaped."""
    port = free_port()
    sipd = sipd_factory([gateway("carrier", port)])
    keys = {"from_display": '"Dan \\"The Man\\" Smith" ', "caller": NUMBER, "wait": "3000"}
    legs = place_calls(sipd, {"carrier": port}, {"1001": keys})
    got = legs["1001"].received.header("From") or ""
    assert got.startswith('"Dan \\"The Man\\" Smith" <sip:02079460123@127.0.0.1>;tag='), got
