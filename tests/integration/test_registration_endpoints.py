"""The registrar end to end: SIPp endpoints register to a real sipedge-sipd (digest, expiry,
replace, un-register, brute-force suspension, persistence) and place and receive calls.

The mapping gateway is 127.0.0.2 only, so endpoints on 127.0.0.1 are not mistaken for it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from typing import Any

import pytest

from sipedge.sip.digest import answer_challenge, pick_challenge
from sipedge.sip.message import Response, parse_message
from tests.conftest import free_port, gateway, start_sipd
from tests.sipp.harness import Sipp, SippResult

pytestmark = [pytest.mark.sipp, pytest.mark.slow]

# carol is offered SHA-256 first (per account); the others get the default, MD5 only (SIPp
# reads only the first challenge and knows only MD5)
ENDPOINTS = [
    {"account": "alice", "password": "secret"},
    {"account": "bob", "password": "pw2"},
    {"account": "carol", "password": "pw3", "digest_algorithms": ["SHA-256", "MD5"]},
]
MAPPING = ["127.0.0.2/32"]


def start(sipd_factory: Any, params: dict[str, Any] | None = None, gw_port: int = 0) -> Any:
    return sipd_factory(
        [gateway("gw1", gw_port or free_port())],
        parameters=params or {},
        mapping_addresses=MAPPING,
        extra={"endpoints": ENDPOINTS},
    )


def register(sipd: Any, port: int | None = None, **keys: Any) -> SippResult:
    port = port or free_port()
    keys.setdefault("contact_port", port)
    scenario = "uac_register_once" if "final" not in keys and keys.get("first") else "uac_register"
    sipp = Sipp(scenario, port=port, remote=sipd.sip_target, keys=keys, timeout=15)
    sipp.start()
    return sipp.wait(20)


def granted(result: SippResult) -> int:
    ok = result.received(200)[-1]
    contact = ok.header("Contact") or ""
    return int(contact.split("expires=")[1].split(";")[0])


def auth_uri(sipd: Any, user: str) -> list[str]:
    """SIPp's digest `uri` is sip:<remote host:port> unless told; ours must be the
    Request-URI (sip:<user>@<remote host:port>)."""
    return ["-auth_uri", f"{user}@{sipd.sip_target}"]


def bindings(sipd: Any) -> dict[str, dict[str, Any]]:
    return {b["account"]: b for b in sipd.api("/api/endpoints")["bindings"]}


# ---------------------------------------------------------------------------------------------


def test_register_digest_and_expiry_rules(sipd_factory: Any) -> None:
    sipd = start(sipd_factory, {"SS_ENDPOINT_EXPIRE": 1800})
    r = register(sipd, expires=7200)
    assert r.returncode == 0, r.describe() + sipd.log()
    challenge = r.received(401)[0].headers("WWW-Authenticate")
    assert [c.split("algorithm=")[1].split(",")[0] for c in challenge] == ["MD5"]
    assert 'qop="auth"' in challenge[0]
    assert granted(r) == 1800  # min(asked, SS_ENDPOINT_EXPIRE)
    b = bindings(sipd)["alice"]
    assert b["nat"] is False and b["source"].startswith("127.0.0.1:")
    # more than the maximum -> the maximum; less than 60 -> 423 with Min-Expires: 60 (an
    # empty Expires is now a 400 of the SIP layer; asking for nothing: tests/unit/test_registrar)
    r = register(sipd, user="bob", password="pw2", expires=3600)
    assert r.returncode == 0 and granted(r) == 1800, r.describe() + sipd.log()
    r = register(sipd, expires=30, final=423)
    assert r.returncode == 0, r.describe()
    assert r.received(423)[0].header("Min-Expires") == "60"
    # un-register with Expires: 0
    port = int(b["source"].rsplit(":", 1)[1])
    r = register(sipd, port=port, expires=0)
    assert r.returncode == 0
    assert "alice" not in bindings(sipd)


def test_nat_expiry_and_nat_detection(sipd_factory: Any) -> None:
    sipd = start(sipd_factory, {"SS_ENDPOINT_NAT_EXPIRE": 120})
    # the Contact/Via say 10.0.0.5:5060, the packets come from 127.0.0.1: behind NAT
    r = register(sipd, contact_host="10.0.0.5", contact_port=5060, expires=3600)
    assert r.returncode == 0, r.describe()
    assert granted(r) == 120
    b = bindings(sipd)["alice"]
    assert b["nat"] is True and b["contact"] == "sip:alice@10.0.0.5:5060"
    assert sipd.api("/api/endpoints")["nat_devices"] == 1


def test_replace_off_refuses_a_second_device(sipd_factory: Any) -> None:
    sipd = start(sipd_factory, {"SS_ENDPOINT_REGISTER_REPLACE": "Off"})
    assert register(sipd).returncode == 0
    r = register(sipd, final=403)  # another port, another Call-ID: another device
    assert r.returncode == 0, r.describe()
    assert r.received(403)[0].first_line.endswith("Already Registered")


def test_replace_on_moves_the_binding(sipd_factory: Any) -> None:
    sipd = start(sipd_factory)
    first, second = free_port(), free_port()
    assert register(sipd, port=first).returncode == 0
    assert register(sipd, port=second).returncode == 0
    assert bindings(sipd)["alice"]["source"] == f"127.0.0.1:{second}"


def test_brute_force_suspends_account_and_source_then_recovers(sipd_factory: Any) -> None:
    sipd = start(sipd_factory, {"SS_ENDPOINT_REGISTER_RETRY": 3, "SS_ENDPOINT_REGISTER_SUSPEND": 4})
    for _ in range(3):
        r = register(sipd, password="wrong", final=403)
        assert r.returncode == 0, r.describe()
        assert r.received(403)[0].first_line.endswith(" 403 Forbidden")
    suspended_at = time.monotonic()
    # suspended: challenged like anyone, and the right password gets the wrong password's 403
    r = register(sipd, final=403)
    assert r.returncode == 0, r.describe()
    assert r.received(403)[0].first_line.endswith(" 403 Forbidden")
    status = sipd.api("/api/endpoints")["suspended"]
    assert status == {"accounts": ["alice"], "sources": ["127.0.0.1"]}
    # the source is suspended too: another account from the same address gets 403
    r = register(sipd, user="bob", password="pw2", final=403)
    assert r.returncode == 0
    m = sipd.metrics()
    assert m["sipedge_registrar_suspended_rejects_total"] == 2
    assert m["sipedge_registrar_auth_failures_total"] == 3
    time.sleep(max(0.0, suspended_at + 4.2 - time.monotonic()))
    r = register(sipd)
    assert r.returncode == 0, r.describe() + sipd.log()
    assert "alice" in bindings(sipd)


def test_bindings_survive_a_restart(sipd_factory: Any, tmp_path: Any) -> None:
    sipd = start(sipd_factory)
    assert register(sipd).returncode == 0
    before = bindings(sipd)["alice"]
    assert sipd.stop() == 0
    config = __import__("yaml").safe_load(sipd.config_path.read_text())
    again = start_sipd(tmp_path, config, name="restarted")
    try:
        after = bindings(again)["alice"]
        assert after["contact"] == before["contact"] and after["source"] == before["source"]
        assert abs(after["expires_at"] - before["expires_at"]) < 1
    finally:
        again.stop()


def test_sha256_digest_and_stale_nonce(sipd_factory: Any) -> None:
    """A SHA-256 client (our own digest code over a raw socket) registers where SHA-256 is
    offered; a forged nonce is challenged again, a wrong response is a failure."""
    sipd = start(sipd_factory)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(3)
        port = s.getsockname()[1]
        call_id = os.urandom(6).hex()

        def send(cseq: int, auth: str | None = None) -> Response:
            lines = [
                f"REGISTER sip:{sipd.sip_target} SIP/2.0",
                f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{os.urandom(6).hex()};rport",
                "From: <sip:carol@127.0.0.1>;tag=abc",
                "To: <sip:carol@127.0.0.1>",
                f"Call-ID: {call_id}",
                f"CSeq: {cseq} REGISTER",
                f"Contact: <sip:carol@127.0.0.1:{port}>",
                "Expires: 600",
            ]
            if auth:
                lines.append(f"Authorization: {auth}")
            s.sendto(("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode(), sipd_addr)
            msg = parse_message(s.recv(65535))
            assert isinstance(msg, Response)
            return msg

        sipd_addr = ("127.0.0.1", sipd.sip_port)
        first = send(1)
        assert first.status == 401
        challenges = first.headers.get_all("WWW-Authenticate")
        assert "algorithm=SHA-256" in challenges[0] and len(challenges) == 2  # carol's order
        sha = pick_challenge([c for c in challenges if "SHA-256" in c])
        assert sha is not None and sha["algorithm"] == "SHA-256"
        uri = f"sip:{sipd.sip_target}"
        auth = answer_challenge(sha, user="carol", password="pw3", method="REGISTER", uri=uri)
        ok = send(2, auth)
        assert ok.status == 200, ok
        forged = dict(sha, nonce="0.0.0")
        again = send(
            3, answer_challenge(forged, user="carol", password="pw3", method="REGISTER", uri=uri)
        )
        assert again.status == 401  # not our nonce: a new challenge, not a failure
        fresh = pick_challenge(send(4).headers.get_all("WWW-Authenticate"))
        assert fresh is not None
        bad = send(
            5, answer_challenge(fresh, user="carol", password="nope", method="REGISTER", uri=uri)
        )
        assert bad.status == 403
    assert bindings(sipd)["carol"]["source"] == f"127.0.0.1:{port}"


def test_call_from_endpoint_is_authenticated_and_routed(sipd_factory: Any) -> None:
    gw_port = free_port()
    sipd = start(sipd_factory, gw_port=gw_port)
    with Sipp("uas_answer", port=gw_port, calls=1, timeout=30) as gw:
        caller = Sipp(
            "uac_auth_call",
            port=free_port(),
            remote=sipd.sip_target,
            service="4420001",
            timeout=30,
            extra=auth_uri(sipd, "4420001"),
        )
        caller.start()
        result = caller.wait(40)
        gw_result = gw.wait(20)
    assert result.returncode == 0, result.describe() + sipd.log()
    assert gw_result.returncode == 0
    assert result.received(407), "the first INVITE must be challenged"
    cdr = sipd.cdrs(wait_for=1)[0]
    assert cdr["mapping_gateway"] == "endpoint:alice" and cdr["answer_time"] is not None


def test_call_from_endpoint_with_wrong_password_is_refused(sipd_factory: Any) -> None:
    sipd = start(sipd_factory)
    caller = Sipp(
        "uac_auth_call",
        port=free_port(),
        remote=sipd.sip_target,
        service="4420001",
        extra=auth_uri(sipd, "4420001"),
        keys={"password": "wrong"},
        timeout=10,
    )
    caller.start()
    result = caller.wait(20)
    assert result.returncode != 0
    refused = result.received(403)
    assert refused and refused[0].first_line.endswith(" 403 Forbidden"), result.describe()


def test_call_to_a_registered_endpoint_reaches_its_contact(sipd_factory: Any) -> None:
    sipd = start(sipd_factory)
    port = free_port()
    assert register(sipd, port=port).returncode == 0
    with Sipp("uas_answer", port=port, calls=1, timeout=30) as phone:
        caller = Sipp(
            "uac_basic",
            local="127.0.0.2",
            port=free_port(),
            remote=sipd.sip_target,
            service="alice",
            timeout=30,
            keys={"hold": "300"},
        )
        caller.start()
        result = caller.wait(40)
        phone_result = phone.wait(20)
    assert result.returncode == 0, result.describe() + sipd.log()
    assert phone_result.returncode == 0, phone_result.describe()
    invite = phone_result.received("INVITE")[0]
    assert invite.first_line.startswith(f"INVITE sip:alice@127.0.0.1:{port} ")
    cdr = sipd.cdrs(wait_for=1)[0]
    assert cdr["routing_gateway"] == "endpoint:alice"


def test_call_to_an_unregistered_account_gets_480(sipd_factory: Any) -> None:
    sipd = start(sipd_factory)
    caller = Sipp(
        "uac_expect_fail",
        local="127.0.0.2",
        port=free_port(),
        remote=sipd.sip_target,
        service="bob",
        timeout=10,
        keys={"expect_code": "480"},
    )
    caller.start()
    result = caller.wait(20)
    assert result.received(480), result.describe() + sipd.log()


def test_a_replayed_proxy_authorization_is_refused(sipd_factory: Any) -> None:
    """A sniffed INVITE's Proxy-Authorization (same nonce and nc) sent again: as it was (a new
    transaction), with another Request-URI, and from another source. Only the original call
    reaches the gateway."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gw:
        gw.bind(("127.0.0.1", 0))
        gw.settimeout(0.5)
        sipd = start(sipd_factory, gw_port=gw.getsockname()[1])
        target = ("127.0.0.1", sipd.sip_port)

        def invite(s: socket.socket, number: str, auth: str | None = None) -> Response:
            host, port = s.getsockname()
            lines = [
                f"INVITE sip:{number}@{sipd.sip_target} SIP/2.0",
                f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{os.urandom(6).hex()};rport",
                "Max-Forwards: 70",
                f"From: <sip:alice@{host}>;tag={os.urandom(4).hex()}",
                f"To: <sip:{number}@{sipd.sip_target}>",
                f"Call-ID: {os.urandom(6).hex()}",
                "CSeq: 1 INVITE",
                f"Contact: <sip:alice@{host}:{port}>",
                *([f"Proxy-Authorization: {auth}"] if auth else []),
                "Content-Length: 0",
            ]
            s.sendto(("\r\n".join([*lines, "", ""])).encode(), target)
            while True:
                msg = parse_message(s.recv(65535))
                assert isinstance(msg, Response)
                if msg.status >= 200:
                    return msg

        def gateway_invites() -> set[str]:
            """Request line + top Via branch of each INVITE the gateway got (retransmissions
            of one INVITE count once)."""
            seen = set()
            try:
                while True:
                    lines = gw.recv(65535).decode(errors="replace").split("\r\n")
                    if lines[0].startswith("INVITE "):
                        via = next(v for v in lines if v.lower().startswith("via:"))
                        seen.add(lines[0] + " " + via.split("branch=")[1].split(";")[0])
            except TimeoutError:
                return seen

        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as phone,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as thief,
        ):
            phone.bind(("127.0.0.1", 0))
            thief.bind(("127.0.0.3", 0))
            for s in (phone, thief):
                s.settimeout(3)
            challenge = pick_challenge(
                invite(phone, "4420001").headers.get_all("Proxy-Authenticate")
            )
            assert challenge is not None
            uri = f"sip:4420001@{sipd.sip_target}"
            auth = answer_challenge(challenge, user="alice", password="secret", method="INVITE",
                                    uri=uri)  # fmt: skip
            # the original: admitted and routed (the silent gateway lets it time out)
            phone.settimeout(0.3)
            with contextlib.suppress(TimeoutError):
                invite(phone, "4420001", auth)
            routed = gateway_invites()
            assert len(routed) == 1, sipd.log()
            assert next(iter(routed)).startswith("INVITE sip:4420001@")
            phone.settimeout(3)
            # the replays: each challenged again, none reaches the gateway
            assert invite(phone, "4420001", auth).status == 407  # same nc again
            assert invite(phone, "0090012345", auth).status == 407  # another Request-URI
            assert invite(thief, "4420001", auth).status == 407  # another source
            assert invite(thief, "0090012345", auth).status == 407
            assert gateway_invites() <= routed, sipd.log()  # at most its retransmissions
    m = sipd.metrics()
    assert m["sipedge_registrar_replays_total"] == 2  # the other source's nonce is not ours
    assert m["sipedge_endpoint_invites_authenticated_total"] == 1
