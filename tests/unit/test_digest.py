"""Digest authentication (pure): RFC vectors, our server's verdicts, our client's answers."""

from __future__ import annotations

import pytest

from sipedge.sip import digest
from sipedge.sip.digest import (
    CheckResult,
    DigestServer,
    Secret,
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


SRC = "198.51.100.7"
URI = "sip:edge"
ACCOUNTS = {"alice": Secret("pw", ("MD5", "SHA-256")), "bob": Secret("pw2", ("MD5",))}


def check(server: DigestServer, header: str, **kw: str) -> CheckResult:
    args = {"method": "REGISTER", "uri": URI, "source": SRC, **kw}
    return server.check(header, lookup=ACCOUNTS.get, **args)


def answer(server: DigestServer, user: str = "alice", password: str = "pw", **kw: object) -> str:
    challenge = pick_challenge(server.challenges(SRC))
    assert challenge is not None
    args: dict[str, object] = {"method": "REGISTER", "uri": URI, **kw}
    return answer_challenge(challenge, user=user, password=password, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_server_accepts_the_right_answer_and_refuses_a_wrong_one(algorithm: str) -> None:
    server = DigestServer(realm="edge", algorithms=("SHA-256", "MD5"), clock=Clock())
    challenges = server.challenges(SRC)
    assert len(challenges) == 2 and 'qop="auth"' in challenges[0]
    assert "algorithm=SHA-256" in challenges[0]  # offered in the configured order
    challenge = pick_challenge([c for c in challenges if algorithm + "," in c])
    assert challenge is not None

    def ans(user: str, password: str, nc: int) -> str:
        return answer_challenge(
            challenge, user=user, password=password, method="REGISTER", uri=URI, nc=nc
        )

    assert check(server, ans("alice", "no", 1)).verdict == Verdict.BAD
    # same answer, another method: the response does not match
    assert check(server, ans("alice", "pw", 1), method="INVITE").verdict == Verdict.BAD
    assert check(server, ans("eve", "pw", 1)).verdict == Verdict.BAD  # unknown user
    assert check(server, ans("alice", "pw", 1)).verdict == Verdict.OK
    # SHA-256 is not offered to bob: his right password with it is a failure
    verdict = check(server, ans("bob", "pw2", 2)).verdict
    assert verdict == (Verdict.BAD if algorithm == "SHA-256" else Verdict.OK)


def test_only_md5_is_offered_by_default() -> None:
    challenges = DigestServer(realm="edge").challenges(SRC)
    assert len(challenges) == 1 and "algorithm=MD5," in challenges[0]
    assert len(DigestServer(realm="e").challenges(SRC, ("SHA-256", "MD5"))) == 2


def test_a_nonce_count_is_used_once_and_must_grow() -> None:
    server = DigestServer(realm="edge", clock=Clock())
    challenge = pick_challenge(server.challenges(SRC))
    assert challenge is not None

    def ans(nc: int) -> str:
        return answer_challenge(challenge, user="alice", password="pw", method="REGISTER",
                                uri=URI, nc=nc)  # fmt: skip

    assert check(server, ans(1)).verdict == Verdict.OK
    replay = check(server, ans(1))
    assert replay.verdict == Verdict.REPLAY and "count" in replay.reason
    assert check(server, ans(3)).verdict == Verdict.OK
    assert check(server, ans(2)).verdict == Verdict.REPLAY  # lower
    assert check(server, ans(4)).verdict == Verdict.OK


def test_answer_without_qop_or_with_a_bad_nc_is_refused() -> None:
    server = DigestServer(realm="edge", clock=Clock())
    challenge = pick_challenge(server.challenges(SRC))
    assert challenge is not None
    no_qop = dict(challenge)
    del no_qop["qop"]
    header = answer_challenge(no_qop, user="alice", password="pw", method="REGISTER", uri=URI)
    assert "qop" not in header
    assert check(server, header).verdict == Verdict.MALFORMED
    assert check(server, answer(server, nc=0)).verdict == Verdict.MALFORMED
    assert check(server, answer(server).replace("nc=00000001", "nc=1")).verdict == (
        Verdict.MALFORMED
    )


def test_the_uri_must_be_the_request_uri() -> None:
    server = DigestServer(realm="edge", clock=Clock())
    header = answer(server, uri="sip:4420001@edge", method="INVITE")
    result = check(server, header, method="INVITE", uri="sip:0090012345@edge")
    assert result.verdict == Verdict.REPLAY
    assert check(server, header, method="INVITE", uri="sip:4420001@edge").verdict == Verdict.OK


def test_a_nonce_is_bound_to_the_source_it_was_issued_to() -> None:
    server = DigestServer(realm="edge", clock=Clock())
    header = answer(server)
    assert check(server, header, source="203.0.113.9").verdict == Verdict.MALFORMED
    assert check(server, header).verdict == Verdict.OK


def test_the_nonce_table_is_bounded_and_a_forgotten_nonce_is_stale() -> None:
    server = DigestServer(realm="edge", max_nonces=3, clock=Clock())
    unused = answer(server)  # issued first, used only after the forgetting
    headers = [answer(server) for _ in range(5)]
    for header in headers:
        assert check(server, header).verdict == Verdict.OK
    assert len(server.counts) == 3
    # the two oldest were forgotten: their replay is stale (re-challenged), never accepted
    verdicts = [check(server, h).verdict for h in headers]
    assert verdicts == [Verdict.STALE] * 2 + [Verdict.REPLAY] * 3
    # a nonce issued before the forgetting and not in the table is stale too
    assert check(server, unused).verdict == Verdict.STALE
    assert check(server, answer(server)).verdict == Verdict.OK  # a new one is fine


def test_expired_entries_leave_the_table_first() -> None:
    clock = Clock()
    server = DigestServer(realm="edge", max_nonces=2, nonce_lifetime=30, clock=clock)
    old = answer(server)
    assert check(server, old).verdict == Verdict.OK
    clock.now += 31
    for _ in range(2):
        assert check(server, answer(server)).verdict == Verdict.OK
    assert server.counts.forgotten_up_to == -1  # the expired one went, nothing was forgotten
    assert check(server, old).verdict == Verdict.STALE


def test_nonce_expiry_gives_stale_and_forgery_is_not_a_failure() -> None:
    clock = Clock()
    server = DigestServer(realm="edge", clock=clock, nonce_lifetime=30)
    good = answer(server)
    wrong = answer(server, password="x")
    clock.now += 31
    assert check(server, good).verdict == Verdict.STALE
    assert check(server, wrong).verdict == Verdict.BAD
    assert "stale=true" in server.challenges(SRC, stale=True)[0]
    other = DigestServer(realm="edge", clock=clock)  # another secret: a restart
    assert check(other, good).verdict == Verdict.MALFORMED


def test_malformed_credentials_are_challenged_not_counted() -> None:
    server = DigestServer(realm="edge")
    nonce = 'nonce="1.1.' + "0" * 32 + '"'
    for header in (
        "Basic abc",
        'Digest username="a"',
        "Digest realm",
        'Digest realm="x',
        f'Digest username="alice", realm="edge", {nonce}, uri="x", response="y", qop=auth, '
        'nc=00000001, cnonce="c", algorithm=SHA-512-256',
        # a non-ASCII nonce and response (the traceback)
        'Digest username="alice", realm="edge", nonce="\u00e9\u00e9", uri="x", '
        'response="\u00e9", qop=auth, nc=00000001, cnonce="c"',
        'Digest username="alice", realm="edge", nonce="1.1.' + "\u00e9" * 32 + '", uri="x", '
        'response="\u00e9", qop=auth, nc=00000001, cnonce="c"',
    ):
        header = header.encode().decode("unicode_escape")
        assert check(server, header).verdict == Verdict.MALFORMED, header


def test_unknown_user_costs_a_hash_like_a_known_one(monkeypatch: pytest.MonkeyPatch) -> None:
    server = DigestServer(realm="edge", clock=Clock())
    hashed: list[str] = []
    real = digest.compute_response

    def counting(**kw: str) -> str:
        hashed.append(kw["user"])
        return real(**kw)  # type: ignore[arg-type]

    headers = [answer(server, user=user, password="nope") for user in ("alice", "eve")]
    monkeypatch.setattr(digest, "compute_response", counting)
    for header in headers:
        assert check(server, header).verdict == Verdict.BAD
    assert hashed == ["alice", "eve"]


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


# -- the client side toward carriers: RFC vectors through answer_challenge ----------------------

RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_client_answers_rfc7616_vectors(algorithm: str, expected: str) -> None:
    # RFC 7616 section 3.9.1: the challenge as the server sends it, the answer as the client does
    challenge = pick_challenge(
        [
            f'Digest realm="http-auth@example.org", qop="auth, auth-int", '
            f'algorithm={algorithm}, nonce="{RFC7616_NONCE}", '
            f'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
        ]
    )
    assert challenge is not None
    value = answer_challenge(
        challenge,
        user="Mufasa",
        password="Circle of Life",
        method="GET",
        uri="/dir/index.html",
        cnonce=RFC7616_CNONCE,
    )
    _, p = parse_auth_header(value)
    assert p["response"] == expected
    assert (p["qop"], p["nc"], p["cnonce"], p["algorithm"]) == (
        "auth",
        "00000001",
        RFC7616_CNONCE,
        algorithm,
    )
    assert p["opaque"] == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"


def test_client_answers_rfc2617_example() -> None:
    # RFC 2617 section 3.5: no algorithm in the challenge (MD5), qop "auth,auth-int"
    challenge = pick_challenge(
        [
            'Digest realm="testrealm@host.com", qop="auth,auth-int", '
            'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
            'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
        ]
    )
    assert challenge is not None
    value = answer_challenge(
        challenge,
        user="Mufasa",
        password="Circle Of Life",
        method="GET",
        uri="/dir/index.html",
        cnonce="0a4f113b",
    )
    _, p = parse_auth_header(value)
    assert p["response"] == "6629fae49393a05397450978507c4ef1"
    assert p["algorithm"] == "MD5"


def test_client_cnonce_is_random_per_answer() -> None:
    challenge = {"realm": "r", "nonce": "n", "qop": "auth"}
    first, second = (
        parse_auth_header(
            answer_challenge(challenge, user="u", password="p", method="INVITE", uri="sip:x")
        )[1]["cnonce"]
        for _ in range(2)
    )
    assert first != second and len(first) == 16


MD5_CHALLENGE = 'Digest realm="a", nonce="1", algorithm=MD5, qop="auth"'
SHA_CHALLENGE = 'Digest realm="a", nonce="2", algorithm=SHA-256, qop="auth"'


def test_pick_strongest_prefers_sha256_in_any_order() -> None:
    for values in ([MD5_CHALLENGE, SHA_CHALLENGE], [SHA_CHALLENGE, MD5_CHALLENGE]):
        picked = pick_challenge(values, strongest=True)
        assert picked is not None and picked["algorithm"] == "SHA-256"
    # without `strongest`: the first we support (RFC 8760 2.4 order), as before
    picked = pick_challenge([MD5_CHALLENGE, SHA_CHALLENGE])
    assert picked is not None and picked["algorithm"] == "MD5"


def test_pick_passes_over_other_realms_and_auth_int_only() -> None:
    other = 'Digest realm="b", nonce="3", algorithm=SHA-256'
    picked = pick_challenge([other, MD5_CHALLENGE], realm="a", strongest=True)
    assert picked is not None and picked["nonce"] == "1"
    assert pick_challenge([other], realm="a") is None
    auth_int = 'Digest realm="a", nonce="4", algorithm=SHA-256, qop="auth-int"'
    assert pick_challenge([auth_int]) is None
    picked = pick_challenge([auth_int, MD5_CHALLENGE], strongest=True)
    assert picked is not None and picked["nonce"] == "1"
    assert pick_challenge(['Basic realm="a"', "Digest garbage"]) is None
