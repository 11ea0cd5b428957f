"""Endpoints (phones, PBXs) and carriers we register to, as seen by the B2BUA.

`EndpointService` is the B2BUA's one hook object for registrations (`B2BUA.endpoints`):

* ``on_register(tx)``: the registrar. Digest (401), suspension, expiry (423), NAT detection,
  replace rules, un-register, bindings kept in memory and mirrored to SQLite.
* ``admit(tx)``: a new INVITE that does not come from a mapping gateway. If its Request-URI is
  the contact of one of our outbound registrations, it is that carrier's call
  (``registration:<name>``); otherwise it must be an endpoint's: digest (407), suspension,
  and the From user must be the authenticated account (``endpoint:<account>``).
* ``route(callee, mapping)``: a call to an endpoint account goes to its registered contact
  (Request-URI) at the address its REGISTER came from (through its NAT); with a fleet
  (docs/fleet.md), an account registered on another edge goes to that edge, which relays it
  over its own flow to the phone (`registrar/fleet.py` chooses); an account with no live
  binding gets 480. A call a fleet peer relayed to us (admitted as ``fleet:<its IP>``) only
  ever goes to our own binding: 404 for a name that is no account, 480 without a binding.

Authentication (`_authenticate`) looks the same from outside for an unknown account, a wrong
password and a suspended account or source: a request without usable credentials gets a
challenge (401/407), one with credentials that do not let it in gets ``403 Forbidden`` with the
same headers, after the same one hash (docs/registration.md, "What an attacker sees"). Every
answer given before the request is authenticated goes out statelessly (`respond_stateless`):
nothing is retransmitted to a source that has not proved who it is.

The rules are in `sipedge.registrar.rules` (pure), the store behind
`sipedge.store.BindingStore`.

Owns: `EndpointService` (it implements `sipedge.calls.EndpointHooks`) and `RegistrarStats`.
Must not: reach into the B2BUA or a call (it answers the hooks it is asked), or build a call's
attempt itself: a call to an endpoint leaves as a `GatewayTarget` the B2BUA dials like a gateway.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sipedge.calls import GatewayTarget, SourceTable, SwitchingPolicy, switching_policy
from sipedge.config import RoutingGateway
from sipedge.ratelog import RateLimitedLog
from sipedge.registrar.fleet import (
    FLEET_PREFIX,
    OUTCOMES,
    choose,
    relay_allowed,
    relay_uri,
)
from sipedge.registrar.rules import (
    MIN_EXPIRES,
    AuthGuard,
    BindingTable,
    Outcome,
    behind_nat,
    decide_expiry,
    parse_expires,
)
from sipedge.sip.digest import DigestServer, Secret, Verdict
from sipedge.sip.message import (
    ParseError,
    make_response,
    new_tag,
    parse_name_addr,
    parse_uri,
)
from sipedge.sip.transport.destination import (
    STREAM_TRANSPORTS,
    TLS,
    UDP,
    Destination,
)
from sipedge.store import Binding
from sipedge.typedefs import Addr

if TYPE_CHECKING:
    from sipedge.config import Config
    from sipedge.sip.transaction import ServerTransaction
    from sipedge.store import BindingStore, FleetView
    from sipedge.uplinks import RegistrationManager

log = logging.getLogger(__name__)

ENDPOINT_PREFIX = "endpoint:"
# a connection id no connection has (they count from 1): the stream transport reports the
# request at once as `connection-closed`
NO_CONNECTION = -1
REGISTRATION_PREFIX = "registration:"


@dataclass
class RegistrarStats:
    registers: int = 0
    registered: int = 0  # 200 with a binding
    unregistered: int = 0
    challenges: int = 0
    auth_failures: int = 0
    suspended_rejects: int = 0  # credentials refused (403 Forbidden) while suspended
    replays: int = 0  # right response with a used nonce count or another Request-URI
    suspensions: int = 0
    too_brief: int = 0
    refused_exists: int = 0
    expired: int = 0
    invites_authenticated: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    fleet: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))


def flow_of(binding: Binding) -> Destination | None:
    """The connection a binding registered over TCP or TLS, to call the endpoint on (RFC 3261
    18.2.2, RFC 5626-lite); None for UDP. No fallback: when the connection has closed the
    attempt fails at once (`transport: connection-closed`) instead of connecting to the
    endpoint's address, which behind a NAT takes no connection (the endpoint re-registers on a
    new one). A binding restored from the store after a restart has no connection any more;
    its Contact's `;transport=` says it was made over a stream, so it fails the same way."""
    source = binding.source
    if type(source) is Destination and source.reliable:
        return Destination(source[0], source[1], source.transport, source.connection)
    try:
        contact = parse_uri(binding.contact)
    except ParseError:
        return None
    transport = (contact.params.get("transport") or "").lower()
    if contact.scheme == "sips":
        transport = TLS
    if transport in STREAM_TRANSPORTS:
        return Destination(source[0], source[1], transport, NO_CONNECTION)
    return None


class EndpointService:
    def __init__(
        self,
        config: Config,
        store: BindingStore | None,
        registrations: RegistrationManager | None = None,
        clock: Callable[[], float] = time.time,
        fleet: FleetView | None = None,
    ) -> None:
        self.clock = clock
        self.store = store
        self.fleet = fleet
        self.registrations = registrations
        self.table = BindingTable()
        self.stats = RegistrarStats()
        p = config.parameters
        security = config.security
        self.guard = AuthGuard(
            p.endpoint_register_retry, p.endpoint_register_suspend, security.max_tracked_sources
        )
        self.digest = DigestServer(
            realm=config.node_name,
            algorithms=security.digest_algorithms,
            max_nonces=security.max_nonces,
            clock=clock,
        )
        self.refusals = RateLimitedLog(log, security.log_interval)
        self.apply_config(config)
        if store is not None:
            now = clock()
            for binding in store.load(now):
                if binding.account in self.passwords:
                    self.table.bindings[binding.account] = binding
            self.table.version += 1

    def apply_config(self, config: Config) -> None:
        self.config = config
        p = config.parameters
        security = config.security
        self.passwords = {e.account: e.password for e in config.endpoints}
        self.secrets = {
            e.account: Secret(e.password, e.digest_algorithms or security.digest_algorithms)
            for e in config.endpoints
        }
        self.guard.configure(
            p.endpoint_register_retry, p.endpoint_register_suspend, security.max_tracked_sources
        )
        self.digest.configure(config.node_name, security.digest_algorithms, security.max_nonces)
        self.refusals.interval = security.log_interval
        self.policy: SwitchingPolicy = switching_policy(p)
        self.fleet_peers = SourceTable([("fleet", config.fleet.peers)])
        # accounts removed from the config lose their bindings
        for account in [a for a in self.table.bindings if a not in self.passwords]:
            self._remove(account)

    # -- housekeeping (called every 0.5 s by the daemon) ------------------------------------------
    def tick(self) -> None:
        gone = self.table.expire(self.clock())
        self.stats.expired += len(gone)
        if self.store is not None:
            for account in gone:
                self.store.delete(account)
            self.store.flush()

    def nat_devices(self) -> list[Addr]:
        return self.table.nat_devices(self.clock())

    # -- REGISTER ---------------------------------------------------------------------------
    def _answer(
        self, tx: ServerTransaction, status: int, reason: str | None = None, stateless: bool = False
    ) -> None:
        self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1
        response = make_response(tx.request, status, reason, to_tag=new_tag())
        if stateless:
            tx.respond_stateless(response)
        else:
            tx.respond(response)

    def _challenge(
        self, tx: ServerTransaction, status: int, claimed: str | None, stale: bool = False
    ) -> None:
        """A fresh challenge, bound to the source, with the algorithms of the claimed account
        (the global ones for an unknown name); stateless: the source is not authenticated."""
        self.stats.challenges += 1
        self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1
        response = make_response(tx.request, status, to_tag=new_tag())
        name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
        secret = self.secrets.get(claimed or "")
        algorithms = secret.algorithms if secret is not None else None
        for value in self.digest.challenges(tx.source[0], algorithms, stale):
            response.headers.add(name, value)
        tx.respond_stateless(response)

    def _refuse(self, tx: ServerTransaction) -> None:
        """The one answer to credentials that do not let the request in, whatever the reason
        (unknown account, wrong password, suspended account or source)."""
        self._answer(tx, 403, "Forbidden", stateless=True)

    def _authenticate(
        self, tx: ServerTransaction, claimed: str | None, challenge_status: int
    ) -> str | None:
        """The authenticated account, or None after answering (challenge or 403 Forbidden).

        No branch skips the digest check: a suspended or unknown account costs the same hash
        as a known one, and gets the same answer as a wrong password."""
        request = tx.request
        now = self.clock()
        source_ip = tx.source[0]
        header = request.headers.get("Authorization") or request.headers.get("Proxy-Authorization")
        if not header:
            self._challenge(tx, challenge_status, claimed)
            return None
        result = self.digest.check(
            header,
            method=request.method,
            uri=request.uri,
            source=source_ip,
            lookup=self.secrets.get,
        )
        if result.verdict == Verdict.MALFORMED:
            self._challenge(tx, challenge_status, claimed)
            return None
        if result.verdict == Verdict.REPLAY:
            self.stats.replays += 1
            self.refusals.event(
                "replay", "digest replay refused (%s) from %s", result.reason, source_ip
            )
            self._challenge(tx, challenge_status, claimed)
            return None
        known = claimed if claimed in self.secrets else None
        account = result.user if result.user in self.secrets else known
        if self.guard.suspended(account, source_ip, now) or self.guard.suspended(
            known, source_ip, now
        ):
            # not counted again: a phone retrying with its right password must not keep itself
            # suspended; but the right password does not work until the suspension ends
            self.stats.suspended_rejects += 1
            self.refusals.event("suspended", "credentials refused: suspended (from %s)", source_ip)
            self._refuse(tx)
            return None
        if result.verdict == Verdict.STALE:
            self._challenge(tx, challenge_status, claimed, stale=True)
            return None
        if result.verdict == Verdict.BAD or (claimed is not None and result.user != claimed):
            self.stats.auth_failures += 1
            if self.guard.failure(account, source_ip, now):
                self.stats.suspensions += 1
                self.refusals.event(
                    "suspension",
                    "authentication suspended: account %s, source %s (%s failures)",
                    account,
                    source_ip,
                    self.guard.retry,
                )
            self._refuse(tx)
            return None
        self.guard.success(result.user, source_ip)
        return result.user

    def on_register(self, tx: ServerTransaction) -> None:
        self.stats.registers += 1
        request = tx.request
        try:
            to_user = parse_uri(parse_name_addr(request.headers.get("To") or "").uri).user
        except ParseError:
            self._answer(tx, 400, "Bad To", stateless=True)
            return
        account = self._authenticate(tx, to_user, 401)
        if account is None:
            return
        contacts = request.headers.get_all("Contact")
        now = self.clock()
        try:
            header_expires = parse_expires(None, request.headers.get("Expires"))
        except ValueError:
            self._answer(tx, 400, "Bad Expires")
            return
        if not contacts:
            self._ok(tx, self.table.get(account, now))  # a query
            return
        if len(contacts) > 1:
            self._answer(tx, 400, "One Contact Per Registration")
            return
        raw = contacts[0].strip()
        if raw == "*":
            if header_expires != 0:
                self._answer(tx, 400, "Wildcard Needs Expires 0")
                return
            self._remove(account)
            self.stats.unregistered += 1
            self._ok(tx, None)
            return
        try:
            contact = parse_name_addr(raw)
            contact_uri = parse_uri(contact.uri)
            asked = parse_expires(contact.params.get("expires"), request.headers.get("Expires"))
        except (ParseError, ValueError):
            self._answer(tx, 400, "Bad Contact")
            return
        if asked == 0:
            old = self.table.get(account, now)
            if old is not None and (old.contact == contact.uri or old.call_id == request.call_id):
                self._remove(account)
            self.stats.unregistered += 1
            self._ok(tx, None)
            return
        via = request.top_via
        nat = behind_nat(tx.source, via.host, via.port, contact_uri.host, contact_uri.port)
        p = self.config.parameters
        decision = decide_expiry(asked, nat, p.endpoint_expire, p.endpoint_nat_expire)
        if decision.granted is None:
            self.stats.too_brief += 1
            response = make_response(request, 423, to_tag=new_tag())
            response.headers.add("Min-Expires", str(MIN_EXPIRES))
            self.stats.by_status[423] = self.stats.by_status.get(423, 0) + 1
            tx.respond(response)
            return
        binding = Binding(
            account=account,
            contact=contact.uri,
            source=tx.source,
            nat=nat,
            expires_at=now + decision.granted,
            call_id=request.call_id,
            cseq=request.cseq[0],
            registered_at=now,
            user_agent=request.headers.get("User-Agent") or "",
        )
        outcome = self.table.register(binding, p.endpoint_register_replace, now)
        if outcome == Outcome.REFUSED_EXISTS:
            self.stats.refused_exists += 1
            self._answer(tx, 403, "Already Registered")
            return
        if self.store is not None:
            self.store.put(binding)
        self.stats.registered += 1
        self._ok(tx, binding, decision.granted)

    def _ok(
        self, tx: ServerTransaction, binding: Binding | None, granted: int | None = None
    ) -> None:
        response = make_response(tx.request, 200, to_tag=new_tag())
        if binding is not None:
            left = (
                granted if granted is not None else max(0, int(binding.expires_at - self.clock()))
            )
            response.headers.add("Contact", f"<{binding.contact}>;expires={left}")
        self.stats.by_status[200] = self.stats.by_status.get(200, 0) + 1
        tx.respond(response)

    def _remove(self, account: str) -> None:
        if self.table.remove(account) and self.store is not None:
            self.store.delete(account)

    # -- calls ------------------------------------------------------------------------------
    def admit(self, tx: ServerTransaction) -> str | None:
        """Mapping name for a new INVITE not from a mapping gateway; "" when answered here;
        None when it is nobody we know (the B2BUA answers 403)."""
        request = tx.request
        if self.fleet is not None and self.is_fleet_peer(tx.source[0]):
            self.stats.fleet["relayed_in"] += 1
            return FLEET_PREFIX + tx.source[0]  # only to our own bindings: route()
        if self.registrations is not None:
            name = self.registrations.match(request, tx.source)
            if name is not None:
                return REGISTRATION_PREFIX + name
        if not self.passwords:
            return None
        try:
            caller = parse_uri(parse_name_addr(request.headers.get("From") or "").uri).user
        except ParseError:
            return None
        account = self._authenticate(tx, caller, 407)
        if account is None:
            return ""
        self.stats.invites_authenticated += 1
        return ENDPOINT_PREFIX + account

    def is_fleet_peer(self, address: str) -> bool:
        """Another edge of the fleet (`fleet.peers`): we relay its calls to our phones."""
        return self.fleet is not None and self.fleet_peers.lookup(address) is not None

    def route(
        self, callee: str, mapping: str | None = None
    ) -> tuple[GatewayTarget, SwitchingPolicy] | int | None:
        """Where a call to `callee` goes if it is an endpoint account (480: not registered);
        `mapping`: who the call came from (a fleet peer's calls go to our bindings only)."""
        onward = relay_allowed(mapping)
        if callee not in self.passwords:
            return None if onward else 404  # a peer's call never reaches our gateways
        now = self.clock()
        binding = self.table.get(callee, now)
        if binding is None:
            return self._fleet_route(callee, now) if onward else 480
        if onward and self.fleet is not None:
            self.stats.fleet["local"] += 1
        name = ENDPOINT_PREFIX + callee
        host, port = binding.source
        flow = flow_of(binding)
        gw = RoutingGateway(
            name=name, address=host, port=port, transport=flow.transport if flow else UDP
        )
        target = GatewayTarget(name, host, port, gw, request_uri=binding.contact, flow=flow)
        return target, self.policy

    def _fleet_route(self, callee: str, now: float) -> tuple[GatewayTarget, SwitchingPolicy] | int:
        """Through the edge that owns the phone's binding (and its NAT flow), or 480."""
        if self.fleet is None:
            return 480
        timeout = self.config.fleet.node_timeout
        choice = choose(self.fleet.lookup(callee), now, timeout, self.is_fleet_peer)
        self.stats.fleet[choice.outcome] += 1
        remote = choice.binding
        if remote is None:
            return 480
        name = f"{ENDPOINT_PREFIX}{callee}@{remote.node}"
        host, port = remote.node_host, remote.node_port
        gw = RoutingGateway(name=name, address=host, port=port, transport=UDP)
        target = GatewayTarget(name, host, port, gw, request_uri=relay_uri(callee, remote))
        return target, self.policy

    def bindings(self) -> list[dict[str, object]]:
        now = self.clock()
        return [b.to_json(now) for b in self.table.bindings.values() if b.live(now)]
