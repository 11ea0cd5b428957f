"""Entry points: parse a loaded document, load a YAML file, and `sipedge check-config`.

Owns: `parse_config` (runs the collector over every section, then the cross-section checks),
`_cross_checks`, the YAML loader that refuses duplicated keys, `load_config` (read, decode,
YAML, parse; file-level problems), and `check_config_main` (the check-config command's output).

Must not: parse single values (that is `values`) or walk sections (that is `collector`), or
import anything from sipedge outside config/.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml

from sipedge.config.api import api_section
from sipedge.config.collector import _Collector
from sipedge.config.errors import ConfigError, ConfigProblem, Described
from sipedge.config.fleet import fleet_section
from sipedge.config.media import media_section
from sipedge.config.parameters import RTP_KEY_LENGTHS
from sipedge.config.schema import Config
from sipedge.config.security import security_section
from sipedge.config.sip import sip_section
from sipedge.config.storage import storage_section

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
    accounts = {e.account for e in config.endpoints}
    _fleet_checks(c, config, clean("fleet", "storage", "sip.listen"))
    for i, m in enumerate(config.mapping_gateways):
        if m.username is not None and m.username in accounts and clean("mapping_gateways"):
            # one digest check serves both: the user name says whose answer it is
            c.problem(
                f"mapping_gateways[{i}].username",
                m.username,
                "a user name that is not also an endpoint account",
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
    transports = {listen.transport for listen in config.sip.listen}
    for i, gw in enumerate(config.routing_gateways):
        if gw.transport != "udp" and gw.transport not in transports and clean("routing_gateways"):
            c.problem(
                f"routing_gateways[{i}].transport",
                gw.transport,
                f"udp, or {gw.transport} once sip.listen has a {gw.transport}:// address (the "
                "gateway's requests in the dialog come back to it)",
            )
    # an IPv6 peer needs an IPv6 UDP listener: our Via and Contact toward it (docs/ipv6.md)
    if not any(a.transport == "udp" and ":" in a.host for a in config.sip.listen):
        peers = [
            (f"routing_gateways[{i}].address", g.address, "routing_gateways")
            for i, g in enumerate(config.routing_gateways)
        ]
        peers += [
            (f"registrations[{i}].proxy", r.proxy, "registrations")
            for i, r in enumerate(config.registrations)
        ]
        for path, address, section in peers:
            if ":" in address and clean(section):
                c.problem(
                    path,
                    address,
                    "an IPv4 address or a host name; an IPv6 address once sip.listen has an "
                    "IPv6 udp:// address (udp://[...]:port)",
                )
    for i, listen in enumerate(config.sip.listen):
        if listen.transport in ("tcp", "tls") and listen.port == config.api.port:
            same_host = listen.host == config.api.host or "0.0.0.0" in (
                listen.host,
                config.api.host,
            )
            if same_host:
                c.problem(
                    "api.listen",
                    f"{config.api.host}:{config.api.port}",
                    f"an address other than the SIP {listen.transport.upper()} listener "
                    f"sip.listen[{i}]",
                )


def _fleet_checks(c: _Collector, config: Config, clean: bool) -> None:
    """A fleet shares its bindings in PostgreSQL and relays calls over UDP (docs/fleet.md)."""
    fleet = config.fleet
    if not fleet.enabled or not clean:
        return
    if config.storage.backend != "postgresql":
        c.problem(
            "fleet.address",
            fleet.address,
            "null, or storage.backend postgresql (a shared database)",
        )
    if not any(listen.transport == "udp" for listen in config.sip.listen):
        c.problem("fleet.address", fleet.address, "null, or a udp:// listener in sip.listen")
    for j, peer in enumerate(fleet.peers):
        for m in config.mapping_gateways:
            if any(peer.version == net.version and peer.overlaps(net) for net in m.addresses):
                # its calls would be admitted as that gateway's and routed to gateways
                c.problem(f"fleet.peers[{j}]", str(peer), f"no address of mapping gateway {m.name}")


# -- entry points ---------------------------------------------------------------------------

_TOP_KEYS = (
    "node",
    "sip",
    "api",
    "storage",
    "fleet",
    "parameters",
    "mapping_gateways",
    "routing_gateways",
    "routes",
    "endpoints",
    "registrations",
    "media",
    "security",
)


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
        sip=sip_section(c, top.get("sip")),
        api=api_section(c, top.get("api")),
        storage=storage_section(c, top.get("storage")),
        fleet=fleet_section(c, top.get("fleet")),
        parameters=(parameters := c.parameters(top.get("parameters"))),
        mapping_gateways=c.mapping_gateways(top.get("mapping_gateways")),
        routing_gateways=routing,
        routes=c.routes(top.get("routes"), {g.name for g in routing if g.name}),
        endpoints=c.endpoints(top.get("endpoints")),
        registrations=c.registrations(top.get("registrations")),
        media=media_section(c, top.get("media"), parameters.media_rtp_timeout),
        security=security_section(c, top.get("security")),
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
    if config.storage.backend == "postgresql":
        # the password file is read by sipd at start; a missing one is worth saying now
        pw = config.storage.password_file
        unreadable = pw is not None and not os.access(pw, os.R_OK)
        parts.append(
            "storage PostgreSQL" + (f" (password_file {pw} unreadable here)" if unreadable else "")
        )
    if config.fleet.enabled:
        parts.append(
            f"fleet at {config.fleet.address} with {_count(len(config.fleet.peers), 'peer')}"
        )
    print(f"OK: {path}: {', '.join(parts)}")
    return 0
