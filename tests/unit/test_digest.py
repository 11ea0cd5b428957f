"""Digest authentication (pure): RFC vectors, our server's verdicts, our client's answers."""

from __future__ import annotations

import pytest

from sipedge.sip.digest import (
    DigestServer,
    Verdict,
    answer_challenge,
    compute_response,
    parse_auth_header,
    pick_challenge,
)


def test_rfc2617_md5_vector() -> None:
    # RFC 2617 section 3.5
    assert (
        compute_response(
            algorithm="MD5",
            user="Mufasa",
            realm="testrealm@host.com",
            password="Circle Of Life",
            method="GET",
            uri="/dir/index.html",
            nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
            qop="auth",
            nc="00000001",
            cnonce="0a4f113b",
        )
        == "6629fae49393a05397450978507c4ef1"
    )


def test_rfc7616_sha256_vector() -> None:
    # RFC 7616 section 3.9.1
    assert (
        compute_response(
            algorithm="SHA-256",
            user="Mufasa",
            realm="http-auth@example.org",
            password="Circle of Life",
            method="GET",
            uri="/dir/index.html",
            nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            qop="auth",
            nc="00000001",
            cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        )
        == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    )


def test_parse_header_quotes_and_commas() -> None:
    scheme, p = parse_auth_header('Digest realm="a, b", nonce="x\\"y", qop=auth, nc=00000001')
    assert scheme == "digest"
    assert p == {"realm": "a, b", "nonce": 'x"y', "qop": "auth", "nc": "00000001"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_server_accepts_the_right_answer_and_refuses_a_wrong_one(algorithm: str) -> None:
    clock = Clock()
    server = DigestServer(realm="edge", clock=clock)
    challenges = server.challenges()
    assert len(challenges) == 2 and 'qop="auth"' in challenges[0]
    challenge = pick_challenge([c for c in challenges if algorithm + "," in c])
    assert challenge is not None
    good = answer_challenge(challenge, user="alice", password="pw", method="REGISTER", uri="sip:e")
    passwords = {"alice": "pw"}.get
    assert server.check(good, "REGISTER", passwords).verdict == Verdict.OK
    bad = answer_challenge(challenge, user="alice", password="no", method="REGISTER", uri="sip:e")
    assert server.check(bad, "REGISTER", passwords).verdict == Verdict.BAD
    # same answer, another method: the response does not match
    assert server.check(good, "INVITE", passwords).verdict == Verdict.BAD
    unknown = answer_challenge(challenge, user="eve", password="pw", method="REGISTER", uri="x")
    assert server.check(unknown, "REGISTER", passwords).verdict == Verdict.BAD


def test_nonce_expiry_gives_stale_and_forgery_is_not_a_failure() -> None:
    clock = Clock()
    server = DigestServer(realm="edge", clock=clock, nonce_lifetime=30)
    challenge = pick_challenge(server.challenges())
    assert challenge is not None
    answer = answer_challenge(challenge, user="a", password="p", method="REGISTER", uri="sip:e")
    clock.now += 31
    assert server.check(answer, "REGISTER", {"a": "p"}.get).verdict == Verdict.STALE
    wrong = answer_challenge(challenge, user="a", password="x", method="REGISTER", uri="sip:e")
    assert server.check(wrong, "REGISTER", {"a": "p"}.get).verdict == Verdict.BAD
    assert "stale=true" in server.challenges(stale=True)[0]
    other = DigestServer(realm="edge", clock=clock)  # another secret: a restart
    assert other.check(answer, "REGISTER", {"a": "p"}.get).verdict == Verdict.MALFORMED


def test_malformed_credentials_are_challenged_not_counted() -> None:
    server = DigestServer(realm="edge")
    for header in ("Basic abc", 'Digest username="a"', "Digest realm", 'Digest realm="x'):
        assert server.check(header, "REGISTER", {"a": "p"}.get).verdict == Verdict.MALFORMED


def test_client_without_qop_and_with_opaque() -> None:
    challenge = {"realm": "r", "nonce": "n", "opaque": "o"}
    value = answer_challenge(challenge, user="u", password="p", method="REGISTER", uri="sip:x")
    _, p = parse_auth_header(value)
    assert "qop" not in p and p["opaque"] == "o" and p["algorithm"] == "MD5"
    expected = compute_response(
        algorithm="MD5", user="u", realm="r", password="p", method="REGISTER",
        uri="sip:x", nonce="n",
    )  # fmt: skip
    assert p["response"] == expected


def test_pick_challenge_skips_unsupported_algorithms() -> None:
    values = ['Digest realm="r", nonce="1", algorithm=SHA-512-256', 'Digest realm="r", nonce="2"']
    assert pick_challenge(values) == {"realm": "r", "nonce": "2"}
