"""Caller identity and privacy rewriting (sipedge.calls.identity, docs/identity.md)."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipedge.calls.identity import (
    DialPlanRule,
    IdentityPolicy,
    IncomingIdentity,
    OutgoingIdentity,
    apply_dial_plan,
    apply_identity,
    e164_display,
    incoming_identity,
    outgoing_identity,
    policy_from_config,
    privacy_tokens,
    ua_privacy_header,
)
from sipedge.sip.message import Headers, parse_message, parse_name_addr, parse_uri

OUR_HOST = "edge.example"


def rule(match: str, replace: str) -> DialPlanRule:
    return DialPlanRule(re.compile(match), replace)


# -- the full table ---------------------------------------------------------------------------
#
# Every combination of the settings and of the incoming headers being present or absent. The
# expected values come from `oracle`, written from docs/identity.md as plainly as possible, with
# the constants of this one caller spelled out by hand.

DIAL_PLAN = (rule(r"^00", "+"), rule(r"^0(\d+)$", r"+44\1"))
CALLER = "030123"  # as received in the From user part
CALLER_PLANNED = "+4430123"  # after DIAL_PLAN (second rule)
CALLER_E164_DISPLAY = "+4430123"
CALLER_DISPLAY = "Alice"
CALLER_URI = "<sip:+4430123@edge.example;user=phone>"
IN_PAI = "<sip:+4430123@upstream.example>"
IN_PPI = "<sip:030123@upstream.example>"
ANONYMOUS = ("Anonymous", "anonymous", "anonymous.invalid")

UA_PRIVACY = ("Ignore", "Id", "None")
GW_PRIVACY = ("None", "Passthrough", "Id")
GW_IDENTITY = ("None", "Passthrough", "Caller")
E164 = ("Ignore", "E164", "Original")
IN_PRIVACY = (None, "id", "none", "user")


def oracle(
    *,
    ua_privacy: str,
    gw_privacy: str,
    gw_pai: str,
    gw_ppi: str,
    support_privacy: bool,
    trusted: bool,
    in_privacy: str | None,
    in_pai: bool,
    in_ppi: bool,
    e164: str,
    via_registration: bool,
) -> OutgoingIdentity:
    # what is left of the incoming headers after the mapping gateway
    seen_privacy = in_privacy if support_privacy else None
    seen_pai = (IN_PAI,) if (in_pai and support_privacy) else ()
    seen_ppi = (IN_PPI,) if (in_ppi and support_privacy) else ()

    privacy: str | None
    if gw_privacy == "Id":
        privacy = "id"
    elif gw_privacy == "Passthrough":
        privacy = seen_privacy
    elif via_registration and ua_privacy == "Id":
        privacy = "id"
    elif via_registration and ua_privacy == "None":
        privacy = "none"
    else:
        privacy = None

    if not trusted:
        pai: tuple[str, ...] = ()
        ppi: tuple[str, ...] = ()
    else:
        pai = {"None": (), "Passthrough": seen_pai, "Caller": (CALLER_URI,)}[gw_pai]
        ppi = {"None": (), "Passthrough": seen_ppi, "Caller": (CALLER_URI,)}[gw_ppi]

    if privacy in ("id", "user"):
        display, user, host = ANONYMOUS
        return OutgoingIdentity(display, user, host, privacy, pai, ppi)
    display = {"Ignore": CALLER_DISPLAY, "E164": CALLER_E164_DISPLAY, "Original": CALLER}[e164]
    return OutgoingIdentity(display, CALLER_PLANNED, None, privacy, pai, ppi)


@pytest.mark.parametrize(
    ("gw_privacy", "gw_pai", "gw_ppi", "trusted"),
    list(itertools.product(GW_PRIVACY, GW_IDENTITY, GW_IDENTITY, (True, False))),
)
def test_every_combination(gw_privacy: str, gw_pai: str, gw_ppi: str, trusted: bool) -> None:
    checked = 0
    for ua, support, in_privacy, in_pai, in_ppi, e164, via_reg in itertools.product(
        UA_PRIVACY, (True, False), IN_PRIVACY, (True, False), (True, False), E164, (True, False)
    ):
        incoming = IncomingIdentity(
            from_display=CALLER_DISPLAY,
            from_user=CALLER,
            privacy=in_privacy,
            pai=(IN_PAI,) if in_pai else (),
            ppi=(IN_PPI,) if in_ppi else (),
        )
        policy = IdentityPolicy(
            support_privacy=support,
            ua_privacy=ua,
            e164_display=e164,
            gw_privacy=gw_privacy,
            gw_pai=gw_pai,
            gw_ppi=gw_ppi,
            gw_trusted=trusted,
            dial_plan=DIAL_PLAN,
            via_registration=via_reg,
        )
        want = oracle(
            ua_privacy=ua,
            gw_privacy=gw_privacy,
            gw_pai=gw_pai,
            gw_ppi=gw_ppi,
            support_privacy=support,
            trusted=trusted,
            in_privacy=in_privacy,
            in_pai=in_pai,
            in_ppi=in_ppi,
            e164=e164,
            via_registration=via_reg,
        )
        got = outgoing_identity(incoming, policy, our_host=OUR_HOST)
        assert got == want, (policy, incoming)
        checked += 1
    assert checked == 3 * 2 * 4 * 2 * 2 * 3 * 2


# -- dial plan ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "number", "want"),
    [
        ((), "030123", "030123"),  # no rules: unchanged
        ((rule(r"^9", "+1"),), "030123", "030123"),  # no match: unchanged
        ((rule(r"^0", "+44"),), "030123", "+4430123"),  # the rest of the number is kept
        ((rule(r"^0(\d+)$", r"+44\1"),), "030123", "+4430123"),  # anchored, backreference
        ((rule(r"^00", "+"), rule(r"^0", "+44")), "0049301", "+49301"),  # first match wins
        ((rule(r"^0", "+44"), rule(r"^00", "+")), "0049301", "+44049301"),  # order matters
        ((rule(r"^0", "+44"), rule(r"^\+44", "0")), "030123", "+4430123"),  # only one applies
        ((rule(r"^\+", ""),), "+4430123", "4430123"),  # strip
        ((rule(r"^(?=\d{7}$)", "+4420"),), "7946001", "+44207946001"),  # add a prefix
        ((rule(r"^1", "x"),), "01", "01"),  # match semantics: only at the start
        ((rule(r"^\d{3}", "***"),), "12345", "***45"),
        ((rule(r"^\d", "9"), rule(r"^1", "never")), "123", "923"),
    ],
)
def test_dial_plan(rules: tuple[DialPlanRule, ...], number: str, want: str) -> None:
    assert apply_dial_plan(rules, number) == want


def test_dial_plan_accepts_config_rules() -> None:
    from sipedge.config import DialPlanRule as ConfigRule

    rules = [ConfigRule(re.compile(r"^0(\d+)$"), r"+44\1")]
    assert apply_dial_plan(rules, "0207") == "+44207"


@settings(max_examples=200)
@given(st.text(alphabet="0123456789+", max_size=15))
def test_dial_plan_first_rule_like_re_sub(number: str) -> None:
    rules = (rule(r"^00(\d*)", r"+\1"), rule(r"^0", "+44"), rule(r"^[1-9]", "+1"))
    got = apply_dial_plan(rules, number)
    for r in rules:
        if r.match.match(number):
            assert got == r.match.sub(r.replace, number, count=1)
            break
    else:
        assert got == number


def test_dial_plan_goes_into_from_pai_ppi_and_display() -> None:
    incoming = IncomingIdentity("Bob", "0207946001")
    policy = IdentityPolicy(
        support_privacy=False,
        ua_privacy="Ignore",
        e164_display="E164",
        gw_privacy="None",
        gw_pai="Caller",
        gw_ppi="Caller",
        gw_trusted=True,
        dial_plan=(rule(r"^0", "44"),),  # to international format without '+'
    )
    out = outgoing_identity(incoming, policy, our_host=OUR_HOST)
    assert out.from_user == "44207946001"
    assert out.from_display == "+44207946001"  # E164 display adds the '+'
    assert out.pai == ("<sip:44207946001@edge.example>",)  # no '+': no user=phone
    assert out.ppi == out.pai


# -- display and other edge cases ---------------------------------------------------------------


def policy(**kw: object) -> IdentityPolicy:
    base: dict[str, object] = {
        "support_privacy": True,
        "ua_privacy": "Ignore",
        "e164_display": "Ignore",
        "gw_privacy": "None",
        "gw_pai": "None",
        "gw_ppi": "None",
        "gw_trusted": True,
        "dial_plan": (),
        "via_registration": False,
    }
    base.update(kw)
    return IdentityPolicy(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mode", "display", "user", "want"),
    [
        ("Ignore", None, "0201", None),
        ("Ignore", "Alice", "0201", "Alice"),
        ("E164", None, "0201", "+0201"),  # no dial plan: '+' prefixed to what we have
        ("E164", "Alice", "+44201", "+44201"),
        ("E164", "Alice", "alice", "Alice"),  # not a number: display as received
        ("E164", None, "alice", None),
        ("Original", "Alice", "0201", "0201"),
        ("Original", None, "alice", "alice"),
        ("Original", "Alice", "", "Alice"),
    ],
)
def test_display_modes(mode: str, display: str | None, user: str, want: str | None) -> None:
    out = outgoing_identity(
        IncomingIdentity(display, user), policy(e164_display=mode), our_host=OUR_HOST
    )
    assert out.from_display == want
    assert out.from_user == user


def test_e164_display_helper() -> None:
    assert e164_display("441") == "+441"
    assert e164_display("+441") == "+441"
    assert e164_display("") is None
    assert e164_display("12a") is None
    assert e164_display("++1") is None


def test_caller_setting_needs_a_caller() -> None:
    for user in ("", "anonymous", "Anonymous"):
        out = outgoing_identity(
            IncomingIdentity(None, user), policy(gw_pai="Caller", gw_ppi="Caller"), our_host="h"
        )
        assert out.pai == () and out.ppi == ()


def test_caller_setting_sip_user_name() -> None:
    out = outgoing_identity(IncomingIdentity(None, "alice"), policy(gw_pai="Caller"), our_host="h")
    assert out.pai == ("<sip:alice@h>",)


@pytest.mark.parametrize(
    ("received", "anonymous"),
    [
        ("id", True),
        ("user", True),
        ("id;critical", True),
        ("ID; Critical", True),
        ("user;id", True),
        ("header", False),  # a B2BUA's Via/Contact are its own anyway
        ("session", False),
        ("none", False),
        ("critical", False),
        ("header;session", False),
    ],
)
def test_passthrough_privacy_values(received: str, anonymous: bool) -> None:
    out = outgoing_identity(
        IncomingIdentity("Alice", "0201", privacy=received),
        policy(gw_privacy="Passthrough"),
        our_host=OUR_HOST,
    )
    assert out.privacy == received  # copied as received
    assert out.anonymous is anonymous
    if anonymous:
        assert (out.from_display, out.from_user, out.from_host) == (
            "Anonymous",
            "anonymous",
            "anonymous.invalid",
        )


def test_privacy_tokens() -> None:
    assert privacy_tokens(None) == frozenset()
    assert privacy_tokens("") == frozenset()
    assert privacy_tokens(" id ; Critical ") == {"id", "critical"}
    assert privacy_tokens("id, user") == {"id", "user"}


def test_ua_privacy_header() -> None:
    assert ua_privacy_header("Ignore") is None
    assert ua_privacy_header("Id") == "id"
    assert ua_privacy_header("None") == "none"
    assert ua_privacy_header("id") == "id"
    with pytest.raises(ValueError, match="ua_privacy"):
        ua_privacy_header("Hide")


def test_policy_words_any_case_and_unknown_words_name_the_field() -> None:
    p = policy(gw_privacy="passthrough", gw_pai="CALLER", ua_privacy="id", e164_display="e164")
    assert (p.gw_privacy, p.gw_pai, p.ua_privacy, p.e164_display) == (
        "Passthrough",
        "Caller",
        "Id",
        "E164",
    )
    for field, bad in (
        ("ua_privacy", "Hide"),
        ("e164_display", "Yes"),
        ("gw_privacy", "Caller"),
        ("gw_pai", "Id"),
        ("gw_ppi", ""),
    ):
        with pytest.raises(ValueError, match=f"^{field}: unknown value"):
            policy(**{field: bad})


def test_passthrough_keeps_several_values_in_order() -> None:
    pai = ("<sip:+441@a.example>", "<tel:+441>")
    out = outgoing_identity(
        IncomingIdentity(None, "441", pai=pai, ppi=pai),
        policy(gw_pai="Passthrough", gw_ppi="Passthrough"),
        our_host=OUR_HOST,
    )
    assert out.pai == pai and out.ppi == pai


# -- invariants over arbitrary inputs ------------------------------------------------------------

words = st.sampled_from
numbers = st.text(alphabet="0123456789", min_size=3, max_size=12)


@settings(max_examples=400)
@given(
    number=numbers,
    display=st.none() | st.text(min_size=1, max_size=8),
    in_privacy=st.none() | st.sampled_from(["id", "none", "user", "id;critical", "header"]),
    in_pai=st.lists(st.sampled_from(["<sip:1@x>", "<tel:+1>"]), max_size=2),
    in_ppi=st.lists(st.sampled_from(["<sip:2@x>"]), max_size=2),
    support=st.booleans(),
    ua=words(["Ignore", "Id", "None"]),
    e164=words(["Ignore", "E164", "Original"]),
    gw_privacy=words(["None", "Passthrough", "Id"]),
    gw_pai=words(["None", "Passthrough", "Caller"]),
    gw_ppi=words(["None", "Passthrough", "Caller"]),
    trusted=st.booleans(),
    via_reg=st.booleans(),
)
def test_invariants(
    number: str,
    display: str | None,
    in_privacy: str | None,
    in_pai: list[str],
    in_ppi: list[str],
    support: bool,
    ua: str,
    e164: str,
    gw_privacy: str,
    gw_pai: str,
    gw_ppi: str,
    trusted: bool,
    via_reg: bool,
) -> None:
    incoming = IncomingIdentity(display, number, in_privacy, tuple(in_pai), tuple(in_ppi))
    pol = IdentityPolicy(support, ua, e164, gw_privacy, gw_pai, gw_ppi, trusted, DIAL_PLAN, via_reg)
    out = outgoing_identity(incoming, pol, our_host=OUR_HOST)
    planned = apply_dial_plan(DIAL_PLAN, number)
    # RFC 3325 spec(T): nothing asserted toward an untrusted peer
    if not trusted:
        assert out.pai == () and out.ppi == ()
    # the gateway's Id always wins
    if gw_privacy == "Id":
        assert out.privacy == "id" and out.anonymous
    # an anonymised From carries nothing of the caller
    if out.anonymous:
        assert (out.from_display, out.from_user, out.from_host) == (
            "Anonymous",
            "anonymous",
            "anonymous.invalid",
        )
    else:
        assert out.from_user == planned and out.from_host is None
    # without Support Privacy the incoming identity headers have no effect at all
    if not support:
        stripped = IncomingIdentity(display, number)
        assert out == outgoing_identity(stripped, pol, our_host=OUR_HOST)
    # nothing we did not receive or build ourselves
    for value in (*out.pai, *out.ppi):
        assert value in (*in_pai, *in_ppi) or value.startswith(f"<sip:{planned}@{OUR_HOST}")


# -- headers (sipedge.sip.message) --------------------------------------------------------------

CALLER_INVITE = (
    "INVITE sip:4420794600@198.51.100.1 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-in\r\n"
    "Max-Forwards: 70\r\n"
    'From: "Alice Smith" <sip:02079460123@198.51.100.7>;tag=caller-tag\r\n'
    "To: <sip:4420794600@198.51.100.1>\r\n"
    "Call-ID: in-call@198.51.100.7\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:02079460123@198.51.100.7:5060>\r\n"
    "{extra}"
    "Content-Length: 0\r\n\r\n"
)


def received(extra: str = "") -> Headers:
    msg = parse_message(CALLER_INVITE.format(extra=extra).encode())
    return msg.headers


def ours() -> Headers:
    """The outgoing INVITE's headers as the B2BUA builds them before the identity rules."""
    return Headers(
        [
            ("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-out;rport"),
            ("Max-Forwards", "69"),
            ("From", '"Alice Smith" <sip:02079460123@192.0.2.1>;tag=our-tag'),
            ("To", "<sip:4420794600@203.0.113.10>"),
            ("Call-ID", "our-call-id"),
            ("CSeq", "1 INVITE"),
            ("Contact", "<sip:192.0.2.1:5060>"),
            ("Privacy", "stale"),
            ("P-Asserted-Identity", "<sip:stale@x>"),
            ("P-Preferred-Identity", "<sip:stale@y>"),
        ]
    )


def test_incoming_identity_reads_headers() -> None:
    h = received(
        "Privacy: id\r\n"
        "Privacy: critical\r\n"
        "P-Asserted-Identity: <sip:+442079460123@upstream.example>\r\n"
        "P-Asserted-Identity: <tel:+442079460123>\r\n"
        "P-Preferred-Identity: <sip:02079460123@upstream.example>\r\n"
    )
    got = incoming_identity(h)
    assert got == IncomingIdentity(
        from_display="Alice Smith",
        from_user="02079460123",
        privacy="id; critical",
        pai=("<sip:+442079460123@upstream.example>", "<tel:+442079460123>"),
        ppi=("<sip:02079460123@upstream.example>",),
    )


def test_incoming_identity_without_identity_headers() -> None:
    assert incoming_identity(received()) == IncomingIdentity("Alice Smith", "02079460123")


def test_incoming_identity_bad_from() -> None:
    got = incoming_identity(Headers([("From", "<<<")]))
    assert got == IncomingIdentity(None, "")


def test_apply_identity_keeps_our_dialog_identifiers() -> None:
    h = ours()
    apply_identity(h, OutgoingIdentity("+442079460123", "+442079460123", None, None))
    assert h.get("From") == '"+442079460123" <sip:+442079460123@192.0.2.1>;tag=our-tag'
    assert "Privacy" not in h
    assert "P-Asserted-Identity" not in h
    assert "P-Preferred-Identity" not in h
    for name in ("Via", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards"):
        assert h.get(name) == ours().get(name)
    assert [n for n, _ in h.items()] == [
        "Via",
        "Max-Forwards",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
    ]


def test_apply_identity_anonymous() -> None:
    h = ours()
    out = OutgoingIdentity(
        "Anonymous",
        "anonymous",
        "anonymous.invalid",
        "id",
        ("<sip:+442079460123@edge.example;user=phone>",),
        ("<sip:+1@a>", "<tel:+1>"),
    )
    apply_identity(h, out)
    assert h.get("From") == '"Anonymous" <sip:anonymous@anonymous.invalid>;tag=our-tag'
    assert h.get_all("Privacy") == ["id"]
    assert h.get_all("P-Asserted-Identity") == ["<sip:+442079460123@edge.example;user=phone>"]
    assert h.get_all("P-Preferred-Identity") == ["<sip:+1@a>", "<tel:+1>"]
    assert h.get("Call-ID") == "our-call-id"
    assert h.get("Contact") == "<sip:192.0.2.1:5060>"


def test_apply_identity_keeps_uri_port_and_params_and_drops_display() -> None:
    h = Headers([("From", '"X" <sip:old:secret@192.0.2.1:5080;transport=udp>;tag=t;foo')])
    apply_identity(h, OutgoingIdentity(None, "0201", None, "none"))
    assert h.get("From") == "<sip:0201@192.0.2.1:5080;transport=udp>;tag=t;foo"
    assert h.get("Privacy") == "none"


def test_apply_identity_needs_from() -> None:
    with pytest.raises(ValueError, match="From"):
        apply_identity(Headers(), OutgoingIdentity(None, "1", None, None))


# -- the deployment patterns of docs/identity.md, end to end ------------------------------------


def run_pattern(extra: str, pol: IdentityPolicy) -> Headers:
    out = outgoing_identity(incoming_identity(received(extra)), pol, our_host="192.0.2.1")
    h = ours()
    apply_identity(h, out)
    return h


def identity_lines(h: Headers) -> list[str]:
    names = ("From", "Privacy", "P-Asserted-Identity", "P-Preferred-Identity")
    return [f"{n}: {v}" for n, v in h.items() if n in names]


UK = (rule(r"^0(\d+)$", r"+44\1"),)
UPSTREAM_PRIVATE = "Privacy: id\r\nP-Asserted-Identity: <sip:+442079460123@upstream.example>\r\n"


def test_pattern_wholesale_passthrough() -> None:
    pol = policy(
        support_privacy=True,
        gw_privacy="Passthrough",
        gw_pai="Passthrough",
        gw_trusted=True,
        dial_plan=UK,
    )
    # the upstream carrier asked for privacy: honoured, its assertion forwarded
    assert identity_lines(run_pattern(UPSTREAM_PRIVATE, pol)) == [
        'From: "Anonymous" <sip:anonymous@anonymous.invalid>;tag=our-tag',
        "Privacy: id",
        "P-Asserted-Identity: <sip:+442079460123@upstream.example>",
    ]
    # no privacy asked for: caller shown, number in the gateway's format
    assert identity_lines(run_pattern("", pol)) == [
        'From: "Alice Smith" <sip:+442079460123@192.0.2.1>;tag=our-tag',
    ]


def test_pattern_privacy_required_route() -> None:
    trusted = policy(
        support_privacy=False,
        gw_privacy="Id",
        gw_pai="Caller",
        gw_trusted=True,
        dial_plan=UK,
    )
    assert identity_lines(run_pattern("", trusted)) == [
        'From: "Anonymous" <sip:anonymous@anonymous.invalid>;tag=our-tag',
        "Privacy: id",
        "P-Asserted-Identity: <sip:+442079460123@192.0.2.1;user=phone>",
    ]
    untrusted = policy(
        support_privacy=False, gw_privacy="Id", gw_pai="Caller", gw_trusted=False, dial_plan=UK
    )
    assert identity_lines(run_pattern(UPSTREAM_PRIVATE, untrusted)) == [
        'From: "Anonymous" <sip:anonymous@anonymous.invalid>;tag=our-tag',
        "Privacy: id",
    ]


def test_pattern_enterprise_pbx() -> None:
    pol = policy(
        support_privacy=False,  # the PBX's own PAI/Privacy are not trusted
        e164_display="E164",
        gw_privacy="None",
        gw_pai="Caller",
        gw_trusted=True,
        dial_plan=UK,
    )
    assert identity_lines(run_pattern(UPSTREAM_PRIVATE, pol)) == [
        'From: "+442079460123" <sip:+442079460123@192.0.2.1>;tag=our-tag',
        "P-Asserted-Identity: <sip:+442079460123@192.0.2.1;user=phone>",
    ]


def test_pattern_registered_ua() -> None:
    for ua, want in (("Ignore", None), ("Id", "id"), ("None", "none")):
        pol = policy(ua_privacy=ua, via_registration=True)
        h = run_pattern("", pol)
        assert h.get("Privacy") == want
        assert (h.get("From") or "").startswith('"Anonymous"' if ua == "Id" else '"Alice Smith"')
        # not through a registration: the global value does not apply
        assert run_pattern("", policy(ua_privacy=ua)).get("Privacy") is None


# -- config glue ---------------------------------------------------------------------------------


def test_policy_from_config() -> None:
    from sipedge.config import DialPlanRule as ConfigRule
    from sipedge.config import MappingGateway, Parameters, RoutingGateway

    params = Parameters(sip_user_agent_privacy="Id", sip_e164_display_from="E164")
    gw = RoutingGateway(
        name="carrier-1",
        address="203.0.113.10",
        trusted=True,
        privacy="Passthrough",
        p_asserted_identity="Caller",
        p_preferred_identity="None",
        caller_dial_plan=(ConfigRule(re.compile(r"^0(\d+)$"), r"+44\1"),),
    )
    mapping = MappingGateway(name="customer-a", addresses=(), support_privacy=True)
    pol = policy_from_config(params, gw, mapping, via_registration=True)
    assert pol == IdentityPolicy(
        support_privacy=True,
        ua_privacy="Id",
        e164_display="E164",
        gw_privacy="Passthrough",
        gw_pai="Caller",
        gw_ppi="None",
        gw_trusted=True,
        dial_plan=gw.caller_dial_plan,
        via_registration=True,
    )
    assert not policy_from_config(params, gw, None).support_privacy
    out = outgoing_identity(IncomingIdentity(None, "0207"), pol, our_host="h")
    assert out.pai == ("<sip:+44207@h;user=phone>",)


def test_parse_helpers_agree() -> None:
    # the anonymous From we write parses back as RFC 3323 says it should look
    addr = parse_name_addr('"Anonymous" <sip:anonymous@anonymous.invalid>;tag=x')
    uri = parse_uri(addr.uri)
    assert (addr.display, uri.user, uri.host, addr.tag) == (
        "Anonymous",
        "anonymous",
        "anonymous.invalid",
        "x",
    )
