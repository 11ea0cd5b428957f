"""Mapping gateways that authenticate by digest (issue 16): who a new INVITE is from.

A mapping gateway's `auth` says how its INVITEs are admitted:

* ``source``: by its addresses alone (as before);
* ``source+digest``: from its addresses, and then a digest answer as its `username`
  (407 Proxy-Authenticate first);
* ``digest``: a digest answer as its `username`, from any address (its `addresses`, if it has
  any, only name it before the answer arrives).

`admission` is the decision (pure): given the gateway the source address matched, the user
name in the request's credentials and the digest-only gateways by user name, whether to admit
at once, to require digest of one gateway (or of whichever digest-only gateway answers), or to
leave the request to the endpoints (registrar) and the B2BUA's 403 Unknown Source.
`MappingAuth` applies it: it checks the Proxy-Authorization with a `DigestServer` (MD5,
SHA-256, qop=auth, nonces bound to the source, stale nonces, nonce-count replay bounds: all of
`sip/digest.py`) and answers 407 or 403 statelessly, as the registrar does for endpoints.

When the registrar has endpoint accounts, its `DigestServer` is shared (`share`): an INVITE
from an unknown address without credentials is challenged by the registrar, and the answer
with a gateway's user name comes here; one nonce table serves both, so a nonce is counted once.

Owns: `admission`, `Admission`, `MappingAuth` and its counters (`results`).
Must not: look up sources (`routing.SourceTable` does), know endpoint accounts, or keep a
transaction: every answer before authentication is sent once and forgotten.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sipedge.sip.digest import DigestError, DigestServer, Secret, Verdict, parse_auth_header
from sipedge.sip.message import make_response, new_tag

if TYPE_CHECKING:
    from sipedge.config import Config, MappingGateway
    from sipedge.sip.transaction import ServerTransaction

SOURCE = "source"
DIGEST = "digest"
SOURCE_DIGEST = "source+digest"

ADMIT = "admit"  # the gateway, as it is
CHECK = "check"  # digest first: of `gateway`, or (gateway None) any digest-only gateway
PASS = "pass"  # not a mapping gateway's INVITE: endpoints, then 403 Unknown Source

# prefix of a mapping gateway's password_file contents among the daemon's password files
MAPPING_PASSWORD = "mapping_gateways:"

# what `MappingAuth.results` counts (sipedge_mapping_auth_total{result})
RESULTS = ("authenticated", "challenged", "stale", "replay", "refused")


@dataclass(frozen=True)
class Admission:
    action: str  # ADMIT, CHECK or PASS
    gateway: str | None = None


def admission(
    by_source: MappingGateway | None,
    claimed_user: str | None,
    digest_only: Mapping[str, str],
    endpoints_challenge: bool,
) -> Admission:
    """What to do with a new INVITE.

    `by_source`: the mapping gateway whose addresses hold the source (None: none);
    `claimed_user`: the username of its Proxy-Authorization / Authorization (None: none);
    `digest_only`: the gateways with ``auth: digest``, by user name;
    `endpoints_challenge`: the registrar challenges unknown sources (it has accounts)."""
    if by_source is not None:
        if by_source.auth == SOURCE:
            return Admission(ADMIT, by_source.name)
        return Admission(CHECK, by_source.name)
    if claimed_user is not None and claimed_user in digest_only:
        return Admission(CHECK, digest_only[claimed_user])
    if digest_only and not endpoints_challenge:
        return Admission(CHECK)  # challenge; whichever digest-only gateway answers
    return Admission(PASS)


def claimed_user(header: str | None) -> str | None:
    """The username of a credentials header (None: no header, or not one we can read)."""
    if not header:
        return None
    try:
        scheme, params = parse_auth_header(header)
    except DigestError:
        return None
    return params.get("username") if scheme == "digest" else None


class MappingAuth:
    """Digest for mapping gateways: `decide` and `check` (which answers when it refuses)."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.time) -> None:
        security = config.security
        self.own = DigestServer(
            realm=config.node_name,
            algorithms=security.digest_algorithms,
            max_nonces=security.max_nonces,
            clock=clock,
        )
        self.server = self.own
        self.passwords: dict[str, str] = {}  # password_file contents, by gateway name
        self.results: dict[str, int] = dict.fromkeys(RESULTS, 0)
        self.apply_config(config)

    def apply_config(self, config: Config) -> None:
        security = config.security
        self.own.configure(config.node_name, security.digest_algorithms, security.max_nonces)
        self.algorithms = security.digest_algorithms
        self.gateways = {m.name: m for m in config.mapping_gateways if m.auth != SOURCE}
        self.digest_only = {
            m.username: m.name
            for m in config.mapping_gateways
            if m.auth == DIGEST and m.username is not None
        }
        self._secrets()

    def set_passwords(self, passwords: Mapping[str, str]) -> None:
        """The `password_file` contents by gateway name (sipd reads them at start, on reload)."""
        self.passwords = dict(passwords)
        self._secrets()

    def share(self, server: DigestServer) -> None:
        """Use the registrar's digest server (see the module docstring)."""
        self.server = server

    def _secrets(self) -> None:
        self.secrets: dict[str, tuple[str, Secret]] = {}  # user -> (gateway, secret)
        for m in self.gateways.values():
            password = m.password or self.passwords.get(m.name)
            if m.username is not None and password:
                self.secrets[m.username] = (m.name, Secret(password, self.algorithms))

    def decide(
        self, tx: ServerTransaction, by_source: MappingGateway | None, endpoints_challenge: bool
    ) -> Admission:
        header = _credentials(tx)
        return admission(by_source, claimed_user(header), self.digest_only, endpoints_challenge)

    def check(self, tx: ServerTransaction, gateway: str | None) -> str | None:
        """The gateway's name when the request carries its right digest answer; otherwise None
        after answering (407 challenge, or 403 for credentials that do not let it in).
        `gateway` None: any digest-only gateway."""
        request = tx.request
        header = _credentials(tx)
        if not header:
            self._challenge(tx, "challenged")
            return None

        def lookup(user: str) -> Secret | None:
            entry = self.secrets.get(user)
            if entry is None or (gateway is not None and entry[0] != gateway):
                return None
            if gateway is None and user not in self.digest_only:
                return None
            return entry[1]

        result = self.server.check(
            header, method=request.method, uri=request.uri, source=tx.source[0], lookup=lookup
        )
        if result.verdict == Verdict.OK:
            self.results["authenticated"] += 1
            return self.secrets[result.user][0]
        if result.verdict == Verdict.STALE:
            self._challenge(tx, "stale", stale=True)
        elif result.verdict in (Verdict.REPLAY, Verdict.MALFORMED):
            self._challenge(tx, "replay" if result.verdict == Verdict.REPLAY else "challenged")
        else:
            self.results["refused"] += 1
            tx.respond_stateless(make_response(request, 403, "Forbidden", to_tag=new_tag()))
        return None

    def _challenge(self, tx: ServerTransaction, result: str, stale: bool = False) -> None:
        self.results[result] += 1
        response = make_response(tx.request, 407, to_tag=new_tag())
        for value in self.server.challenges(tx.source[0], self.algorithms, stale):
            response.headers.add("Proxy-Authenticate", value)
        tx.respond_stateless(response)


def _credentials(tx: ServerTransaction) -> str | None:
    headers = tx.request.headers
    return headers.get("Proxy-Authorization") or headers.get("Authorization")
