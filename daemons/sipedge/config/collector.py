"""The collector: walks the loaded YAML section by section and keeps *every* problem.

Owns: `_Collector` (the generic walking helpers: mapping with unknown-key hints, sequence,
get/value with defaults, secrets; and one method per section building that section's dataclass)
and the known keys of each list entry (the `api`, `media` and `security` sections and a
gateway's dial plan have modules of their own).

Must not: raise on a bad value (it records the problem and goes on with the default), check
across sections (that is `loader._cross_checks`), read files or YAML, or import anything from
sipedge outside config/.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import replace
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Any, TypeVar, cast

from sipedge.config.dial_plan import dial_plan
from sipedge.config.errors import MISSING, ConfigProblem, Described, _Bad
from sipedge.config.parameters import _PARAMETERS, PARAMETER_NAMES, parameter_field
from sipedge.config.schema import (
    Endpoint,
    MappingGateway,
    Parameters,
    Registration,
    Route,
    RoutingGateway,
)
from sipedge.config.values import (
    ADDRESS_ALLOWED,
    DIGEST_ALLOWED,
    HOST_ALLOWED,
    NAME_ALLOWED,
    PASSWORD_ALLOWED,
    RESEND_ALLOWED,
    USER_ALLOWED,
    _as_number,
    _checked_name,
    _default_on_off,
    _digest_algorithm,
    _fingerprint,
    _host,
    _integer,
    _network,
    _number,
    _on_off,
    _optional_absolute_path,
    _optional_host,
    _optional_string,
    _port,
    _resend_entry,
    _user,
    _word_or,
    _words,
)

T = TypeVar("T")


_MAPPING_KEYS = (
    "name",
    "addresses",
    "support_privacy",
    "rtp_encryption",
    "max_calls",
    "max_cps",
    "auth",
    "username",
    "password",
    "password_file",
)
_MAPPING_AUTH = ("source", "digest", "source+digest")
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
    "auth_user",
    "auth_password",
    "auth_password_file",
    "auth_realm",
    "tls_ca",
    "tls_server_name",
    "tls_fingerprint",
    "tls_cert",
    "tls_key",
)
_AUTH_KEYS = ("auth_user", "auth_password", "auth_password_file", "auth_realm")
_AUTH_PAIR = "auth_password or auth_password_file (one of the two)"
_AUTH_PAIR_MAPPING = "password or password_file (one of the two) beside username"
_REGISTRATION_KEYS = ("name", "proxy", "port", "user", "password", "realm", "register_period")


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

    def networks(self, path: str, raw: object) -> tuple[IPv4Network | IPv6Network, ...]:
        """A list of networks or single addresses, each once (security.trusted, fleet.peers)."""
        found: list[IPv4Network | IPv6Network] = []
        for j, entry in enumerate(self.sequence(path, raw, "a list of " + ADDRESS_ALLOWED)):
            net = self.value(f"{path}[{j}]", entry, _network, None)
            if net is not None and net not in found:
                found.append(net)
        return tuple(found)

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
            auth = self.mapping_auth(path, data)
            if "addresses" not in data and auth["auth"] == "digest":
                pass  # digest alone: the source address does not matter
            elif "addresses" not in data:
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
            max_calls = self.get(
                path,
                data,
                "max_calls",
                _word_or("None", _integer(1, 200000), "None or 1-200000"),
                None,
            )
            max_cps = self.get(
                path,
                data,
                "max_cps",
                _word_or("None", _number(0.1, 10000), "None or 0.1-10000"),
                None,
            )
            out.append(
                MappingGateway(name, tuple(networks), privacy, rtp, max_calls, max_cps, **auth)
            )
        usernames: set[str] = set()
        for i, gw in enumerate(out):
            if gw.username is not None:
                self.unique(
                    f"mapping_gateways[{i}].username",
                    gw.username,
                    usernames,
                    "a user name no other mapping gateway has",
                )
        return tuple(out)

    def mapping_auth(self, path: str, data: dict[str, object]) -> dict[str, Any]:
        """auth (source, digest, source+digest; default source+digest when a username is
        given, else source), username, password or password_file (one of the two)."""
        given = {k for k in ("username", "password", "password_file") if data.get(k) is not None}
        default = "source+digest" if "username" in given else "source"
        auth = self.get(path, data, "auth", _words(*_MAPPING_AUTH), default)
        user, password, password_file = self.credentials(
            path, data, ("username", "password", "password_file")
        )
        if auth == "source" and given:
            key = sorted(given)[0]
            self.problem(f"{path}.{key}", data[key], "null unless auth is digest or source+digest")
        elif auth != "source" and "username" not in given:
            self.problem(f"{path}.username", MISSING, f"a user name (auth is {auth})")
        elif auth != "source" and not given & {"password", "password_file"}:
            self.problem(f"{path}.password", MISSING, _AUTH_PAIR_MAPPING)
        elif {"password", "password_file"} <= given:
            shown = str(data["password_file"])
            self.problem(f"{path}.password_file", shown, "null when password is set")
        return {
            "auth": auth,
            "username": user,
            "password": password,
            "password_file": password_file,
        }

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
                port_given="port" in data,
                transport=self.get(path, data, "transport", _words("udp", "tcp", "tls"), "udp"),
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
                caller_dial_plan=dial_plan(self, f"{path}.caller_dial_plan", data),
                rtp_encryption=self.get(path, data, "rtp_encryption", _on_off, False),
                **self.gateway_auth(path, data),
                tls_ca=self.get(path, data, "tls_ca", _optional_absolute_path, None),
                tls_server_name=self.get(path, data, "tls_server_name", _optional_host, None),
                tls_fingerprint=self.get(path, data, "tls_fingerprint", _fingerprint, None),
                tls_cert=self.get(path, data, "tls_cert", _optional_absolute_path, None),
                tls_key=self.get(path, data, "tls_key", _optional_absolute_path, None),
            )
            if gw.transport == "tls" and not gw.port_given:
                gw = replace(gw, port=5061)  # RFC 3261 19.1.2, RFC 3263 4.2
            tls_keys = [k for k in _ROUTING_KEYS[-5:] if data.get(k) is not None]
            if tls_keys and gw.transport != "tls":
                self.problem(
                    f"{path}.{tls_keys[0]}", data[tls_keys[0]], "null unless transport is tls"
                )
            if (gw.tls_cert is None) != (gw.tls_key is None) and gw.transport == "tls":
                self.problem(f"{path}.tls_key", None, "tls_cert and tls_key together")
            out.append(gw)
        return tuple(out)

    def gateway_auth(self, path: str, data: dict[str, object]) -> dict[str, Any]:
        """auth_user with auth_password or auth_password_file (one of the two), auth_realm:
        the credentials a routing gateway's 401/407 is answered with."""
        given = {key for key in _AUTH_KEYS if data.get(key) is not None}
        user, password, password_file = self.credentials(path, data, _AUTH_KEYS[:3])
        if given and "auth_user" not in given:
            self.problem(f"{path}.auth_user", MISSING, "a user name beside " + _AUTH_PAIR)
        elif "auth_user" in given and not given & {"auth_password", "auth_password_file"}:
            self.problem(f"{path}.auth_password", MISSING, _AUTH_PAIR + " beside auth_user")
        elif {"auth_password", "auth_password_file"} <= given:
            shown = str(data["auth_password_file"])
            self.problem(f"{path}.auth_password_file", shown, "null when auth_password is set")
        return {
            "auth_user": user,
            "auth_password": password,
            "auth_password_file": password_file,
            "auth_realm": self.get(
                path, data, "auth_realm", _optional_string("null or a non-empty string"), None
            ),
        }

    def credentials(
        self, path: str, data: dict[str, object], keys: tuple[str, ...]
    ) -> tuple[str | None, str | None, Path | None]:
        """The user name, inline password and password file under `keys` (null: None)."""
        user_key, password_key, file_key = keys
        user = password = None
        if data.get(user_key) is not None:
            user = self.get(path, data, user_key, _user, None, allowed=USER_ALLOWED)
        if data.get(password_key) is not None:
            password = self.secret(f"{path}.{password_key}", data, required=False) or None
        return user, password, self.get(path, data, file_key, _optional_absolute_path, None)

    def codes(self, path: str, data: dict[str, object]) -> frozenset[int]:
        path = f"{path}.stop_switching_codes"
        raw = data.get("stop_switching_codes")
        codes: set[int] = set()
        for j, item in enumerate(self.sequence(path, raw, "a list of SIP codes 300-699")):
            code = self.value(f"{path}[{j}]", item, _integer(300, 699), None)
            if code is not None:
                codes.add(code)
        return frozenset(codes)

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
            data = self.mapping(path, item, ("account", "password", "digest_algorithms"))
            if not isinstance(item, dict):
                continue
            account = self.get(
                path, data, "account", _user, "", required=True, allowed=USER_ALLOWED
            )
            self.unique(f"{path}.account", account, accounts, "an account no other endpoint has")
            password = self.secret(f"{path}.password", data, required=True)
            algorithms = None
            if "digest_algorithms" in data:
                algorithms = self.digest_algorithms(
                    f"{path}.digest_algorithms", data["digest_algorithms"]
                )
            out.append(Endpoint(account, password, algorithms))
        return tuple(out)

    def digest_algorithms(self, path: str, raw: object) -> tuple[str, ...]:
        """A non-empty list of MD5 / SHA-256, each once (a single word is a list of one)."""
        items = [raw] if isinstance(raw, str) else raw
        entries = self.sequence(path, items, "a list of " + DIGEST_ALLOWED)
        found: list[str] = []
        for j, item in enumerate(entries):
            name = self.value(f"{path}[{j}]", item, _digest_algorithm, "")
            if name and name in found:
                self.problem(f"{path}[{j}]", item, "each algorithm once")
            elif name:
                found.append(name)
        if not found:
            if isinstance(items, list) and not entries:
                self.problem(path, raw, "at least one of " + DIGEST_ALLOWED)
            return ("MD5",)
        return tuple(found)

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
                    port_given="port" in data,
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
