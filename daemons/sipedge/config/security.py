"""The `security:` section: who is trusted, how fast a source may send, which scanners are
refused at once, which digest algorithms are offered (docs/security.md).

Owns: `security_section`, which builds `SecurityConfig` from the YAML with the collector.
Must not: read files, check across sections, or import anything from sipedge outside config/.
"""

from __future__ import annotations

from sipedge.config.collector import _Collector
from sipedge.config.schema import RateLimit, SecurityConfig
from sipedge.config.values import (
    _integer,
    _number,
    _scanner,
    _words,
)

_SECURITY_KEYS = (
    "trusted",
    "rate_limit",
    "unknown_sources",
    "scanner_user_agents",
    "digest_algorithms",
    "max_tracked_sources",
    "max_nonces",
    "log_interval",
)
_RATE_KEYS = ("requests", "window", "ban")


def security_section(c: _Collector, raw: object) -> SecurityConfig:
    data = c.mapping("security", raw, _SECURITY_KEYS)
    d = SecurityConfig()
    trusted = c.networks("security.trusted", data.get("trusted"))
    rate = d.rate_limit
    if "rate_limit" in data:
        r = c.mapping("security.rate_limit", data["rate_limit"], _RATE_KEYS)
        rate = RateLimit(
            requests=c.get(
                "security.rate_limit", r, "requests", _integer(1, 100000), rate.requests
            ),
            window=c.get("security.rate_limit", r, "window", _number(0.1, 3600), rate.window),
            ban=c.get("security.rate_limit", r, "ban", _integer(0, 604800), rate.ban),
        )
    scanners = d.scanner_user_agents
    if "scanner_user_agents" in data:
        found: list[str] = []
        entries = c.sequence("security.scanner_user_agents", data["scanner_user_agents"])
        for j, entry in enumerate(entries):
            ua = c.value(f"security.scanner_user_agents[{j}]", entry, _scanner, "")
            if ua and ua not in found:
                found.append(ua)
        scanners = tuple(found)
    algorithms = d.digest_algorithms
    if "digest_algorithms" in data:
        algorithms = c.digest_algorithms("security.digest_algorithms", data["digest_algorithms"])
    return SecurityConfig(
        trusted=trusted,
        rate_limit=rate,
        unknown_sources=c.get(
            "security", data, "unknown_sources", _words("answer", "drop"), d.unknown_sources
        ),
        scanner_user_agents=scanners,
        digest_algorithms=algorithms,
        max_tracked_sources=c.get(
            "security", data, "max_tracked_sources", _integer(1024, 10000000), d.max_tracked_sources
        ),
        max_nonces=c.get("security", data, "max_nonces", _integer(1024, 10000000), d.max_nonces),
        log_interval=c.get("security", data, "log_interval", _number(0, 3600), d.log_interval),
    )
