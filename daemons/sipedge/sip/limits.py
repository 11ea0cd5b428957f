"""The limits the SIP stack enforces on one message and on its tables.

Owns: `SipLimits`, a plain value the daemon builds from its parameters (SS_SIP_MAX_*); the
transport and the transaction layer read it on every message.
Must not: import config/ (sip/ is a leaf: the daemon, the composition root, converts), read
the clock, or hold state.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SipLimits"]


@dataclass(frozen=True, slots=True)
class SipLimits:
    """Defaults are those of config/schema.py's `Parameters`."""

    max_message_size: int = 16384  # bytes; a larger request gets 513, anything else is dropped
    max_uri_length: int = 1024  # Request-URI characters; longer gets 414
    max_headers: int = 128  # header fields (comma lists count each entry); more gets 513
    max_transactions: int = 100000  # server + client; over it a new request gets 503
    retry_after: int = 10  # seconds, the Retry-After of that 503
