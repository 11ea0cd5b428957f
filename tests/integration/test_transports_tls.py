"""SIP over TLS end to end: a test CA, a TLS gateway and a TLS caller (tests/sip_peer.py).

A UDP caller (SIPp) reaches a TLS gateway and back; a gateway whose certificate does not
verify (another CA, another name, another pin) is refused and the call fails over to the next
gateway, the CDR saying why; a pinned self-signed gateway is accepted; a TLS caller reaches a
UDP gateway through a tls:// listener; a listener that verifies client certificates refuses a
client without one; a renewed certificate is served after a reload.
"""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import free_port, gateway
from tests.sip_peer import Issued, Peer, client_tls, issue, make_ca, server_tls
from tests.sipp.harness import Sipp, SippResult

pytestmark = [pytest.mark.sipp, pytest.mark.slow]


def tcp_port() -> int:
    return free_port(socket.SOCK_STREAM)


def udp_call(sipd: Any) -> SippResult:
    sipp = Sipp(
        "uac_basic",
        port=free_port(),
        remote=sipd.sip_target,
        calls=1,
        timeout=30,
        service="4420001",
        keys={"hold": "300"},
    )
    sipp.start()
    return sipp.wait(40)


def served_certificate(port: int) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Any]:
    ca = make_ca(tmp_path, "good")
    other = make_ca(tmp_path, "other")
    return {
        "ca": ca,
        "gw": issue(tmp_path, "gw", ca, ("127.0.0.1", "gw.test")),
        "foreign": issue(tmp_path, "foreign", other, ("127.0.0.1", "gw.test")),
        "self": issue(tmp_path, "self-signed", None, ("127.0.0.1",)),
        "sipd": issue(tmp_path, "sipd", ca, ("127.0.0.1",)),
        "client": issue(tmp_path, "client", ca, ("caller.test",)),
    }


def test_udp_caller_to_tls_gateway_and_back(sipd_factory: Any, pki: dict[str, Any]) -> None:
    gw_port, listen = tcp_port(), tcp_port()
    with Peer() as gw:
        gw.serve(gw_port, server_tls(pki["gw"]))
        sipd = sipd_factory(
            [
                gateway(
                    "gw-tls",
                    gw_port,
                    transport="tls",
                    tls_ca=str(pki["ca"].path),
                    tls_server_name="gw.test",
                )
            ],
            listen=[f"tls://127.0.0.1:{listen}"],
            sip={"tls_cert": str(pki["sipd"].cert), "tls_key": str(pki["sipd"].key)},
        )
        result = udp_call(sipd)
        assert result.returncode == 0, result.stdout + sipd.log()
        cdr = sipd.cdrs(wait_for=1)[0]
    assert cdr["routing_gateway"] == "gw-tls" and cdr["answer_time"] is not None
    methods = [m.method for m in gw.received if hasattr(m, "method")]
    assert methods == ["INVITE", "ACK", "BYE"], methods
    invite = gw.received[0]
    assert (invite.headers.get("Via") or "").startswith(f"SIP/2.0/TLS 127.0.0.1:{listen};")
    assert f"127.0.0.1:{listen};transport=tls>" in (invite.headers.get("Contact") or "")
    metrics = sipd.metrics()
    assert metrics['sipedge_sip_connections_made_total{transport="tls"}'] == 1


@pytest.mark.parametrize(
    ("cert", "settings", "reason"),
    [
        ("foreign", {"tls_server_name": "gw.test"}, "transport: tls-verify"),  # another CA
        ("gw", {"tls_server_name": "other.test"}, "transport: tls-verify"),  # another name
        ("gw", {"pin": "self"}, "transport: tls-pin"),  # not the pinned certificate
    ],
)
def test_a_gateway_that_does_not_verify_is_refused_and_the_call_fails_over(
    sipd_factory: Any, pki: dict[str, Any], cert: str, settings: dict[str, str], reason: str
) -> None:
    bad_port, good_port, listen = tcp_port(), free_port(), tcp_port()
    tls_settings: dict[str, str] = {"tls_ca": str(pki["ca"].path)}
    if "pin" in settings:
        tls_settings = {"tls_fingerprint": pki[settings["pin"]].fingerprint}
    else:
        tls_settings["tls_server_name"] = settings["tls_server_name"]
    with Peer() as bad, Sipp("uas_answer", port=good_port, calls=1, timeout=30) as good:
        bad.serve(bad_port, server_tls(pki[cert]))
        sipd = sipd_factory(
            [
                gateway("gw-bad", bad_port, transport="tls", **tls_settings),
                gateway("gw-good", good_port),
            ],
            listen=[f"tls://127.0.0.1:{listen}"],
            sip={"tls_cert": str(pki["sipd"].cert), "tls_key": str(pki["sipd"].key)},
        )
        result = udp_call(sipd)
        good.wait(20)
    assert result.returncode == 0, result.stdout + sipd.log()
    cdr = sipd.cdrs(wait_for=1)[0]
    first, second = cdr["attempts"]
    assert (first["gateway"], first["result"]) == ("gw-bad", reason), cdr
    assert (second["gateway"], second["result"]) == ("gw-good", "answered")
    assert not [m for m in bad.received if hasattr(m, "method")]  # nothing reached it
    metrics = sipd.metrics()
    label = "pin" if reason.endswith("pin") else "verify"
    name = f'sipedge_sip_tls_handshake_failures_total{{reason="{label}",side="client"}}'
    assert metrics[name] == 1


def test_a_pinned_self_signed_gateway_is_accepted(sipd_factory: Any, pki: dict[str, Any]) -> None:
    gw_port, listen = tcp_port(), tcp_port()
    with Peer() as gw:
        gw.serve(gw_port, server_tls(pki["self"]))
        sipd = sipd_factory(
            [gateway("gw-pin", gw_port, transport="tls", tls_fingerprint=pki["self"].fingerprint)],
            listen=[f"tls://127.0.0.1:{listen}"],
            sip={"tls_cert": str(pki["sipd"].cert), "tls_key": str(pki["sipd"].key)},
        )
        result = udp_call(sipd)
    assert result.returncode == 0, result.stdout + sipd.log()
    assert sipd.cdrs(wait_for=1)[0]["routing_gateway"] == "gw-pin"


def test_tls_caller_through_a_tls_listener(sipd_factory: Any, pki: dict[str, Any]) -> None:
    gw_port, listen = free_port(), tcp_port()
    with Sipp("uas_answer", port=gw_port, calls=1, timeout=30) as gw, Peer() as caller:
        sipd = sipd_factory(
            [gateway("gw-udp", gw_port)],
            listen=[f"tls://127.0.0.1:{listen}"],
            sip={"tls_cert": str(pki["sipd"].cert), "tls_key": str(pki["sipd"].key)},
        )
        responses = caller.call("127.0.0.1", listen, client_tls(pki["ca"].path))
        gw_result = gw.wait(20)
    assert gw_result.returncode == 0, gw_result.stdout + sipd.log()
    ok = next(r for r in responses if r.status == 200 and r.cseq[1] == "INVITE")
    assert f"127.0.0.1:{listen};transport=tls>" in (ok.headers.get("Contact") or "")
    assert any(r.status == 200 and r.cseq[1] == "BYE" for r in responses)
    cdr = sipd.cdrs(wait_for=1)[0]
    assert cdr["answer_time"] is not None and cdr["release_side"] == "caller"


def test_client_certificates_verified_on_a_listener(sipd_factory: Any, pki: dict[str, Any]) -> None:
    gw_port, listen = free_port(), tcp_port()
    listener = {
        "uri": f"tls://127.0.0.1:{listen}",
        "tls_cert": str(pki["sipd"].cert),
        "tls_key": str(pki["sipd"].key),
        "tls_ca": str(pki["ca"].path),
        "tls_verify_client": True,
    }
    with Sipp("uas_answer", port=gw_port, calls=1, timeout=30) as gw, Peer() as caller:
        sipd = sipd_factory([gateway("gw-udp", gw_port)], listen=[listener])
        with pytest.raises((ConnectionError, ssl.SSLError, TimeoutError)):
            caller.call("127.0.0.1", listen, client_tls(pki["ca"].path))  # no certificate
        responses = caller.call("127.0.0.1", listen, client_tls(pki["ca"].path, pki["client"]))
        gw.wait(20)
    assert any(r.status == 200 for r in responses), sipd.log()
    metrics = sipd.metrics()
    failures = [v for k, v in metrics.items() if k.startswith("sipedge_sip_tls_handshake_failures")]
    assert sum(failures) >= 1


def test_a_renewed_certificate_is_served_after_a_reload(
    sipd_factory: Any, pki: dict[str, Any], tmp_path: Path
) -> None:
    listen = tcp_port()
    cert, key = tmp_path / "live.crt", tmp_path / "live.key"
    first: Issued = pki["sipd"]
    cert.write_bytes(first.cert.read_bytes())
    key.write_bytes(first.key.read_bytes())
    sipd = sipd_factory(
        [gateway("gw", free_port())],
        listen=[f"tls://127.0.0.1:{listen}"],
        sip={"tls_cert": str(cert), "tls_key": str(key)},
    )
    assert served_certificate(listen) == first.der
    renewed = issue(tmp_path, "renewed", pki["ca"], ("127.0.0.1",))
    cert.write_bytes(renewed.cert.read_bytes())
    key.write_bytes(renewed.key.read_bytes())
    answer = sipd.api("/api/config/reload", method="POST")
    assert answer["ok"] is True and "kept" not in answer["message"], answer
    deadline = time.monotonic() + 5
    while served_certificate(listen) != renewed.der and time.monotonic() < deadline:
        time.sleep(0.1)
    assert served_certificate(listen) == renewed.der
    # a pair that does not load is refused; the running certificate stays
    key.write_bytes(pki["gw"].key.read_bytes())
    answer = sipd.api("/api/config/reload", method="POST")
    assert "kept the previous SIP TLS certificates" in answer["message"]
    assert served_certificate(listen) == renewed.der
    assert "kept the previous SIP TLS certificates" in sipd.log()
    assert yaml.safe_load(sipd.config_path.read_text())["sip"]["tls_cert"] == str(cert)
