"""The B2BUA: admits new calls, routes them, and dispatches in-dialog traffic to calls.

It is the transaction user of `sipedge.sip.transaction`: new requests, CANCELs, end-to-end ACKs
and stray responses arrive here. Everything configurable is taken from a `Config` snapshot
(`apply_config`) so that a reload changes new calls only; calls in progress keep their own
switching policies and gateway targets.

Owns: `B2BUA` (admission, routing, the calls and dialogs by id, the gateway INVITE of each
attempt, the CDR handed to the store, whose commit releases the BYE's 200) and
`EndpointHooks`, the registrar's part in admission and routing.
Must not: import registrar/ (its `EndpointService` implements `EndpointHooks` and is plugged in
as `B2BUA.endpoints`), or carry out a call's decisions: it hands each call its in-dialog
traffic, and only re-sends a call's ACK for a 2xx retransmitted after its transaction ended.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from sipedge.calls.attempt import CallState, CallStats, GatewayTarget
from sipedge.calls.call import Call
from sipedge.calls.capacity import CallCaps, GatewayLimits
from sipedge.calls.carrier_auth import CarrierCredentials
from sipedge.calls.carrier_events import NO_EVENTS, CarrierEvents, call_pdd, call_reason
from sipedge.calls.identity import (
    apply_identity,
    incoming_identity,
    outgoing_identity,
    policy_from_config,
)
from sipedge.calls.mapping_auth import ADMIT, CHECK, MAPPING_PASSWORD, MappingAuth
from sipedge.calls.media_link import CallMedia
from sipedge.calls.media_policy import MediaPolicy
from sipedge.calls.media_service import MediaService
from sipedge.calls.routing import RouteTable, SourceTable
from sipedge.calls.session_timer import Reject422, TimerSettings, negotiate_uas, uac_headers
from sipedge.calls.summary import call_summary
from sipedge.calls.switching import CallSwitcher, SwitchingPolicy, effective_policy
from sipedge.ratelog import RateLimitedLog
from sipedge.resolver import DnsResolver, Targets, is_literal
from sipedge.sip.dialog import Dialog
from sipedge.sip.message import (
    Headers,
    NameAddr,
    Request,
    Response,
    host_text,
    hostport,
    make_response,
    new_branch,
    new_call_id,
    new_tag,
    parse_name_addr,
    parse_uri,
)
from sipedge.sip.timers import Scheduler
from sipedge.sip.transaction import InviteServerTransaction, ServerTransaction, TransactionLayer
from sipedge.sip.transport.destination import UDP, transport_of
from sipedge.store import CallRecord, CdrStore, OnCommitted
from sipedge.typedefs import Addr

if TYPE_CHECKING:
    from sipedge.config import Config, MediaConfig, Parameters, RoutingGateway

log = logging.getLogger(__name__)

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset()

# Headers of the caller's INVITE that travel to the gateway unchanged. Everything else that is
# end-to-end (identity, privacy) is decided by the identity rules; hop-by-hop ones are ours.
PASS_THROUGH = ("Content-Type", "Allow", "Accept", "User-Agent", "Subject", "Organization")


class GatewayResolver(Protocol):
    """Gateway names to addresses (`sipedge.resolver.DnsResolver` implements it)."""

    def resolve(
        self, host: str, port: int | None, done: Callable[[Targets], None], transport: str = "udp"
    ) -> None:
        """`host`'s targets to `done` (``port`` None: no port given, NAPTR/SRV for `transport`
        apply); at once when no query is needed. Never raises: a failure is `Targets` with an
        error."""

    def knows(self, address: str) -> bool:
        """Whether a gateway name resolved to `address` (its latest good answer)."""


class EndpointHooks(Protocol):
    """Registrations' part in admitting and routing calls (`registrar.EndpointService`)."""

    def on_register(self, tx: ServerTransaction) -> None: ...

    def admit(self, tx: ServerTransaction) -> str | None:
        """Mapping name for a new INVITE not from a mapping gateway; "" when answered there
        (407, 403); None when it is nobody known (the B2BUA answers 403)."""

    def route(
        self, callee: str, mapping: str | None = None
    ) -> tuple[GatewayTarget, SwitchingPolicy] | int | None:
        """Where a call to `callee` from `mapping` goes if it is an endpoint account (480: not
        registered; 404: a fleet peer's call to no account, docs/fleet.md)."""


def switching_policy(p: Parameters, gw: RoutingGateway | None = None) -> SwitchingPolicy:
    """The switching policy for calls to `gw`: the SS_* parameters with the gateway's overrides
    (no gateway: calls to a registered endpoint, the parameters alone)."""
    return effective_policy(
        global_invite_timeout=p.sip_timeout_invite,
        trying=p.sip_timeout_trying,
        ringing=p.sip_timeout_ringing,
        progress=p.sip_timeout_session_progress,
        stop_after_sdp=p.sip_stop_switch_after_sdp,
        stop_after_invite_timeout=p.sip_user_agent_stop_switch_after_invite_timeout,
        user_busy=p.gateway_switch_stop_after_user_busy,
        rtp_start=p.gateway_switch_stop_after_rtp_start,
        until_connect=p.gateway_switch_until_connect,
        gw_invite_timeout=gw.invite_timeout if gw else None,
        gw_stop_after_sdp=gw.stop_switch_after_sdp if gw else None,
        gw_stop_after_invite_timeout=gw.stop_switch_after_invite_timeout if gw else None,
        gw_stop_codes=gw.stop_switching_codes if gw else None,
    )


def media_policy(media: MediaConfig) -> MediaPolicy:
    """What sipd refuses in SDP (media.refused_networks, media.max_streams_per_call)."""
    return MediaPolicy(media.refused_networks, media.max_streams_per_call)


class B2BUA:
    ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, NOTIFY, MESSAGE"

    def __init__(
        self,
        config: Config,
        scheduler: Scheduler,
        send_bytes: Callable[[bytes, Addr], None],
        local_host_for: Callable[[str], str],
        local_port: int,
        cdrs: CdrStore | None,
        resolver: GatewayResolver | None = None,
    ) -> None:
        self.scheduler = scheduler
        # gateway names (a daemon passes its configured resolver; the default asks the
        # system's DNS servers, and only once a gateway name needs it)
        self.resolver: GatewayResolver = resolver or DnsResolver()
        self.send_bytes = send_bytes
        self._local_host_for = local_host_for
        self.local_port = local_port
        # our TCP / TLS listeners' ports, for a Contact toward a peer on that transport (sipd)
        self.stream_ports: dict[str, int] = {}
        # our UDP port toward a destination (the listener it leaves from: sipd sets the
        # transports' port_for, so an IPv6 peer gets the IPv6 listener's port)
        self.port_for: Callable[[Addr], int] = lambda _destination: self.local_port
        self.cdrs = cdrs
        self.stats = CallStats()
        self.calls: dict[str, Call] = {}  # by the caller's Call-ID + From tag
        self.dialogs: dict[tuple[str, str], tuple[Call, str]] = {}  # (Call-ID, our tag)
        self.draining = False
        self.clock: Callable[[], float] = time.monotonic  # for the calls-per-second buckets
        self.caps = CallCaps(config.parameters.sip_max_calls, {}, self.clock())
        self.refusals = RateLimitedLog(log, config.security.log_interval)
        # media anchoring: off until the daemon gives it a mediad client (sipd/daemon.py)
        self.media = MediaService(None)
        # registrar and outbound registrations: set by the daemon (registrar/component.py)
        self.endpoints: EndpointHooks | None = None
        self.carrier_passwords: dict[str, str] = {}  # auth_password_file contents, by gateway
        self.carriers: CarrierEvents = NO_EVENTS  # carrier statistics: set by sipd (stats/)
        self.mapping_auth = MappingAuth(config)  # digest of mapping gateways (their auth)
        self.transactions = TransactionLayer(
            scheduler, config.parameters.sip_resend_interval, send_bytes, self
        )
        self.apply_config(config)

    # -- configuration ----------------------------------------------------------------------
    def apply_config(self, config: Config) -> None:
        self.config = config
        self.sources = SourceTable([(m.name, m.addresses) for m in config.mapping_gateways])
        self.mappings = {m.name: m for m in config.mapping_gateways}
        self.mapping_auth.apply_config(config)
        # Carriers we are registered to: calls sent to them go "through an outbound
        # registration", where SS_SIP_USER_AGENT_PRIVACY applies (parameters.md).
        self.registered_carriers = frozenset((r.proxy, r.port) for r in config.registrations)
        # Addresses that are gateways to the guard (besides the mapping gateways' networks).
        self.peer_addresses = frozenset(
            [gw.address for gw in config.routing_gateways] + [r.proxy for r in config.registrations]
        )
        self.caps.configure(
            config.parameters.sip_max_calls,
            {m.name: GatewayLimits(m.max_calls, m.max_cps) for m in config.mapping_gateways},
            self.clock(),
            config.parameters.sip_overload_queue * 1024,
        )
        self.routes = RouteTable([(r.prefix, r.gateways) for r in config.routes])
        p = config.parameters
        self.policies: dict[str, SwitchingPolicy] = {
            gw.name: switching_policy(p, gw) for gw in config.routing_gateways
        }
        self._build_targets()
        self.transactions.set_resend(p.sip_resend_interval)
        self.session_timers = TimerSettings(
            p.sip_session_timer, p.sip_session_expires, p.sip_min_se
        )
        self.media.policy = media_policy(config.media)  # new calls; a call keeps its own

    def set_carrier_passwords(self, passwords: dict[str, str]) -> None:
        """The routing gateways' `auth_password_file` contents by gateway name (sipd reads the
        files at start and on reload); new calls answer challenges with them. Keys that start
        with MAPPING_PASSWORD are mapping gateways' `password_file` contents."""
        self.carrier_passwords = dict(passwords)
        prefix = MAPPING_PASSWORD
        self.mapping_auth.set_passwords(
            {k[len(prefix) :]: v for k, v in passwords.items() if k.startswith(prefix)}
        )
        self._build_targets()

    def _build_targets(self) -> None:
        self.targets = {
            gw.name: GatewayTarget(
                gw.name,
                gw.address,
                gw.port,
                gw,
                credentials=self._credentials(gw),
                port_given=gw.port_given,
            )
            for gw in self.config.routing_gateways
        }

    def _credentials(self, gw: RoutingGateway) -> CarrierCredentials | None:
        password = gw.auth_password or self.carrier_passwords.get(gw.name)
        if gw.auth_user is None or not password:
            return None  # a file that could not be read: challenges fail (no_credentials)
        return CarrierCredentials(gw.auth_user, password, gw.auth_realm)

    # -- addresses --------------------------------------------------------------------------
    def is_gateway(self, address: str) -> bool:
        """A mapping gateway (by its networks), a routing gateway or a carrier we register
        to (by the address configured for it, or one its host name resolved to)."""
        return (
            address in self.peer_addresses
            or self.resolver.knows(address)
            or self.sources.lookup(address) is not None
        )

    def via_for(self, destination: str) -> tuple[str, int]:
        return self._local_host_for(destination), self.local_port

    def contact_for(self, destination: Addr | str) -> str:
        """Our Contact toward `destination` (a peer's address, or its host for UDP): on TCP and
        TLS, that listener's port and `;transport=` (docs/transports.md)."""
        if isinstance(destination, str):
            host, port = self.via_for(destination)
            return f"<sip:{hostport(host, port)}>"
        host, port = self.via_for(destination[0])
        transport = transport_of(destination)
        if transport == UDP:
            return f"<sip:{hostport(host, self.port_for(destination))}>"
        port = self.stream_ports.get(transport, port)
        return f"<sip:{hostport(host, port)};transport={transport}>"

    def gateway_target(self, name: str) -> GatewayTarget:
        return self.targets[name]

    def resolve(self, gateway: GatewayTarget, done: Callable[[Targets], None]) -> None:
        port = gateway.port if gateway.port_given else None
        self.resolver.resolve(gateway.address, port, done, gateway.config.transport)

    def media_for(self, call: Call) -> CallMedia:
        """The media side of a new call, with the encryption of its mapping gateway."""
        mapping = self.mappings.get(call.mapping_gateway or "")
        encrypted = bool(mapping and mapping.rtp_encryption)
        return CallMedia(self.media, call, encrypted, self.config.parameters)

    # -- TransactionUser --------------------------------------------------------------------
    def on_request(self, tx: ServerTransaction) -> None:
        request = tx.request
        to_tag = request.to_tag
        if to_tag:
            entry = self.dialogs.get((request.call_id, to_tag))
            if entry is None:
                tx.respond_status(481)
                return
            call, leg = entry
            call.on_dialog_request(leg, tx)
            return
        method = request.method
        if method == "INVITE":
            assert isinstance(tx, InviteServerTransaction)
            self._new_call(tx)
        elif method == "OPTIONS":
            response = make_response(request, 200, to_tag=new_tag())
            response.headers.add("Allow", self.ALLOW)
            response.headers.add("Accept", "application/sdp")
            tx.respond(response)
        elif method == "BYE":
            tx.respond_status(481)
        elif method == "REGISTER" and self.endpoints is not None:
            self.endpoints.on_register(tx)
        else:
            response = make_response(request, 405, to_tag=new_tag())
            response.headers.add("Allow", self.ALLOW)
            tx.respond(response)

    def on_cancel(self, invite_tx: InviteServerTransaction, cancel: Request) -> None:
        call = self.calls.get(_call_key(invite_tx.request))
        if call is not None:
            call.on_caller_cancel()
        elif not invite_tx.final_sent:
            invite_tx.respond_status(487)

    def on_ack(self, ack: Request, source: Addr) -> None:
        to_tag = ack.to_tag
        if not to_tag:
            return
        entry = self.dialogs.get((ack.call_id, to_tag))
        if entry is not None:
            call, leg = entry
            call.on_ack(leg, ack)

    def on_stray_response(self, response: Response, source: Addr) -> None:
        # A 2xx retransmitted after its transaction ended: re-send the ACK we sent for it.
        if response.cseq[1] == "INVITE" and 200 <= response.status < 300:
            entry = self.dialogs.get((response.call_id, response.from_tag or ""))
            if entry is not None:
                call = entry[0]
                for attempt in call.attempts:
                    if attempt.invite.call_id == response.call_id and attempt.ack_bytes:
                        self.send_bytes(attempt.ack_bytes, attempt.destination)

    # -- calls ------------------------------------------------------------------------------
    def _reject(self, tx: ServerTransaction, status: int, reason: str | None = None) -> None:
        self.stats.count_reject(status)
        response = make_response(tx.request, status, reason, to_tag=new_tag())
        if status == 503:
            response.headers.add("Retry-After", str(self.config.parameters.sip_retry_after))
        if self.sources.lookup(tx.source[0]) is None:
            # Not a mapping gateway: answered once, never retransmitted (no reflection).
            tx.respond_stateless(response)
        else:
            tx.respond(response)

    def _over_capacity(self, tx: ServerTransaction, limit: str) -> None:
        self._reject(tx, 503, "Over Capacity")
        self.refusals.event("503 " + limit, "503 over capacity (%s) to %s:%s", limit, *tx.source)

    def _new_call(self, tx: InviteServerTransaction) -> None:
        request = tx.request
        if self.draining:
            self._reject(tx, 503, "Draining")
            return
        over = self.caps.over_total(len(self.calls))
        if over is not None:
            self._over_capacity(tx, over)
            return
        max_forwards = request.headers.get("Max-Forwards")
        if max_forwards is not None:
            try:
                if int(max_forwards) <= 0:
                    self._reject(tx, 483)
                    return
            except ValueError:
                self._reject(tx, 400, "Bad Max-Forwards")
                return
        required = {
            token.strip()
            for value in request.headers.get_all("Require")
            for token in value.split(",")
            if token.strip()
        }
        unsupported = required - SUPPORTED_EXTENSIONS
        if self.session_timers.enabled:
            unsupported.discard("timer")  # RFC 4028
        if unsupported:
            response = make_response(request, 420, to_tag=new_tag())
            response.headers.add("Unsupported", ", ".join(sorted(unsupported)))
            self.stats.count_reject(420)
            tx.respond(response)
            return
        mapping = self._admit_source(tx)
        if mapping == "":
            return  # challenged (407) or refused (403)
        if mapping is None:
            self._reject(tx, 403, "Unknown Source")
            return
        over = self.caps.over_gateway(mapping, self.clock())
        if over is not None:
            self._over_capacity(tx, over)
            return
        try:
            callee = parse_uri(request.uri).user or ""
            caller = parse_uri(parse_name_addr(request.headers.get("From") or "").uri).user or ""
        except ValueError:
            self._reject(tx, 400, "Bad Request-URI")
            return
        # user-part parameters (";npdi", ";isub=") are not part of the number
        callee = callee.split(";", 1)[0]
        caller = caller.split(";", 1)[0]
        to_endpoint = self.endpoints.route(callee, mapping) if self.endpoints else None
        if isinstance(to_endpoint, int):
            self._reject(tx, to_endpoint)  # 480: an account with no live registration
            return
        if to_endpoint is not None:
            self.targets[to_endpoint[0].name] = to_endpoint[0]
            self.policies[to_endpoint[0].name] = to_endpoint[1]
        gateways = (to_endpoint[0].name,) if to_endpoint else self.routes.lookup(callee)
        if gateways is None:
            self._reject(tx, 404, "No Route")
            return
        negotiated = negotiate_uas(
            self.session_timers,
            request.headers.get("Session-Expires"),
            request.headers.get("Min-SE"),
            request.headers.get_all("Supported"),
        )
        if isinstance(negotiated, Reject422):
            response = make_response(request, 422, to_tag=new_tag())
            response.headers.add("Min-SE", str(negotiated.min_se))
            self.stats.count_reject(422)
            tx.respond(response)
            return
        candidates = [(name, self.policies[name]) for name in gateways if name in self.policies]
        switcher = CallSwitcher(candidates, self.config.parameters.gateway_switch_limit)
        record = CallRecord(
            call_id=request.call_id,
            caller=caller,
            callee=callee,
            source=hostport(tx.source[0], tx.source[1]),
            mapping_gateway=mapping,
            setup_time=time.time(),
        )
        call = Call(
            incoming_identity=incoming_identity(request.headers),
            b2bua=self,
            invite_tx=tx,
            caller_number=caller,
            callee_number=callee,
            mapping_gateway=mapping,
            switcher=switcher,
            record=record,
        )
        self.calls[_call_key(request)] = call
        self.caps.started(mapping)
        self.stats.calls += 1
        self.stats.active += 1
        self.carriers.call_started(mapping)
        try:
            call.start()
        except Exception:
            # A bug must not leave the caller hanging or the call counted forever.
            log.exception("starting call %s failed", request.call_id)
            if call.state is not CallState.ENDED:
                call.terminate("internal error")

    def _admit_source(self, tx: ServerTransaction) -> str | None:
        """Who a new INVITE is from: a mapping gateway (by address, digest or both:
        `mapping_auth`), else a registration's carrier or an endpoint (`endpoints`); "" when
        answered there (407, 403); None when nobody known."""
        name = self.sources.lookup(tx.source[0])
        by_source = self.mappings.get(name) if name is not None else None
        endpoints_challenge = self.endpoints is not None and bool(self.config.endpoints)
        decision = self.mapping_auth.decide(tx, by_source, endpoints_challenge)
        if decision.action == ADMIT:
            return decision.gateway
        if decision.action == CHECK and decision.gateway is None and self.endpoints is not None:
            # a carrier we register to comes first (no endpoint accounts here: no challenge)
            found = self.endpoints.admit(tx)
            if found is not None:
                return found
        if decision.action == CHECK:
            return self.mapping_auth.check(tx, decision.gateway) or ""
        if self.endpoints is not None:
            return self.endpoints.admit(tx)
        return None

    def build_gateway_invite(self, call: Call, gateway: GatewayTarget, target: Addr) -> Request:
        """The INVITE of one attempt: our own Call-ID, tags, Via and Contact (B2BUA); Via and
        Contact hold our address toward `target`, the Request-URI the gateway's host (and
        port, unless its name's SRV records give the port)."""
        original = call.invite_tx.request
        host, port = self.via_for(target[0])
        headers = Headers()
        headers.add("Via", f"SIP/2.0/UDP {hostport(host, port)};branch={new_branch()};rport")
        max_forwards = original.headers.get("Max-Forwards")
        headers.add("Max-Forwards", str(int(max_forwards) - 1) if max_forwards else "70")
        display = parse_name_addr(original.headers.get("From") or "").display
        our_from = NameAddr(
            display, f"sip:{call.caller_number}@{host_text(host)}", {"tag": new_tag()}
        )
        headers.add("From", str(our_from))  # str() quotes and escapes the display name
        target_host = _uri_host(gateway.address)
        if gateway.port_given or is_literal(gateway.address):
            target_host += f":{gateway.port}"
        if gateway.config.transport != UDP:
            target_host += f";transport={gateway.config.transport}"
        uri = gateway.request_uri or f"sip:{call.callee_number}@{target_host}"
        headers.add("To", f"<sip:{call.callee_number}@{_uri_host(gateway.address)}>")
        headers.add("Call-ID", new_call_id())
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", f"<sip:{hostport(host, port)}>")
        copy_pass_through(original.headers, headers)
        for name, value in uac_headers(call.session_settings):
            headers.add(name, value)
        # Caller identity (From display/user, Privacy, PAI, PPI) per the gateway's settings.
        mapping = self.mappings.get(call.mapping_gateway or "")
        via_registration = (gateway.address, gateway.port) in self.registered_carriers
        policy = policy_from_config(
            self.config.parameters, gateway.config, mapping, via_registration=via_registration
        )
        apply_identity(
            headers, outgoing_identity(call.incoming_identity, policy, our_host=host_text(host))
        )
        return Request("INVITE", uri, headers, original.body)

    def register_dialog(self, call: Call, leg: str, dialog: Dialog) -> None:
        self.dialogs[(dialog.call_id, dialog.local_tag)] = (call, leg)

    def call_ended(self, call: Call, then: OnCommitted | None = None) -> None:
        """Forget the call and queue its CDR; `then` (the BYE's 200) runs on the loop once the
        CDR is committed: at once without a CDR store, and after a failed write too (the store
        logs and counts it), so that no request waits forever for its answer."""
        if self.calls.pop(_call_key(call.invite_tx.request), None) is not None:
            self.caps.ended(call.mapping_gateway or "")
        for dialog in (call.caller_dialog, call.callee_dialog):
            if dialog is not None:
                self.dialogs.pop((dialog.call_id, dialog.local_tag), None)
        self.stats.active -= 1
        if call.state is CallState.ENDED and call.record.answer_time is None:
            self.stats.failed += 1
        r = call.record
        answered = r.answer_time is not None
        self.carriers.call_ended(
            r.mapping_gateway,
            r.routing_gateway,
            r.duration if answered else None,
            "" if answered else call_reason(r),
            None if answered else call_pdd(r.setup_time, call.attempts),
        )
        if self.cdrs is None:
            if then is not None:
                then()
            return
        try:
            self.cdrs.write(call.record, then)
        except Exception:  # not queued (the store is closed): then will not be called back
            log.exception("writing the CDR of %s failed", call.id)
            if then is not None:
                then()

    def summaries(self) -> list[dict[str, object]]:
        """The calls in progress, as the management API lists them."""
        return [call_summary(call) for call in self.calls.values()]

    def find_call(self, call_id: str) -> Call | None:
        for call in self.calls.values():
            if call.id == call_id:
                return call
        return None

    def terminate_all(self, cause: str) -> None:
        for call in list(self.calls.values()):
            call.terminate(cause)


def _uri_host(host: str) -> str:
    return host_text(host)


def _call_key(request: Request) -> str:
    return f"{request.call_id}|{request.from_tag}"


def copy_pass_through(source: Headers, target: Headers) -> None:
    for name in PASS_THROUGH:
        for value in source.get_all(name):
            target.add(name, value)
