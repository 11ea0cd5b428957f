"""HTTP Digest authentication for SIP (RFC 2617, RFC 7616, RFC 8760): pure, no I/O.

Both sides live here:

* the server side (`DigestServer`) issues challenges and checks credentials so that a sniffed
  answer cannot be used again:

  - nonces are stateless, ``<issued hex>.<sequence hex>.<HMAC>``, the HMAC (per-process secret)
    covering the realm and the **source address** the challenge went to: a nonce issued to one
    source is not ours when it comes back from another. Older than ``nonce_lifetime`` it is
    *stale*: a correct answer gets a new challenge with ``stale=true``;
  - qop=auth is required (an answer without qop is refused), and the **nonce count** is tracked
    per nonce after each accepted answer: a repeated or lower ``nc`` is a replay. The table is
    bounded (``max_nonces``, oldest first-use forgotten); a forgotten nonce is treated as stale;
  - the ``uri`` of the answer must be the Request-URI;
  - an unknown user is hashed against a dummy password, so every answer costs one hash.
* the client side (`pick_challenge`, `answer_challenge`) picks a WWW-Authenticate /
  Proxy-Authenticate challenge it can answer (the first, or the strongest, optionally of one
  realm) and builds the Authorization / Proxy-Authorization value (MD5, MD5-sess, SHA-256,
  SHA-256-sess; qop=auth or none; auth-int is not supported). Used by our registrations to
  carriers (uplinks/) and by calls to carriers that challenge (calls/carrier_auth.py).

Algorithms: MD5 and SHA-256 (RFC 8760 for SIP). A challenge offers the algorithms it is given,
in that order, one WWW-Authenticate each (RFC 8760 section 2.4: the client uses the first it
supports); the default is MD5 only, because some clients (libre 1.1, Debian 12's baresip) give
up at the first algorithm they do not know.

Owns: the digest computation, nonces, verdicts and the nonce-count table.
Must not: send, read the clock other than through `clock`, or know accounts beyond `lookup`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

ALGORITHMS: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda data: hashlib.md5(data).hexdigest(),
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
}
DEFAULT_ALGORITHMS = ("MD5",)  # what libre 1.1 (Debian 12 baresip) can answer
NONCE_LIFETIME = 300.0  # seconds a nonce stays fresh


class DigestError(ValueError):
    """A credentials header we cannot use (malformed, unsupported algorithm)."""


# -- header parsing --------------------------------------------------------------------------


def parse_auth_header(value: str) -> tuple[str, dict[str, str]]:
    """``Digest k=v, k="v"`` -> ("digest", {k: v}); keys lower case, quotes removed."""
    s = value.strip()
    scheme, _, rest = s.partition(" ")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " \t,":
            i += 1
        if i >= n:
            break
        eq = rest.find("=", i)
        if eq < 0:
            raise DigestError("parameter without a value")
        key = rest[i:eq].strip().lower()
        i = eq + 1
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] == '"':
            i += 1
            out: list[str] = []
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                out.append(rest[i])
                i += 1
            if i >= n:
                raise DigestError("unterminated quoted string")
            i += 1
            params[key] = "".join(out)
        else:
            end = rest.find(",", i)
            end = n if end < 0 else end
            params[key] = rest[i:end].strip()
            i = end
        if not key:
            raise DigestError("empty parameter name")
    return scheme.lower(), params


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- the computation (RFC 7616 section 3.4.1) --------------------------------------------------


def _hash_for(algorithm: str) -> tuple[Callable[[bytes], str], bool]:
    base = algorithm.upper()
    sess = base.endswith("-SESS")
    if sess:
        base = base[: -len("-SESS")]
    h = ALGORITHMS.get(base)
    if h is None:
        raise DigestError(f"unsupported algorithm {algorithm}")
    return h, sess


def ha1(algorithm: str, user: str, realm: str, password: str) -> str:
    h, _ = _hash_for(algorithm)
    return h(f"{user}:{realm}:{password}".encode())


def compute_response(
    *,
    algorithm: str,
    user: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str = "",
    cnonce: str = "",
) -> str:
    h, sess = _hash_for(algorithm)
    a1 = ha1(algorithm, user, realm, password)
    if sess:
        a1 = h(f"{a1}:{nonce}:{cnonce}".encode())
    a2 = h(f"{method}:{uri}".encode())
    if qop:
        return h(f"{a1}:{nonce}:{nc}:{cnonce}:{qop}:{a2}".encode())
    return h(f"{a1}:{nonce}:{a2}".encode())


# -- server side -------------------------------------------------------------------------------


class Verdict:
    OK = "ok"
    STALE = "stale"  # right password, expired or forgotten nonce: challenge with stale=true
    BAD = "bad"  # wrong response, unknown user, algorithm not offered: a failure
    REPLAY = "replay"  # right response but a used nc or another Request-URI: challenge again
    MALFORMED = "malformed"  # not digest credentials we can check: challenge (not a failure)


@dataclass
class CheckResult:
    verdict: str
    user: str = ""
    reason: str = ""


@dataclass(frozen=True)
class Secret:
    """What the server knows of one account: its password and the algorithms it is offered."""

    password: str
    algorithms: tuple[str, ...]


_NONCE = re.compile(r"([0-9a-f]{1,16})\.([0-9a-f]{1,16})\.([0-9a-f]{32})")
_NC = re.compile(r"[0-9a-fA-F]{8}")


class NonceCounts:
    """The highest nonce count accepted per nonce (by its sequence number), first-use order.

    Bounded by `limit`: the oldest entry is forgotten, and `forgotten_up_to` (the highest
    sequence forgotten) makes every nonce up to it that is no longer here unusable (stale), so
    forgetting never re-opens a nonce to replay."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[int, tuple[float, int]] = {}  # seq -> (issued, highest nc)
        self.forgotten_up_to = -1

    def known(self, seq: int) -> bool:
        return seq in self._counts or seq > self.forgotten_up_to

    def highest(self, seq: int) -> int:
        entry = self._counts.get(seq)
        return entry[1] if entry is not None else 0

    def accept(self, seq: int, issued: float, nc: int, expired_before: float) -> None:
        if seq in self._counts:
            self._counts[seq] = (issued, nc)
            return
        # the oldest entries whose nonces have expired go first (they are stale by age anyway)
        while self._counts:
            oldest = next(iter(self._counts))
            if self._counts[oldest][0] >= expired_before:
                break
            del self._counts[oldest]
        while len(self._counts) >= self.limit:
            oldest = next(iter(self._counts))
            del self._counts[oldest]
            self.forgotten_up_to = max(self.forgotten_up_to, oldest)
        self._counts[seq] = (issued, nc)

    def __len__(self) -> int:
        return len(self._counts)


def _same(a: str, b: str) -> bool:
    """Constant-time comparison of two strings of any characters (input may be non-ASCII)."""
    return hmac.compare_digest(
        a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape")
    )


@dataclass
class DigestServer:
    """Challenges and verifies; `lookup(user)` gives the account's `Secret` or None (unknown).

    `algorithms` is what an unknown user is offered (and the default for the challenges)."""

    realm: str
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    nonce_lifetime: float = NONCE_LIFETIME
    max_nonces: int = 65536
    secret: bytes = field(default_factory=lambda: os.urandom(32))
    clock: Callable[[], float] = time.time
    counts: NonceCounts = field(init=False)
    _seq: int = field(init=False, default=0)
    _dummy: str = field(init=False, default_factory=lambda: os.urandom(16).hex())

    def __post_init__(self) -> None:
        self.counts = NonceCounts(self.max_nonces)

    def configure(self, realm: str, algorithms: tuple[str, ...], max_nonces: int) -> None:
        self.realm, self.algorithms = realm, algorithms
        self.counts.limit = max_nonces

    # nonces
    def new_nonce(self, source: str) -> str:
        issued = format(int(self.clock()), "x")
        self._seq += 1
        seq = format(self._seq, "x")
        return f"{issued}.{seq}.{self._sign(issued, seq, source)}"

    def _sign(self, issued: str, seq: str, source: str) -> str:
        text = f"{issued}.{seq}.{self.realm}.{source}".encode("utf-8", "surrogateescape")
        return hmac.new(self.secret, text, hashlib.sha256).hexdigest()[:32]

    def nonce_state(self, nonce: str, source: str) -> str:
        """ "fresh", "stale" (expired or forgotten) or "forged" (not ours, or not `source`'s)."""
        m = _NONCE.fullmatch(nonce)
        if m is None:
            return "forged"
        issued, seq, mac = m.groups()
        if not _same(mac, self._sign(issued, seq, source)):
            return "forged"
        age = self.clock() - int(issued, 16)
        if age < -5 or age > self.nonce_lifetime or not self.counts.known(int(seq, 16)):
            return "stale"
        return "fresh"

    # challenges
    def challenges(
        self, source: str, algorithms: tuple[str, ...] | None = None, stale: bool = False
    ) -> list[str]:
        """WWW-Authenticate / Proxy-Authenticate values, one per algorithm, same nonce, bound to
        `source` (the address the challenge goes to)."""
        nonce = self.new_nonce(source)
        out = []
        for algorithm in algorithms or self.algorithms:
            value = (
                f"Digest realm={_quote(self.realm)}, nonce={_quote(nonce)}, "
                f'algorithm={algorithm}, qop="auth"'
            )
            if stale:
                value += ", stale=true"
            out.append(value)
        return out

    # verification
    def check(
        self,
        header: str,
        *,
        method: str,
        uri: str,
        source: str,
        lookup: Callable[[str], Secret | None],
    ) -> CheckResult:
        """The verdict on one Authorization value for a request with `method` and Request-URI
        `uri` from `source`. Every well-formed answer costs one hash, known user or not."""
        try:
            scheme, p = parse_auth_header(header)
        except DigestError as err:
            return CheckResult(Verdict.MALFORMED, reason=str(err))
        if scheme != "digest":
            return CheckResult(Verdict.MALFORMED, reason="another scheme")
        user = p.get("username", "")
        for key in ("username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce"):
            if not p.get(key):
                return CheckResult(Verdict.MALFORMED, user, f"no {key}")
        if p["realm"] != self.realm:
            return CheckResult(Verdict.MALFORMED, user, "another realm")
        algorithm = p.get("algorithm", "MD5")
        if algorithm.upper() not in ALGORITHMS:
            return CheckResult(Verdict.MALFORMED, user, "unsupported algorithm")
        if p["qop"].lower() != "auth":
            return CheckResult(Verdict.MALFORMED, user, "qop is not auth")
        if not _NC.fullmatch(p["nc"]) or int(p["nc"], 16) == 0:
            return CheckResult(Verdict.MALFORMED, user, "bad nc")
        state = self.nonce_state(p["nonce"], source)
        if state == "forged":
            # Not one of ours, another source's, or from before a restart: ask again.
            return CheckResult(Verdict.MALFORMED, user, "unknown nonce")
        secret = lookup(user)
        # an unknown user costs the same hash as a known one (same timing class)
        password = secret.password if secret is not None else self._dummy
        expected = compute_response(
            algorithm=algorithm,
            user=user,
            realm=self.realm,
            password=password,
            method=method,
            uri=p["uri"],
            nonce=p["nonce"],
            qop="auth",
            nc=p["nc"],
            cnonce=p["cnonce"],
        )
        right = _same(expected, p["response"].lower())
        if secret is None or not right:
            return CheckResult(Verdict.BAD, user, "unknown user" if right else "wrong response")
        if algorithm.upper() not in secret.algorithms:
            return CheckResult(Verdict.BAD, user, "algorithm not offered")
        if p["uri"] != uri:
            return CheckResult(Verdict.REPLAY, user, "uri is not the Request-URI")
        if state == "stale":
            return CheckResult(Verdict.STALE, user, "stale nonce")
        issued, seq, _ = p["nonce"].split(".")
        nc = int(p["nc"], 16)
        if nc <= self.counts.highest(int(seq, 16)):
            return CheckResult(Verdict.REPLAY, user, "nonce count used")
        now = self.clock()
        self.counts.accept(int(seq, 16), int(issued, 16), nc, now - self.nonce_lifetime)
        return CheckResult(Verdict.OK, user)


# -- client side -------------------------------------------------------------------------------


# a client choosing among several challenges prefers the stronger hash (a "-sess" variant
# ranks with its base algorithm)
STRENGTH = {"MD5": 1, "SHA-256": 2}


def _usable(value: str) -> dict[str, str] | None:
    """A challenge we can answer: digest, with realm and nonce, an algorithm we support, and
    qop absent or offering auth (an auth-int-only challenge cannot be answered)."""
    try:
        scheme, p = parse_auth_header(value)
        _hash_for(p.get("algorithm", "MD5"))
    except DigestError:
        return None
    if scheme != "digest" or "nonce" not in p or "realm" not in p:
        return None
    qops = _qops(p)
    return p if not qops or "auth" in qops else None


def _qops(challenge: dict[str, str]) -> list[str]:
    return [q.strip().lower() for q in challenge.get("qop", "").split(",") if q.strip()]


def _strength(challenge: dict[str, str]) -> int:
    base = challenge.get("algorithm", "MD5").upper().removesuffix("-SESS")
    return STRENGTH.get(base, 0)


def pick_challenge(
    values: list[str], *, realm: str | None = None, strongest: bool = False
) -> dict[str, str] | None:
    """The challenge to answer among `values`: the first we can answer (RFC 8760 2.4 order),
    or with `strongest` the one of the strongest algorithm (SHA-256 over MD5; the first of
    equals). With `realm`, challenges of other realms are passed over."""
    usable = [p for p in map(_usable, values) if p is not None]
    if realm is not None:
        usable = [p for p in usable if p["realm"] == realm]
    if not usable:
        return None
    return max(usable, key=_strength) if strongest else usable[0]


def answer_challenge(
    challenge: dict[str, str],
    *,
    user: str,
    password: str,
    method: str,
    uri: str,
    nc: int = 1,
    cnonce: str | None = None,
) -> str:
    """The Authorization value answering `challenge` (from `pick_challenge`)."""
    algorithm = challenge.get("algorithm", "MD5")
    qops = _qops(challenge)
    qop = "auth" if "auth" in qops else None
    if qops and qop is None:
        raise DigestError(f"no supported qop in {qops}")
    cnonce = cnonce or secrets.token_hex(8)  # a CSPRNG
    nc_text = f"{nc:08x}"
    response = compute_response(
        algorithm=algorithm,
        user=user,
        realm=challenge["realm"],
        password=password,
        method=method,
        uri=uri,
        nonce=challenge["nonce"],
        qop=qop,
        nc=nc_text,
        cnonce=cnonce,
    )
    parts = [
        f"username={_quote(user)}",
        f"realm={_quote(challenge['realm'])}",
        f"nonce={_quote(challenge['nonce'])}",
        f"uri={_quote(uri)}",
        f"response={_quote(response)}",
        f"algorithm={algorithm}",
    ]
    if "opaque" in challenge:
        parts.append(f"opaque={_quote(challenge['opaque'])}")
    if qop:
        parts += [f"qop={qop}", f"nc={nc_text}", f"cnonce={_quote(cnonce)}"]
    return "Digest " + ", ".join(parts)
