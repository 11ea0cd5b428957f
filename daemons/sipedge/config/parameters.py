"""The SS_* parameter table: every global parameter's name and the parser of its value.

Owns: `_PARAMETERS` (name -> parser, carrying the ranges of `parameters.md`),
`PARAMETER_NAMES`, `SIPEDGE_PARAMETERS` (the ones sipedge adds to the VOS3000 set),
`parameter_field` (name -> `Parameters` field) and `RTP_KEY_LENGTHS`.

Must not: hold defaults (they are the `Parameters` fields in `schema`), collect problems, open
files, or import anything from sipedge outside config/ (here: `values` only).
"""

from __future__ import annotations

from collections.abc import Callable

from sipedge.config.values import _integer, _number, _on_off, _string, _word_or, _words

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
    # sipedge's own (documented in docs/security.md):
    "SS_SIP_MAX_MESSAGE_SIZE": _integer(1024, 65535),
    "SS_SIP_MAX_URI_LENGTH": _integer(64, 8192),
    "SS_SIP_MAX_HEADERS": _integer(16, 1024),
    "SS_SIP_MAX_TRANSACTIONS": _integer(100, 1000000),
    "SS_SIP_MAX_CALLS": _integer(1, 200000),
    "SS_SIP_RETRY_AFTER": _integer(1, 3600),
    "SS_SIP_OVERLOAD_QUEUE": _integer(0, 1048576),
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
        "SS_SIP_MAX_MESSAGE_SIZE",
        "SS_SIP_MAX_URI_LENGTH",
        "SS_SIP_MAX_HEADERS",
        "SS_SIP_MAX_TRANSACTIONS",
        "SS_SIP_MAX_CALLS",
        "SS_SIP_RETRY_AFTER",
        "SS_SIP_OVERLOAD_QUEUE",
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
