"""Caller identity and privacy on the outgoing INVITE (RFC 3323 Privacy, RFC 3325 PAI/PPI).

Pure logic, no I/O. The B2BUA builds the outgoing INVITE with its own From tag, Call-ID,
Contact and Via; this module decides only the From display name, the From user (and host when
the caller is anonymised) and the Privacy, P-Asserted-Identity and P-Preferred-Identity
headers. The rules and the reasons behind them are in docs/identity.md; in short:

1. Entry: a mapping gateway without Support Privacy loses Privacy/PAI/PPI (treated as absent).
2. Privacy: the routing gateway's Id or Passthrough setting wins; with the gateway at None, the
   global SS_SIP_USER_AGENT_PRIVACY applies to calls sent through an outbound registration
   (Ignore: none, Id: ``id``, None: ``none``), and no Privacy header is sent otherwise.
3. From is anonymised (``"Anonymous" <sip:anonymous@anonymous.invalid>``) whenever the Privacy
   header we send asks for ``id`` or ``user`` privacy.
4. The caller number goes through the gateway's caller dial plan (first matching rule wins)
   before it is written into From, PAI and PPI.
5. PAI/PPI: None / Passthrough (the incoming values) / Caller (built from the dial-planned
   number); never sent to a gateway that is not trusted (RFC 3325 spec(T)).
6. SS_SIP_E164_DISPLAY_FROM sets the From display name unless From is anonymised.

`outgoing_identity` works on plain values; `incoming_identity` and `apply_identity` read and
write `sipedge.sip.message.Headers`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sipedge.sip.message import Headers

__all__ = [
    "ANONYMOUS_DISPLAY",
    "ANONYMOUS_HOST",
    "ANONYMOUS_USER",
    "DialPlanRule",
    "DialPlanRuleLike",
    "IdentityPolicy",
    "IncomingIdentity",
    "OutgoingIdentity",
    "apply_dial_plan",
    "apply_identity",
    "caller_identity_uri",
    "e164_display",
    "incoming_identity",
    "outgoing_identity",
    "policy_from_config",
    "privacy_tokens",
    "ua_privacy_header",
]

ANONYMOUS_DISPLAY = "Anonymous"
ANONYMOUS_USER = "anonymous"
ANONYMOUS_HOST = "anonymous.invalid"

UA_PRIVACY = ("Ignore", "Id", "None")
E164_DISPLAY = ("Ignore", "E164", "Original")
GW_PRIVACY = ("None", "Passthrough", "Id")
GW_IDENTITY = ("None", "Passthrough", "Caller")

# Privacy values (RFC 3323 4.2) after which the From we send must not carry the caller: "id"
# because the contract ties Privacy: id to an anonymous From, "user" because that is what it
# asks for. "header" is about Via/Contact/Record-Route, which a B2BUA never forwards anyway;
# "session" is about media; "none" and "critical" ask for nothing to be hidden.
_ANONYMISING = frozenset(("id", "user"))

_PHONE = re.compile(r"\+?[0-9]+")


# -- dial plan ----------------------------------------------------------------------------------


class DialPlanRuleLike(Protocol):
    """Anything with a compiled `match` and a `replace` template (config.DialPlanRule is one)."""

    @property
    def match(self) -> re.Pattern[str]: ...

    @property
    def replace(self) -> str: ...


@dataclass(frozen=True)
class DialPlanRule:
    match: re.Pattern[str]
    replace: str


def apply_dial_plan(rules: Sequence[DialPlanRuleLike], number: str) -> str:
    """Rewrite `number` with the first rule whose pattern matches at its start (`re.match`).

    The matched part is replaced by the rule's template (backreferences as in `re.sub`); the
    rest of the number is kept, so ``^0`` -> ``+44`` turns ``020`` into ``+4420``. No rule
    matching leaves the number unchanged. Only one rule ever applies.
    """
    for rule in rules:
        m = rule.match.match(number)
        if m is not None:
            return m.expand(rule.replace) + number[m.end() :]
    return number


# -- values -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncomingIdentity:
    """What the caller's INVITE says about the caller, as received."""

    from_display: str | None  # display name of From, unquoted
    from_user: str  # caller number: user part of the From URI
    privacy: str | None = None  # the Privacy header value(s), joined with "; "
    pai: tuple[str, ...] = ()  # P-Asserted-Identity values
    ppi: tuple[str, ...] = ()  # P-Preferred-Identity values


def _word(field_name: str, value: str, allowed: tuple[str, ...]) -> str:
    for word in allowed:
        if value.lower() == word.lower():
            return word
    raise ValueError(f"{field_name}: unknown value {value!r} (expected {'/'.join(allowed)})")


@dataclass(frozen=True)
class IdentityPolicy:
    """The identity settings that apply to one call attempt toward one routing gateway.

    Words are accepted in any case and stored in the spelling of parameters.md; an unknown word
    raises ValueError naming the field.
    """

    support_privacy: bool  # mapping gateway the call came from: "Support Privacy"
    ua_privacy: str  # SS_SIP_USER_AGENT_PRIVACY: Ignore / Id / None
    e164_display: str  # SS_SIP_E164_DISPLAY_FROM: Ignore / E164 / Original
    gw_privacy: str  # routing gateway "Privacy": None / Passthrough / Id
    gw_pai: str  # routing gateway "P-Asserted-Identity": None / Passthrough / Caller
    gw_ppi: str  # routing gateway "P-Preferred-Identity": None / Passthrough / Caller
    gw_trusted: bool  # routing gateway "trusted" (RFC 3325 spec(T))
    dial_plan: Sequence[DialPlanRuleLike] = ()  # routing gateway "Caller dial plan"
    via_registration: bool = False  # sent through one of our outbound registrations

    def __post_init__(self) -> None:
        for name, allowed in (
            ("ua_privacy", UA_PRIVACY),
            ("e164_display", E164_DISPLAY),
            ("gw_privacy", GW_PRIVACY),
            ("gw_pai", GW_IDENTITY),
            ("gw_ppi", GW_IDENTITY),
        ):
            object.__setattr__(self, name, _word(name, getattr(self, name), allowed))


@dataclass(frozen=True)
class OutgoingIdentity:
    """What the outgoing INVITE says about the caller."""

    from_display: str | None  # None: no display name
    from_user: str
    from_host: str | None  # None: keep our own host (and port) in the From URI
    privacy: str | None  # None: no Privacy header
    pai: tuple[str, ...] = ()
    ppi: tuple[str, ...] = ()

    @property
    def anonymous(self) -> bool:
        return self.from_host == ANONYMOUS_HOST


# -- helpers ------------------------------------------------------------------------------------


def privacy_tokens(value: str | None) -> frozenset[str]:
    """The priv-values of a Privacy header value, lower-cased (``"id; critical"`` -> {id,
    critical}). Commas are accepted as separators too, as some equipment sends them."""
    if not value:
        return frozenset()
    return frozenset(t.strip().lower() for t in re.split(r"[;,]", value) if t.strip())


def ua_privacy_header(ua_privacy: str) -> str | None:
    """The Privacy header for a request we originate as a registered UA (REGISTER included):
    Ignore -> none at all, Id -> ``id``, None -> ``none``."""
    word = _word("ua_privacy", ua_privacy, UA_PRIVACY)
    return {"Ignore": None, "Id": "id", "None": "none"}[word]


def e164_display(number: str) -> str | None:
    """``+`` and the digits of a dial-planned number; None when it is not a phone number (a SIP
    user name such as ``alice`` has no E.164 form)."""
    if _PHONE.fullmatch(number) is None:
        return None
    return number if number.startswith("+") else "+" + number


def caller_identity_uri(number: str, our_host: str) -> str:
    """The PAI/PPI value for the "Caller" setting: a SIP URI on our host; a number in E.164
    (leading ``+``) is marked ``user=phone`` (RFC 3261 19.1.1), as IMS interconnects expect."""
    if number.startswith("+") and _PHONE.fullmatch(number):
        return f"<sip:{number}@{our_host};user=phone>"
    return f"<sip:{number}@{our_host}>"


def _has_caller(number: str) -> bool:
    return bool(number) and number.lower() != ANONYMOUS_USER


# -- the decision -------------------------------------------------------------------------------


def outgoing_identity(
    incoming: IncomingIdentity, policy: IdentityPolicy, *, our_host: str
) -> OutgoingIdentity:
    """Decide the identity of the outgoing INVITE (see the module docstring and
    docs/identity.md)."""
    # 1. entry rule of the mapping gateway
    if policy.support_privacy:
        in_privacy, in_pai, in_ppi = incoming.privacy, incoming.pai, incoming.ppi
    else:
        in_privacy, in_pai, in_ppi = None, (), ()

    # 2. Privacy header
    privacy: str | None
    if policy.gw_privacy == "Id":
        privacy = "id"
    elif policy.gw_privacy == "Passthrough":
        privacy = in_privacy or None
    elif policy.via_registration:
        privacy = ua_privacy_header(policy.ua_privacy)
    else:
        privacy = None

    # 4. caller number through the gateway's dial plan
    number = apply_dial_plan(policy.dial_plan, incoming.from_user)

    # 5. identity headers, only toward trusted gateways
    def identity(setting: str, received: tuple[str, ...]) -> tuple[str, ...]:
        if not policy.gw_trusted or setting == "None":
            return ()
        if setting == "Passthrough":
            return tuple(received)
        return (caller_identity_uri(number, our_host),) if _has_caller(number) else ()

    pai = identity(policy.gw_pai, in_pai)
    ppi = identity(policy.gw_ppi, in_ppi)

    # 3. anonymous From
    if privacy_tokens(privacy) & _ANONYMISING:
        return OutgoingIdentity(
            ANONYMOUS_DISPLAY, ANONYMOUS_USER, ANONYMOUS_HOST, privacy, pai, ppi
        )

    # 6. display name
    display: str | None
    if policy.e164_display == "E164":
        display = e164_display(number)
        if display is None:
            display = incoming.from_display
    elif policy.e164_display == "Original":
        display = incoming.from_user or incoming.from_display
    else:
        display = incoming.from_display
    return OutgoingIdentity(display or None, number, None, privacy, pai, ppi)


# -- headers ------------------------------------------------------------------------------------


def incoming_identity(headers: Headers) -> IncomingIdentity:
    """Read the identity of a received INVITE. A From that does not parse gives an empty
    caller (the call setup code rejects such requests before this matters)."""
    from sipedge.sip.message import parse_name_addr, parse_uri

    display: str | None = None
    user = ""
    try:
        addr = parse_name_addr(headers.get("From") or "")
        display = addr.display
        user = parse_uri(addr.uri).user or ""
    except ValueError:
        pass
    user = user.split(";", 1)[0]  # tel-style parameters in the user part
    privacy_values = [v.strip() for v in headers.get_all("Privacy") if v.strip()]
    return IncomingIdentity(
        from_display=display or None,
        from_user=user,
        privacy="; ".join(privacy_values) or None,
        pai=tuple(headers.get_all("P-Asserted-Identity")),
        ppi=tuple(headers.get_all("P-Preferred-Identity")),
    )


def apply_identity(headers: Headers, out: OutgoingIdentity) -> None:
    """Write `out` onto the headers of an outgoing INVITE built by the B2BUA.

    From keeps our tag and other header parameters; its URI keeps our scheme, host, port and URI
    parameters, except when `out.from_host` is set (anonymous caller), where the URI becomes
    exactly ``sip:{user}@{host}``. Privacy, P-Asserted-Identity and P-Preferred-Identity are
    replaced by `out`'s values (removed when empty). Nothing else is touched.
    Raises ValueError when there is no From header to rewrite.
    """
    from sipedge.sip.message import NameAddr, parse_name_addr, parse_uri

    raw = headers.get("From")
    if raw is None:
        raise ValueError("outgoing request has no From header")
    addr = parse_name_addr(raw)
    if out.from_host is not None:
        uri = f"sip:{out.from_user}@{out.from_host}"
    else:
        parsed = parse_uri(addr.uri)
        parsed.user = out.from_user
        parsed.password = None
        uri = str(parsed)
    headers.replace_first("From", str(NameAddr(out.from_display, uri, dict(addr.params))))

    headers.remove("Privacy")
    if out.privacy:
        headers.add("Privacy", out.privacy)
    for name, values in (("P-Asserted-Identity", out.pai), ("P-Preferred-Identity", out.ppi)):
        headers.remove(name)
        for value in values:
            headers.add(name, value)


# -- config glue --------------------------------------------------------------------------------


class _Parameters(Protocol):
    @property
    def sip_user_agent_privacy(self) -> str: ...

    @property
    def sip_e164_display_from(self) -> str: ...


class _MappingGateway(Protocol):
    @property
    def support_privacy(self) -> bool: ...


class _RoutingGateway(Protocol):
    @property
    def trusted(self) -> bool: ...

    @property
    def privacy(self) -> str: ...

    @property
    def p_asserted_identity(self) -> str: ...

    @property
    def p_preferred_identity(self) -> str: ...

    @property
    def caller_dial_plan(self) -> Sequence[DialPlanRuleLike]: ...


def policy_from_config(
    parameters: _Parameters,
    routing_gateway: _RoutingGateway,
    mapping_gateway: _MappingGateway | None,
    *,
    via_registration: bool = False,
) -> IdentityPolicy:
    """The policy for a call from `mapping_gateway` (None: not from a mapping gateway, e.g. a
    registered endpoint, whose identity headers are not trusted) to `routing_gateway`."""
    return IdentityPolicy(
        support_privacy=mapping_gateway is not None and mapping_gateway.support_privacy,
        ua_privacy=parameters.sip_user_agent_privacy,
        e164_display=parameters.sip_e164_display_from,
        gw_privacy=routing_gateway.privacy,
        gw_pai=routing_gateway.p_asserted_identity,
        gw_ppi=routing_gateway.p_preferred_identity,
        gw_trusted=routing_gateway.trusted,
        dial_plan=tuple(routing_gateway.caller_dial_plan),
        via_registration=via_registration,
    )
