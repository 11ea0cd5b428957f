"""The sipedge config file: load, validate, and hand out one immutable `Config` snapshot.

The file is YAML (see `daemons/conf/sipedge.example.yaml`); parameter names, defaults and
ranges are the contract in `parameters.md`. Validation collects *every* problem before it
raises, so an operator fixes a file in one pass: each `ConfigProblem` names the field (dotted
path, `[i]` for list entries), the value found and what is allowed there.

Value rules, in short:

* On/Off: YAML booleans (true/false/yes/no/on/off) or the words On/Off in any case.
* Per-gateway overrides: the word Default (or null) means "use the global parameter" (None).
* Numbers: ints, floats where the range allows fractions, or strings holding a number (Ansible
  sometimes renders numbers quoted). Booleans are never numbers.
* Words (Ignore/Id/None, Auto, ...): any case; stored in the spelling of `parameters.md`.
* Unknown keys are errors, anywhere; duplicated keys in one YAML mapping are errors too (YAML
  would otherwise silently keep the last one).
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Any, TypeVar, cast

import yaml

__all__ = [
    "ApiConfig",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "DialPlanRule",
    "Endpoint",
    "ListenAddress",
    "MappingGateway",
    "MediaConfig",
    "Parameters",
    "Registration",
    "Route",
    "RoutingGateway",
    "SipConfig",
    "StorageConfig",
    "check_config_main",
    "load_config",
    "parse_config",
]

T = TypeVar("T")


# -- problems -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Described:
    """A stand-in for a value that should not (or cannot) be shown verbatim in a message:
    a missing value, an unknown key, a secret, a file that failed to parse."""

    text: str

    def __str__(self) -> str:
        return self.text


MISSING = Described("a missing value")


def _show(value: object) -> str:
    if isinstance(value, Described):
        return value.text
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config: where, what was found, what is allowed there."""

    path: str
    value: object
    allowed: str

    def __str__(self) -> str:
        if not self.path:  # the file as a whole (unreadable, not YAML, not a mapping)
            return f"{_show(self.value)} (expected: {self.allowed})"
        return f"{self.path}: {_show(self.value)} is not allowed (allowed: {self.allowed})"


class ConfigError(Exception):
    """A config was refused; `problems` lists every reason, `str()` one per line."""

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems: list[ConfigProblem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class _Bad(Exception):
    """Raised by a value parser; the collector turns it into a ConfigProblem."""

    def __init__(self, allowed: str) -> None:
        super().__init__(allowed)
        self.allowed = allowed


# -- the config -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ListenAddress:
    transport: str  # "udp" | "tcp"
    host: str  # IPv6 without brackets
    port: int


@dataclass(frozen=True)
class SipConfig:
    listen: tuple[ListenAddress, ...] = (ListenAddress("udp", "0.0.0.0", 5060),)
    public_address: str | None = None


@dataclass(frozen=True)
class ApiConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None


@dataclass(frozen=True)
class StorageConfig:
    path: Path = Path("/var/lib/sipedge")


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


@dataclass(frozen=True)
class MappingGateway:
    name: str
    addresses: tuple[IPv4Network | IPv6Network, ...]
    support_privacy: bool = False
    rtp_encryption: bool = False


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


@dataclass(frozen=True)
class Route:
    prefix: str
    gateways: tuple[str, ...]


@dataclass(frozen=True)
class Endpoint:
    account: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Registration:
    name: str
    proxy: str
    port: int
    user: str
    password: str = field(repr=False)
    realm: str | None = None
    register_period: int | None = None  # None: Auto (SS_SIP_USER_AGENT_EXPIRE)


@dataclass(frozen=True)
class MediaConfig:
    control_socket: Path = Path("/run/sipedge/mediad.sock")
    port_range: tuple[int, int] = (20000, 29999)
    fast_path: str = "auto"  # auto / xdp / userspace
    interfaces: tuple[str, ...] = ("eth0",)


@dataclass(frozen=True)
class Config:
    node_name: str = "sipedge"
    sip: SipConfig = field(default_factory=SipConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    parameters: Parameters = field(default_factory=Parameters)
    mapping_gateways: tuple[MappingGateway, ...] = ()
    routing_gateways: tuple[RoutingGateway, ...] = ()
    routes: tuple[Route, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
    registrations: tuple[Registration, ...] = ()
    media: MediaConfig = field(default_factory=MediaConfig)

    def routing_gateway(self, name: str) -> RoutingGateway:
        """The routing gateway called `name`; KeyError if there is none."""
        for gw in self.routing_gateways:
            if gw.name == name:
                return gw
        raise KeyError(name)


# -- value parsers: return the parsed value or raise _Bad(allowed) ----------------------------

_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_INT_RE = re.compile(r"^[+-]?\d+$")


def _as_number(value: object) -> float | None:
    """int/float/numeric string -> float; None when it is not a number (bools are not)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return float(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and _NUMBER_RE.match(value.strip()):
        return float(value.strip())
    return None


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INT_RE.match(value.strip()):
        return int(value.strip())
    return None


def _fmt(n: float) -> str:
    return str(int(n)) if float(n).is_integer() else str(n)


def _number(lo: float, hi: float) -> Callable[[object], float]:
    allowed = f"{_fmt(lo)}-{_fmt(hi)}"

    def parse(value: object) -> float:
        n = _as_number(value)
        if n is None or not lo <= n <= hi:
            raise _Bad(allowed)
        return n

    return parse


def _integer(lo: int, hi: int, allowed: str | None = None) -> Callable[[object], int]:
    text = allowed or f"{lo}-{hi}"

    def parse(value: object) -> int:
        n = _as_int(value)
        if n is None or not lo <= n <= hi:
            raise _Bad(text)
        return n

    return parse


def _word_or(word: str, inner: Callable[[object], T], allowed: str) -> Callable[[object], T | None]:
    """`word` (any case) -> None, else `inner`; `allowed` replaces inner's text on error."""

    def parse(value: object) -> T | None:
        if isinstance(value, str) and value.strip().lower() == word.lower():
            return None
        try:
            return inner(value)
        except _Bad:
            raise _Bad(allowed) from None

    return parse


_TRUE_WORDS = {"on", "true", "yes"}
_FALSE_WORDS = {"off", "false", "no"}


def _on_off(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    raise _Bad("On/Off")


def _default_on_off(value: object) -> bool | None:
    if value is None or (isinstance(value, str) and value.strip().lower() == "default"):
        return None
    try:
        return _on_off(value)
    except _Bad:
        raise _Bad("Default/On/Off") from None


def _words(*choices: str) -> Callable[[object], str]:
    by_lower = {c.lower(): c for c in choices}
    allowed = "/".join(choices)

    def parse(value: object) -> str:
        # YAML null is accepted as the word None where None is one of the words.
        if value is None and "none" in by_lower:
            return by_lower["none"]
        if isinstance(value, str) and value.strip().lower() in by_lower:
            return by_lower[value.strip().lower()]
        raise _Bad(allowed)

    return parse


def _string(allowed: str, *, empty: bool = True) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if not isinstance(value, str) or (not empty and not value):
            raise _Bad(allowed)
        return value

    return parse


def _optional_string(allowed: str) -> Callable[[object], str | None]:
    def parse(value: object) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise _Bad(allowed)
        return value

    return parse


_HOST_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
HOST_ALLOWED = "an IP address or a host name"


def _host(value: object) -> str:
    if not isinstance(value, str):
        raise _Bad(HOST_ALLOWED)
    host = value.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            raise _Bad(HOST_ALLOWED) from None
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_HOST_LABEL_RE.match(label) for label in labels):
        raise _Bad(HOST_ALLOWED)
    if re.fullmatch(r"[0-9.]+", name):  # looks like a broken IPv4 address, e.g. 10.0.0.256
        raise _Bad(HOST_ALLOWED)
    return host


_port = _integer(1, 65535)


def _optional_host(value: object) -> str | None:
    if value is None:
        return None
    try:
        return _host(value)
    except _Bad:
        raise _Bad("null or " + HOST_ALLOWED) from None


_HOSTPORT_RE = re.compile(r"^(\[[^\]]*\]|[^:\[\]/]+):([^:]+)$")


def _host_port(value: object, allowed: str) -> tuple[str, int]:
    if not isinstance(value, str):
        raise _Bad(allowed)
    m = _HOSTPORT_RE.match(value.strip())
    if not m:
        raise _Bad(allowed)
    try:
        return _host(m.group(1)), _port(m.group(2))
    except _Bad:
        raise _Bad(allowed) from None


LISTEN_ALLOWED = "udp://host:port or tcp://host:port (IPv6 in brackets), port 1-65535"


def _listen_uri(value: object) -> ListenAddress:
    if not isinstance(value, str):
        raise _Bad(LISTEN_ALLOWED)
    m = re.match(r"^(udp|tcp)://(.*)$", value.strip(), re.IGNORECASE)
    if not m:
        raise _Bad(LISTEN_ALLOWED)
    host, port = _host_port(m.group(2), LISTEN_ALLOWED)
    return ListenAddress(m.group(1).lower(), host, port)


ADDRESS_ALLOWED = "a CIDR network (host bits zero, e.g. 198.51.100.0/24) or a single IP address"


def _network(value: object) -> IPv4Network | IPv6Network:
    if not isinstance(value, str):
        raise _Bad(ADDRESS_ALLOWED)
    try:
        return ipaddress.ip_network(value.strip(), strict=True)
    except ValueError:
        raise _Bad(ADDRESS_ALLOWED) from None


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$")
NAME_ALLOWED = "a name of 1-64 letters, digits, '.', '_', '-', '@', '+' (first a letter or digit)"
_name = _string(NAME_ALLOWED, empty=False)


def _checked_name(value: object) -> str:
    name = _name(value)
    if not _NAME_RE.match(name):
        raise _Bad(NAME_ALLOWED)
    return name


_USER_RE = re.compile(r"^[^\s@:<>\"]+$")
USER_ALLOWED = "a non-empty quoted string without spaces, '@', ':', '<', '>', '\"'"


def _user(value: object) -> str:
    if not isinstance(value, str) or not _USER_RE.match(value):
        raise _Bad(USER_ALLOWED)
    return value


PASSWORD_ALLOWED = "a non-empty quoted string"


def _absolute_path(value: object) -> Path:
    if not isinstance(value, str) or not value.startswith("/"):
        raise _Bad("an absolute path")
    return Path(value)


REGEX_ALLOWED = "a regular expression (Python re syntax)"
REPLACE_ALLOWED = "a replacement string (\\1 or \\g<name> for groups)"
RESEND_ALLOWED = "a list of 1-20 numbers, each 0.1-60"
_resend_entry = _number(0.1, 60)

# -- the parameter table ----------------------------------------------------------------------

_PARAMETERS: dict[str, Callable[[object], object]] = {
    "SS_SIP_TIMEOUT_INVITE": _number(1, 300),
    "SS_SIP_RESEND_INTERVAL": lambda v: v,  # parsed entry by entry in _Collector.parameters
    "SS_SIP_TIMEOUT_TRYING": _number(1, 600),
    "SS_SIP_TIMEOUT_RINGING": _number(1, 3600),
    "SS_SIP_TIMEOUT_SESSION_PROGRESS": _number(1, 3600),
    "SS_SIP_STOP_SWITCH_AFTER_SDP": _on_off,
    "SS_SIP_USER_AGENT_STOP_SWITCH_AFTER_INVITE_TIMEOUT": _on_off,
    "SS_GATEWAY_SWITCH_LIMIT": _word_or("None", _integer(1, 100), "None or 1-100"),
    "SS_GATEWAY_SWITCH_STOP_AFTER_RTP_START": _on_off,
    "SS_GATEWAY_SWITCH_STOP_AFTER_USER_BUSY": _on_off,
    "SS_GATEWAY_SWITCH_UNTIL_CONNECT": _on_off,
    "SS_SIP_USER_AGENT_PRIVACY": _words("Ignore", "Id", "None"),
    "SS_SIP_E164_DISPLAY_FROM": _words("Ignore", "E164", "Original"),
    "SS_SIP_USER_AGENT_EXPIRE": _word_or("Auto", _integer(20, 7200), "Auto or 20-7200"),
    "SS_SIP_USER_AGENT_RETRY_DELAY": _integer(30, 600),
    "SS_SIP_USER_AGENT_SEND_UNREGISTER": _on_off,
    "SS_ENDPOINT_EXPIRE": _integer(60, 86400),
    "SS_ENDPOINT_NAT_EXPIRE": _integer(60, 3600),
    "SS_ENDPOINT_REGISTER_RETRY": _integer(1, 100),
    "SS_ENDPOINT_REGISTER_SUSPEND": _integer(1, 86400),
    "SS_ENDPOINT_REGISTER_REPLACE": _on_off,
    "SS_SIP_NAT_KEEP_ALIVE_MESSAGE": _string("a string (empty: keep-alive off)"),
    "SS_SIP_NAT_KEEP_ALIVE_PERIOD": _integer(10, 86400),
    "SS_SIP_NAT_KEEP_ALIVE_SEND_INTERVAL": _integer(10, 10000),
    "SS_SIP_NAT_KEEP_ALIVE_SEND_ONE_TIME": _integer(1, 100000),
    "SS_MEDIA_PROXY_BEHIND_NAT": _on_off,
    "SS_RTPENCRYPTIONMODE": _integer(0, 3),
    "SS_RTPENCRYPTIONKEY": _string("a string (quote it)"),
    # sipedge's own, beyond parameters.md (documented in docs/media-anchoring.md):
    "SS_MEDIA_RTP_TIMEOUT": _word_or("Off", _number(1, 3600), "Off or 1-3600"),
    "SS_MAX_CALL_DURATION": _word_or("None", _integer(1, 604800), "None or 1-604800"),
    # sipedge's own (documented in docs/session-timers.md):
    "SS_SIP_SESSION_TIMER": _on_off,
    "SS_SIP_SESSION_EXPIRES": _integer(90, 86400),
    "SS_SIP_MIN_SE": _integer(90, 86400),
}

PARAMETER_NAMES: tuple[str, ...] = tuple(_PARAMETERS)
# Parameters sipedge adds to the VOS3000 set of parameters.md: the spec's example file does not
# list them (it stays exactly as issued); the demo config and the docs do.
SIPEDGE_PARAMETERS: frozenset[str] = frozenset(
    {
        "SS_MEDIA_RTP_TIMEOUT",
        "SS_MAX_CALL_DURATION",
        "SS_SIP_SESSION_TIMER",
        "SS_SIP_SESSION_EXPIRES",
        "SS_SIP_MIN_SE",
    }
)


def parameter_field(name: str) -> str:
    """SS_SIP_TIMEOUT_INVITE -> sip_timeout_invite (the Parameters field)."""
    return name[3:].lower()


# Key length in bytes allowed per SS_RTPENCRYPTIONMODE (mode 0: anything).
RTP_KEY_LENGTHS: dict[int, tuple[int, int, str]] = {
    1: (1, 64, "1-64 bytes for SS_RTPENCRYPTIONMODE 1 (XOR)"),
    2: (5, 64, "5-64 bytes for SS_RTPENCRYPTIONMODE 2 (RC4)"),
    3: (16, 16, "exactly 16 bytes for SS_RTPENCRYPTIONMODE 3 (AES128)"),
}

_TOP_KEYS = (
    "node",
    "sip",
    "api",
    "storage",
    "parameters",
    "mapping_gateways",
    "routing_gateways",
    "routes",
    "endpoints",
    "registrations",
    "media",
)
_MAPPING_KEYS = ("name", "addresses", "support_privacy", "rtp_encryption")
_ROUTING_KEYS = (
    "name",
    "address",
    "port",
    "transport",
    "trusted",
    "invite_timeout",
    "stop_switch_after_sdp",
    "stop_switch_after_invite_timeout",
    "stop_switching_codes",
    "privacy",
    "p_asserted_identity",
    "p_preferred_identity",
    "caller_dial_plan",
    "rtp_encryption",
)
_REGISTRATION_KEYS = ("name", "proxy", "port", "user", "password", "realm", "register_period")
_MEDIA_KEYS = ("control_socket", "port_range", "fast_path", "interfaces")


# -- the collector --------------------------------------------------------------------------


class _Collector:
    """Walks the loaded YAML, parsing field by field and keeping every problem."""

    def __init__(self) -> None:
        self.problems: list[ConfigProblem] = []

    def problem(self, path: str, value: object, allowed: str) -> None:
        self.problems.append(ConfigProblem(path, value, allowed))

    def value(self, path: str, raw: object, parse: Callable[[object], T], default: T) -> T:
        """parse(raw), or record the problem and return `default`."""
        try:
            return parse(raw)
        except _Bad as bad:
            self.problem(path, raw, bad.allowed)
            return default

    def mapping(
        self, path: str, raw: object, keys: Iterable[str], *, what: str = "a mapping"
    ) -> dict[str, object]:
        """`raw` as a dict (None -> {}); unknown keys are recorded and dropped."""
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.problem(path, raw, what)
            return {}
        known = tuple(keys)
        out: dict[str, object] = {}
        for key, item in raw.items():
            if isinstance(key, str) and key in known:
                out[key] = item
            else:
                self.unknown_key(path, key, known)
        return out

    def unknown_key(self, path: str, key: object, known: tuple[str, ...]) -> None:
        where = f"{path}.{key}" if path else str(key)
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.75)
        if close:
            allowed = f"a known key; did you mean {close[0]}?"
        elif len(known) <= 16:
            allowed = "one of " + ", ".join(known)
        else:
            allowed = "a known key (see parameters.md)"
        self.problem(where, Described(f"the unknown key {key!r}"), allowed)

    def sequence(self, path: str, raw: object, what: str = "a list") -> list[object]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.problem(path, raw, what)
            return []
        return raw

    def get(
        self,
        path: str,
        data: dict[str, object],
        key: str,
        parse: Callable[[object], T],
        default: T,
        *,
        required: bool = False,
        allowed: str = "",
    ) -> T:
        if key not in data:
            if required:
                self.problem(f"{path}.{key}", MISSING, allowed)
            return default
        return self.value(f"{path}.{key}", data[key], parse, default)

    # -- sections ------------------------------------------------------------------------

    def node_name(self, raw: object) -> str:
        data = self.mapping("node", raw, ("name",))
        return self.get("node", data, "name", _checked_name, "sipedge")

    def sip(self, raw: object) -> SipConfig:
        data = self.mapping("sip", raw, ("listen", "public_address"))
        listen: list[ListenAddress] = []
        if "listen" in data:
            raw_listen = data["listen"]
            items = [raw_listen] if isinstance(raw_listen, str) else raw_listen
            entries = self.sequence("sip.listen", items, "a list of " + LISTEN_ALLOWED)
            if not entries and isinstance(items, list):
                self.problem("sip.listen", raw_listen, "at least one " + LISTEN_ALLOWED)
            for i, item in enumerate(entries):
                addr = self.value(f"sip.listen[{i}]", item, _listen_uri, None)
                if addr is None:
                    continue
                if addr in listen:
                    self.problem(f"sip.listen[{i}]", item, "each listen address once")
                listen.append(addr)
        public = self.get("sip", data, "public_address", _optional_host, None)
        return SipConfig(tuple(listen) if listen else SipConfig.listen, public)

    def api(self, raw: object) -> ApiConfig:
        data = self.mapping("api", raw, ("listen", "token"))
        host, port = ApiConfig.host, ApiConfig.port
        if "listen" in data:
            allowed = "host:port (IPv6 in brackets), port 1-65535"
            host, port = self.value(
                "api.listen", data["listen"], lambda v: _host_port(v, allowed), (host, port)
            )
        token = self.get("api", data, "token", _optional_string("null or a non-empty string"), None)
        return ApiConfig(host, port, token)

    def storage(self, raw: object) -> StorageConfig:
        data = self.mapping("storage", raw, ("path",))
        return StorageConfig(self.get("storage", data, "path", _absolute_path, StorageConfig.path))

    def parameters(self, raw: object) -> Parameters:
        data = self.mapping("parameters", raw, PARAMETER_NAMES)
        values: dict[str, object] = {}
        defaults = Parameters()
        for name, raw_value in data.items():
            path = f"parameters.{name}"
            if name == "SS_SIP_RESEND_INTERVAL":
                resend = self.resend_interval(path, raw_value)
                if resend is not None:
                    values[parameter_field(name)] = resend
                continue
            default = getattr(defaults, parameter_field(name))
            values[parameter_field(name)] = self.value(path, raw_value, _PARAMETERS[name], default)
        return Parameters(**cast(dict[str, Any], values))

    def resend_interval(self, path: str, raw: object) -> tuple[float, ...] | None:
        if isinstance(raw, str):
            items: list[object] = [part.strip() for part in raw.split(",")]
        elif isinstance(raw, list):
            items = list(raw)
        elif _as_number(raw) is not None:
            items = [raw]
        else:
            self.problem(path, raw, RESEND_ALLOWED)
            return None
        if not 1 <= len(items) <= 20:
            self.problem(path, raw, RESEND_ALLOWED)
            return None
        out: list[float] = []
        ok = True
        for i, item in enumerate(items):
            n = self.value(f"{path}[{i}]", item, _resend_entry, -1.0)
            ok = ok and n > 0
            out.append(n)
        return tuple(out) if ok else None

    def mapping_gateways(self, raw: object) -> tuple[MappingGateway, ...]:
        out: list[MappingGateway] = []
        names: set[str] = set()
        seen_networks: dict[IPv4Network | IPv6Network, str] = {}
        for i, item in enumerate(self.sequence("mapping_gateways", raw)):
            path = f"mapping_gateways[{i}]"
            data = self.mapping(path, item, _MAPPING_KEYS)
            if not isinstance(item, dict):
                continue
            name = self.get(
                path, data, "name", _checked_name, "", required=True, allowed=NAME_ALLOWED
            )
            self.unique(f"{path}.name", name, names, "a name no other mapping gateway has")
            networks: list[IPv4Network | IPv6Network] = []
            if "addresses" not in data:
                self.problem(f"{path}.addresses", MISSING, "a list of " + ADDRESS_ALLOWED)
            else:
                raw_addresses = data["addresses"]
                entries = self.sequence(
                    f"{path}.addresses", raw_addresses, "a list of " + ADDRESS_ALLOWED
                )
                if not entries and isinstance(raw_addresses, list | None):
                    self.problem(f"{path}.addresses", raw_addresses, "at least one address")
                for j, entry in enumerate(entries):
                    net = self.value(f"{path}.addresses[{j}]", entry, _network, None)
                    if net is None:
                        continue
                    other = seen_networks.get(net)
                    if other is not None and other != name:
                        self.problem(
                            f"{path}.addresses[{j}]",
                            entry,
                            f"an address not already given to mapping gateway {other!r}",
                        )
                    seen_networks.setdefault(net, name)
                    if net not in networks:
                        networks.append(net)
            privacy = self.get(path, data, "support_privacy", _on_off, False)
            rtp = self.get(path, data, "rtp_encryption", _on_off, False)
            out.append(MappingGateway(name, tuple(networks), privacy, rtp))
        return tuple(out)

    def unique(self, path: str, name: str, seen: set[str], allowed: str) -> None:
        if not name:
            return
        if name in seen:
            self.problem(path, name, allowed)
        seen.add(name)

    def routing_gateways(self, raw: object) -> tuple[RoutingGateway, ...]:
        out: list[RoutingGateway] = []
        names: set[str] = set()
        identity = _words("None", "Passthrough", "Caller")
        for i, item in enumerate(self.sequence("routing_gateways", raw)):
            path = f"routing_gateways[{i}]"
            data = self.mapping(path, item, _ROUTING_KEYS)
            if not isinstance(item, dict):
                continue
            name = self.get(
                path, data, "name", _checked_name, "", required=True, allowed=NAME_ALLOWED
            )
            self.unique(f"{path}.name", name, names, "a name no other routing gateway has")
            gw = RoutingGateway(
                name=name,
                address=self.get(
                    path, data, "address", _host, "", required=True, allowed=HOST_ALLOWED
                ),
                port=self.get(path, data, "port", _port, 5060),
                transport=self.get(path, data, "transport", _words("udp", "tcp"), "udp"),
                trusted=self.get(path, data, "trusted", _on_off, False),
                invite_timeout=self.get(
                    path,
                    data,
                    "invite_timeout",
                    _word_or("Default", _number(1, 300), "Default or 1-300"),
                    None,
                ),
                stop_switch_after_sdp=self.get(
                    path, data, "stop_switch_after_sdp", _default_on_off, None
                ),
                stop_switch_after_invite_timeout=self.get(
                    path, data, "stop_switch_after_invite_timeout", _default_on_off, None
                ),
                stop_switching_codes=self.codes(path, data),
                privacy=self.get(
                    path, data, "privacy", _words("None", "Passthrough", "Id"), "None"
                ),
                p_asserted_identity=self.get(path, data, "p_asserted_identity", identity, "None"),
                p_preferred_identity=self.get(path, data, "p_preferred_identity", identity, "None"),
                caller_dial_plan=self.dial_plan(f"{path}.caller_dial_plan", data),
                rtp_encryption=self.get(path, data, "rtp_encryption", _on_off, False),
            )
            out.append(gw)
        return tuple(out)

    def codes(self, path: str, data: dict[str, object]) -> frozenset[int]:
        path = f"{path}.stop_switching_codes"
        raw = data.get("stop_switching_codes")
        codes: set[int] = set()
        for j, item in enumerate(self.sequence(path, raw, "a list of SIP codes 300-699")):
            code = self.value(f"{path}[{j}]", item, _integer(300, 699), None)
            if code is not None:
                codes.add(code)
        return frozenset(codes)

    def dial_plan(self, path: str, data: dict[str, object]) -> tuple[DialPlanRule, ...]:
        rules: list[DialPlanRule] = []
        raw = data.get("caller_dial_plan")
        for j, item in enumerate(self.sequence(path, raw, "a list of {match, replace} rules")):
            rpath = f"{path}[{j}]"
            rule = self.mapping(
                rpath, item, ("match", "replace"), what="{match: ..., replace: ...}"
            )
            if not isinstance(item, dict):
                continue
            match = self.get(
                rpath,
                rule,
                "match",
                _string(REGEX_ALLOWED),
                None,
                required=True,
                allowed=REGEX_ALLOWED,
            )
            replace = self.get(
                rpath,
                rule,
                "replace",
                _string(REPLACE_ALLOWED),
                None,
                required=True,
                allowed=REPLACE_ALLOWED,
            )
            if match is None:
                continue
            try:
                pattern = re.compile(match)
            except re.error as err:
                self.problem(f"{rpath}.match", match, f"a valid regular expression ({err})")
                continue
            if replace is None:
                continue
            try:
                pattern.sub(replace, "")  # parses the template: bad group references fail here
            except (re.error, IndexError) as err:
                self.problem(
                    f"{rpath}.replace", replace, f"a replacement valid for the match ({err})"
                )
                continue
            rules.append(DialPlanRule(pattern, replace))
        return tuple(rules)

    def routes(self, raw: object, gateway_names: set[str]) -> tuple[Route, ...]:
        out: list[Route] = []
        prefixes: set[str] = set()
        prefix_allowed = "a quoted string of digits, optionally starting with '+' (may be empty)"
        for i, item in enumerate(self.sequence("routes", raw)):
            path = f"routes[{i}]"
            data = self.mapping(path, item, ("prefix", "gateways"))
            if not isinstance(item, dict):
                continue

            def parse_prefix(value: object) -> str:
                if not isinstance(value, str) or not re.fullmatch(r"\+?[0-9]*", value):
                    raise _Bad(prefix_allowed)
                return value

            prefix = self.get(
                path, data, "prefix", parse_prefix, None, required=True, allowed=prefix_allowed
            )
            if prefix is not None:
                if prefix in prefixes:
                    self.problem(f"{path}.prefix", prefix, "a prefix no other route has")
                prefixes.add(prefix)
            gateways: list[str] = []
            gpath = f"{path}.gateways"
            allowed = "a list of at least one routing gateway name"
            if "gateways" not in data:
                self.problem(gpath, MISSING, allowed)
            else:
                entries = self.sequence(gpath, data["gateways"], allowed)
                if not entries and isinstance(data["gateways"], list | None):
                    self.problem(gpath, data["gateways"], allowed)
                for j, entry in enumerate(entries):
                    if not isinstance(entry, str) or entry not in gateway_names:
                        known = ", ".join(sorted(gateway_names)) or "none defined"
                        self.problem(f"{gpath}[{j}]", entry, f"a routing gateway name ({known})")
                    elif entry in gateways:
                        self.problem(f"{gpath}[{j}]", entry, "each gateway once per route")
                    else:
                        gateways.append(entry)
            if prefix is not None:
                out.append(Route(prefix, tuple(gateways)))
        return tuple(out)

    def endpoints(self, raw: object) -> tuple[Endpoint, ...]:
        out: list[Endpoint] = []
        accounts: set[str] = set()
        for i, item in enumerate(self.sequence("endpoints", raw)):
            path = f"endpoints[{i}]"
            data = self.mapping(path, item, ("account", "password"))
            if not isinstance(item, dict):
                continue
            account = self.get(
                path, data, "account", _user, "", required=True, allowed=USER_ALLOWED
            )
            self.unique(f"{path}.account", account, accounts, "an account no other endpoint has")
            password = self.secret(f"{path}.password", data, required=True)
            out.append(Endpoint(account, password))
        return tuple(out)

    def secret(self, path: str, data: dict[str, object], *, required: bool) -> str:
        key = path.rsplit(".", 1)[1]
        if key not in data:
            if required:
                self.problem(path, MISSING, PASSWORD_ALLOWED)
            return ""
        raw = data[key]
        if isinstance(raw, str) and raw:
            return raw
        shown = raw if raw is None or raw == "" else Described(f"a {type(raw).__name__}")
        self.problem(path, shown, PASSWORD_ALLOWED)
        return ""

    def registrations(self, raw: object) -> tuple[Registration, ...]:
        out: list[Registration] = []
        names: set[str] = set()
        for i, item in enumerate(self.sequence("registrations", raw)):
            path = f"registrations[{i}]"
            data = self.mapping(path, item, _REGISTRATION_KEYS)
            if not isinstance(item, dict):
                continue
            name = self.get(
                path, data, "name", _checked_name, "", required=True, allowed=NAME_ALLOWED
            )
            self.unique(f"{path}.name", name, names, "a name no other registration has")
            out.append(
                Registration(
                    name=name,
                    proxy=self.get(
                        path, data, "proxy", _host, "", required=True, allowed=HOST_ALLOWED
                    ),
                    port=self.get(path, data, "port", _port, 5060),
                    user=self.get(
                        path, data, "user", _user, "", required=True, allowed=USER_ALLOWED
                    ),
                    password=self.secret(f"{path}.password", data, required=True),
                    realm=self.get(
                        path, data, "realm", _optional_string("null or a non-empty string"), None
                    ),
                    register_period=self.get(
                        path,
                        data,
                        "register_period",
                        _word_or("Auto", _integer(20, 7200), "Auto or 20-7200"),
                        None,
                    ),
                )
            )
        return tuple(out)

    def media(self, raw: object) -> MediaConfig:
        data = self.mapping("media", raw, _MEDIA_KEYS)
        d = MediaConfig()
        socket = self.get("media", data, "control_socket", _absolute_path, d.control_socket)
        port_range = d.port_range
        if "port_range" in data:
            port_range = self.value(
                "media.port_range", data["port_range"], _port_range, d.port_range
            )
        fast_path = self.get(
            "media", data, "fast_path", _words("auto", "xdp", "userspace"), d.fast_path
        )
        interfaces = d.interfaces
        if "interfaces" in data:
            found: list[str] = []
            raw_ifaces = data["interfaces"]
            items = [raw_ifaces] if isinstance(raw_ifaces, str) else raw_ifaces
            for j, item in enumerate(self.sequence("media.interfaces", items)):
                name = self.value(f"media.interfaces[{j}]", item, _ifname, "")
                if name and name in found:
                    self.problem(f"media.interfaces[{j}]", item, "each interface once")
                elif name:
                    found.append(name)
            interfaces = tuple(found)
        if fast_path == "xdp" and not interfaces:
            self.problem(
                "media.interfaces", list(interfaces), "at least one interface when fast_path is xdp"
            )
        return MediaConfig(socket, port_range, fast_path, interfaces)


PORT_RANGE_ALLOWED = (
    "[low, high]: whole numbers within 1024-65535, low even, low < high "
    "(room for at least one RTP/RTCP pair)"
)


def _port_range(value: object) -> tuple[int, int]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise _Bad(PORT_RANGE_ALLOWED)
    lo, hi = _as_int(value[0]), _as_int(value[1])
    if lo is None or hi is None or lo % 2 or not 1024 <= lo < hi <= 65535:
        raise _Bad(PORT_RANGE_ALLOWED)
    return lo, hi


_IFNAME_RE = re.compile(r"^[^\s/:]{1,15}$")


def _ifname(value: object) -> str:
    if not isinstance(value, str) or not _IFNAME_RE.match(value) or value in (".", ".."):
        raise _Bad("a network interface name (1-15 characters, no spaces, '/' or ':')")
    return value


# -- cross-checks ---------------------------------------------------------------------------


def _cross_checks(c: _Collector, config: Config) -> None:
    """Checks across sections, skipped where a section they read already has a problem
    (so a bad value is reported once, not again as a consequence)."""

    def clean(*prefixes: str) -> bool:
        return not any(pr.path.startswith(prefixes) for pr in c.problems)

    p = config.parameters
    mode = p.rtpencryptionmode
    encrypted = [
        g.name or f"routing_gateways[{i}]"
        for i, g in enumerate(config.routing_gateways)
        if g.rtp_encryption
    ] + [
        g.name or f"mapping_gateways[{i}]"
        for i, g in enumerate(config.mapping_gateways)
        if g.rtp_encryption
    ]
    if mode != 0 and encrypted and clean("parameters.SS_RTPENCRYPTION"):
        lo, hi, allowed = RTP_KEY_LENGTHS[mode]
        size = len(p.rtpencryptionkey.encode("utf-8"))
        if not lo <= size <= hi:
            c.problem(
                "parameters.SS_RTPENCRYPTIONKEY",
                Described(f"a {size}-byte key"),
                f"{allowed}, as gateways have rtp_encryption On ({', '.join(encrypted)})",
            )
    if not clean("sip.listen", "media.port_range", "api.listen"):
        return
    lo_port, hi_port = config.media.port_range
    for i, listen in enumerate(config.sip.listen):
        if listen.transport == "udp" and lo_port <= listen.port <= hi_port:
            c.problem(
                "media.port_range",
                list(config.media.port_range),
                f"a range that leaves out the SIP port {listen.port} (sip.listen[{i}])",
            )
    for i, listen in enumerate(config.sip.listen):
        if listen.transport == "tcp" and listen.port == config.api.port:
            same_host = listen.host == config.api.host or "0.0.0.0" in (
                listen.host,
                config.api.host,
            )
            if same_host:
                c.problem(
                    "api.listen",
                    f"{config.api.host}:{config.api.port}",
                    f"an address other than the SIP TCP listener sip.listen[{i}]",
                )


# -- entry points ---------------------------------------------------------------------------


def parse_config(data: object) -> Config:
    """Validate an already-loaded YAML document; raise ConfigError listing every problem."""
    c = _Collector()
    if not isinstance(data, dict):
        shown = (
            Described("an empty document")
            if data is None
            else Described(f"a document of type {type(data).__name__}")
        )
        raise ConfigError([ConfigProblem("", shown, "a YAML mapping of config sections")])
    top = c.mapping("", data, _TOP_KEYS)
    routing = c.routing_gateways(top.get("routing_gateways"))
    config = Config(
        node_name=c.node_name(top.get("node")),
        sip=c.sip(top.get("sip")),
        api=c.api(top.get("api")),
        storage=c.storage(top.get("storage")),
        parameters=c.parameters(top.get("parameters")),
        mapping_gateways=c.mapping_gateways(top.get("mapping_gateways")),
        routing_gateways=routing,
        routes=c.routes(top.get("routes"), {g.name for g in routing if g.name}),
        endpoints=c.endpoints(top.get("endpoints")),
        registrations=c.registrations(top.get("registrations")),
        media=c.media(top.get("media")),
    )
    _cross_checks(c, config)
    if c.problems:
        raise ConfigError(c.problems)
    return config


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicated keys in a mapping (YAML would keep the last)."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[object] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:  # unhashable key: construct_mapping reports it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _file_problem(text: str, allowed: str) -> ConfigError:
    return ConfigError([ConfigProblem("", Described(text), allowed)])


def load_config(path: str | Path) -> Config:
    """Read, parse and validate the YAML config at `path`; ConfigError on any problem."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as err:
        raise _file_problem(
            f"cannot read {path}: {err.strerror or err}", "a readable file"
        ) from err
    except UnicodeDecodeError as err:
        raise _file_problem(f"{path} is not UTF-8 text ({err})", "a UTF-8 YAML file") from err
    try:
        data = yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.YAMLError as err:
        where = ""
        mark = getattr(err, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        reason = getattr(err, "problem", None) or str(err)
        raise _file_problem(f"YAML syntax error in {path}{where}: {reason}", "valid YAML") from err
    return parse_config(data)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def check_config_main(path: str) -> int:
    """`sipedge check-config FILE`: 0 and a one-line summary, or 1 and every problem."""
    try:
        config = load_config(path)
    except ConfigError as err:
        for problem in err.problems:
            print(f"{path}: {problem}", file=sys.stderr)
        print(f"{path}: {_count(len(err.problems), 'problem')}", file=sys.stderr)
        return 1
    parts = [
        _count(len(config.routing_gateways), "routing gateway"),
        _count(len(config.routes), "route"),
        _count(len(config.mapping_gateways), "mapping gateway"),
        _count(len(config.endpoints), "endpoint"),
        _count(len(config.registrations), "registration"),
    ]
    print(f"OK: {path}: {', '.join(parts)}")
    return 0
