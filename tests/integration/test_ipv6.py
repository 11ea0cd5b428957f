"""IPv6 end to end on loopback (docs/ipv6.md): SIPp over `-i ::1` as caller and as gateway.

sipd listens on 127.0.0.1 (the first UDP listener, as every test config has) and on [::1]:
an IPv6 caller reaches an IPv6 gateway over UDP and over TCP (`-t t1`), and a 4-to-6 call
(caller on 127.0.0.1, gateway on ::1) completes with each side seeing sipd's address of its
own family, in brackets where IPv6 (Via, Contact, Request-URI). Media anchoring is off in
those (no mediad: calls go unanchored), so the SDP passes as the parties wrote it; the last
test runs a real mediad with an IPv4 and an IPv6 relay address and checks the SDP families.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, gateway
from tests.media.netns import Mediad
from tests.sipp.harness import Sipp, SippResult, scenario_path

pytestmark = [pytest.mark.sipp, pytest.mark.slow]

MAPPING = ["127.0.0.0/8", "::1/128"]


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


if not _ipv6_loopback():  # pragma: no cover - the build machines have ::1
    pytest.skip("no IPv6 loopback (::1) on this host", allow_module_level=True)


def port6(kind: int = socket.SOCK_DGRAM) -> int:
    """`free_port` (free on 127.0.0.1, never handed out twice) that is also free on ::1 for
    UDP and TCP: the IPv6 peers and listeners bind there."""
    while True:
        port = free_port(kind)
        try:
            for sock_type in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                with socket.socket(socket.AF_INET6, sock_type) as s:
                    s.bind(("::1", port))
        except OSError:
            continue
        return port


def call(
    remote: str,
    local: str,
    transport: str = "u1",
    scenario: str = "uac_basic",
    service: str = "4420001",
) -> SippResult:
    kind = socket.SOCK_STREAM if transport == "t1" else socket.SOCK_DGRAM
    sipp = Sipp(
        scenario,
        local=local,
        port=port6(kind),
        remote=remote,
        calls=1,
        timeout=30,
        service=service,
        transport=transport,
        keys={"hold": "300"},
    )
    sipp.start()
    return sipp.wait(40)


def call_tcp_gateway(
    sipd: Any, gw_port: int, remote: str, local: str, transport: str, scenario: str = "uac_basic"
) -> tuple[SippResult, Any]:
    """A call (caller on `local`, over `transport`) to a SIPp gateway on ::1 over TCP: both
    complete; the caller's result and the INVITE the gateway received."""
    with Sipp("uas_answer", local="::1", port=gw_port, calls=1, timeout=30, transport="t1") as gw:
        result = call(remote, local, transport, scenario=scenario)
        gw_result = gw.wait(20)
    assert result.returncode == 0, result.stdout + sipd.log()
    assert gw_result.returncode == 0, gw_result.stdout + sipd.log()
    return result, first(gw_result, "INVITE")


def sipd_with_mediad(
    sipd_factory: Any, tmp: Path, gw_port: int, listen6: int, low: int, bind6: str | None
) -> tuple[Any, Mediad]:
    """sipd with a gateway on ::1 and an IPv6 listener, and a real mediad (userspace relay,
    not started) on its config: relay ports from `low` (a fixed range no other media test
    uses, tests/conftest.py FIXED_MEDIA_PORTS), an IPv6 relay address when `bind6`."""
    media: dict[str, Any] = {
        "control_socket": str(tmp / "mediad.sock"),
        "port_range": [low, low + 39],
        "fast_path": "userspace",
        "interfaces": ["lo"],
        "bind_address": "127.0.0.1",
        "refused_networks": [],
    }
    if bind6 is not None:
        media["bind_address_v6"] = bind6
    sipd = sipd_factory(
        [gateway("gw6", gw_port, address="::1")],
        listen=[f"udp://[::1]:{listen6}"],
        mapping_addresses=MAPPING,
        extra={"media": media},
    )
    mediad = Mediad(tmp / "mediad.sock", ["--config", str(sipd.config_path)], tmp / "mediad.log")
    return sipd, mediad


def first(result: SippResult, start: str) -> Any:
    return next(m for m in result.messages if m.first_line.startswith(start))


def test_ipv6_caller_to_ipv6_gateway_over_udp(sipd_factory: Any) -> None:
    gw_port, listen = port6(), port6()
    sipd = sipd_factory(
        [gateway("gw6", gw_port, address="::1")],
        listen=[f"udp://[::1]:{listen}"],
        mapping_addresses=MAPPING,
    )
    assert f"udp [::1]:{listen}" in sipd.log()  # the start-up log names every listener
    with Sipp("uas_answer", local="::1", port=gw_port, calls=1, timeout=30) as gw:
        result = call(f"[::1]:{listen}", "::1")
        gw_result = gw.wait(20)
    assert result.returncode == 0, result.stdout + sipd.log()
    assert gw_result.returncode == 0, gw_result.stdout + sipd.log()
    cdr = sipd.cdrs(wait_for=1)[0]
    assert cdr["answer_time"] is not None and cdr["routing_gateway"] == "gw6"
    assert cdr["source"].startswith("[::1]:")  # host:port, an IPv6 host in brackets
    invite = first(gw_result, "INVITE")
    assert invite.header("Via").startswith(f"SIP/2.0/UDP [::1]:{listen};")
    assert invite.header("Contact") == f"<sip:[::1]:{listen}>"
    assert invite.first_line.split()[1] == f"sip:4420001@[::1]:{gw_port}"
    assert "@[::1]" in invite.header("From")
    ok = first(result, "SIP/2.0 200")
    assert ok.header("Contact") == f"<sip:[::1]:{listen}>"
    assert "received=" not in ok.header("Via") or "received=[::1]" in ok.header("Via")


def test_ipv6_over_tcp(sipd_factory: Any) -> None:
    gw_port, listen = port6(socket.SOCK_STREAM), port6(socket.SOCK_STREAM)
    sipd = sipd_factory(
        [gateway("gw6-tcp", gw_port, address="::1", transport="tcp")],
        listen=[f"udp://[::1]:{port6()}", f"tcp://[::1]:{listen}"],
        mapping_addresses=MAPPING,
    )
    assert f"tcp [::1]:{listen}" in sipd.log()
    result, invite = call_tcp_gateway(sipd, gw_port, f"[::1]:{listen}", "::1", "t1")
    assert invite.header("Via").startswith(f"SIP/2.0/TCP [::1]:{listen};")
    assert invite.header("Contact") == f"<sip:[::1]:{listen};transport=tcp>"
    assert invite.first_line.split()[1] == f"sip:4420001@[::1]:{gw_port};transport=tcp"
    ok = first(result, "SIP/2.0 200")
    assert ok.header("Contact") == f"<sip:[::1]:{listen};transport=tcp>"
    assert sipd.cdrs(wait_for=1)[0]["answer_time"] is not None


def test_4_to_6_call_each_side_sees_its_family(sipd_factory: Any) -> None:
    """Caller on 127.0.0.1 to sipd's IPv4 listener, gateway on ::1: the INVITE leaves from
    the IPv6 listener with our IPv6 address, the caller's answers carry our IPv4 one."""
    gw_port, listen6 = port6(), port6()
    sipd = sipd_factory(
        [gateway("gw6", gw_port, address="::1")],
        listen=[f"udp://[::1]:{listen6}"],
        mapping_addresses=MAPPING,
    )
    with Sipp("uas_answer_then_bye", local="::1", port=gw_port, calls=1, timeout=30) as gw:
        result = call(sipd.sip_target, "127.0.0.1", scenario="uac_callee_bye")
        gw_result = gw.wait(20)
    assert result.returncode == 0, result.stdout + sipd.log()
    assert gw_result.returncode == 0, gw_result.stdout + sipd.log()
    invite = first(gw_result, "INVITE")
    assert invite.header("Via").startswith(f"SIP/2.0/UDP [::1]:{listen6};")
    assert invite.header("Contact") == f"<sip:[::1]:{listen6}>"
    ok = first(result, "SIP/2.0 200")
    assert ok.header("Contact") == f"<sip:127.0.0.1:{sipd.sip_port}>"
    # the gateway's BYE reached the caller as an IPv4 request from sipd's IPv4 listener
    bye = first(result, "BYE")
    assert bye.header("Via").startswith(f"SIP/2.0/UDP 127.0.0.1:{sipd.sip_port};")
    cdr = sipd.cdrs(wait_for=1)[0]
    assert cdr["answer_time"] is not None and cdr["routing_gateway"] == "gw6"


def test_4_to_6_sdp_carries_the_relay_address_of_each_family(
    sipd_factory: Any, tmp_path: Path
) -> None:
    """With a real mediad (userspace relay) that has an IPv4 and an IPv6 relay address: the
    IPv6 gateway's SDP says `c=IN IP6 ::1`, the IPv4 caller's `c=IN IP4 127.0.0.1`."""
    gw_port, listen6 = port6(), port6()
    sipd, mediad = sipd_with_mediad(sipd_factory, tmp_path, gw_port, listen6, 47600, "::1")
    mediad.start()
    try:
        with Sipp("uas_answer", local="::1", port=gw_port, calls=1, timeout=30) as gw:
            result = call(sipd.sip_target, "127.0.0.1")
            gw_result = gw.wait(20)
    finally:
        mediad.stop()
    assert result.returncode == 0, result.stdout + sipd.log()
    assert gw_result.returncode == 0, gw_result.stdout + sipd.log()
    assert "c=IN IP6 ::1" in first(gw_result, "INVITE").body
    assert "c=IN IP4 127.0.0.1" in first(result, "SIP/2.0 200").body


def test_an_ipv6_endpoint_registers_and_an_ipv4_caller_reaches_it(sipd_factory: Any) -> None:
    """An endpoint on ::1 registers (digest) to sipd's IPv6 listener; a call from the IPv4
    mapping gateway reaches its Contact over IPv6, with our IPv6 address in brackets."""
    listen6, phone_port = port6(), port6()
    sipd = sipd_factory(
        [gateway("gw1", port6())],
        listen=[f"udp://[::1]:{listen6}"],
        mapping_addresses=["127.0.0.2/32"],
        extra={"endpoints": [{"account": "alice", "password": "secret"}]},
    )
    reg = Sipp(
        "uac_register",
        local="::1",
        port=phone_port,
        remote=f"[::1]:{listen6}",
        keys={"contact_host": "[local_ip]", "contact_port": str(phone_port)},  # SIPp: [::1]
        timeout=15,
        # SIPp's digest uri drops the brackets of an IPv6 host unless told (ours must be the
        # Request-URI, RFC 2617 3.2.2)
        extra=["-auth_uri", f"[::1]:{listen6}"],
    )
    reg.start()
    registered = reg.wait(20)
    assert registered.returncode == 0, registered.describe() + sipd.log()
    (binding,) = sipd.api("/api/endpoints")["bindings"]
    assert binding["account"] == "alice" and "[::1]" in binding["contact"], binding
    assert binding["source"] == f"[::1]:{phone_port}"
    with Sipp("uas_answer", local="::1", port=phone_port, calls=1, timeout=30) as phone:
        result = call(sipd.sip_target, "127.0.0.2", service="alice")
        phone_result = phone.wait(20)
    assert result.returncode == 0, result.describe() + sipd.log()
    assert phone_result.returncode == 0, phone_result.describe()
    invite = first(phone_result, "INVITE")
    assert invite.first_line.startswith(f"INVITE sip:alice@[::1]:{phone_port} ")
    assert invite.header("Via").startswith(f"SIP/2.0/UDP [::1]:{listen6};")
    assert sipd.cdrs(wait_for=1)[0]["routing_gateway"] == "endpoint:alice"


def test_an_ipv6_caller_gets_488_when_mediad_has_no_ipv6_relay(
    sipd_factory: Any, tmp_path: Path
) -> None:
    """A real mediad without media.bind_address_v6: sipd learns its families (ping) and
    answers an IPv6 caller 488 with a Warning before any attempt; the CDR and the refusal
    counter say `media-family-unavailable`, and nothing reaches the IPv6 gateway."""
    gw_port, listen6, low = port6(), port6(), 47700
    sipd, mediad = sipd_with_mediad(sipd_factory, tmp_path, gw_port, listen6, low, None)
    mediad.start()
    family = 'sipedge_media_relay_family{family="IP6"}'
    try:
        deadline = time.monotonic() + 15
        while family not in sipd.metrics() and time.monotonic() < deadline:
            time.sleep(0.2)  # sipd asks mediad each second until it answers
        assert sipd.metrics().get(family) == 0, sipd.log() + mediad.log()
        with (
            socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as gw,
            socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as caller,
        ):
            gw.bind(("::1", gw_port))
            caller.bind(("::1", 0))
            caller.settimeout(5)
            here = caller.getsockname()[1]
            sdp = (
                "v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\n"
                f"t=0 0\r\nm=audio {low + 100} RTP/AVP 0\r\n"
            )
            invite = (
                f"INVITE sip:4420001@[::1]:{listen6} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP [::1]:{here};branch=z9hG4bK-v6ends-1;rport\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:1000@[::1]>;tag=v6caller\r\n"
                f"To: <sip:4420001@[::1]>\r\nCall-ID: v6-family-1\r\nCSeq: 1 INVITE\r\n"
                f"Contact: <sip:1000@[::1]:{here}>\r\nContent-Type: application/sdp\r\n"
                f"Content-Length: {len(sdp)}\r\n\r\n{sdp}"
            )
            caller.sendto(invite.encode(), ("::1", listen6))
            final = b""
            while not final:
                data, _ = caller.recvfrom(65535)
                if not data.startswith(b"SIP/2.0 1"):
                    final = data
            gw.settimeout(0.5)
            with pytest.raises(TimeoutError):
                gw.recvfrom(65535)  # no INVITE went to the gateway
    finally:
        mediad.stop()
    text = final.decode()
    assert text.startswith("SIP/2.0 488 "), text
    assert '\r\nWarning: 301 [::1] "media-family-unavailable: ' in text, text
    cdr = sipd.cdrs(wait_for=1)[0]
    assert cdr["cause"] == "media-family-unavailable" and cdr["final_status"] == 488, cdr
    assert sipd.metrics()['sipedge_media_refused_total{reason="media-family-unavailable"}'] == 1


def test_a_large_request_from_the_ipv6_listener_goes_over_tcp(
    sipd_factory: Any, tmp_path: Path
) -> None:
    """RFC 3261 18.1.1 from a UDP listener other than the first: the INVITE to an IPv6 gateway
    (configured udp, and tcp at the same address and port) leaves from the IPv6 listener's
    family, is over 1300 bytes, and goes over TCP."""
    gw_port, listen6, tcp6 = port6(), port6(), port6(socket.SOCK_STREAM)
    sipd = sipd_factory(
        [
            gateway("gw6-udp", gw_port, address="::1"),
            gateway("gw6-tcp", gw_port, address="::1", transport="tcp"),
        ],
        listen=[f"udp://[::1]:{listen6}", f"tcp://[::1]:{tcp6}"],
        mapping_addresses=MAPPING,
        routes=[{"prefix": "", "gateways": ["gw6-udp"]}],
    )
    scenario = tmp_path / "uac_big.xml"
    text = scenario_path("uac_basic").read_text(encoding="latin-1")
    scenario.write_text(text.replace("Subject: sipedge test", "Subject: " + "x" * 1200))
    _, invite = call_tcp_gateway(sipd, gw_port, sipd.sip_target, "127.0.0.1", "u1", str(scenario))
    assert invite.header("Via").startswith(f"SIP/2.0/TCP [::1]:{tcp6};")
    assert invite.header("Contact") == f"<sip:[::1]:{tcp6};transport=tcp>"
    assert sipd.metrics()["sipedge_sip_mtu_moved_to_tcp_total"] == 1
