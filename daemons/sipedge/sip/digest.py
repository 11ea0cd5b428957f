"""HTTP Digest authentication for SIP (RFC 2617, RFC 7616, RFC 8760): pure, no I/O.

Both sides live here:

* the server side (`DigestServer`) issues challenges and checks credentials. Nonces are
  stateless: ``<issued-at hex>.<random hex>.<HMAC>``, signed with a per-process secret, so any
  nonce we issued can be recognised (and its age read) without a table. A nonce older than
  ``nonce_lifetime`` is *stale*: a correct response with a stale nonce is answered with a new
  challenge carrying ``stale=true`` (the client re-answers without asking the user), a wrong
  one is a failure as always. qop=auth only (auth-int protects the body, no SIP UA uses it).
* the client side (`answer_challenge`) builds an Authorization / Proxy-Authorization value
  from a WWW-Authenticate / Proxy-Authenticate challenge (MD5, MD5-sess, SHA-256,
  SHA-256-sess; qop=auth or none).

Algorithms: MD5 and SHA-256 (RFC 8760 for SIP). A challenge offers SHA-256 first and MD5 second
(RFC 8760 section 2.4: the client uses the first it supports); old phones use MD5.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

ALGORITHMS: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda data: hashlib.md5(data).hexdigest(),
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
}
DEFAULT_ALGORITHMS = ("SHA-256", "MD5")
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
    STALE = "stale"  # right password, expired nonce: challenge again with stale=true
    BAD = "bad"  # wrong response, unknown user, forged nonce: an authentication failure
    MALFORMED = "malformed"  # not digest credentials we can check: challenge (not a failure)


@dataclass
class CheckResult:
    verdict: str
    user: str = ""
    reason: str = ""


@dataclass
class DigestServer:
    """Challenges and verifies. `passwords(user)` gives the password or None (unknown)."""

    realm: str
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    nonce_lifetime: float = NONCE_LIFETIME
    secret: bytes = field(default_factory=lambda: os.urandom(32))
    clock: Callable[[], float] = time.time

    # nonces
    def new_nonce(self) -> str:
        issued = format(int(self.clock()), "x")
        rand = os.urandom(8).hex()
        return f"{issued}.{rand}.{self._sign(issued, rand)}"

    def _sign(self, issued: str, rand: str) -> str:
        mac = hmac.new(self.secret, f"{issued}.{rand}.{self.realm}".encode(), hashlib.sha256)
        return mac.hexdigest()[:32]

    def nonce_state(self, nonce: str) -> str:
        """ "fresh", "stale" or "forged"."""
        parts = nonce.split(".")
        if len(parts) != 3:
            return "forged"
        issued, rand, mac = parts
        if not hmac.compare_digest(mac, self._sign(issued, rand)):
            return "forged"
        try:
            age = self.clock() - int(issued, 16)
        except ValueError:
            return "forged"
        if age < -5 or age > self.nonce_lifetime:
            return "stale"
        return "fresh"

    # challenges
    def challenges(self, stale: bool = False) -> list[str]:
        """WWW-Authenticate / Proxy-Authenticate values, one per algorithm, same nonce."""
        nonce = self.new_nonce()
        out = []
        for algorithm in self.algorithms:
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
        self, header: str, method: str, passwords: Callable[[str], str | None]
    ) -> CheckResult:
        try:
            scheme, p = parse_auth_header(header)
        except DigestError as err:
            return CheckResult(Verdict.MALFORMED, reason=str(err))
        if scheme != "digest":
            return CheckResult(Verdict.MALFORMED, reason=f"scheme {scheme}")
        user = p.get("username", "")
        for key in ("username", "realm", "nonce", "uri", "response"):
            if not p.get(key):
                return CheckResult(Verdict.MALFORMED, user, f"no {key}")
        if p["realm"] != self.realm:
            return CheckResult(Verdict.MALFORMED, user, "another realm")
        algorithm = p.get("algorithm", "MD5")
        if algorithm.upper() not in self.algorithms:
            return CheckResult(Verdict.MALFORMED, user, f"algorithm {algorithm}")
        qop = p.get("qop")
        if qop is not None and qop.lower() != "auth":
            return CheckResult(Verdict.MALFORMED, user, f"qop {qop}")
        if qop and (not p.get("nc") or not p.get("cnonce")):
            return CheckResult(Verdict.MALFORMED, user, "qop without nc/cnonce")
        state = self.nonce_state(p["nonce"])
        if state == "forged":
            # Not one of ours (or from before a restart): not the client's fault, ask again.
            return CheckResult(Verdict.MALFORMED, user, "unknown nonce")
        password = passwords(user)
        if password is None:
            return CheckResult(Verdict.BAD, user, "unknown user")
        expected = compute_response(
            algorithm=algorithm,
            user=user,
            realm=self.realm,
            password=password,
            method=method,
            uri=p["uri"],
            nonce=p["nonce"],
            qop=qop,
            nc=p.get("nc", ""),
            cnonce=p.get("cnonce", ""),
        )
        if not hmac.compare_digest(expected, p["response"].lower()):
            return CheckResult(Verdict.BAD, user, "wrong response")
        if state == "stale":
            return CheckResult(Verdict.STALE, user, "stale nonce")
        return CheckResult(Verdict.OK, user)


# -- client side -------------------------------------------------------------------------------


def pick_challenge(values: list[str]) -> dict[str, str] | None:
    """The first digest challenge with an algorithm we support (RFC 8760 2.4 order)."""
    for value in values:
        try:
            scheme, p = parse_auth_header(value)
        except DigestError:
            continue
        if scheme != "digest" or "nonce" not in p or "realm" not in p:
            continue
        try:
            _hash_for(p.get("algorithm", "MD5"))
        except DigestError:
            continue
        return p
    return None


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
    qops = [q.strip().lower() for q in challenge.get("qop", "").split(",") if q.strip()]
    qop = "auth" if "auth" in qops else None
    if qops and qop is None:
        raise DigestError(f"no supported qop in {qops}")
    cnonce = cnonce or os.urandom(8).hex()
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
