"""Stream framing (RFC 3261 18.3): bytes from a TCP or TLS connection in, whole messages out.

On a stream, a message ends where its Content-Length says (mandatory there). The parser finds
the end of the header block (the first empty line, bare LF line ends tolerated as
`parse_message` does), reads Content-Length (or its compact form `l`) from it, and waits for
that many body bytes. CRLFs between messages are skipped (RFC 3261 7.5); a double CRLF there
is an RFC 5626 keep-alive ping, reported as `PING` so the connection can answer one CRLF.

Bounded: a header block longer than `max_message` bytes, or a Content-Length that takes the
message past it, is an error before the bytes are waited for; a missing, unreadable or
contradictory Content-Length is an error. After an error the parser is dead (the connection
closes): the stream cannot be resynchronised. Work is linear in the bytes fed, however they
are cut: the search for the end of the header block resumes where the last one stopped.

Owns: `StreamParser`, `PING`, `FrameError` and its closed set of reasons `FRAME_ERRORS`.
Must not: parse SIP beyond Content-Length, touch sockets, read the clock, or import from
sipedge (it is a leaf of sip/transport).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = ["FRAME_ERRORS", "PING", "Event", "FrameError", "Ping", "StreamParser"]

# Content-Length digits accepted (as parse_message): a 10-digit length is never a SIP message.
_MAX_DIGITS = 9
# A Content-Length (or `l`) header line; the value up to the line end, checked afterwards.
_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.I | re.M)

FRAME_ERRORS = (
    "too_large",  # header block or header + Content-Length over the message size limit
    "no_content_length",  # mandatory on streams (RFC 3261 18.3, 20.14)
    "bad_content_length",  # not a number, or two that disagree
)


class Ping:
    """A double CRLF between messages (RFC 5626 3.5.1): answer one CRLF."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PING"


PING: Final = Ping()


@dataclass(frozen=True, slots=True)
class FrameError:
    """Why the stream cannot go on. `head` is the header block when it was complete (the
    connection may then answer it, 400 or 513, before closing)."""

    reason: str  # one of FRAME_ERRORS
    head: bytes | None = None


Event = bytes | Ping | FrameError


class StreamParser:
    """Feed it what a connection reads; it returns the messages, pings and at most one error."""

    __slots__ = ("_buf", "_crlfs", "_need", "_scanned", "broken", "max_message")

    def __init__(self, max_message: int) -> None:
        self.max_message = max_message
        self._buf = bytearray()
        self._need = -1  # bytes of the current message once its header block is read
        self._scanned = 0  # header-block search resumes here (minus the terminator's length)
        self._crlfs = 0  # CRLFs seen between messages since the last message or ping
        self.broken = False

    @property
    def pending(self) -> bool:
        """True while a message has begun and is not complete (the slow-sender clock runs)."""
        buf = self._buf
        return not self.broken and (len(buf) > 1 or (len(buf) == 1 and buf[0] != 13))

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Event]:
        if self.broken:
            return []
        buf = self._buf
        buf += data
        out: list[Event] = []
        while buf:
            if self._need < 0:
                if buf[0] in (13, 10):  # between messages: CRLFs, pings
                    self._skip_line_ends(out)
                    if not buf or buf[0] == 13:
                        break  # all consumed, or a CR waiting for its LF
                error = self._read_head()
                if error is not None:
                    out.append(error)
                    self._fail()
                    break
                if self._need < 0:
                    break  # header block incomplete
            if len(buf) < self._need:
                break
            out.append(bytes(buf[: self._need]))
            del buf[: self._need]
            self._need = -1
            self._scanned = 0
        return out

    def _skip_line_ends(self, out: list[Event]) -> None:
        """Drop the CRLFs (and stray CRs and LFs) in front of the next message; every second
        CRLF in a row is a ping. A CR at the very end stays, waiting for its LF."""
        buf = self._buf
        i = 0
        n = len(buf)
        while i < n:
            c = buf[i]
            if c == 13:
                if i + 1 >= n:
                    break
                i += 1
                if buf[i] != 10:
                    self._crlfs = 0  # a bare CR: skipped
                    continue
                i += 1
                self._crlfs += 1
                if self._crlfs == 2:
                    out.append(PING)
                    self._crlfs = 0
            elif c == 10:
                i += 1  # a bare LF: skipped
            else:
                self._crlfs = 0  # a message begins: a lone CRLF before it was no ping
                break
        del buf[:i]

    def _read_head(self) -> FrameError | None:
        """Find the end of the header block; set `_need`, or return why the stream is dead."""
        buf = self._buf
        start = max(0, self._scanned - 2)
        k1 = buf.find(b"\n\r\n", start)
        k2 = buf.find(b"\n\n", start, k1 if k1 >= 0 else len(buf))
        if k2 >= 0:
            body_start = k2 + 2
        elif k1 >= 0:
            body_start = k1 + 3
        else:
            self._scanned = len(buf)
            if len(buf) > self.max_message:
                return FrameError("too_large")
            return None
        head = bytes(buf[:body_start])
        if body_start > self.max_message:
            return FrameError("too_large")
        values = {m.strip() for m in _CONTENT_LENGTH.findall(head)}
        if not values:
            return FrameError("no_content_length", head)
        (value,) = values if len(values) == 1 else (b"",)
        if not value.isdigit() or len(value) > _MAX_DIGITS:
            return FrameError("bad_content_length", head)
        need = body_start + int(value)
        if need > self.max_message:
            return FrameError("too_large", head)
        self._need = need
        return None

    def _fail(self) -> None:
        self.broken = True
        self._buf.clear()
