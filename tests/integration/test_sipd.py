"""sipedge-sipd as a process: malformed input, OPTIONS, API auth, reload, shutdown, CLI."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import BIN, REPO, free_port, gateway, make_config, start_sipd
from tests.sipp.harness import Sipp


def udp_exchange(target: int, payload: bytes, wait: float = 1.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(wait)
        s.sendto(payload, ("127.0.0.1", target))
        try:
            return s.recvfrom(65535)[0]
        except TimeoutError:
            return None


def options(branch: str = "z9hG4bKopt1", extra: str = "", port: int = 5999) -> bytes:
    return (
        f"OPTIONS sip:edge@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch};rport\r\n"
        "From: <sip:probe@127.0.0.1>;tag=p1\r\n"
        "To: <sip:edge@127.0.0.1>\r\n"
        f"Call-ID: {branch}@probe\r\n"
        "CSeq: 1 OPTIONS\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def start_caller(sipd: Any, scenario: str, keys: dict[str, str] | None = None) -> Sipp:
    """A SIPp caller dialling 1000 through the daemon, already started."""
    caller = Sipp(
        scenario,
        port=free_port(),
        remote=sipd.sip_target,
        calls=1,
        timeout=20,
        service="1000",
        keys=keys or {},
    )
    caller.start()
    return caller


def test_options_answered_200(sipd_factory: Any) -> None:
    sipd = sipd_factory([gateway("gw1", free_port())])
    reply = udp_exchange(sipd.sip_port, options())
    assert reply is not None and reply.startswith(b"SIP/2.0 200 OK")
    assert b"Allow:" in reply and b"received=127.0.0.1" in reply and b"rport=" in reply


MALFORMED = [
    b"",
    b"\r\n\r\n",
    b"\x00\xff\xfe garbage \x01\x02",
    b"INVITE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4",  # truncated
    # bad Content-Length (claims more than there is)
    options().replace(b"Content-Length: 0", b"Content-Length: 500"),
    # missing Call-ID / CSeq / From / To / Via
    options().replace(b"Call-ID: z9hG4bKopt1@probe\r\n", b""),
    options().replace(b"CSeq: 1 OPTIONS\r\n", b""),
    options().replace(b"From: <sip:probe@127.0.0.1>;tag=p1\r\n", b""),
    options().replace(b"To: <sip:edge@127.0.0.1>\r\n", b""),
    options().replace(b"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKopt1;rport\r\n", b""),
    b"SIP/2.0 abc Not A Status\r\n\r\n",
    b"NOTSIP / HTTP/1.1\r\nHost: x\r\n\r\n",
    bytes(random.Random(7).getrandbits(8) for _ in range(65000)),
    b"OPTIONS sip:x SIP/2.0\r\n" + b"X-Long: " + b"a" * 64000 + b"\r\n\r\n",
]


@pytest.mark.sipp
def test_malformed_input_is_answered_or_dropped_and_counted(sipd_factory: Any) -> None:
    port = free_port()
    sipd = sipd_factory([gateway("gw1", port)])
    before = sipd.metrics()
    answers = [udp_exchange(sipd.sip_port, payload, wait=0.3) for payload in MALFORMED]
    after = sipd.metrics()
    # answerable requests (bad Content-Length, missing Call-ID...) get 400 with a reason
    assert answers[4] is not None and answers[4].startswith(b"SIP/2.0 400 ")
    assert any(a is not None and a.startswith(b"SIP/2.0 400") for a in answers)
    for a in answers:
        assert a is None or a.startswith(b"SIP/2.0 400 "), a[:80]
    assert after["sipedge_sip_parse_errors_total"] - before["sipedge_sip_parse_errors_total"] >= 10
    assert after["sipedge_sip_dropped_total"] > before["sipedge_sip_dropped_total"]
    assert sipd.alive()
    # and it still serves calls
    with Sipp("uas_answer", port=port, calls=1, timeout=20):
        caller = start_caller(sipd, "uac_basic", {"hold": "100"})
        assert caller.wait(30).returncode == 0, sipd.log()


def test_api_token_required_when_configured(tmp_path: Path) -> None:
    sip_port, api_port = free_port(), free_port(socket.SOCK_STREAM)
    config = make_config(tmp_path, sip_port, api_port, [gateway("gw1", free_port())])
    config["api"]["token"] = "s3cret"
    sipd = start_sipd(tmp_path, config)
    try:
        assert sipd.api("/healthz")["status"] == "ok"  # health stays open
        sipd.token = None
        with pytest.raises(urllib.error.HTTPError) as err:
            sipd.api("/api/calls")
        assert err.value.code == 401
        sipd.token = "s3cret"
        assert sipd.api("/api/calls") == []
    finally:
        sipd.stop()


def test_reload_good_and_bad_config(sipd_factory: Any) -> None:
    port = free_port()
    sipd = sipd_factory([gateway("gw1", port)])
    config = yaml.safe_load(sipd.config_path.read_text())
    # a call in progress survives a reload
    with Sipp("uas_answer", port=port, calls=1, timeout=20) as gw:
        caller = start_caller(sipd, "uac_basic", {"hold": "1500"})
        time.sleep(0.7)
        assert len(sipd.api("/api/calls")) == 1
        config["parameters"]["SS_SIP_TIMEOUT_INVITE"] = 7
        sipd.rewrite_config(config)
        sipd.proc.send_signal(signal.SIGHUP)
        result = caller.wait(30)
        gw.wait(20)
    assert result.returncode == 0, sipd.log()
    assert sipd.metrics()["sipedge_config_reloads_total"] == 1
    # a bad file is refused with the field named; the daemon keeps running
    config["parameters"]["SS_SIP_TIMEOUT_INVITE"] = 0
    sipd.rewrite_config(config)
    with pytest.raises(urllib.error.HTTPError) as err:
        sipd.api("/api/config/reload", method="POST", body=b"")
    assert err.value.code == 422
    assert b"SS_SIP_TIMEOUT_INVITE" in err.value.read()
    assert sipd.alive() and sipd.metrics()["sipedge_config_reload_failures_total"] == 1


@pytest.mark.sipp
def test_sigterm_ends_calls_and_writes_cdrs(sipd_factory: Any) -> None:
    port = free_port()
    sipd = sipd_factory([gateway("gw1", port)])
    with Sipp("uas_answer", port=port, calls=1, timeout=20) as gw:
        caller = start_caller(sipd, "uac_callee_bye")
        deadline = time.monotonic() + 5
        while not sipd.api("/api/calls") and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
        assert sipd.stop() == 0
        result = caller.wait(20)
        gw.stop()
    assert result.returncode == 0  # the caller got our BYE and answered it
    out = subprocess.run(
        [str(BIN / "sipedge"), "cdr", "--storage", str(sipd.config_path.parent / "state")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "shutdown" in out.stdout and "gw1" in out.stdout


def test_check_config_cli(tmp_path: Path) -> None:
    good = subprocess.run(
        [str(BIN / "sipedge"), "check-config", str(REPO / "daemons/conf/sipedge.example.yaml")],
        capture_output=True,
        text=True,
    )
    assert good.returncode == 0, good.stderr
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text("routes:\n  - prefix: '44'\n    gateways: [nowhere]\n")
    bad = subprocess.run(
        [str(BIN / "sipedge"), "check-config", str(bad_file)], capture_output=True, text=True
    )
    assert bad.returncode != 0 and "nowhere" in bad.stderr
    missing = subprocess.run(
        [str(BIN / "sipedge"), "check-config", os.path.join(tmp_path, "absent.yaml")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode != 0


def test_sipd_refuses_a_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("parameters:\n  SS_SIP_TIMEOUT_INVITE: 999\n")
    proc = subprocess.run(
        [sys.executable, "-m", "sipedge.sipd", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 2
    assert "SS_SIP_TIMEOUT_INVITE" in proc.stderr and "999" in proc.stderr


@pytest.mark.sipp
def test_crash_after_a_call_loses_no_cdr(sipd_factory: Any) -> None:
    port = free_port()
    sipd = sipd_factory([gateway("gw1", port)])
    with Sipp("uas_answer", port=port, calls=1, timeout=20):
        caller = start_caller(sipd, "uac_basic", {"hold": "100"})
        assert caller.wait(30).returncode == 0, sipd.log()
    sipd.proc.kill()  # SIGKILL: no shutdown path runs
    sipd.proc.wait()
    out = subprocess.run(
        [
            str(BIN / "sipedge"),
            "cdr",
            "--json",
            "--storage",
            str(sipd.config_path.parent / "state"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    records = json.loads(out.stdout)
    assert len(records) == 1 and records[0]["cause"] == "normal clearing"
