"""The exception every part of the SIP grammar raises: `ParseError`.

Owns: `ParseError` and nothing else. It sits below address.py and message.py so that both can
raise it without importing each other; other code imports it from `sipedge.sip.message`, which
re-exports it.
Must not: open sockets, read the clock, or import anything from sipedge (it is the bottom of the
grammar modules: anything it imported from sip/ would close an import circle).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ParseError"]


class ParseError(ValueError):
    """A message (or header value) that cannot be understood.

    `reason` doubles as the reason phrase of the response the transport sends back (`status`:
    400, or 505 for another SIP version); `request` is set only when enough of a request was
    understood to address that response (RFC 3261 8.2.6: a usable top Via).

    `request` is a `sipedge.sip.message.Request`. It is typed `Any` because this module sits
    below message.py and may not import it, not even for type checking (an import circle).
    """

    def __init__(self, reason: str, request: Any = None, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.request = request
        self.status = status
