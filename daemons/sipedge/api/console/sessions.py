"""Console sessions: a bearer token exchanged once, at the login form, for a session id that
the browser keeps in an HttpOnly, SameSite=Strict cookie.

Owns: `Session` (its scope, CSRF token and the SHA-256 of the token it came from),
`SessionTable` (bounded: at most `MAX_SESSIONS`, the least recently used one goes first; idle and
absolute lifetimes) and `csrf_matches`.
Must not: do I/O, read the clock (`now` is passed in), import aiohttp, or keep a token: a
session holds only the token's digest, and `lookup` ends it once no configured token of its
scope has that digest any more (a token rotated by a reload logs its browsers out).
Driven by: `api/console/access.py`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from sipedge.api.auth import ADMIN, AccessPolicy, granted_scope

MAX_SESSIONS = 256  # a console has a handful of operators; a login flood evicts the oldest
IDLE_SECONDS = 30 * 60.0
ABSOLUTE_SECONDS = 12 * 3600.0
MAX_TOKEN = 512  # longer than any token sipd accepts in its files; a fuse for the form field
SID_LENGTH = 43  # secrets.token_urlsafe(32)


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "replace")).digest()


@dataclass
class Session:
    """One logged-in browser. `notice` is the result of its last action, shown once."""

    sid: str = field(repr=False)
    scope: str
    csrf: str = field(repr=False)
    digest: bytes = field(repr=False)
    created: float
    seen: float
    notice: str = ""

    @property
    def admin(self) -> bool:
        return self.scope == ADMIN


def csrf_matches(session: Session, given: str | None) -> bool:
    if not given or len(given) > 128:
        return False
    return hmac.compare_digest(session.csrf.encode(), given.encode("utf-8", "replace"))


def _configured(policy: AccessPolicy, session: Session) -> bool:
    tokens = policy.admin_tokens if session.admin else policy.read_tokens
    found = False
    for token in tokens:  # every one, whatever matched before
        found |= hmac.compare_digest(session.digest, token_digest(token))
    return found


class SessionTable:
    """The sessions of one console. With an open API (no token configured, loopback only)
    every request gets `open_session`, an admin session without a login."""

    def __init__(self, random: Callable[[int], str] = secrets.token_urlsafe) -> None:
        self._random = random
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self.open_session = Session("", ADMIN, random(32), b"", 0.0, 0.0)
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._sessions)

    def login(self, policy: AccessPolicy, token: str, now: float) -> Session | None:
        """A new session for a valid token, or None."""
        token = token.strip()
        if not token or len(token) > MAX_TOKEN:
            return None
        scope = granted_scope(policy, f"Bearer {token}")
        if scope is None:
            return None
        self._expire(now)
        while len(self._sessions) >= MAX_SESSIONS:
            self._sessions.popitem(last=False)
            self.evicted += 1
        session = Session(self._random(32), scope, self._random(32), token_digest(token), now, now)
        self._sessions[session.sid] = session
        return session

    def lookup(self, policy: AccessPolicy, sid: str | None, now: float) -> Session | None:
        """The live session of a cookie's id (its idle time restarts), or None."""
        if policy.open:
            return self.open_session
        if not sid or len(sid) != SID_LENGTH:
            return None
        session = self._sessions.get(sid)
        if session is None:
            return None
        if not self._live(session, now) or not _configured(policy, session):
            del self._sessions[sid]
            return None
        session.seen = now
        self._sessions.move_to_end(sid)
        return session

    def logout(self, sid: str | None) -> None:
        if sid:
            self._sessions.pop(sid, None)

    @staticmethod
    def _live(session: Session, now: float) -> bool:
        return now - session.seen < IDLE_SECONDS and now - session.created < ABSOLUTE_SECONDS

    def _expire(self, now: float) -> None:
        # least recently used first: stop at the first live one (absolute expiry of a busy
        # session further on is caught by lookup)
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if self._live(oldest, now):
                break
            self._sessions.popitem(last=False)
