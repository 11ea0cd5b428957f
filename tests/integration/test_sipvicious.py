"""A real attack tool against sipd: sipvicious (PyPI `sipvicious`) in a network namespace that
has only loopback, so nothing the tools or sipd send can leave the machine.

* svwar cannot tell existing accounts from missing ones: every name gets the same challenge.
  Run with a User-Agent that is not on any scanner list (the uniform answers are what is tested,
  not a scanner ban) and with `--force` (past its own sanity check, which already gives up).
* svcrack finds a password when suspension is out of the way (the positive control: the tool
  works against sipd), and does not find it when suspension engages first.
* svmap finds sipd with an ordinary User-Agent (the positive control); as it ships (User-Agent
  "friendly-scanner") from a source that is no gateway, it is banned at its first datagram,
  finds nothing, and the ban shows in `/api/bans` and the guard's metrics.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import BIN, gateway, make_config
from tests.media.netns import sh

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a network namespace"),
    pytest.mark.skipif(
        shutil.which("sipvicious_svwar", path=str(Path(sys.executable).parent)) is None,
        reason="sipvicious not installed (pip install -e '.[dev]')",
    ),
]

SIP, API = 5060, 18090
UA = "Zoiper rv2.10.20.3"  # an ordinary softphone's User-Agent, on no scanner list
ACCOUNTS = ["105", "117", "alice"]

# Runs a sipvicious tool with another User-Agent: the tools have no option for it, their
# requests come from svhelper.makeRequest (default useragent="friendly-scanner").
WRAPPER = """
import sys, importlib
from sipvicious.libs import svhelper
tool, ua = sys.argv[1], sys.argv[2]
module = importlib.import_module("sipvicious." + tool)
original = svhelper.makeRequest
def make_request(*args, **kw):
    if ua:
        kw["useragent"] = ua
    return original(*args, **kw)
module.makeRequest = make_request
sys.argv = [tool, *sys.argv[3:]]
module.main()
"""


class Edge:
    """sipd alone in a fresh network namespace (loopback only)."""

    def __init__(
        self,
        tmp: Path,
        parameters: dict[str, Any],
        passwords: dict[str, str],
        gateway_address: str = "127.0.0.1",
    ) -> None:
        self.ns = f"svtest-{os.getpid()}-{int(time.monotonic() * 1000) % 100000}"
        sh("ip", "netns", "add", self.ns)
        sh("ip", "netns", "exec", self.ns, "ip", "link", "set", "lo", "up")
        config = make_config(
            tmp, SIP, API, [gateway("gw1", 5099, address=gateway_address)],
            parameters=parameters,
            mapping_addresses=["127.0.0.2/32"],
            extra={"endpoints": [{"account": a, "password": p} for a, p in passwords.items()]},
        )  # fmt: skip
        path = tmp / "sipd.yaml"
        path.write_text(yaml.safe_dump(config))
        self.log_path = tmp / "sipd.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, str(BIN / "sipedge-sipd"), "--config", str(path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while True:
            try:
                self.api("/healthz")
                break
            except RuntimeError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("sipd did not come up\n" + self.log()) from None
                time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def api(self, path: str) -> Any:
        code = (
            "import urllib.request,sys;"
            f"sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:{API}{path}',"
            "timeout=3).read().decode())"
        )
        out = sh("ip", "netns", "exec", self.ns, sys.executable, "-c", code)
        return json.loads(out) if path.startswith("/api") or path == "/healthz" else out

    def tool(self, tool: str, *args: str, ua: str = UA, timeout: float = 60) -> str:
        """One sipvicious run inside the namespace (bounded in time); its whole output."""
        cmd = ["ip", "netns", "exec", self.ns, sys.executable, "-c", WRAPPER, tool, ua, *args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return res.stdout + res.stderr

    def stop(self) -> None:
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, check=False)


@pytest.fixture
def edge_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[Edge] = []

    def factory(parameters: dict[str, Any], passwords: dict[str, str], **kw: Any) -> Edge:
        edge = Edge(tmp_path / f"edge{len(started)}", parameters, passwords, **kw)
        started.append(edge)
        return edge

    for d in ("edge0", "edge1"):
        (tmp_path / d).mkdir()
    yield factory
    for edge in started:
        edge.stop()


def found(output: str) -> list[str]:
    """The extensions svwar reports as existing."""
    return [line for line in output.splitlines() if "exists" in line or "reqauth" in line]


def test_svwar_cannot_tell_accounts_apart(edge_factory: Any, tmp_path: Path) -> None:
    edge = edge_factory({}, {a: "x9!" + a for a in ACCOUNTS})
    target = f"udp://127.0.0.1:{SIP}"
    bounded = ["-t", "0.02", "--maximumtime=5"]
    # its own sanity check: a surely-missing name is challenged, so it gives up at once ...
    out = edge.tool("svwar", "--extensions=100-130", *bounded, target)
    assert "authentication request for an unknown extension" in out, out + edge.log()
    # ... and forced past it, an existing account's answer has the fingerprint of the missing
    # name's (svwar then stops: "unknown response"), for REGISTER (401) and INVITE (407), with
    # an ordinary User-Agent and with sipvicious's own
    for account in ACCOUNTS:
        names = tmp_path / f"names-{account}.txt"
        names.write_text(f"{account}\n")
        for method, code, ua in (("REGISTER", 401, UA), ("INVITE", 407, UA), ("REGISTER", 401, "")):
            out = edge.tool("svwar", "--force", "-m", method, "-d", str(names), *bounded, target,
                            ua=ua)  # fmt: skip
            # the missing name's answer and the account's: one fingerprint, so "unknown"
            assert "We got an unknown response" in out and f"'SIP/2.0 {code} " in out, out
            assert f'To: "{account}"<sip:{account}@' in out  # its answer was seen
            assert found(out) == [] and "found nothing" in out, out
    # and a range with two accounts in it: nothing found either
    out = edge.tool("svwar", "--force", "--extensions=100-130", *bounded, target)
    assert found(out) == [] and "found nothing" in out, out
    assert edge.api("/healthz")


def crack(edge: Edge, account: str) -> str:
    return edge.tool(
        "svcrack", "-u", account, "-r", "1000-1060", "-t", "0.01", "--maximumtime=5",
        f"udp://127.0.0.1:{SIP}",
    )  # fmt: skip


def test_svcrack_is_stopped_by_suspension(edge_factory: Any) -> None:
    passwords = {"105": "1050", "117": "1170"}
    # positive control: with suspension out of reach, the tool does crack a password here
    open_edge = edge_factory({"SS_ENDPOINT_REGISTER_RETRY": 100}, passwords)
    out = crack(open_edge, "105")
    assert "| 105       | 1050     |" in out, out + open_edge.log()
    open_edge.stop()
    # suspension after 5 failures in a row: the right password (the 51st try) gets the 403
    # of a wrong one
    edge = edge_factory(
        {"SS_ENDPOINT_REGISTER_RETRY": 5, "SS_ENDPOINT_REGISTER_SUSPEND": 600}, passwords
    )
    out = crack(edge, "105")
    assert "1050" not in out and "| 105 " not in out, out
    suspended = edge.api("/api/endpoints")["suspended"]
    assert suspended == {"accounts": ["105"], "sources": ["127.0.0.1"]}, suspended
    assert edge.api("/api/endpoints")["bindings"] == []
    metrics = edge.api("/metrics")
    rejects = [
        line for line in metrics.splitlines()
        if line.startswith("sipedge_registrar_suspended_rejects_total")
    ]  # fmt: skip
    assert rejects and float(rejects[0].split()[-1]) > 0, rejects
    # svmap from the same (suspended) source: a bounded run, sipd stays up
    out = edge.tool("svmap", "127.0.0.1", "-p", str(SIP), "-t", "0.02", timeout=30)
    assert "Could not resolve" not in out, out
    assert edge.api("/healthz")


def test_svmap_with_its_own_user_agent_is_banned_and_counted(edge_factory: Any) -> None:
    # 127.0.0.1 is no gateway here (the routing gateway is 127.0.0.3): sipvicious as it ships,
    # User-Agent "friendly-scanner", is banned at its first datagram and never answered
    edge = edge_factory({}, {"105": "x9!105"}, gateway_address="127.0.0.3")
    svmap = ["svmap", "127.0.0.1", "-p", str(SIP), "-t", "0.02"]
    # positive control: with an ordinary User-Agent svmap does find sipd
    out = edge.tool(*svmap, timeout=30)
    assert f"127.0.0.1:{SIP}" in out and "Could not resolve" not in out, out
    assert edge.api("/api/bans") == []
    out = edge.tool(*svmap, ua="", timeout=30)
    assert f"127.0.0.1:{SIP}" not in out and "found nothing" in out, out
    bans = edge.api("/api/bans")
    assert [(b["address"], b["reason"]) for b in bans] == [("127.0.0.1", "scanner")], bans
    metrics = edge.api("/metrics").splitlines()
    assert 'sipedge_guard_bans_total{reason="scanner"} 1.0' in metrics, metrics
    dropped = [m for m in metrics if m.startswith('sipedge_guard_drops_total{reason="')]
    assert sum(float(m.split()[-1]) for m in dropped) >= 1, dropped
    # a second run from the banned source: still nothing, and sipd is fine
    out = edge.tool("svwar", "--force", "--extensions=100-110", "-t", "0.02",
                    "--maximumtime=5", f"udp://127.0.0.1:{SIP}", ua="")  # fmt: skip
    assert found(out) == [], out
    assert edge.api("/healthz")
