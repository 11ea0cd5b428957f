"""The fields of an ng request (offer, answer, touch) and the refusal every command raises.

Owns: `ControlError` (code, message, HTTP status), the parsing of the fields shared by the
commands: call id and tags, the SDP and signal addresses (IPv4 or IPv6, in one normal form:
`normal_ip`), the port, the `address-family` wanted back, the `call-ids` of a touch.
Must not: hold state or import anything of media/ (session.py builds on it).
"""

from __future__ import annotations

import ipaddress
from typing import Any

MAX_TOUCH = 65536


class ControlError(Exception):
    """A control request that cannot be done; carries a code and an HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def to_json(self) -> dict[str, Any]:
        return {"result": "error", "error-code": self.code, "error-reason": self.message}


def text(req: dict[str, Any], name: str, required: bool = True) -> str:
    value = req.get(name)
    if value is None:
        if required:
            raise ControlError("bad-request", f"'{name}' is required")
        return ""
    if not isinstance(value, str) or not value or len(value) > 256:
        raise ControlError("bad-request", f"'{name}' must be a non-empty string (max 256)")
    return value


def normal_ip(value: str) -> str:
    """One text form per address: IPv6 compressed lower case, an IPv4-mapped IPv6 address as
    its IPv4 form (what a socket of that family reports). Raises ValueError."""
    addr = ipaddress.ip_address(value)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def family(address: str) -> int:
    """4 or 6 for an address in normal form (no parsing: a colon means IPv6)."""
    return 6 if ":" in address else 4


def _ip(value: Any, name: str, what: str) -> str:
    if not isinstance(value, str) or len(value) > 64:
        raise ControlError("bad-address", f"'{name}' ({what}) must be an IP address string")
    try:
        address = normal_ip(value)
    except ValueError:
        raise ControlError("bad-address", f"'{name}' {value!r} is not an IP address") from None
    if "%" in value:
        raise ControlError("bad-address", f"'{name}' {value!r}: no scoped (zone) addresses")
    return address


def parse_address(req: dict[str, Any]) -> str:
    if not isinstance(req.get("address"), str):
        raise ControlError("bad-address", "'address' (the SDP c= address) is required")
    return _ip(req["address"], "address", "the SDP c= address")


def parse_signal(req: dict[str, Any]) -> str | None:
    value = req.get("signal-address")
    if value is None:
        return None
    return _ip(value, "signal-address", "source of the SIP message")


def address_family(req: dict[str, Any]) -> int:
    """The ng `address-family` of an offer/answer: the family of the relay address to return
    (that of the party receiving the SDP). Absent: IPv4."""
    value = req.get("address-family", "IP4")
    if value == "IP4":
        return 4
    if value == "IP6":
        return 6
    raise ControlError("bad-request", f"'address-family' must be IP4 or IP6, got {value!r}")


def parse_port(req: dict[str, Any]) -> int:
    value = req.get("port")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ControlError("bad-port", f"'port' must be a whole number 1-65534, got {value!r}")
    if not 1 <= value <= 65534:
        raise ControlError("bad-port", f"'port' must be 1-65534 (RTCP is port + 1), got {value}")
    return value


def call_ids(req: dict[str, Any]) -> list[str]:
    """The `call-ids` list of a `touch` request."""
    ids = req.get("call-ids")
    if not isinstance(ids, list) or len(ids) > MAX_TOUCH:
        raise ControlError("bad-request", f"'call-ids' must be a list of at most {MAX_TOUCH}")
    for value in ids:
        if not isinstance(value, str) or not value or len(value) > 256:
            raise ControlError("bad-request", "'call-ids' must hold non-empty strings (max 256)")
    return ids
