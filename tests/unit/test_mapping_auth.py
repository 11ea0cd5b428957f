"""Mapping gateways' digest (calls/mapping_auth.py): the admission decision, the config keys,
and `MappingAuth.check` against our own digest client (sip/digest.py)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from ipaddress import ip_network
from typing import Any

import pytest

from sipedge.calls.mapping_auth import (
    ADMIT,
    CHECK,
    PASS,
    Admission,
    MappingAuth,
    admission,
    claimed_user,
)
from sipedge.config import ConfigError, MappingGateway, parse_config
from sipedge.sip.digest import answer_challenge, pick_challenge
from sipedge.sip.message import Request, Response, parse_message

NET = (ip_network("10.0.0.0/24"),)
SOURCE_GW = MappingGateway("plain", NET)
BOTH_GW = MappingGateway("both", NET, auth="source+digest", username="u1", password="p1")
DIGEST_GW = MappingGateway("roaming", (), auth="digest", username="u2", password="p2")


@pytest.mark.parametrize(
    ("by_source", "user", "endpoints", "expected"),
    [
        (SOURCE_GW, None, False, Admission(ADMIT, "plain")),
        (SOURCE_GW, "u2", True, Admission(ADMIT, "plain")),  # the address decides
        (BOTH_GW, None, False, Admission(CHECK, "both")),
        (BOTH_GW, "u2", False, Admission(CHECK, "both")),  # must answer as u1, not u2
        (None, "u2", True, Admission(CHECK, "roaming")),
        (None, "u1", False, Admission(CHECK)),  # u1 is source+digest: not from here
        (None, None, False, Admission(CHECK)),  # challenge for the digest-only gateways
        (None, None, True, Admission(PASS)),  # the registrar challenges (shared nonces)
        (None, "alice", True, Admission(PASS)),  # an endpoint's answer
    ],
)
def test_admission(
    by_source: MappingGateway | None, user: str | None, endpoints: bool, expected: Admission
) -> None:
    assert admission(by_source, user, {"u2": "roaming"}, endpoints) == expected


def test_admission_without_digest_gateways_passes_unknown_sources() -> None:
    assert admission(None, None, {}, False) == Admission(PASS)


def test_claimed_user() -> None:
    assert claimed_user('Digest username="u2", realm="x"') == "u2"
    assert claimed_user("Basic dTI6cDI=") is None
    assert claimed_user('Digest username="u2", broken') is None
    assert claimed_user(None) is None


BASE: dict[str, Any] = {
    "sip": {"listen": ["udp://127.0.0.1:5060"]},
    "mapping_gateways": [{"name": "m", "addresses": ["10.0.0.1"]}],
}


def config_with(**mapping: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data["mapping_gateways"][0].update(mapping)
    return data


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return [p.path for p in info.value.problems]


def test_config_auth_defaults_and_modes() -> None:
    assert parse_config(config_with()).mapping_gateways[0].auth == "source"
    given = parse_config(config_with(username="u", password="p")).mapping_gateways[0]
    assert (given.auth, given.username, given.password) == ("source+digest", "u", "p")
    data = config_with(auth="digest", username="u", password_file="/etc/sipedge/m.secret")
    del data["mapping_gateways"][0]["addresses"]  # digest alone needs no address
    only = parse_config(data).mapping_gateways[0]
    assert only.auth == "digest" and only.addresses == () and only.password is None


def test_config_auth_refusals() -> None:
    base = "mapping_gateways[0]"
    assert problems(config_with(auth="token")) == [f"{base}.auth"]
    assert problems(config_with(auth="source", username="u", password="p")) == [f"{base}.password"]
    assert problems(config_with(auth="digest")) == [f"{base}.username"]
    assert problems(config_with(auth="digest", username="u")) == [f"{base}.password"]
    both = config_with(username="u", password="p", password_file="/x")
    assert problems(both) == [f"{base}.password_file"]
    no_address = config_with(auth="source+digest", username="u", password="p")
    del no_address["mapping_gateways"][0]["addresses"]
    assert problems(no_address) == [f"{base}.addresses"]
    twice = config_with(username="u", password="p")
    twice["mapping_gateways"].append(
        {"name": "n", "addresses": ["10.0.0.2"], "username": "u", "password": "q"}
    )
    assert problems(twice) == ["mapping_gateways[1].username"]
    endpoint = config_with(username="alice", password="p")
    endpoint["endpoints"] = [{"account": "alice", "password": "x"}]
    assert problems(endpoint) == [f"{base}.username"]


@dataclass
class Tx:
    """What `MappingAuth.check` uses of a server transaction; keeps what it was answered."""

    request: Request
    source: tuple[str, int] = ("10.0.0.1", 5060)
    answers: list[Response] = field(default_factory=list)

    def respond_stateless(self, response: Response) -> None:
        self.answers.append(response)


def invite(auth: str | None = None) -> Request:
    lines = [
        "INVITE sip:100@192.0.2.1 SIP/2.0",
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx1",
        "From: <sip:200@10.0.0.1>;tag=a",
        "To: <sip:100@192.0.2.1>",
        "Call-ID: c1",
        "CSeq: 1 INVITE",
        "Max-Forwards: 70",
    ]
    if auth:
        lines.append(f"Proxy-Authorization: {auth}")
    message = parse_message(("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode())
    assert isinstance(message, Request)
    return message


def test_check_challenges_then_admits_and_refuses_replay_and_wrong_password() -> None:
    now = [1000.0]
    config = parse_config(config_with(username="u1", password="p1"))
    auth = MappingAuth(config, clock=lambda: now[0])
    first = Tx(invite())
    assert auth.check(first, "m") is None
    assert first.answers[0].status == 407
    challenge = pick_challenge(first.answers[0].headers.get_all("Proxy-Authenticate"))
    assert challenge is not None and challenge.get("qop") == "auth"
    answer = answer_challenge(
        challenge, user="u1", password="p1", method="INVITE", uri="sip:100@192.0.2.1"
    )
    assert auth.check(Tx(invite(answer)), "m") == "m"
    replayed = Tx(invite(answer))
    assert auth.check(replayed, "m") is None and replayed.answers[0].status == 407
    elsewhere = Tx(invite(answer), source=("10.0.0.9", 5060))  # nonce bound to the source
    assert auth.check(elsewhere, "m") is None and elsewhere.answers[0].status == 407
    wrong = answer_challenge(
        challenge, user="u1", password="nope", method="INVITE", uri="sip:100@192.0.2.1"
    )
    refused = Tx(invite(wrong))
    assert auth.check(refused, "m") is None and refused.answers[0].status == 403
    now[0] += 3600  # the nonce has expired: right answer, new challenge with stale=true
    later = answer_challenge(
        {**challenge, "nc": "2"}, user="u1", password="p1", method="INVITE", uri="sip:100@192.0.2.1"
    )
    stale = Tx(invite(later))
    assert auth.check(stale, "m") is None
    assert "stale=true" in (stale.answers[0].headers.get("Proxy-Authenticate") or "")
    assert auth.results == {
        "authenticated": 1,
        "challenged": 2,  # the first INVITE, and the nonce from another source (not ours)
        "stale": 1,
        "replay": 1,
        "refused": 1,
    }


def test_check_sha256_and_the_password_file() -> None:
    data = config_with(username="u1", password_file="/etc/sipedge/m.secret")
    data["security"] = {"digest_algorithms": ["SHA-256"]}
    auth = MappingAuth(parse_config(data))
    first = Tx(invite())
    assert auth.check(first, "m") is None
    challenge = pick_challenge(first.answers[0].headers.get_all("Proxy-Authenticate"))
    assert challenge is not None and challenge["algorithm"] == "SHA-256"
    answer = answer_challenge(
        challenge, user="u1", password="from-file", method="INVITE", uri="sip:100@192.0.2.1"
    )
    refused = Tx(invite(answer))
    assert auth.check(refused, "m") is None and refused.answers[0].status == 403  # not read yet
    auth.set_passwords({"m": "from-file"})
    first = Tx(invite())
    auth.check(first, "m")
    challenge = pick_challenge(first.answers[0].headers.get_all("Proxy-Authenticate"))
    assert challenge is not None
    answer = answer_challenge(
        challenge, user="u1", password="from-file", method="INVITE", uri="sip:100@192.0.2.1"
    )
    assert auth.check(Tx(invite(answer)), "m") == "m"
