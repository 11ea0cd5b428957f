"""sipedge-natd against a real NAT, and its link with sipd.

Real NAT: phone namespace P (SIPp, 10.78.1.2) -- router R (nftables masquerade, UDP conntrack
timeout 15 s by the namespace's own sysctls) -- edge E (sipd + natd + the calling mapping
gateway, 10.78.2.2). The phone
registers through the NAT, waits longer than the NAT timeout, and a call to it must still
arrive, because natd's keep-alives (sent from sipd's SIP socket, period 10 s) kept the NAT
binding open. With SS_SIP_NAT_KEEP_ALIVE_MESSAGE empty (the negative control) the same call
fails: the binding expired and the INVITE dies at the router.

Loopback: the keep-alive leaves from sipd's SIP address and port (an IPv6 device's from sipd's
IPv6 listener); natd follows a sipd restart (re-fetches the socket and the device list); sipd
does not need natd.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import BIN, free_port, gateway, make_config, start_sipd
from tests.integration.test_ipv6 import port6
from tests.media.netns import in_ns, sh
from tests.sipp.harness import Sipp

_counter = itertools.count()
NAT_TIMEOUT = 15  # seconds, UDP conntrack timeout in the router
PERIOD = 10  # SS_SIP_NAT_KEEP_ALIVE_PERIOD (its minimum)


def ns_get(ns: str | None, url: str) -> Any:
    def get() -> Any:
        with urllib.request.urlopen(url, timeout=3) as resp:
            data = resp.read()
        return json.loads(data) if data[:1] in (b"{", b"[") else data.decode()

    return get() if ns is None else in_ns(ns, get)


class NatTopology:
    phone_ip, router_lan, router_wan, edge_ip = "10.78.1.2", "10.78.1.1", "10.78.2.1", "10.78.2.2"

    def __init__(self) -> None:
        tag = f"se-nat-{os.getpid()}-{next(_counter)}"
        self.p, self.r, self.e = f"{tag}-p", f"{tag}-r", f"{tag}-e"

    def create(self) -> None:
        for ns in (self.p, self.r, self.e):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        for peer, rif, pip, rip in (
            (self.p, "lan", self.phone_ip, self.router_lan),
            (self.e, "wan", self.edge_ip, self.router_wan),
        ):
            sh("ip", "-n", self.r, "link", "add", rif, "type", "veth", "peer", "name", "eth0",
               "netns", peer)  # fmt: skip
            sh("ip", "-n", self.r, "addr", "add", f"{rip}/24", "dev", rif)
            sh("ip", "-n", self.r, "link", "set", rif, "up")
            sh("ip", "-n", peer, "addr", "add", f"{pip}/24", "dev", "eth0")
            sh("ip", "-n", peer, "link", "set", "eth0", "up")
        sh("ip", "-n", self.p, "route", "add", "default", "via", self.router_lan)
        sh("ip", "netns", "exec", self.r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # a short UDP conntrack timeout, for this namespace only (the sysctls are per netns)
        sh("ip", "netns", "exec", self.r, "sysctl", "-qw",
           f"net.netfilter.nf_conntrack_udp_timeout={NAT_TIMEOUT}",
           f"net.netfilter.nf_conntrack_udp_timeout_stream={NAT_TIMEOUT}")  # fmt: skip
        ruleset = """
table ip sipedge_nat {
    chain post {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" masquerade
    }
}
"""
        subprocess.run(
            ["ip", "netns", "exec", self.r, "nft", "-f", "-"],
            input=ruleset, text=True, check=True, capture_output=True, timeout=10,
        )  # fmt: skip

    def conntrack_udp(self) -> str:
        return subprocess.run(
            ["ip", "netns", "exec", self.r, "cat", "/proc/net/nf_conntrack"],
            capture_output=True, text=True, timeout=5, check=False,
        ).stdout  # fmt: skip

    def destroy(self) -> None:
        for ns in (self.p, self.r, self.e):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


@pytest.fixture
def nat() -> Iterator[NatTopology]:
    topo = NatTopology()
    try:
        topo.create()
        yield topo
    finally:
        topo.destroy()


class Proc:
    def __init__(self, cmd: list[str], log: Path) -> None:
        self.log_path = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode or 0)


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def natd_cmd(config: Path, api_port: int, ns: str | None = None) -> list[str]:
    cmd = [str(BIN / "sipedge-natd"), "--config", str(config), "--api", f"127.0.0.1:{api_port}"]
    return ["ip", "netns", "exec", ns, *cmd] if ns else cmd


# -- a real NAT ---------------------------------------------------------------------------------


def run_nat_scenario(nat: NatTopology, tmp_path: Path, message: str) -> tuple[Any, str]:
    """Register through the NAT, wait past its timeout, call the phone: (call result, logs)."""
    api, natd_api = 18080, 18082
    config = make_config(
        tmp_path, 5060, api, [gateway("gw1", 5099, address="10.78.2.99")],
        parameters={
            "SS_SIP_NAT_KEEP_ALIVE_MESSAGE": message,
            "SS_SIP_NAT_KEEP_ALIVE_PERIOD": PERIOD,
            "SS_SIP_NAT_KEEP_ALIVE_SEND_INTERVAL": 100,
            "SS_SIP_NAT_KEEP_ALIVE_SEND_ONE_TIME": 10,
            "SS_SIP_TIMEOUT_INVITE": 3,
        },
        mapping_addresses=[f"{nat.edge_ip}/32"],
        extra={"endpoints": [{"account": "alice", "password": "secret"}]},
    )  # fmt: skip
    config["sip"]["listen"] = [f"udp://{nat.edge_ip}:5060"]
    config_path = tmp_path / "sipd.yaml"
    config_path.write_text(yaml.safe_dump(config))
    sipd = Proc(["ip", "netns", "exec", nat.e, str(BIN / "sipedge-sipd"), "--config",
                 str(config_path)], tmp_path / "sipd.log")  # fmt: skip
    natd = None
    try:
        wait_for(lambda: bool(ns_get(nat.e, f"http://127.0.0.1:{api}/healthz")), 15, "sipd")
        natd = Proc(natd_cmd(config_path, natd_api, nat.e), tmp_path / "natd.log")
        wait_for(
            lambda: ns_get(nat.e, f"http://127.0.0.1:{natd_api}/healthz")["link_up"], 15, "natd"
        )
        keys = {"contact_host": nat.phone_ip, "contact_port": 5060, "expires": 300}
        reg = Sipp("uac_register", local=nat.phone_ip, port=5060, remote=f"{nat.edge_ip}:5060",
                   netns=nat.p, timeout=15, keys=keys)  # fmt: skip
        reg.start()
        r = reg.wait(20)
        assert r.returncode == 0, r.describe() + sipd.log()
        binding = ns_get(nat.e, f"http://127.0.0.1:{api}/api/endpoints")["bindings"][0]
        assert binding["nat"] is True and binding["source"] == f"{nat.router_wan}:5060"
        with Sipp("uas_answer", local=nat.phone_ip, port=5060, netns=nat.p, calls=1,
                  timeout=NAT_TIMEOUT + 40) as phone:  # fmt: skip
            time.sleep(NAT_TIMEOUT + 8)  # past the NAT timeout (and not a multiple of PERIOD)
            conntrack = nat.conntrack_udp()
            caller = Sipp(
                "uac_expect_fail" if not message else "uac_basic",
                local=nat.edge_ip, port=5070, remote=f"{nat.edge_ip}:5060", netns=nat.e,
                service="alice", timeout=20,
                keys={"expect_code": "408"} if not message else {"hold": "200"},
            )  # fmt: skip
            caller.start()
            result = caller.wait(30)
            phone_result = phone.stop() if not message else phone.wait(15)
        natd_status = ns_get(nat.e, f"http://127.0.0.1:{natd_api}/healthz")
        return (
            (result, phone_result, natd_status),
            f"{sipd.log()}\n--- natd\n{natd.log()}\n--- conntrack\n{conntrack}",
        )
    finally:
        if natd is not None:
            natd.stop()
        sipd.stop()


@pytest.mark.root
@pytest.mark.sipp
@pytest.mark.slow
def test_keepalive_keeps_the_nat_binding_open(nat: NatTopology, tmp_path: Path) -> None:
    (result, phone, natd), logs = run_nat_scenario(nat, tmp_path, "HELLO")
    assert result.returncode == 0, result.describe() + logs
    assert phone.received("INVITE"), phone.describe()
    assert natd["sent"] >= 2 and natd["devices"] == 1, natd


@pytest.mark.root
@pytest.mark.sipp
@pytest.mark.slow
def test_negative_control_without_keepalive_the_call_fails(
    nat: NatTopology, tmp_path: Path
) -> None:
    (result, phone, natd), logs = run_nat_scenario(nat, tmp_path, "")
    assert result.returncode == 0, result.describe() + logs  # the call ended with 408
    assert not phone.received("INVITE"), "the INVITE crossed an expired NAT binding?"
    assert natd["sent"] == 0 and natd["enabled"] is False


# -- the link with sipd (loopback) ----------------------------------------------------------------


@pytest.mark.sipp
@pytest.mark.slow
def test_keepalive_source_is_the_sip_socket_and_natd_follows_a_sipd_restart(
    tmp_path: Path,
) -> None:
    sip_port, api_port, natd_api = (
        free_port(),
        free_port(socket.SOCK_STREAM),
        free_port(socket.SOCK_STREAM),
    )
    config = make_config(
        tmp_path, sip_port, api_port, [gateway("gw1", free_port())],
        parameters={"SS_SIP_NAT_KEEP_ALIVE_PERIOD": PERIOD,
                    "SS_SIP_NAT_KEEP_ALIVE_MESSAGE": "KEEPALIVE"},
        mapping_addresses=["127.0.0.2/32"],
        extra={"endpoints": [{"account": "alice", "password": "secret"}]},
    )  # fmt: skip
    sipd = start_sipd(tmp_path, config)
    natd = None
    device = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # sipd works without natd: a phone registers (its Contact says 10.0.0.5: "behind NAT")
        port = free_port()
        reg = Sipp("uac_register", port=port, remote=sipd.sip_target, timeout=10,
                   keys={"contact_host": "10.0.0.5", "contact_port": 5060})  # fmt: skip
        reg.start()
        assert reg.wait(15).returncode == 0
        device.bind(("127.0.0.1", port))
        device.settimeout(PERIOD + 5)
        natd = Proc(natd_cmd(sipd.config_path, natd_api), tmp_path / "natd.log")
        data, source = device.recvfrom(100)
        assert data == b"KEEPALIVE"
        assert source == ("127.0.0.1", sip_port), "not sent from sipd's SIP socket"
        status = ns_get(None, f"http://127.0.0.1:{natd_api}/healthz")
        assert status["devices"] == 1 and status["sip_socket"] == ["127.0.0.1", sip_port]
        # sipd restarts (the bindings come back from SQLite); natd lets the old socket go,
        # reconnects and keeps sending from the new one
        assert sipd.stop() == 0
        sipd = start_sipd(tmp_path, config, name="sipd-again")
        wait_for(
            lambda: (
                ns_get(None, f"http://127.0.0.1:{natd_api}/metrics").count(
                    "sipedge_natd_link_connects_total 2.0"
                )
                == 1
            ),
            15,
            "natd reconnecting",
        )
        data, source = device.recvfrom(100)
        assert (data, source) == (b"KEEPALIVE", ("127.0.0.1", sip_port))
        # and natd going away changes nothing for sipd
        assert natd.stop() == 0
        assert ns_get(None, f"http://127.0.0.1:{api_port}/healthz")["status"] == "ok"
    finally:
        device.close()
        if natd is not None:
            natd.stop()
        sipd.stop()


@pytest.mark.sipp
@pytest.mark.slow
def test_keepalive_to_an_ipv6_device_leaves_from_the_ipv6_listener(tmp_path: Path) -> None:
    """sipd listens on 127.0.0.1 and [::1]: a phone registered over IPv4 and one over IPv6
    each get the keep-alive from sipd's listener of their family (the NAT binding of an IPv6
    device is the flow to the IPv6 listener), and natd counts no send error."""
    sip_port, api_port, natd_api = port6(), free_port(socket.SOCK_STREAM), port6(socket.SOCK_STREAM)
    config = make_config(
        tmp_path, sip_port, api_port, [gateway("gw1", free_port())],
        parameters={"SS_SIP_NAT_KEEP_ALIVE_PERIOD": PERIOD,
                    "SS_SIP_NAT_KEEP_ALIVE_MESSAGE": "KEEPALIVE"},
        mapping_addresses=["127.0.0.2/32"],
        extra={"endpoints": [{"account": "alice", "password": "secret"},
                             {"account": "bob", "password": "secret"}]},
    )  # fmt: skip
    config["sip"]["listen"] = [f"udp://127.0.0.1:{sip_port}", f"udp://[::1]:{sip_port}"]
    sipd = start_sipd(tmp_path, config)
    natd = None
    devices: list[tuple[socket.socket, str]] = []
    try:
        # Contacts at a private address, not the source: both phones are "behind NAT" (SIPp
        # reads a bracketed IPv6 key value as a keyword, so both Contacts are IPv4)
        for user, local, remote in (
            ("alice", "127.0.0.1", f"127.0.0.1:{sip_port}"),
            ("bob", "::1", f"[::1]:{sip_port}"),
        ):
            port = port6()
            keys = {"user": user, "contact_host": "10.0.0.5", "contact_port": 5060}
            # the digest uri must be the Request-URI (test_ipv6.py says why SIPp needs this)
            extra = ["-auth_uri", remote]
            reg = Sipp("uac_register", local=local, port=port, remote=remote, timeout=10,
                       keys=keys, extra=extra)  # fmt: skip
            reg.start()
            assert reg.wait(15).returncode == 0, sipd.log()
            device = socket.socket(socket.AF_INET6 if ":" in local else socket.AF_INET,
                                   socket.SOCK_DGRAM)  # fmt: skip
            devices.append((device, local))
            device.bind((local, port))
            device.settimeout(PERIOD + 5)
        natd = Proc(natd_cmd(sipd.config_path, natd_api), tmp_path / "natd.log")
        for device, local in devices:
            data, source = device.recvfrom(100)
            assert (data, source[:2]) == (b"KEEPALIVE", (local, sip_port)), natd.log()
        status = ns_get(None, f"http://127.0.0.1:{natd_api}/healthz")
        assert status["devices"] == 2, status
        assert status["sip_sockets"] == [["127.0.0.1", sip_port], ["::1", sip_port]], status
        metrics = ns_get(None, f"http://127.0.0.1:{natd_api}/metrics")
        assert "sipedge_natd_send_errors_total 0.0" in metrics, metrics
    finally:
        for device, _ in devices:
            device.close()
        if natd is not None:
            natd.stop()
        sipd.stop()
