"""Network namespaces, namespaced sockets and a mediad process for the media tests."""

from __future__ import annotations

import ctypes
import http.client
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

BIN = Path(sys.executable).parent
CLONE_NEWNET = 0x40000000
_counter = itertools.count()
T = TypeVar("T")


def sh(*cmd: str) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {res.stderr.strip()}")
    return res.stdout


def in_ns(ns: str, fn: Callable[[], T]) -> T:
    """Run fn in a thread that has entered namespace ns (sockets it opens live there)."""
    result: list[Any] = []

    def worker() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        try:
            with open(f"/run/netns/{ns}") as f:
                if libc.setns(f.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            result.append(fn())
        except Exception as exc:
            result.append(exc)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    if isinstance(result[0], Exception):
        raise result[0]
    value: T = result[0]
    return value


def ns_socket(ns: str | None, bind: tuple[str, int]) -> socket.socket:
    """A UDP socket created inside namespace `ns` (None: this namespace); IPv6 when the
    address has a colon."""
    family = socket.AF_INET6 if ":" in bind[0] else socket.AF_INET
    if ns is None:
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.bind(bind)
        return s

    def make() -> socket.socket:
        s = socket.socket(family, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
            s.bind(bind)
        except OSError:
            s.close()
            raise
        return s

    return in_ns(ns, make)


@dataclass
class Topology:
    """A (10.77.1.2) -- veth -- R (10.77.1.1 | 10.77.2.1) -- veth -- B (10.77.2.2), and the
    same in IPv6: A fd00:77:1::2, R fd00:77:1::1 | fd00:77:2::1, B fd00:77:2::2 (no DAD, so
    the addresses work at once)."""

    a: str
    r: str
    b: str
    r_ifs: tuple[str, str] = ("ra", "rb")
    a_ip: str = "10.77.1.2"
    b_ip: str = "10.77.2.2"
    ra_ip: str = "10.77.1.1"
    rb_ip: str = "10.77.2.1"
    a_ip6: str = "fd00:77:1::2"
    b_ip6: str = "fd00:77:2::2"
    ra_ip6: str = "fd00:77:1::1"
    rb_ip6: str = "fd00:77:2::1"

    @classmethod
    def create(cls) -> Topology:
        tag = f"se-m-{os.getpid()}-{next(_counter)}"
        topo = cls(a=f"{tag}-a", r=f"{tag}-r", b=f"{tag}-b")
        try:
            for ns in (topo.a, topo.r, topo.b):
                sh("ip", "netns", "add", ns)
                sh("ip", "-n", ns, "link", "set", "lo", "up")
            for peer, rif, pip, rip, pip6, rip6 in (
                (topo.a, "ra", topo.a_ip, topo.ra_ip, topo.a_ip6, topo.ra_ip6),
                (topo.b, "rb", topo.b_ip, topo.rb_ip, topo.b_ip6, topo.rb_ip6),
            ):
                sh(
                    "ip",
                    "-n",
                    topo.r,
                    "link",
                    "add",
                    rif,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    peer,
                )
                sh("ip", "-n", topo.r, "addr", "add", f"{rip}/24", "dev", rif)
                sh("ip", "-n", topo.r, "link", "set", rif, "up")
                sh("ip", "-n", peer, "addr", "add", f"{pip}/24", "dev", "eth0")
                sh("ip", "-n", peer, "link", "set", "eth0", "up")
                sh("ip", "-n", peer, "route", "add", "default", "via", rip)
                sh("ip", "-n", topo.r, "-6", "addr", "add", f"{rip6}/64", "dev", rif, "nodad")
                sh("ip", "-n", peer, "-6", "addr", "add", f"{pip6}/64", "dev", "eth0", "nodad")
                sh("ip", "-n", peer, "-6", "route", "add", "default", "via", rip6)
                # native XDP redirect into a veth delivers only with GRO (or XDP) on the peer
                sh("ip", "netns", "exec", peer, "ethtool", "-K", "eth0", "gro", "on")
                sh("ip", "netns", "exec", topo.r, "ethtool", "-K", rif, "gro", "on")
        except Exception:
            topo.destroy()
            raise
        return topo

    def destroy(self) -> None:
        for ns in (self.a, self.r, self.b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("mediad", timeout=10)
        self.path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.path)


@dataclass
class Mediad:
    sock: Path
    args: list[str]
    log_path: Path
    netns: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    logs: list[str] = field(default_factory=list)

    def start(self, timeout: float = 60, wait_xdp: bool = True, xdp_timeout: float = 240) -> Mediad:
        """Start and wait for /healthz (`timeout`); with `wait_xdp`, also for the XDP loader
        to report (`xdp_timeout` more: mediad is ready in userspace before bcc has compiled
        the program, which takes long on a busy machine)."""
        cmd = [str(BIN / "sipedge-mediad"), "--control-socket", str(self.sock), *self.args]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        ready = False
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mediad exited {self.proc.returncode}:\n{self.log()}")
            try:
                status, health = self.get("/healthz")
                if status == 200 and not (wait_xdp and health.get("xdp_loader")):
                    return self
                if status == 200 and not ready:
                    ready, deadline = True, time.monotonic() + xdp_timeout
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mediad did not come up:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str) -> tuple[int, Any]:
        conn = UnixHTTP(self.sock)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if data[:1] == b"{":
            return resp.status, json.loads(data)
        return resp.status, data.decode()

    def post(self, body: Any, path: str = "/ng", raw: bytes | None = None) -> tuple[int, Any]:
        conn = UnixHTTP(self.sock)
        try:
            payload = raw if raw is not None else json.dumps(body).encode()
            conn.request("POST", path, body=payload, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        return resp.status, json.loads(data)

    def ok(self, body: dict[str, Any]) -> dict[str, Any]:
        status, data = self.post(body)
        assert status == 200 and data["result"] in ("ok", "pong"), (status, data)
        return dict(data)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = int(self.proc.returncode or 0)
        self.proc = None
        return rc


def mount_bpffs(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    sh("mount", "-t", "bpf", "bpf", str(path))


def umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True, check=False)


def recv_all(sock: socket.socket, count: int, timeout: float = 3.0) -> list[tuple[bytes, Any]]:
    out: list[tuple[bytes, Any]] = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            out.append(sock.recvfrom(4096))
        except TimeoutError:
            break
    return out
