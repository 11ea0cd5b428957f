"""RFC 4475 torture messages against a running sipedge-sipd, inside a network namespace.

Every one of the 49 messages (../shared/testdata/rfc4475/) is sent from its own UDP socket to a
real sipd and the answer is compared with `EXPECTED`: what RFC 4475 section 3 says an element
should do, for sipd acting as a UAS (a B2BUA answers what it does not forward). Then a call
must still complete (SIPp caller -> sipd -> SIPp gateway) and the daemon must not have logged a
traceback.

Many messages' Vias name foreign hosts (192.0.2.x, example.com). sipd answers the source
address, but to be sure no reply ever leaves the machine the whole test runs inside a fresh
network namespace with only loopback: `test_rfc4475` re-runs this module under
`ip netns exec`, where `test_rfc4475_in_namespace` does the work.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, RFC4475, free_port, gateway, make_config, start_sipd
from tests.integration.test_b2bua import call, uas

pytestmark = [pytest.mark.root, pytest.mark.sipp]

TESTDATA = RFC4475
IN_NAMESPACE = "SIPEDGE_RFC4475_NETNS"

NONE = "no response"
REGISTRAR = "the registrar's answer"  # any final; no endpoints are configured
ROUTED = 404  # a valid INVITE: admitted (127.0.0.0/8 is a mapping gateway), no route for it

# message -> (expected status, or a set of them, or NONE / REGISTRAR; RFC 4475 section 3.x, why)
EXPECTED: dict[str, tuple[Any, str]] = {
    # 3.1.1 valid messages: processed as usual
    "wsinv": (481, "3.1.1 valid; its To has a tag, of no dialog of ours: 481"),
    "intmeth": ({405, 501}, "3.1.1 valid; an unknown method (NUL only as a quoted-pair)"),
    "esc01": (ROUTED, "3.1.1 valid; routing"),
    "escnull": (REGISTRAR, "3.1.1 valid REGISTER"),
    "esc02": ({405, 501}, "3.1.1 valid; an unknown method (RE%47IST%45R is not REGISTER)"),
    "lwsdisp": (200, "3.1.1 valid OPTIONS"),
    "longreq": (ROUTED, "3.1.1 valid; routing"),
    "dblreq": (REGISTRAR, "3.1.1 only the REGISTER is processed (the INVITE is its body)"),
    "semiuri": (200, "3.1.1 valid OPTIONS"),
    "transports": (200, "3.1.1 valid OPTIONS"),
    "mpart01": (405, "3.1.1 valid MESSAGE; the B2BUA does not take MESSAGE"),
    "unreason": (NONE, "3.1.1 a valid response, to nothing of ours"),
    "noreason": (NONE, "3.1.1 a valid response, to nothing of ours"),
    # 3.1.2 invalid messages
    "badinv01": (400, "3.1.2 empty Via and Contact parameters"),
    "clerr": (400, "3.1.2 Content-Length larger than the message"),
    "scalar02": (400, "3.1.2 CSeq, Max-Forwards and Expires out of range"),
    "scalarlg": (NONE, "3.1.2 an invalid response: dropped"),
    "quotbal": (400, "3.1.2 unbalanced quotes in To"),
    "ltgtruri": (400, "3.1.2 Request-URI in <>"),
    "lwsruri": (400, "3.1.2 LWS in the Request-URI"),
    "lwsstart": (400, "3.1.2 several SP in the request line"),
    "trws": (400, "3.1.2 trailing SP after SIP/2.0 (sipd is strict: 400)"),
    "escruri": (400, "3.1.2 escaped headers in the Request-URI"),
    "baddate": (ROUTED, "3.1.2 a bad Date is no reason to refuse; routing"),
    "regbadct": (400, "3.1.2 a Contact URI with ? outside <>"),
    "badaspec": (400, "3.1.2 spaces inside <> in To"),
    "baddn": (400, "3.1.2 unquoted display name with a comma"),
    "badvers": (505, "3.1.2 SIP/7.0"),
    "mismatch01": (400, "3.1.2 CSeq method is not the request method"),
    "mismatch02": ({400, 501}, "3.1.2 unknown method and CSeq mismatch"),
    "bigcode": (NONE, "3.1.2 status code out of range: a response, dropped"),
    # 3.2 transaction layer
    "badbranch": (200, "3.2 branch is only the magic cookie: still a request"),
    # 3.3 application layer
    "insuf": (400, "3.3 missing Call-ID, From, To"),
    "unkscm": (416, "3.3 unknown Request-URI scheme"),
    "novelsc": (416, "3.3 unknown Request-URI scheme (soap.beep)"),
    "unksm2": (REGISTRAR, "3.3 unknown schemes in To/From/Contact: the registrar decides"),
    "bext01": (420, "3.3 Require of unknown extensions: 420 with Unsupported"),
    "invut": (415, "3.3 INVITE body of an unknown type: 415 with Accept"),
    "regaut01": (REGISTRAR, "3.3 REGISTER with an unknown auth scheme"),
    "multi01": (400, "3.3 multiple values in single-value headers"),
    "mcl01": (400, "3.3 two Content-Length headers"),
    "bcast": (NONE, "3.3 a response with a broadcast Via, to nothing of ours"),
    "zeromf": (200, "3.3 Max-Forwards 0 on OPTIONS: a UAS answers it (483 is a proxy's)"),
    "cparam01": (REGISTRAR, "3.3 valid REGISTER, Contact parameters"),
    "cparam02": (REGISTRAR, "3.3 valid REGISTER, Contact parameters"),
    "regescrt": (REGISTRAR, "3.3 valid REGISTER, escaped header in the Contact URI"),
    "sdp01": (ROUTED, "3.3 Accept without SDP: the UAS behind us would say 406; routing"),
    "inv2543": (ROUTED, "3.3 an RFC 2543 INVITE is still served; routing"),
    "ncl": (400, "3.1.2 negative Content-Length"),
}


def send_and_wait(target: tuple[str, int], data: bytes, timeout: float) -> list[bytes]:
    """Send one datagram from a fresh socket; everything that comes back within `timeout`."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.sendto(data, target)
        sock.settimeout(timeout)
        got: list[bytes] = []
        try:
            while True:
                got.append(sock.recv(65535))
                sock.settimeout(0.2)  # a 100 may precede the final
        except TimeoutError:
            return got


def status_of(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


def test_table_covers_every_message() -> None:
    assert TESTDATA.is_dir(), f"{TESTDATA} is missing (a failure, not a skip)"
    names = sorted(p.stem for p in TESTDATA.glob("*.dat"))
    assert len(names) == 49 and names == sorted(EXPECTED)


def test_rfc4475() -> None:
    """Runs test_rfc4475_in_namespace under `ip netns exec` in a namespace with only lo."""
    if os.environ.get(IN_NAMESPACE):
        pytest.skip("already inside the namespace")
    ns = f"sipedge-rfc4475-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        test = f"{Path(__file__).relative_to(REPO)}::test_rfc4475_in_namespace"
        env = {**os.environ, IN_NAMESPACE: "1"}
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", test]
        res = subprocess.run(
            ["ip", "netns", "exec", ns, *cmd],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert res.returncode == 0 and " passed" in res.stdout, res.stdout + res.stderr
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)


def test_rfc4475_in_namespace(tmp_path: Path) -> None:
    if not os.environ.get(IN_NAMESPACE):
        pytest.skip("runs only under `ip netns exec` (test_rfc4475 does that)")
    assert sorted(os.listdir("/sys/class/net")) == ["lo"], "not an isolated namespace"
    gw_port = free_port()
    config = make_config(
        tmp_path,
        free_port(),
        free_port(),
        [gateway("gw1", gw_port)],
        routes=[{"prefix": "4420", "gateways": ["gw1"]}],
    )
    sipd = start_sipd(tmp_path, config)
    try:
        target = ("127.0.0.1", sipd.sip_port)
        wrong: list[str] = []
        for path in sorted(TESTDATA.glob("*.dat")):
            expected, why = EXPECTED[path.stem]
            got = send_and_wait(target, path.read_bytes(), 1.0 if expected == NONE else 3.0)
            finals = [status_of(d) for d in got if status_of(d) >= 200]
            provisional = [status_of(d) for d in got if status_of(d) < 200]
            if expected == NONE:
                ok = got == []
            elif expected == REGISTRAR:
                ok = len(set(finals)) == 1
            else:
                allowed = expected if isinstance(expected, set) else {expected}
                ok = len(set(finals)) == 1 and finals[0] in allowed
                # a refusal goes out alone: no 100 before it
                ok = ok and (provisional == [] or finals[0] == ROUTED)
            if not ok:
                wrong.append(f"{path.stem}: expected {expected} ({why}), got {finals or got}")
        assert not wrong, "\n".join(wrong) + "\n" + sipd.log()[-3000:]

        # A call still completes afterwards.
        with uas("uas_answer", gw_port) as gw:
            result = call(sipd, "uac_basic", number="4420001", hold="300")
            gw_result = gw.wait(20)
        assert result.returncode == 0, result.stdout + sipd.log()
        assert gw_result.returncode == 0
        assert sipd.alive()
        assert "Traceback" not in sipd.log()
    finally:
        sipd.stop()
