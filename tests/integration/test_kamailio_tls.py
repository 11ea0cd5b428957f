"""Kamailio as a TLS carrier: sipd -> TLS -> Kamailio (Debian's, tls module) -> UDP -> SIPp.

A real TLS stack that is not Python's on the far side: sipd verifies Kamailio's certificate
(our test CA, the name carrier.test), the call is answered by a SIPp UAS behind Kamailio and
hung up by the caller; the CDR and the INVITE Kamailio relayed say what went over the wire.
Kamailio runs in the foreground on loopback ports of its own, from a config generated here.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, gateway
from tests.integration.test_transports_tls import udp_call
from tests.sip_peer import issue, make_ca
from tests.sipp.harness import Sipp

pytestmark = [pytest.mark.sipp, pytest.mark.slow]

KAMAILIO = shutil.which("kamailio") or "/usr/sbin/kamailio"
MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")

CONFIG = """#!KAMAILIO
debug=2
log_stderror=yes
children=1
tcp_children=1
enable_tls=yes
listen=udp:127.0.0.1:{udp}
listen=tls:127.0.0.1:{tls}
mpath="{modules}/"
loadmodule "tls.so"
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "maxfwd.so"
loadmodule "pv.so"
loadmodule "textops.so"
modparam("tls", "certificate", "{cert}")
modparam("tls", "private_key", "{key}")
modparam("tls", "tls_method", "TLSv1.2+")
modparam("tls", "verify_certificate", 0)
modparam("tls", "require_certificate", 0)
request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    $du = "sip:127.0.0.1:{uas};transport=udp";
    if (is_method("ACK") && !t_check_trans()) {{ forward(); exit; }}
    t_relay();
}}
"""


def wait_for_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


@pytest.mark.skipif(not (MODULES / "tls.so").exists(), reason="kamailio-tls-modules missing")
def test_call_through_kamailio_over_tls(sipd_factory: Any, tmp_path: Path) -> None:
    ca = make_ca(tmp_path, "carrier")
    cert = issue(tmp_path, "kamailio", ca, ("carrier.test",))
    ours = issue(tmp_path, "sipd", ca, ("127.0.0.1",))
    kam_udp, kam_tls = free_port(), free_port(socket.SOCK_STREAM)
    uas_port, listen = free_port(), free_port(socket.SOCK_STREAM)
    config = tmp_path / "kamailio.cfg"
    config.write_text(
        CONFIG.format(
            udp=kam_udp,
            tls=kam_tls,
            modules=MODULES,
            cert=cert.cert,
            key=cert.key,
            uas=uas_port,
        )
    )
    run = tmp_path / "run"
    run.mkdir()
    log = (tmp_path / "kamailio.log").open("wb")
    kamailio = subprocess.Popen(
        [KAMAILIO, "-DD", "-E", "-f", str(config), "-Y", str(run), "-P", str(run / "k.pid")],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(kam_tls)
        sipd = sipd_factory(
            [
                gateway(
                    "carrier",
                    kam_tls,
                    transport="tls",
                    tls_ca=str(ca.path),
                    tls_server_name="carrier.test",
                )
            ],
            listen=[f"tls://127.0.0.1:{listen}"],
            sip={"tls_cert": str(ours.cert), "tls_key": str(ours.key)},
        )
        with Sipp("uas_answer", port=uas_port, calls=1, timeout=30) as uas:
            result = udp_call(sipd)
            uas_result = uas.wait(20)
    finally:
        kamailio.terminate()
        try:
            kamailio.wait(10)
        except subprocess.TimeoutExpired:
            kamailio.kill()
            kamailio.wait()
        log.close()
    kam_log = (tmp_path / "kamailio.log").read_text(errors="replace")
    assert result.returncode == 0, result.stdout + sipd.log() + kam_log
    assert uas_result.returncode == 0, uas_result.stdout + kam_log
    cdr = sipd.cdrs(wait_for=1)[0]
    assert cdr["routing_gateway"] == "carrier" and cdr["answer_time"] is not None
    invite = next(m for m in uas_result.messages if m.first_line.startswith("INVITE"))
    # Kamailio's Via on top, ours (TLS, the listener's port) below it
    vias = [v.strip() for value in invite.headers("Via") for v in value.split(",")]
    assert vias[0].startswith("SIP/2.0/UDP 127.0.0.1:")
    assert vias[1].startswith(f"SIP/2.0/TLS 127.0.0.1:{listen};"), vias
    assert sipd.metrics()['sipedge_sip_connections_made_total{transport="tls"}'] == 1
