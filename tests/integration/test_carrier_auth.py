"""Authentication toward carriers end to end: SIPp caller -> sipedge-sipd -> a SIPp carrier that
challenges the INVITE with digest (docs/call-control.md, "Authentication toward carriers").

The carrier (tests/sipp/scenarios/uas_auth_answer.xml) answers the first INVITE with 401 or
407, expects the INVITE again with credentials and checks them (SIPp's verifyauth for
Authorization; the trace and an independent MD5 for Proxy-Authorization), then answers 200 or
challenges a second time.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, gateway
from tests.integration.test_b2bua import call, last_cdr, uas
from tests.sipp.harness import SippMessage, SippResult

pytestmark = [pytest.mark.sipp, pytest.mark.slow]

PASSWORD = "carrier-pw"


def invites(result: SippResult) -> list[SippMessage]:
    """The INVITEs the carrier received, retransmissions folded (one per branch)."""
    seen: dict[str | None, SippMessage] = {}
    for m in result.messages:
        if m.direction == "received" and m.is_("INVITE"):
            seen.setdefault(m.branch, m)
    return list(seen.values())


def sent_statuses(result: SippResult) -> list[int]:
    return [m.status for m in result.messages if m.direction == "sent" and m.status is not None]


def digest_params(value: str) -> dict[str, str]:
    assert value.startswith("Digest ")
    return {
        k.lower(): v1 or v2 for k, v1, v2 in re.findall(r'(\w+)=(?:"([^"]*)"|([^,\s]+))', value)
    }


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def assert_resent(first: SippMessage, second: SippMessage) -> None:
    """RFC 3261 8.1.3.5 / 22.2: same Call-ID and From, CSeq + 1, a new branch."""
    assert second.call_id == first.call_id
    assert second.header("From") == first.header("From")
    cseq1, cseq2 = (int((m.header("CSeq") or "").split()[0]) for m in (first, second))
    assert cseq2 == cseq1 + 1
    assert second.branch != first.branch


def test_401_answered_with_credentials_from_a_password_file(
    sipd_factory: Any, tmp_path: Path
) -> None:
    port = free_port()
    secret = tmp_path / "carrier.pw"
    secret.write_text(PASSWORD + "\n")
    sipd = sipd_factory([gateway("gw1", port, auth_user="edge", auth_password_file=str(secret))])
    with uas("uas_auth_answer", port, password=PASSWORD) as carrier:
        result = call(sipd, "uac_basic", hold="300")
        carrier_result = carrier.wait(20)
    assert result.returncode == 0, result.stdout + sipd.log()
    assert carrier_result.returncode == 0, carrier_result.stdout
    first, second = invites(carrier_result)
    assert_resent(first, second)
    assert first.header("Authorization") is None
    auth = digest_params(second.header("Authorization") or "")
    assert (auth["username"], auth["realm"], auth["qop"], auth["nc"]) == (
        "edge",
        "carrier",
        "auth",
        "00000001",
    )
    # verifyauth accepted it: the carrier answered 200 (not a second 401)
    assert sent_statuses(carrier_result).count(401) == 1 and 200 in sent_statuses(carrier_result)
    cdr = last_cdr(sipd)
    (attempt,) = cdr["attempts"]
    assert attempt["result"] == "answered" and attempt["challenged"] is True
    assert attempt["auth_algorithm"] == "MD5" and attempt["auth_failure"] == ""
    metrics = sipd.metrics()
    assert metrics["sipedge_carrier_challenges_answered_total"] == 1


def test_407_answered_with_proxy_authorization(sipd_factory: Any) -> None:
    port = free_port()
    sipd = sipd_factory([gateway("gw1", port, auth_user="edge", auth_password=PASSWORD)])
    keys = {"code": "407", "reason": "Proxy", "challenge": "Proxy-Authenticate", "verify": "0"}
    with uas("uas_auth_answer", port, **keys) as carrier:
        result = call(sipd, "uac_basic", hold="300")
        carrier_result = carrier.wait(20)
    assert result.returncode == 0, result.stdout + sipd.log()
    assert carrier_result.returncode == 0, carrier_result.stdout
    first, second = invites(carrier_result)
    assert_resent(first, second)
    assert second.header("Authorization") is None
    p = digest_params(second.header("Proxy-Authorization") or "")
    # RFC 2617 3.2.2.1 by hand: the carrier's check, independent of sipedge's digest module
    ha1 = md5(f"edge:carrier:{PASSWORD}")
    ha2 = md5(f"INVITE:{p['uri']}")
    expected = md5(f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:{p['qop']}:{ha2}")
    assert p["response"] == expected
    assert p["uri"] == second.first_line.split()[1]
    (attempt,) = last_cdr(sipd)["attempts"]
    assert (attempt["result"], attempt["challenged"], attempt["auth_algorithm"]) == (
        "answered",
        True,
        "MD5",
    )


def test_wrong_password_is_challenged_again_and_the_call_fails_over(sipd_factory: Any) -> None:
    p1, p2 = free_port(), free_port()
    sipd = sipd_factory(
        [gateway("gw1", p1, auth_user="edge", auth_password="not-it"), gateway("gw2", p2)]
    )
    with uas("uas_auth_answer", p1, password=PASSWORD) as carrier, uas("uas_answer", p2) as gw2:
        result = call(sipd, "uac_basic", hold="300")
        gw2_result = gw2.wait(20)
        carrier_result = carrier.wait(20)
    assert result.returncode == 0, result.stdout + sipd.log()
    assert gw2_result.returncode == 0 and carrier_result.returncode == 0
    assert len(invites(carrier_result)) == 2  # answered once, never a third time
    assert sent_statuses(carrier_result).count(401) == 2
    assert invites(gw2_result)[0].header("Authorization") is None
    cdr = last_cdr(sipd)
    failed, answered = cdr["attempts"]
    assert (failed["gateway"], failed["result"], failed["status"]) == ("gw1", "401", 401)
    assert (failed["challenged"], failed["auth_algorithm"], failed["auth_failure"]) == (
        True,
        "MD5",
        "rechallenged",
    )
    assert (answered["gateway"], answered["result"]) == ("gw2", "answered")
    metrics = sipd.metrics()
    assert metrics['sipedge_carrier_challenges_failed_total{reason="rechallenged"}'] == 1
    assert metrics["sipedge_carrier_challenges_answered_total"] == 1


def test_401_without_credentials_is_a_failure_as_before(sipd_factory: Any) -> None:
    port = free_port()
    sipd = sipd_factory([gateway("gw1", port)])
    with uas("uas_reject", port, code="401", reason="Unauthorized"):
        result = call(sipd, "uac_expect_fail", expect_code="503")
    assert result.returncode == 0, result.stdout + sipd.log()
    (attempt,) = last_cdr(sipd)["attempts"]
    assert (attempt["result"], attempt["challenged"], attempt["auth_failure"]) == (
        "401",
        True,
        "no_credentials",
    )
