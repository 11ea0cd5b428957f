"""SIP over TCP end to end (RFC 3261 section 18): SIPp callers and gateways on loopback.

SIPp over TCP (`-t t1`: one connection) as caller and as gateway, a real sipd between them:
TCP caller -> TCP gateway, UDP caller -> TCP gateway, TCP caller -> UDP gateway; what went
over the wire (Via, Contact, Request-URI) and what the CDR and /metrics say.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import free_port, gateway
from tests.sip_peer import Peer
from tests.sipp.harness import Sipp, SippResult, scenario_path

pytestmark = [pytest.mark.sipp, pytest.mark.slow]


def tcp_port() -> int:
    return free_port(socket.SOCK_STREAM)


def caller(
    sipd: Any, remote: str, transport: str, scenario: str = "uac_basic", **keys: str
) -> SippResult:
    sipp = Sipp(
        scenario,
        port=free_port(socket.SOCK_STREAM if transport == "t1" else socket.SOCK_DGRAM),
        remote=remote,
        calls=1,
        timeout=30,
        service="4420001",
        transport=transport,
        keys={"hold": "300", **keys},
    )
    sipp.start()
    return sipp.wait(40)


def test_tcp_caller_to_tcp_gateway(sipd_factory: Any) -> None:
    gw_port, listen = tcp_port(), tcp_port()
    sipd = sipd_factory(
        [gateway("gw-tcp", gw_port, transport="tcp")], listen=[f"tcp://127.0.0.1:{listen}"]
    )
    assert f"tcp 127.0.0.1:{listen}" in sipd.log()  # the start-up log names every listener
    with Sipp("uas_answer", port=gw_port, calls=1, timeout=30, transport="t1") as gw:
        result = caller(sipd, f"127.0.0.1:{listen}", "t1")
        gw_result = gw.wait(20)
    assert result.returncode == 0, result.stdout + sipd.log()
    assert gw_result.returncode == 0, gw_result.stdout + sipd.log()
    cdr = sipd.cdrs(wait_for=1)[0]
    assert cdr["answer_time"] is not None and cdr["routing_gateway"] == "gw-tcp"
    invite = next(m for m in gw_result.messages if m.first_line.startswith("INVITE"))
    assert invite.header("Via").startswith(f"SIP/2.0/TCP 127.0.0.1:{listen};")
    assert f"127.0.0.1:{listen};transport=tcp>" in invite.header("Contact")
    assert invite.first_line.split()[1].endswith(";transport=tcp")
    # the caller's responses came back over its own connection, with a TCP Contact
    ok = next(m for m in result.messages if m.first_line.startswith("SIP/2.0 200"))
    assert f"127.0.0.1:{listen};transport=tcp>" in ok.header("Contact")
    metrics = sipd.metrics()
    assert metrics['sipedge_sip_connections_accepted_total{transport="tcp"}'] >= 1
    assert metrics['sipedge_sip_connections_made_total{transport="tcp"}'] == 1
    assert metrics['sipedge_sip_listeners{transport="tcp"}'] == 1


def test_udp_caller_to_tcp_gateway_and_back(sipd_factory: Any) -> None:
    gw_port, listen = tcp_port(), tcp_port()
    sipd = sipd_factory(
        [gateway("gw-tcp", gw_port, transport="tcp")], listen=[f"tcp://127.0.0.1:{listen}"]
    )
    with Sipp("uas_answer_then_bye", port=gw_port, calls=1, timeout=30, transport="t1") as gw:
        result = caller(sipd, sipd.sip_target, "u1", "uac_callee_bye")
        gw_result = gw.wait(20)
    assert gw_result.returncode == 0, gw_result.stdout + sipd.log()
    assert result.returncode == 0, result.stdout + sipd.log()
    cdr = sipd.cdrs(wait_for=1)[0]
    assert cdr["answer_time"] is not None, sipd.log()
    assert cdr["release_side"] == "callee"  # the gateway's BYE came over TCP, went on by UDP


def test_tcp_caller_to_udp_gateway(sipd_factory: Any) -> None:
    gw_port, listen = free_port(), tcp_port()
    sipd = sipd_factory([gateway("gw-udp", gw_port)], listen=[f"tcp://127.0.0.1:{listen}"])
    with Sipp("uas_answer", port=gw_port, calls=1, timeout=30) as gw:
        result = caller(sipd, f"127.0.0.1:{listen}", "t1")
        gw_result = gw.wait(20)
    assert result.returncode == 0, result.stdout + sipd.log()
    assert gw_result.returncode == 0
    invite = next(m for m in gw_result.messages if m.first_line.startswith("INVITE"))
    assert invite.header("Via").startswith("SIP/2.0/UDP ")


def test_dead_tcp_gateway_fails_over_at_once(sipd_factory: Any) -> None:
    dead, alive, listen = tcp_port(), free_port(), tcp_port()
    sipd = sipd_factory(
        [gateway("gw-dead", dead, transport="tcp"), gateway("gw-alive", alive)],
        listen=[f"tcp://127.0.0.1:{listen}"],
    )
    with Sipp("uas_answer", port=alive, calls=1, timeout=30) as gw:
        result = caller(sipd, sipd.sip_target, "u1")
        gw.wait(20)
    assert result.returncode == 0, result.stdout + sipd.log()
    cdr = sipd.cdrs(wait_for=1)[0]
    first, second = cdr["attempts"]
    assert first["gateway"] == "gw-dead"
    assert first["result"] == "transport: connect-failed"
    assert first["end"] - first["start"] < 1.0  # at once, not after the INVITE timeout
    assert second["result"] == "answered"


def test_pooled_connection_is_reused_and_made_again_when_it_closes(sipd_factory: Any) -> None:
    gw_port, listen = tcp_port(), tcp_port()
    with Peer(transport="tcp") as gw:
        gw.serve(gw_port, None)
        sipd = sipd_factory(
            [gateway("gw-tcp", gw_port, transport="tcp")], listen=[f"tcp://127.0.0.1:{listen}"]
        )
        for _ in range(2):
            assert caller(sipd, sipd.sip_target, "u1").returncode == 0, sipd.log()
        assert gw.connections == 1  # one pooled connection carried both calls
        gw.drop()
        time.sleep(0.3)
        assert caller(sipd, sipd.sip_target, "u1").returncode == 0, sipd.log()
        assert gw.connections == 2
    metrics = sipd.metrics()
    assert metrics['sipedge_sip_connections_made_total{transport="tcp"}'] == 2
    assert [c["routing_gateway"] for c in sipd.cdrs(wait_for=3)] == ["gw-tcp"] * 3


def test_a_connection_lost_during_setup_fails_over_at_once(sipd_factory: Any) -> None:
    bad_port, good_port, listen = tcp_port(), free_port(), tcp_port()
    with (
        Peer(transport="tcp", close_on_invite=True) as bad,
        Sipp("uas_answer", port=good_port, calls=1, timeout=30) as good,
    ):
        bad.serve(bad_port, None)
        sipd = sipd_factory(
            [gateway("gw-closes", bad_port, transport="tcp"), gateway("gw-good", good_port)],
            listen=[f"tcp://127.0.0.1:{listen}"],
        )
        result = caller(sipd, sipd.sip_target, "u1")
        good.wait(20)
    assert result.returncode == 0, result.stdout + sipd.log()
    first, second = sipd.cdrs(wait_for=1)[0]["attempts"]
    assert (first["gateway"], first["result"]) == ("gw-closes", "transport: connection-closed")
    assert first["end"] - first["start"] < 1.0
    assert second["result"] == "answered"


def test_every_udp_listener_is_served_and_answers_from_itself(sipd_factory: Any) -> None:
    second = free_port()
    sipd = sipd_factory([gateway("gw", free_port())], listen=[f"udp://127.0.0.1:{second}"])
    assert f"udp 127.0.0.1:{second}" in sipd.log()
    request = (
        b"OPTIONS sip:probe@127.0.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKsecond;rport\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:p@127.0.0.1>;tag=1\r\nTo: <sip:probe@127.0.0.1>\r\n"
        b"Call-ID: second-udp\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(request, ("127.0.0.1", second))
        data, source = sock.recvfrom(65536)
    assert data.startswith(b"SIP/2.0 200") and source == ("127.0.0.1", second)
    assert sipd.metrics()['sipedge_sip_listeners{transport="udp"}'] == 2


def test_a_large_request_to_a_peer_that_takes_tcp_goes_over_tcp(
    sipd_factory: Any, tmp_path: Path
) -> None:
    """RFC 3261 18.1.1: the INVITE to a gateway configured udp is over 1300 bytes, and the same
    address and port are configured as a tcp gateway too: it goes over TCP."""
    gw_port, listen = tcp_port(), tcp_port()
    sipd = sipd_factory(
        [gateway("gw-udp", gw_port), gateway("gw-tcp", gw_port, transport="tcp")],
        listen=[f"tcp://127.0.0.1:{listen}"],
        routes=[{"prefix": "", "gateways": ["gw-udp"]}],
    )
    scenario = tmp_path / "uac_big.xml"
    text = scenario_path("uac_basic").read_text(encoding="latin-1")
    scenario.write_text(text.replace("Subject: sipedge test", "Subject: " + "x" * 1200))
    with Sipp("uas_answer", port=gw_port, calls=1, timeout=30, transport="t1") as gw:
        sipp = Sipp(scenario, port=free_port(), remote=sipd.sip_target, calls=1, timeout=30)
        sipp.start()
        result = sipp.wait(40)
        gw_result = gw.wait(20)
    assert result.returncode == 0, result.stdout + sipd.log()
    assert gw_result.returncode == 0, gw_result.stdout + sipd.log()
    invite = next(m for m in gw_result.messages if m.first_line.startswith("INVITE"))
    assert invite.header("Via").startswith(f"SIP/2.0/TCP 127.0.0.1:{listen};")
    assert sipd.metrics()["sipedge_sip_mtu_moved_to_tcp_total"] >= 1


def test_a_response_after_the_connection_closed_goes_to_the_via_sent_by(
    sipd_factory: Any,
) -> None:
    """RFC 3261 18.2.2: the caller's connection has gone when the final is ready, so sipd
    opens one to the Via's received address and sent-by port and sends it there."""
    gw_port, listen = free_port(), tcp_port()
    sipd_factory([gateway("gw", gw_port)], listen=[f"tcp://127.0.0.1:{listen}"])
    back = socket.socket()
    back.bind(("127.0.0.1", 0))
    back.listen(1)
    back.settimeout(10)
    sent_by = back.getsockname()[1]
    body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    body += b"m=audio 40002 RTP/AVP 0\r\n"
    invite = (
        "INVITE sip:4420001@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 127.0.0.1:{sent_by};branch=z9hG4bKgone\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=gone1\r\n"
        "To: <sip:4420001@127.0.0.1>\r\nCall-ID: gone-connection\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:caller@127.0.0.1:{sent_by};transport=tcp>\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    # the gateway: 183 with SDP, then 486 1.5 s later, when the caller's connection has gone
    keys = {"delay": "1500", "code": "486", "reason": "Busy"}
    with Sipp("uas_183_sdp_then_fail", port=gw_port, calls=1, timeout=30, keys=keys) as gw:
        with socket.create_connection(("127.0.0.1", listen), timeout=5) as first:
            first.sendall(invite)
            assert first.recv(65536).startswith(b"SIP/2.0 100")
        conn, _ = back.accept()  # sipd connects back to deliver what follows
        data = b""
        with conn:
            conn.settimeout(10)
            while b"SIP/2.0 486" not in data:
                chunk = conn.recv(65536)
                assert chunk, data
                data += chunk
        gw.wait(20)
    back.close()
    assert b"branch=z9hG4bKgone" in data


def test_a_reload_that_adds_a_tcp_gateway_says_it_needs_a_restart(sipd_factory: Any) -> None:
    sipd = sipd_factory([gateway("gw", free_port())])
    config = yaml.safe_load(sipd.config_path.read_text())
    config["sip"]["listen"].append(f"tcp://127.0.0.1:{tcp_port()}")
    config["routing_gateways"].append(gateway("gw-tcp", tcp_port(), transport="tcp"))
    sipd.rewrite_config(config)
    answer = sipd.api("/api/config/reload", method="POST", body=b"")
    assert "routing gateways over tcp need a restart" in str(answer), answer
    assert "changes to sip take effect at the next restart" in str(answer)
