"""Shared fixtures: a real sipedge-sipd process on a loopback config made per test."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from sipedge.gcwatch.heap import ALLOCATOR_ENV

if TYPE_CHECKING:
    from sipedge.calls.media_service import MediaService

REPO = Path(__file__).resolve().parent.parent
# The RFC 4475 torture messages live in shared/ beside the checkout (CI's fresh clone has it
# there too); the main development checkout also finds it at /work/shared.
RFC4475 = next(
    (
        d
        for d in (
            REPO.parent / "shared" / "testdata" / "rfc4475",
            Path("/work/shared/testdata/rfc4475"),
        )
        if d.is_dir()
    ),
    REPO.parent / "shared" / "testdata" / "rfc4475",
)
BIN = Path(sys.executable).parent


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to test a stale build: setup.py compiles sipd's hot modules in place (mypyc), and
    Python imports a module's .so before its .py, so an edited .py would go untested."""
    stale = [
        str(so.relative_to(REPO))
        for so in (REPO / "daemons" / "sipedge").rglob("*.so")
        if (py := so.with_name(so.name.split(".", 1)[0] + ".py")).exists()
        and py.stat().st_mtime > so.stat().st_mtime
    ]
    if stale:
        pytest.exit(
            f"compiled modules older than their source: {', '.join(stale)}; run `make setup`"
            " (it rebuilds them)",
            returncode=4,
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Root-only tests must run where we are root (CI is); elsewhere they skip and say why."""
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(
        reason="needs root (network namespaces / nftables / XDP); CI runs as root"
    )
    for item in items:
        if "root" in item.keywords or "xdp" in item.keywords:
            item.add_marker(skip)


# The media tests give mediad fixed port ranges in 40000-47999 (inside the kernel's ephemeral
# range); free_port() below never hands those out, so no SIP or API port falls inside a relay
# range (sipd refuses a media.port_range that holds the SIP port).
FIXED_MEDIA_PORTS = range(40000, 48000)


# SIP and API ports come from just below the kernel's ephemeral range (32768-60999 on Debian),
# in a slice of their own per xdist worker: a port drawn from the ephemeral range was once taken
# by another worker's bind(0) or outgoing socket between free_port() and sipd's bind, and sipd
# exited with "could not bind". Below 30000 lie media.port_range's default (20000-29999: a SIP
# port there is refused) and image/vm's forwarded ports (2222, 15060, 18080).
# Every 4th port only: peers use the ports after the one they are given (SIPp's -mp N takes
# N..N+3 for RTP/RTCP, baresip's TLS listener is its SIP port + 1), which must not be handed
# out next (ports in turn did that once, where random ones seldom had).
_PORT_POOL = range(30000, 32768)
_PORT_SLICES = 6  # at least the workers `make test` runs (Makefile: PYTEST_WORKERS)
_PORT_STRIDE = 4


def _port_slice() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # "gw3"; absent without xdist
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    size = len(_PORT_POOL) // _PORT_SLICES // _PORT_STRIDE * _PORT_STRIDE
    start = _PORT_POOL.start + (index % _PORT_SLICES) * size
    return range(start, start + size, _PORT_STRIDE)


_next_port: Iterator[int] = iter(())


def _free_for(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (SIP uses UDP, the API TCP), from this
    worker's slice below the ephemeral range, every 4th port in turn so that two calls in a row
    never get the same or a neighbouring port (a SIPp's SIP and media port once collided)."""
    global _next_port
    slice_ = _port_slice()
    for _ in range(2 * len(slice_)):
        port = next(_next_port, None)
        if port is None:  # the slice is used up: start it again (earlier tests have ended)
            _next_port = iter(slice_)
            continue
        neighbours = range(port, port + _PORT_STRIDE)  # still held by an earlier test's peer?
        if all(_free_for(n, k) for n in neighbours for k in (kind, _other(kind))):
            return port
    raise RuntimeError(f"no free port in {slice_}")


def _other(kind: int) -> int:
    return socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM


def gateway(name: str, port: int, **overrides: Any) -> dict[str, Any]:
    gw: dict[str, Any] = {
        "name": name,
        "address": "127.0.0.1",
        "port": port,
        "trusted": True,
        "invite_timeout": "Default",
        "stop_switch_after_sdp": "Default",
        "stop_switch_after_invite_timeout": "Default",
        "stop_switching_codes": [],
        "privacy": "None",
        "p_asserted_identity": "None",
        "p_preferred_identity": "None",
        "caller_dial_plan": [],
        "rtp_encryption": False,
    }
    gw.update(overrides)
    return gw


# media.refused_networks for configs whose peers are all on loopback: the default list minus
# 127.0.0.0/8 and ::1/128.
LOOPBACK_TEST_REFUSED_NETWORKS = ["0.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4"]


def make_config(
    tmp: Path,
    sip_port: int,
    api_port: int,
    gateways: list[dict[str, Any]],
    parameters: dict[str, Any] | None = None,
    routes: list[dict[str, Any]] | None = None,
    mapping_addresses: list[str] | None = None,
    extra: dict[str, Any] | None = None,
    mapping_overrides: dict[str, Any] | None = None,
    api: dict[str, Any] | None = None,
    listen: list[Any] | None = None,
    sip: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A loopback config; `api` adds keys to the `api:` section (tokens, TLS, hosts);
    `listen` adds listeners after the UDP one (`tcp://127.0.0.1:PORT`, `tls://...` or a
    mapping), `sip` keys to the `sip:` section (`tls_cert`, `connections`, ...)."""
    mapping: dict[str, Any] = {
        "name": "test-caller",
        "addresses": mapping_addresses or ["127.0.0.0/8"],
        "support_privacy": False,
        "rtp_encryption": False,
    }
    mapping.update(mapping_overrides or {})
    config: dict[str, Any] = {
        "node": {"name": "test-edge"},
        "sip": {
            "listen": [f"udp://127.0.0.1:{sip_port}", *(listen or [])],
            "public_address": None,
            **(sip or {}),
        },
        "api": {"listen": f"127.0.0.1:{api_port}", "token": None},
        "storage": {"path": str(tmp / "state")},
        "parameters": parameters or {},
        "mapping_gateways": [mapping],
        "routing_gateways": gateways,
        "routes": routes or [{"prefix": "", "gateways": [g["name"] for g in gateways]}],
        "endpoints": [],
        "registrations": [],
        "media": {
            "control_socket": str(tmp / "mediad.sock"),
            "port_range": [20000, 20999],
            "fast_path": "userspace",
            "interfaces": ["lo"],
            # Every test peer is on loopback: 127.0.0.0/8 must not be refused here (the
            # default list refuses it), or every call would refuse its own media.
            "refused_networks": LOOPBACK_TEST_REFUSED_NETWORKS,
            "state_path": str(tmp / "mediad-sessions.journal"),
        },
    }
    config["api"].update(api or {})
    if extra:
        config.update(extra)
    return config


async def hold_off(service: MediaService) -> None:
    """Put `service` into its unreachable hold-off as sipd gets there, by one request that its
    backend fails `unreachable`, and keep it there (its clock stands still)."""
    from sipedge.media.client import MediaError

    assert service.backend is not None
    service.clock = lambda: 0.0
    with contextlib.suppress(MediaError):
        await service.request(service.backend.query("probe"))
    assert service.holding_off()


def api_token(config: dict[str, Any], key: str = "token") -> str | None:
    """The token of `api.<key>` or of `api.<key>_file` (the file read as sipd does)."""
    section = config.get("api") or {}
    if section.get(key):
        return str(section[key])
    path = section.get(f"{key}_file")
    return Path(path).read_text().strip() if path else None


@dataclass
class Sipd:
    """A running sipedge-sipd and the means to talk to it."""

    config_path: Path
    sip_port: int
    api_port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    token: str | None = None  # sent as a bearer token by api() (the admin one by default)
    tls: ssl.SSLContext | None = None  # the API serves HTTPS: a client context for it
    _stopped: bool = field(default=False)

    @property
    def sip_target(self) -> str:
        return f"127.0.0.1:{self.sip_port}"

    @property
    def api_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.api_port}"

    def api(self, path: str, method: str = "GET", body: bytes | None = None) -> Any:
        req = urllib.request.Request(f"{self.api_url}{path}", data=body, method=method)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(req, timeout=5, context=self.tls) as resp:
            data = resp.read()
        return json.loads(data) if data[:1] in (b"{", b"[") else data.decode()

    def metrics(self) -> dict[str, float]:
        text = self.api("/metrics")
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def cdrs(self, wait_for: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            records: list[dict[str, Any]] = self.api("/api/cdrs?limit=100")
            if len(records) >= wait_for or time.monotonic() > deadline:
                return records
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rewrite_config(self, config: dict[str, Any]) -> None:
        self.config_path.write_text(yaml.safe_dump(config))

    def stop(self) -> int:
        if not self._stopped:
            self._stopped = True
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        return int(self.proc.returncode or 0)


def client_tls(config: dict[str, Any]) -> ssl.SSLContext | None:
    """With `api.tls_cert` set: a client context trusting that certificate (self-signed in the
    tests), without a host name check (the tests connect to 127.0.0.1)."""
    cert = (config.get("api") or {}).get("tls_cert")
    if not cert:
        return None
    context = ssl.create_default_context(cafile=cert)
    context.check_hostname = False
    return context


def self_signed_cert(directory: Path, name: str = "api") -> tuple[Path, Path]:
    """A self-signed certificate (CN localhost, SAN localhost and 127.0.0.1) and its key, as
    PEM files in `directory`."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def spawn_sipd(
    tmp: Path,
    config: dict[str, Any],
    name: str = "sipd",
    env: Mapping[str, str] | None = None,
    wrapper: Sequence[str] = (),
) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """sipedge-sipd started on `config` (written to tmp/NAME.yaml, its output to tmp/NAME.log)
    with the environment its systemd unit gives it, plus `env`, and `wrapper` before the
    command (an emulator, say); (process, config path, log path). Waits for nothing."""
    config_path = tmp / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = tmp / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*wrapper, str(BIN / "sipedge-sipd"), "--config", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **ALLOCATOR_ENV, **(env or {})},
        )
    return proc, config_path, log_path


def start_sipd(tmp: Path, config: dict[str, Any], name: str = "sipd") -> Sipd:
    """sipedge-sipd started on `config` and answering /healthz (bounded: 15 s)."""
    proc, config_path, log_path = spawn_sipd(tmp, config, name)
    sip_port = int(config["sip"]["listen"][0].rsplit(":", 1)[1])
    api_port = int(config["api"]["listen"].rsplit(":", 1)[1])
    tls = client_tls(config)
    sipd = Sipd(config_path, sip_port, api_port, proc, log_path, api_token(config), tls)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sipedge-sipd exited {proc.returncode}:\n{sipd.log()}")
        try:
            urllib.request.urlopen(f"{sipd.api_url}/healthz", timeout=1, context=tls).read()
            return sipd
        except OSError:
            time.sleep(0.05)
    sipd.stop()
    raise RuntimeError(f"sipedge-sipd did not come up:\n{sipd.log()}")


@pytest.fixture
def sipd_factory(tmp_path: Path) -> Iterator[Any]:
    """Call with (gateways, parameters=..., routes=...) to get a running daemon."""
    started: list[Sipd] = []

    def factory(gateways: list[dict[str, Any]], **kw: Any) -> Sipd:
        sip_port, api_port = free_port(), free_port(socket.SOCK_STREAM)
        config = make_config(tmp_path, sip_port, api_port, gateways, **kw)
        sipd = start_sipd(tmp_path, config, name=f"sipd{len(started)}")
        started.append(sipd)
        return sipd

    yield factory
    for sipd in started:
        sipd.stop()
