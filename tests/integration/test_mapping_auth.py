"""Mapping gateways that authenticate by digest (issue 16 item 3): SIPp as the mapping gateway
answers our 407 with `[authentication]`; a wrong password is refused with 403 and counted.

Real sipd, real SIPp on loopback; the routing gateway is a SIPp UAS."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import free_port, gateway
from tests.sipp.harness import Sipp, SippResult

pytestmark = [pytest.mark.sipp, pytest.mark.slow]


def start(
    sipd_factory: Any, gw_port: int, auth: str, tmp_path: Any = None, endpoints: bool = False
) -> Any:
    overrides: dict[str, Any] = {"auth": auth, "username": "pbx-trunk"}
    if tmp_path is not None:
        secret = tmp_path / "mapping.secret"
        secret.write_text("trunk-pw\n")
        secret.chmod(0o600)
        overrides["password_file"] = str(secret)
    else:
        overrides["password"] = "trunk-pw"
    if auth == "digest":
        overrides["addresses"] = ["192.0.2.0/24"]  # not loopback: the source does not match
    return sipd_factory(
        [gateway("gw1", gw_port)],
        mapping_addresses=["127.0.0.0/8"],
        mapping_overrides=overrides,
        extra={"endpoints": [{"account": "alice", "password": "pw"}]} if endpoints else None,
    )


def call(sipd: Any, password: str, wait: float = 40) -> SippResult:
    caller = Sipp(
        "uac_auth_call",
        port=free_port(),
        remote=sipd.sip_target,
        service="4420001",
        # the digest uri must be the Request-URI (sip:<user>@<remote host:port>)
        extra=["-auth_uri", f"4420001@{sipd.sip_target}"],
        keys={"caller": "pbx-trunk", "password": password},
        timeout=30,
    )
    caller.start()
    return caller.wait(wait)


@pytest.mark.parametrize("auth", ["source+digest", "digest"])
def test_mapping_gateway_answers_the_challenge_and_the_call_completes(
    sipd_factory: Any, tmp_path: Any, auth: str
) -> None:
    gw_port = free_port()
    # source+digest reads the password from a file (password_file), digest from the config
    sipd = start(sipd_factory, gw_port, auth, tmp_path if auth == "source+digest" else None)
    with Sipp("uas_answer", port=gw_port, calls=1, timeout=30) as gw:
        result = call(sipd, "trunk-pw")
        gw_result = gw.wait(20)
    assert result.returncode == 0, result.describe() + sipd.log()
    assert gw_result.returncode == 0
    challenge = result.received(407)
    assert challenge, "the first INVITE must be challenged"
    assert 'qop="auth"' in (challenge[0].header("Proxy-Authenticate") or "")
    cdr = sipd.cdrs(wait_for=1)[0]
    assert cdr["mapping_gateway"] == "test-caller" and cdr["answer_time"] is not None
    metrics = sipd.metrics()
    assert metrics['sipedge_mapping_auth_total{result="authenticated"}'] == 1
    assert metrics['sipedge_mapping_auth_total{result="challenged"}'] >= 1


def test_digest_only_gateway_beside_endpoints_answers_the_registrars_challenge(
    sipd_factory: Any,
) -> None:
    """With endpoint accounts, the registrar challenges an unknown source; the answer carrying
    the gateway's user name is checked here against the same nonce (one digest server)."""
    gw_port = free_port()
    sipd = start(sipd_factory, gw_port, "digest", endpoints=True)
    with Sipp("uas_answer", port=gw_port, calls=1, timeout=30) as gw:
        result = call(sipd, "trunk-pw")
        gw.wait(20)
    assert result.returncode == 0, result.describe() + sipd.log()
    cdr = sipd.cdrs(wait_for=1)[0]
    assert cdr["mapping_gateway"] == "test-caller" and cdr["answer_time"] is not None
    metrics = sipd.metrics()
    assert metrics['sipedge_mapping_auth_total{result="authenticated"}'] == 1
    assert metrics['sipedge_mapping_auth_total{result="challenged"}'] == 0  # the registrar's


def test_mapping_gateway_with_a_wrong_password_is_refused(sipd_factory: Any) -> None:
    gw_port = free_port()
    sipd = start(sipd_factory, gw_port, "source+digest")
    result = call(sipd, "wrong", wait=20)
    assert result.returncode != 0
    refused = result.received(403)
    assert refused and refused[0].first_line.endswith(" 403 Forbidden"), result.describe()
    metrics = sipd.metrics()
    assert metrics['sipedge_mapping_auth_total{result="refused"}'] >= 1
    assert metrics.get('sipedge_mapping_auth_total{result="authenticated"}', 0) == 0
    assert sipd.cdrs(timeout=2) == []  # refused before a call existed
