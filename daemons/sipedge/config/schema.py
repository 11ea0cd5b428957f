"""The shape of a loaded config: one frozen dataclass per section, `Config` holding them all.

Owns: the dataclasses (`Config`, `SipConfig`, `ApiConfig`, `StorageConfig`, `Parameters`,
`MappingGateway`, `RoutingGateway`, `DialPlanRule`, `Route`, `Endpoint`, `Registration`,
`MediaConfig`, `ListenAddress`, `SecurityConfig`, `RateLimit`, `FleetConfig`) and their
defaults, which are the defaults of `parameters.md`.

Must not: validate or parse anything (that is `values`, `collector` and `loader`), open files,
or import anything from sipedge (not even the rest of config/).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path


@dataclass(frozen=True)
class ListenAddress:
    transport: str  # "udp" | "tcp" | "tls"
    host: str  # IPv6 without brackets
    port: int
    # tls:// only; None: sip.tls_cert / tls_key / tls_ca / tls_verify_client
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    tls_verify_client: bool | None = None

    @property
    def address(self) -> tuple[str, str, int]:
        return (self.transport, self.host, self.port)


@dataclass(frozen=True)
class ConnectionLimits:
    """TCP and TLS connections (sip.connections; docs/transports.md)."""

    max: int = 4096  # open at once, accepted and made
    max_per_source: int = 32  # accepted from one IP address
    idle_timeout: float = 300.0  # seconds without a message
    message_timeout: float = 10.0  # seconds to finish a message begun (slow senders)
    connect_timeout: float = 5.0  # seconds for TCP connect plus TLS handshake
    write_buffer: int = 262144  # bytes queued toward one peer before we stop reading it


@dataclass(frozen=True)
class SipConfig:
    listen: tuple[ListenAddress, ...] = (ListenAddress("udp", "0.0.0.0", 5060),)
    public_address: str | None = None
    # gateway names (docs/call-control.md "Gateways by host name"): the DNS servers asked, as
    # (IP, port); empty: the system's (/etc/resolv.conf)
    dns_servers: tuple[tuple[str, int], ...] = ()
    dns_timeout: float = 2.0  # seconds for one query, every server tried
    hosts_file: Path | None = Path("/etc/hosts")  # read before DNS; None: no hosts file
    tls_cert: Path | None = None  # tls:// listeners' certificate chain and key (PEM)
    tls_key: Path | None = None
    tls_ca: Path | None = None  # CA bundle for client certificates
    tls_verify_client: bool = False  # tls:// listeners require a client certificate
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)


@dataclass(frozen=True)
class ApiConfig:
    """The management API of sipd (docs/security.md, "Management API")."""

    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = field(default=None, repr=False)  # admin scope, inline
    token_file: Path | None = None  # admin scope, read by sipd at start and on reload
    read_token: str | None = field(default=None, repr=False)  # read-only scope, inline
    read_token_file: Path | None = None
    hosts: tuple[str, ...] = ()  # Host header names accepted beside the built-in ones
    tls_cert: Path | None = None  # both or neither: the API then serves HTTPS only
    tls_key: Path | None = None
    metrics_open: bool = False  # True: GET /metrics needs no token

    @property
    def has_admin_token(self) -> bool:
        return self.token is not None or self.token_file is not None


BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class StorageConfig:
    path: Path = Path("/var/lib/sipedge")  # SQLite files; the PostgreSQL backend's CDR spool
    cdr_durable: bool = True  # synchronous=FULL: a finished call's CDR survives a power cut
    cdr_retention_days: int | None = 90  # None: Off (kept forever)
    cdr_max_mib: int | None = 128  # None: Off (no size limit; not applied to PostgreSQL)
    backend: str = "sqlite"  # BACKENDS
    dsn: str | None = None  # postgresql://user@host:port/db, never with the password
    password_file: Path | None = None  # the PostgreSQL password, read at start
    pool_size: int = 4  # PostgreSQL connections per store at most
    migrate_on_start: bool = True  # off: a database behind the code stops sipd (db migrate)


@dataclass(frozen=True)
class FleetConfig:
    """Shared registrations across the edges of a fleet (docs/fleet.md)."""

    address: str | None = None  # where the other edges send calls for our phones; None: off
    port: int | None = None  # None: the first udp:// listener's port
    peers: tuple[IPv4Network | IPv6Network, ...] = ()  # the other edges: relayed for, sent to
    node_timeout: float = 10.0  # an edge silent this long is taken as down

    @property
    def enabled(self) -> bool:
        return self.address is not None


DEFAULT_RESEND_INTERVAL: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0)


@dataclass(frozen=True)
class Parameters:
    """The global softswitch parameters; field = parameter name, lower case, without "SS_"."""

    # call setup and gateway switching
    sip_timeout_invite: float = 10.0
    sip_resend_interval: tuple[float, ...] = DEFAULT_RESEND_INTERVAL
    sip_timeout_trying: float = 20.0
    sip_timeout_ringing: float = 120.0
    sip_timeout_session_progress: float = 20.0
    sip_stop_switch_after_sdp: bool = True
    sip_user_agent_stop_switch_after_invite_timeout: bool = False
    gateway_switch_limit: int | None = None  # None: every gateway the route offers
    gateway_switch_stop_after_rtp_start: bool = True
    gateway_switch_stop_after_user_busy: bool = True
    gateway_switch_until_connect: bool = False
    # caller identity
    sip_user_agent_privacy: str = "Ignore"  # Ignore / Id / None
    sip_e164_display_from: str = "Ignore"  # Ignore / E164 / Original
    # registration
    sip_user_agent_expire: int | None = None  # None: Auto
    sip_user_agent_retry_delay: int = 60
    sip_user_agent_send_unregister: bool = True
    endpoint_expire: int = 3600
    endpoint_nat_expire: int = 300
    endpoint_register_retry: int = 6
    endpoint_register_suspend: int = 180
    endpoint_register_replace: bool = True
    # NAT keep-alive
    sip_nat_keep_alive_message: str = "HELLO"
    sip_nat_keep_alive_period: int = 30
    sip_nat_keep_alive_send_interval: int = 500  # milliseconds
    sip_nat_keep_alive_send_one_time: int = 3000
    # media
    media_proxy_behind_nat: bool = True
    rtpencryptionmode: int = 0  # 0 none, 1 XOR, 2 RC4, 3 AES128
    rtpencryptionkey: str = field(default="", repr=False)
    media_rtp_timeout: float | None = 60.0  # None: Off (no RTP timeout)
    max_call_duration: int | None = None  # None: no limit
    # RFC 4028 session timers (docs/session-timers.md)
    sip_session_timer: bool = True
    sip_session_expires: int = 1800
    sip_min_se: int = 90
    # limits on what one message and the whole daemon may hold (docs/security.md)
    sip_max_message_size: int = 16384  # bytes; larger requests get 513
    sip_max_uri_length: int = 1024  # Request-URI characters; longer gets 414
    sip_max_headers: int = 128  # header fields in one message; more gets 513
    sip_max_transactions: int = 100000  # server + client transactions held at once
    sip_max_calls: int = 20000  # calls in progress (each holds two dialogs)
    sip_retry_after: int = 10  # seconds, in the Retry-After of an overload 503
    # KiB waiting in the SIP UDP sockets above which new calls get 503 (0: off; docs/security.md)
    sip_overload_queue: int = 1024


@dataclass(frozen=True)
class MappingGateway:
    name: str
    addresses: tuple[IPv4Network | IPv6Network, ...]
    support_privacy: bool = False
    rtp_encryption: bool = False
    max_calls: int | None = None  # calls in progress from this gateway (None: no limit)
    max_cps: float | None = None  # new calls per second from this gateway (None: no limit)
    # how its INVITEs are admitted (docs/call-control.md): "source" (its addresses),
    # "source+digest" (its addresses, then digest as `username`), "digest" (digest alone, from
    # any address); the digest modes need `username` and `password` or `password_file`
    auth: str = "source"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    password_file: Path | None = None  # read by sipd at start and on reload


@dataclass(frozen=True)
class DialPlanRule:
    match: re.Pattern[str]
    replace: str


@dataclass(frozen=True)
class RoutingGateway:
    name: str
    address: str
    port: int = 5060
    transport: str = "udp"
    trusted: bool = False
    invite_timeout: float | None = None  # None: SS_SIP_TIMEOUT_INVITE
    stop_switch_after_sdp: bool | None = None  # None: SS_SIP_STOP_SWITCH_AFTER_SDP
    # None: SS_SIP_USER_AGENT_STOP_SWITCH_AFTER_INVITE_TIMEOUT
    stop_switch_after_invite_timeout: bool | None = None
    stop_switching_codes: frozenset[int] = frozenset()
    privacy: str = "None"  # None / Passthrough / Id
    p_asserted_identity: str = "None"  # None / Passthrough / Caller
    p_preferred_identity: str = "None"  # None / Passthrough / Caller
    caller_dial_plan: tuple[DialPlanRule, ...] = ()
    rtp_encryption: bool = False
    # authentication toward the carrier: its 401/407 is answered once with these (digest)
    auth_user: str | None = None  # None: challenges are not answered
    auth_password: str | None = field(default=None, repr=False)
    auth_password_file: Path | None = None  # read by sipd at start and on reload
    auth_realm: str | None = None  # answer only challenges of this realm (None: any)
    # False: the file gave no `port`, so a host name is looked up with NAPTR and SRV first
    # (RFC 3263); True: A only, on this port
    port_given: bool = True
    # transport tls only (docs/transports.md): how the gateway's certificate is trusted
    tls_ca: Path | None = None  # CA bundle (None: the system's, unless pinned only)
    tls_server_name: str | None = None  # name its certificate must carry (None: address)
    tls_fingerprint: bytes | None = None  # SHA-256 of its certificate (pinned)
    tls_cert: Path | None = None  # our client certificate for mutual TLS, and its key
    tls_key: Path | None = None


@dataclass(frozen=True)
class Route:
    prefix: str
    gateways: tuple[str, ...]


@dataclass(frozen=True)
class Endpoint:
    account: str
    password: str = field(repr=False)
    # digest algorithms offered to this account (None: security.digest_algorithms)
    digest_algorithms: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Registration:
    name: str
    proxy: str
    port: int
    user: str
    password: str = field(repr=False)
    realm: str | None = None
    register_period: int | None = None  # None: Auto (SS_SIP_USER_AGENT_EXPIRE)
    port_given: bool = True  # as RoutingGateway.port_given, for the proxy's name


# Connection addresses sipd refuses in SDP (media.refused_networks): "this network",
# loopback, link-local, multicast, reserved, and their IPv6 counterparts (unspecified,
# loopback, IPv4-mapped: the relay sends IPv6 to IPv6 peers, never IPv4 in disguise,
# discard-only, link-local, multicast). Documentation prefixes (2001:db8::/32) are not here:
# tests and labs use them; an operator adds them (docs/ipv6.md).
DEFAULT_REFUSED_NETWORKS: tuple[IPv4Network | IPv6Network, ...] = (
    IPv4Network("0.0.0.0/8"),
    IPv4Network("127.0.0.0/8"),
    IPv4Network("169.254.0.0/16"),
    IPv4Network("224.0.0.0/4"),
    IPv4Network("240.0.0.0/4"),
    IPv6Network("::/128"),
    IPv6Network("::1/128"),
    IPv6Network("::ffff:0:0/96"),
    IPv6Network("100::/64"),
    IPv6Network("fe80::/10"),
    IPv6Network("ff00::/8"),
)
DEFAULT_RTP_TIMEOUT_FOR_IDLE = 60.0  # idle_timeout Auto: (SS_MEDIA_RTP_TIMEOUT or this) + grace
IDLE_TIMEOUT_GRACE = 60.0


@dataclass(frozen=True)
class MediaConfig:
    control_socket: Path = Path("/run/sipedge-media/mediad.sock")
    port_range: tuple[int, int] = (20000, 29999)
    fast_path: str = "auto"  # auto / xdp / userspace
    interfaces: tuple[str, ...] = ("eth0",)
    bind_address: str | None = None  # None: first IPv4 of interfaces[0] (127.0.0.1 if none)
    advertise_address: str | None = None  # None: the bind address
    bind_address_v6: str | None = None  # None: no IPv6 relay address (IP6 offers refused)
    advertise_address_v6: str | None = None  # None: bind_address_v6
    refused_networks: tuple[IPv4Network | IPv6Network, ...] = DEFAULT_REFUSED_NETWORKS
    max_streams_per_call: int = 8  # active m= lines in one SDP
    max_sessions: int | None = None  # None: one per two RTP port pairs of port_range
    # seconds; "Auto" in the file is resolved at load to (SS_MEDIA_RTP_TIMEOUT or 60) + 60
    idle_timeout: float = DEFAULT_RTP_TIMEOUT_FOR_IDLE + IDLE_TIMEOUT_GRACE
    state_path: Path = Path("/var/lib/sipedge-mediad/sessions.journal")
    metrics_listen: str | None = None  # "host:port" (IPv6 in brackets); None: unix socket only
    metrics_token_file: Path | None = None
    run_as: str | None = None  # user mediad drops to after loading XDP (started as root)


@dataclass(frozen=True)
class RateLimit:
    """Per source address: more than `requests` in `window` seconds bans it for `ban` seconds
    (Kamailio's pike + htable)."""

    requests: int = 40
    window: float = 2.0
    ban: int = 300


# User-Agent substrings (case-insensitive) of well-known SIP scanners and attack tools.
DEFAULT_SCANNER_USER_AGENTS: tuple[str, ...] = (
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "sip-scan",
    "sipscan",
    "sundayddr",
    "iwar",
    "vaxsipuseragent",
    "pplsip",
    "smap",
)


@dataclass(frozen=True)
class SecurityConfig:
    trusted: tuple[IPv4Network | IPv6Network, ...] = ()  # never rate-limited or banned
    rate_limit: RateLimit = field(default_factory=RateLimit)
    unknown_sources: str = "answer"  # answer / drop (requests from no known peer or endpoint)
    scanner_user_agents: tuple[str, ...] = DEFAULT_SCANNER_USER_AGENTS
    digest_algorithms: tuple[str, ...] = ("MD5",)  # offered in challenges, in this order
    max_tracked_sources: int = 65536  # rate-limit and ban table entries (oldest evicted)
    max_nonces: int = 65536  # nonces whose counts are tracked (oldest forgotten)
    log_interval: float = 10.0  # seconds between two log lines of one refusal class


@dataclass(frozen=True)
class Config:
    node_name: str = "sipedge"
    sip: SipConfig = field(default_factory=SipConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    fleet: FleetConfig = field(default_factory=FleetConfig)
    parameters: Parameters = field(default_factory=Parameters)
    mapping_gateways: tuple[MappingGateway, ...] = ()
    routing_gateways: tuple[RoutingGateway, ...] = ()
    routes: tuple[Route, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
    registrations: tuple[Registration, ...] = ()
    media: MediaConfig = field(default_factory=MediaConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)

    def routing_gateway(self, name: str) -> RoutingGateway:
        """The routing gateway called `name`; KeyError if there is none."""
        for gw in self.routing_gateways:
            if gw.name == name:
                return gw
        raise KeyError(name)
