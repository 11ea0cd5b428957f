"""Authentication toward carriers end to end: SIPp caller -> sipedge-sipd -> a SIPp carrier that
challenges the INVITE with digest (docs/call-control.md, "Authentication toward carriers").

The carrier (tests/sipp/scenarios/uas_auth_answer.xml) answers the first INVITE with 401 or
407, expects the INVITE again with credentials and checks them (SIPp's verifyauth for
Authorization; the trace and an independent MD5 for Proxy-Authorization), then answers 200 or
challenges a second time.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.bench.kamailio_cps import kamailio_globals, kamailio_modules
from tests.conftest import BIN, free_port, gateway, make_config
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


def challenged_call(
    sipd: Any, port: int, **keys: str
) -> tuple[SippResult, SippMessage, SippMessage]:
    """A call through sipd to the challenging carrier at `port` that completes: the carrier's
    result and the two INVITEs it received (the second checked as a resend of the first)."""
    with uas("uas_auth_answer", port, **keys) as carrier:
        result = call(sipd, "uac_basic", hold="300")
        carrier_result = carrier.wait(20)
    assert result.returncode == 0, result.stdout + sipd.log()
    assert carrier_result.returncode == 0, carrier_result.stdout
    first, second = invites(carrier_result)
    assert_resent(first, second)
    return carrier_result, first, second


def test_401_answered_with_credentials_from_a_password_file(
    sipd_factory: Any, tmp_path: Path
) -> None:
    port = free_port()
    secret = tmp_path / "carrier.pw"
    secret.write_text(PASSWORD + "\n")
    sipd = sipd_factory([gateway("gw1", port, auth_user="edge", auth_password_file=str(secret))])
    carrier_result, first, second = challenged_call(sipd, port, password=PASSWORD)
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
    _, _, second = challenged_call(sipd, port, **keys)
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


# -- Kamailio as the carrier: a real proxy challenging with SHA-256 (auth module) ---------------


def kamailio_carrier_config(port: int, uas_port: int, algorithm: str, modules: Path) -> str:
    """A carrier's edge proxy: every new INVITE must carry Proxy-Authorization for user `edge`
    (pv_proxy_authenticate against a fixed password, no database), else 407 with an
    `algorithm` challenge (qop=auth); authorized calls are relayed to the SIPp UAS."""
    return f"""#!KAMAILIO
{kamailio_globals(port, children=1, debug=2)}
mpath="{modules}/"
loadmodule "pv.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "auth.so"
loadmodule "xlog.so"
modparam("auth", "algorithm", "{algorithm}")
modparam("auth", "qop", "auth")
modparam("auth", "secret", "{os.urandom(16).hex()}")

request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (is_method("OPTIONS") && !has_totag()) {{ sl_send_reply("200", "OK"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
        sl_send_reply("404", "Not Here");
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if (is_method("INVITE")) {{
        if (!pv_proxy_authenticate("carrier", "{PASSWORD}", "0")) {{
            xlog("L_INFO", "carrier: challenging $ci (auth result $rc)\\n");
            proxy_challenge("carrier", "1");
            exit;
        }}
        if ($au != "edge") {{ sl_send_reply("403", "Wrong User"); exit; }}
        xlog("L_INFO", "carrier: authorized $ci as $au\\n");
        consume_credentials();
        record_route();
    }}
    $du = "sip:127.0.0.1:{uas_port}";
    if (!t_relay()) {{ sl_reply_error(); }}
    exit;
}}
"""


@pytest.fixture
def kamailio_carrier(tmp_path: Path) -> Iterator[Callable[[str, int], int]]:
    """Starts Kamailio on a free port of 127.0.0.1 (traffic on loopback only) as a carrier
    relaying to the UAS at the given port; returns its SIP port."""
    if shutil.which("kamailio") is None:
        pytest.skip("kamailio not installed (make setup installs it)")
    procs: list[subprocess.Popen[bytes]] = []

    def start(algorithm: str, uas_port: int) -> int:
        port = free_port()
        work = tmp_path / f"kamailio-{port}"
        work.mkdir()
        config = work / "kamailio.cfg"
        config.write_text(kamailio_carrier_config(port, uas_port, algorithm, kamailio_modules()))
        argv = ["kamailio", "-DD", "-E", "-f", str(config), "-m", "32", "-M", "8"]
        argv += ["-Y", str(work), "-P", str(work / "kamailio.pid")]
        with (work / "kamailio.log").open("wb") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        procs.append(proc)
        options = (
            f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-probe;rport\r\n"
            "From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1>\r\n"
            "Call-ID: probe\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        deadline = time.monotonic() + 15
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.settimeout(0.2)
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError((work / "kamailio.log").read_text(errors="replace"))
                probe.sendto(options, ("127.0.0.1", port))
                try:
                    if probe.recv(4096).startswith(b"SIP/2.0 200"):
                        return port
                except TimeoutError:
                    continue
        raise RuntimeError("kamailio did not answer OPTIONS")

    yield start
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_kamailio_carrier_challenge_answered(
    sipd_factory: Any, kamailio_carrier: Callable[[str, int], int], algorithm: str
) -> None:
    uas_port = free_port()
    carrier_port = kamailio_carrier(algorithm, uas_port)
    sipd = sipd_factory([gateway("gw1", carrier_port, auth_user="edge", auth_password=PASSWORD)])
    with uas("uas_answer", uas_port) as far_end:
        result = call(sipd, "uac_basic", hold="300")
        far_result = far_end.wait(20)
    assert result.returncode == 0, result.stdout + sipd.log()
    assert far_result.returncode == 0
    # Kamailio consumed our credentials: the far end saw none
    (invite,) = invites(far_result)
    assert invite.header("Proxy-Authorization") is None
    (attempt,) = last_cdr(sipd)["attempts"]
    assert (attempt["result"], attempt["challenged"], attempt["auth_algorithm"]) == (
        "answered",
        True,
        algorithm,
    )


def test_sipd_refuses_to_start_without_its_password_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.password"
    gw = gateway("gw1", free_port(), auth_user="edge", auth_password_file=str(missing))
    config = make_config(tmp_path, free_port(), free_port(socket.SOCK_STREAM), [gw])
    path = tmp_path / "sipd.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run(
        [str(BIN / "sipedge-sipd"), "--config", str(path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"routing_gateways[0].auth_password_file: cannot read {missing}" in proc.stderr
