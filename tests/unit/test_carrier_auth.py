"""Authentication toward carriers: the pure decision (calls/carrier_auth.py), then whole calls
on the fake-clock B2BUA (no sockets) whose routing gateway answers 401/407.

gw1 is 10.0.0.2:5060 (it challenges), gw2 10.0.0.3:5060 (the next gateway of the route).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sipedge.api import CredentialError
from sipedge.calls.carrier_auth import (
    Answer,
    CarrierCredentials,
    Refusal,
    decide,
)
from sipedge.calls.service import B2BUA
from sipedge.config import parse_config
from sipedge.sip.digest import compute_response, parse_auth_header
from sipedge.sip.message import Request, make_response, parse_message
from sipedge.sipd import SipDaemon
from tests.conftest import gateway, make_config
from tests.unit.memory_cdrs import MemoryCdrs
from tests.unit.test_session_timer_call import CALLER, SDP, Edge, caller_ack, caller_invite
from tests.unit.test_transaction import FakeClock

GW1 = ("10.0.0.2", 5060)
GW2 = ("10.0.0.3", 5060)
CREDS = CarrierCredentials("edge", "s3cret")
MD5 = 'Digest realm="carrier", nonce="n-md5", algorithm=MD5, qop="auth"'
SHA = 'Digest realm="carrier", nonce="n-sha", algorithm=SHA-256, qop="auth"'
URI = "sip:4420001@10.0.0.2:5060"


def params(value: str) -> dict[str, str]:
    scheme, p = parse_auth_header(value)
    assert scheme == "digest"
    return p


def valid(value: str, password: str, method: str = "INVITE") -> bool:
    """Checks an Authorization value the way a carrier would (RFC 7616 3.4.1)."""
    p = params(value)
    expected = compute_response(
        algorithm=p.get("algorithm", "MD5"),
        user=p["username"],
        realm=p["realm"],
        password=password,
        method=method,
        uri=p["uri"],
        nonce=p["nonce"],
        qop=p.get("qop"),
        nc=p.get("nc", ""),
        cnonce=p.get("cnonce", ""),
    )
    return expected == p["response"]


# -- the decision -----------------------------------------------------------------------------


def test_401_is_answered_with_authorization_and_407_with_proxy_authorization() -> None:
    for status, header in ((401, "Authorization"), (407, "Proxy-Authorization")):
        decision = decide(status, [MD5], CREDS, False, method="INVITE", uri=URI)
        assert isinstance(decision, Answer)
        assert (decision.header, decision.algorithm, decision.result) == (header, "MD5", "answered")
        p = params(decision.value)
        assert (p["username"], p["realm"], p["uri"], p["qop"], p["nc"]) == (
            "edge",
            "carrier",
            URI,
            "auth",
            "00000001",
        )
        assert valid(decision.value, "s3cret")


def test_the_strongest_algorithm_is_chosen() -> None:
    for challenges in ([MD5, SHA], [SHA, MD5]):
        decision = decide(401, challenges, CREDS, False, method="INVITE", uri=URI)
        assert isinstance(decision, Answer) and decision.algorithm == "SHA-256"
        assert params(decision.value)["nonce"] == "n-sha" and valid(decision.value, "s3cret")


def test_no_qop_offered_means_no_qop_in_the_answer() -> None:
    decision = decide(
        401, ['Digest realm="carrier", nonce="x"'], CREDS, False, method="INVITE", uri=URI
    )
    assert isinstance(decision, Answer) and decision.algorithm == "MD5"
    p = params(decision.value)
    assert "qop" not in p and "nc" not in p and "cnonce" not in p
    assert valid(decision.value, "s3cret")


@pytest.mark.parametrize(
    ("challenges", "credentials", "answered", "result"),
    [
        ([MD5], CREDS, True, "rechallenged"),
        ([MD5], None, False, "no_credentials"),
        ([MD5], CarrierCredentials("edge", "s3cret", "other"), False, "realm_mismatch"),
        (['Digest realm="c", nonce="x", algorithm=SHA-512-256'], CREDS, False, "unsupported"),
        (['Digest realm="c", nonce="x", qop="auth-int"'], CREDS, False, "unsupported"),
        (['Basic realm="c"'], CREDS, False, "unsupported"),
        ([], CREDS, False, "unsupported"),
        (['Digest realm="c", nonce="x", qop="auth-int"'], CarrierCredentials("u", "p", "c"), False,
         "unsupported"),
    ],
)  # fmt: skip
def test_challenges_that_end_the_attempt(
    challenges: list[str], credentials: CarrierCredentials | None, answered: bool, result: str
) -> None:
    decision = decide(401, challenges, credentials, answered, method="INVITE", uri=URI)
    assert decision == Refusal(result)


def test_realm_set_answers_only_that_realm() -> None:
    other = 'Digest realm="elsewhere", nonce="o", algorithm=SHA-256, qop="auth"'
    creds = CarrierCredentials("edge", "s3cret", "carrier")
    decision = decide(407, [other, MD5], creds, False, method="INVITE", uri=URI)
    assert isinstance(decision, Answer) and params(decision.value)["realm"] == "carrier"


def test_the_password_is_not_in_repr() -> None:
    assert "s3cret" not in repr(CREDS)


# -- whole calls on the fake clock --------------------------------------------------------------


class CarrierEdge(Edge):
    """The session-timer test's `Edge`, with two routing gateways; gw1 may have credentials."""

    def __init__(self, tmp: Path, gw1: dict[str, Any], route: tuple[str, ...] = ("gw1", "gw2")):
        data = make_config(
            tmp,
            5060,
            8080,
            [gateway("gw1", 5060, **gw1), gateway("gw2", 5060)],
            routes=[{"prefix": "", "gateways": list(route)}],
        )
        data["routing_gateways"][0]["address"] = GW1[0]
        data["routing_gateways"][1]["address"] = GW2[0]
        super().__init__(tmp, data=data)
        self.cdrs: list[Any] = []
        self.b2bua.cdrs = MemoryCdrs(self.cdrs)  # type: ignore[assignment]

    def challenge(self, invite: Request, status: int, *values: str, source: Any = GW1) -> None:
        response = make_response(invite, status, to_tag="carrier-tag")
        header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
        for value in values:
            response.headers.add(header, value)
        self.feed(response, source)


AUTH = {"auth_user": "edge", "auth_password": "s3cret"}


def start(edge: CarrierEdge) -> Request:
    edge.feed(caller_invite("INVITE, ACK, BYE"), CALLER)
    (invite,) = edge.requests("INVITE", GW1)
    return invite


@pytest.mark.parametrize(
    ("status", "header"), [(401, "Authorization"), (407, "Proxy-Authorization")]
)
def test_challenged_call_is_answered_once_and_completes(
    tmp_path: Path, status: int, header: str
) -> None:
    edge = CarrierEdge(tmp_path, AUTH)
    first = start(edge)
    edge.challenge(first, status, MD5)
    # the 401/407 is ACKed by the INVITE client transaction (same branch, same CSeq number)
    (ack,) = edge.requests("ACK", GW1)
    assert ack.headers.get("Via") == first.headers.get("Via")
    assert ack.cseq == (first.cseq[0], "ACK")
    first_again, second = edge.requests("INVITE", GW1)
    assert first_again is not second and first_again.headers.get("Via") == first.headers.get("Via")
    # RFC 3261 8.1.3.5 / 22.2: same Call-ID, From tag, To, Request-URI; CSeq + 1; new branch
    assert second.call_id == first.call_id and second.from_tag == first.from_tag
    assert second.headers.get("To") == first.headers.get("To") and second.uri == first.uri
    assert second.cseq == (first.cseq[0] + 1, "INVITE")
    assert second.headers.get("Via") != first.headers.get("Via")
    assert second.body == first.body
    value = second.headers.get(header)
    assert value is not None and valid(value, "s3cret")
    assert params(value)["uri"] == second.uri
    assert not edge.responses(503, CALLER)  # the caller heard nothing of it
    edge.answer(second, 200, GW1)
    caller_ack(edge)
    assert edge.responses(200, CALLER)
    acks = edge.requests("ACK", GW1)
    assert acks[-1].cseq == (second.cseq[0], "ACK")  # the 2xx ACK: the answered INVITE's CSeq
    assert edge.b2bua.stats.challenges_answered == 1 and not edge.b2bua.stats.challenges_failed
    call = next(iter(edge.b2bua.calls.values()))
    (record,) = call.record.attempts
    assert (record.challenged, record.auth_algorithm, record.auth_failure) == (True, "MD5", "")
    assert record.result == "answered"
    assert not edge.requests("INVITE", GW2)


def test_a_second_challenge_ends_the_attempt_and_switching_goes_on(tmp_path: Path) -> None:
    edge = CarrierEdge(tmp_path, {**AUTH, "auth_password": "wrong"})
    first = start(edge)
    edge.challenge(first, 401, MD5)
    second = edge.requests("INVITE", GW1)[-1]
    edge.challenge(second, 401, MD5)
    assert len(edge.requests("INVITE", GW1)) == 2  # not a third time
    assert edge.requests("ACK", GW1)[-1].headers.get("Via") == second.headers.get("Via")
    (next_invite,) = edge.requests("INVITE", GW2)
    assert next_invite.headers.get("Authorization") is None
    edge.answer(next_invite, 200, GW2)
    caller_ack(edge)
    call = next(iter(edge.b2bua.calls.values()))
    failed, answered = call.record.attempts
    assert (failed.gateway, failed.result, failed.status) == ("gw1", "401", 401)
    assert (failed.challenged, failed.auth_algorithm, failed.auth_failure) == (
        True,
        "MD5",
        "rechallenged",
    )
    assert (answered.gateway, answered.challenged, answered.result) == ("gw2", False, "answered")
    assert edge.b2bua.stats.challenges_answered == 1
    assert edge.b2bua.stats.challenges_failed == {"rechallenged": 1}


@pytest.mark.parametrize(
    ("gw1", "challenge", "reason"),
    [
        ({}, MD5, "no_credentials"),
        ({**AUTH, "auth_realm": "other"}, MD5, "realm_mismatch"),
        (AUTH, 'Digest realm="carrier", nonce="x", algorithm=SHA-512-256', "unsupported"),
    ],
)
def test_unanswerable_challenge_behaves_as_before(
    tmp_path: Path, gw1: dict[str, Any], challenge: str, reason: str
) -> None:
    """Without usable credentials a 401 fails the attempt like any status: with gw1 alone in
    the route the caller hears 503 (a challenge concerns our leg), as before carrier auth."""
    edge = CarrierEdge(tmp_path, gw1, route=("gw1",))
    first = start(edge)
    edge.challenge(first, 407, challenge)
    assert len(edge.requests("INVITE", GW1)) == 1
    (refused,) = edge.responses(503, CALLER)
    assert refused.reason == "Gateway Answered 407"
    (cdr,) = edge.cdrs
    (attempt,) = cdr.attempts
    assert (attempt.result, attempt.challenged, attempt.auth_failure) == ("407", True, reason)
    assert attempt.auth_algorithm is None
    assert cdr.switch_stop_reason == "no more gateways"
    assert edge.b2bua.stats.challenges_failed == {reason: 1}


def test_sha256_is_chosen_when_offered_beside_md5(tmp_path: Path) -> None:
    edge = CarrierEdge(tmp_path, AUTH)
    first = start(edge)
    edge.challenge(first, 401, MD5, SHA)
    second = edge.requests("INVITE", GW1)[-1]
    value = second.headers.get("Authorization") or ""
    assert params(value)["algorithm"] == "SHA-256" and valid(value, "s3cret")
    call = next(iter(edge.b2bua.calls.values()))
    assert call.record.attempts[0].auth_algorithm == "SHA-256"


def test_caller_cancel_after_the_resend_cancels_the_new_invite(tmp_path: Path) -> None:
    edge = CarrierEdge(tmp_path, AUTH)
    first = start(edge)
    edge.challenge(first, 401, MD5)
    second = edge.requests("INVITE", GW1)[-1]
    edge.answer(second, 180, GW1)
    cancel = parse_message(
        b"CANCEL sip:4420001@10.0.0.9 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-caller-1\r\n"
        b"From: <sip:100@10.0.0.1>;tag=caller-tag\r\n"
        b"To: <sip:4420001@10.0.0.9>\r\n"
        b"Call-ID: caller-call\r\n"
        b"CSeq: 1 CANCEL\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    edge.feed(cancel, CALLER)
    (gw_cancel,) = edge.requests("CANCEL", GW1)
    assert gw_cancel.headers.get("Via") == second.headers.get("Via")  # the new branch
    assert gw_cancel.cseq == (second.cseq[0], "CANCEL")
    assert edge.responses(487, CALLER)


def test_a_challenge_after_a_422_retry_is_still_answered(tmp_path: Path) -> None:
    """Each resend is CSeq + 1 on the one before; the 422 retry and the answer are separate."""
    edge = CarrierEdge(tmp_path, AUTH)
    first = start(edge)
    edge.answer(first, 422, GW1, Min_SE="1900")
    retried = edge.requests("INVITE", GW1)[-1]
    assert retried.cseq[0] == 2 and retried.headers.get("Session-Expires") == "1900"
    edge.challenge(retried, 401, MD5)
    answered = edge.requests("INVITE", GW1)[-1]
    assert answered.cseq[0] == 3 and answered.headers.get("Session-Expires") == "1900"
    assert valid(answered.headers.get("Authorization") or "", "s3cret")
    edge.answer(answered, 200, GW1)
    caller_ack(edge)
    assert edge.b2bua.calls and edge.responses(200, CALLER)


def test_sdp_sent_again_is_the_same_offer(tmp_path: Path) -> None:
    edge = CarrierEdge(tmp_path, AUTH)
    first = start(edge)
    assert first.body == SDP
    edge.challenge(first, 401, MD5)
    assert edge.requests("INVITE", GW1)[-1].body == SDP


# -- the password file: read by sipd at start and on reload, like the API token files ----------


def test_password_file_read_at_start_and_again_when_credentials_are_reloaded(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "gw1.password"
    secret.write_text("  first pw\n")
    gw1 = {"auth_user": "edge", "auth_password_file": str(secret), "auth_realm": "carrier"}
    data = make_config(tmp_path, 5060, 8080, [gateway("gw1", 5060, **gw1), gateway("gw2", 5061)])
    daemon = SipDaemon(tmp_path / "sipedge.yaml", parse_config(data))
    daemon.load_credentials()  # as serve() does before start()
    assert daemon.carrier_passwords == {"gw1": "first pw"}
    b2bua = B2BUA(
        daemon.config, FakeClock(), lambda raw, addr: None, lambda d: "10.0.0.9", 5060, None
    )
    b2bua.set_carrier_passwords(daemon.carrier_passwords)  # as start() does
    daemon._b2bua = b2bua
    assert b2bua.gateway_target("gw1").credentials == CarrierCredentials(
        "edge", "first pw", "carrier"
    )
    assert b2bua.gateway_target("gw2").credentials is None
    secret.write_text("second pw\n")
    daemon.load_credentials()  # reload: a rotated file is read again
    assert b2bua.gateway_target("gw1").credentials == CarrierCredentials(
        "edge", "second pw", "carrier"
    )
    secret.unlink()
    with pytest.raises(CredentialError, match=r"routing_gateways\[0\]\.auth_password_file"):
        daemon.load_credentials()
    assert b2bua.gateway_target("gw1").credentials == CarrierCredentials(
        "edge", "second pw", "carrier"
    )  # nothing changed
    secret.write_text("\n")
    with pytest.raises(CredentialError, match="empty"):
        daemon.load_credentials()
