"""Authentication toward carriers: whether a routing gateway's 401/407 to our INVITE is answered.

A routing gateway with credentials (`auth_user`, `auth_password` or `auth_password_file`,
optionally `auth_realm`) that challenges our INVITE is answered once (RFC 3261 22.2): the
INVITE goes again with `Authorization` (after a 401's WWW-Authenticate) or
`Proxy-Authorization` (after a 407's Proxy-Authenticate). Among several challenges the
strongest algorithm we support wins (SHA-256 over MD5); qop=auth when offered, none otherwise.
The digest itself (parsing, hashing, the header value) is `sip/digest.py`'s.

Anything else ends the attempt with the challenge's status, and switching decides what follows
as for any failure (docs/call-control.md, "Authentication toward carriers"):

==================  ==========================================================================
refusal             when
==================  ==========================================================================
``rechallenged``    a second challenge in the same attempt: our credentials were refused
``no_credentials``  the gateway has none configured (the behaviour before carriers could
                    be given credentials)
``realm_mismatch``  ``auth_realm`` is set and no challenge we could answer is of that realm
``unsupported``     no challenge we can answer: another scheme or algorithm, auth-int only,
                    malformed
==================  ==========================================================================

Owns: `CarrierCredentials`, `Answer`, `Refusal`, the decision (`decide`) and the attempt
record's challenge fields (`on_challenge`).
Must not: send, read the clock or files, or import config/ or a module of calls/: the call
(`calls/call.py`) sends the INVITE again or ends the attempt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sipedge.sip.digest import DigestError, answer_challenge, pick_challenge
from sipedge.sip.message import Request, Response
from sipedge.store import AttemptRecord

# status -> (the header holding its challenges, the header that answers them)
CHALLENGES = {
    401: ("WWW-Authenticate", "Authorization"),
    407: ("Proxy-Authenticate", "Proxy-Authorization"),
}
ANSWERED = "answered"
RECHALLENGED = "rechallenged"
NO_CREDENTIALS = "no_credentials"
REALM_MISMATCH = "realm_mismatch"
UNSUPPORTED = "unsupported"


@dataclass(frozen=True)
class CarrierCredentials:
    """What we answer a routing gateway's challenge with; `realm` None: any realm."""

    user: str
    password: str = field(repr=False)
    realm: str | None = None


@dataclass(frozen=True)
class Answer:
    """Send the INVITE again with `header: value` (`algorithm` goes into the CDR)."""

    header: str
    value: str
    algorithm: str
    result: str = ANSWERED


@dataclass(frozen=True)
class Refusal:
    """The challenge ends the attempt; `result` says why (the table above)."""

    result: str


def decide(
    status: int,
    challenges: Sequence[str],
    credentials: CarrierCredentials | None,
    answered: bool,
    *,
    method: str,
    uri: str,
    cnonce: str | None = None,
) -> Answer | Refusal:
    """The answer to a 401/407 carrying `challenges` (the values of its WWW-Authenticate or
    Proxy-Authenticate) for a request `method` to `uri`; `answered`: this attempt has already
    answered a challenge. `cnonce` is for tests (default: random from a CSPRNG)."""
    if status not in CHALLENGES:
        raise ValueError(f"not a challenge: {status!r}")
    if answered:
        return Refusal(RECHALLENGED)
    if credentials is None:
        return Refusal(NO_CREDENTIALS)
    values = list(challenges)
    challenge = pick_challenge(values, realm=credentials.realm, strongest=True)
    if challenge is None:
        usable_elsewhere = credentials.realm is not None and pick_challenge(values) is not None
        return Refusal(REALM_MISMATCH if usable_elsewhere else UNSUPPORTED)
    try:
        value = answer_challenge(
            challenge,
            user=credentials.user,
            password=credentials.password,
            method=method,
            uri=uri,
            cnonce=cnonce,
        )
    except DigestError:  # pragma: no cover - pick_challenge only returns answerable ones
        return Refusal(UNSUPPORTED)
    return Answer(CHALLENGES[status][1], value, challenge.get("algorithm", "MD5"))


def on_challenge(
    record: AttemptRecord,
    credentials: CarrierCredentials | None,
    invite: Request,
    response: Response,
) -> Answer | Refusal:
    """`decide` for the gateway's 401/407 `response` to the attempt's current `invite`, noted
    in the attempt's CDR record (`challenged`, `auth_algorithm`, `auth_failure`)."""
    header = CHALLENGES[response.status][0]
    decision = decide(
        response.status,
        response.headers.get_all(header),
        credentials,
        record.auth_algorithm is not None,
        method=invite.method,
        uri=invite.uri,
    )
    record.challenged = True
    if isinstance(decision, Answer):
        record.auth_algorithm = decision.algorithm
    else:
        record.auth_failure = decision.result
    return decision
