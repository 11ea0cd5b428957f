"""The management API secure by default, against a real sipedge-sipd on loopback: refusal to
start off loopback without a token, token scopes on every endpoint, the Host check, TLS, and
/api/cdrs' bounds and cursor."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sipedge.store import AttemptRecord, CallRecord, open_cdr_store
from tests.conftest import (
    BIN,
    Sipd,
    free_port,
    gateway,
    make_config,
    self_signed_cert,
    start_sipd,
)

ADMIN = "adm-" + "0123456789abcdef" * 4
READ = "rd-" + "fedcba9876543210" * 4


def config_for(tmp_path: Path, **api: Any) -> dict[str, Any]:
    return make_config(
        tmp_path,
        free_port(),
        free_port(socket.SOCK_STREAM),
        [gateway("gw1", free_port())],
        api=api,
    )


def request(
    sipd: Sipd,
    path: str,
    method: str = "GET",
    token: str | None = None,
    host: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(f"{sipd.api_url}{path}", method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if host is not None:
        req.add_header("Host", host)
    try:
        with urllib.request.urlopen(req, timeout=5, context=sipd.tls) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def run_sipd(config: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "refused.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [str(BIN / "sipedge-sipd"), "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def test_off_loopback_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    config["api"]["listen"] = f"0.0.0.0:{free_port(socket.SOCK_STREAM)}"
    done = run_sipd(config, tmp_path)
    assert done.returncode == 2, done.stderr
    assert "api.listen: '0.0.0.0:" in done.stderr
    assert "api.token_file" in done.stderr and "api.token" in done.stderr
    # check-config says the same
    check = subprocess.run(
        [str(BIN / "sipedge"), "check-config", str(tmp_path / "refused.yaml")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 1 and "api.listen: '0.0.0.0:" in check.stderr
    # a token file that cannot be read: also 2, naming the key
    config["api"]["token_file"] = str(tmp_path / "missing.token")
    done = run_sipd(config, tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"api.token_file: cannot read {tmp_path / 'missing.token'}" in done.stderr


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Sipd]:
    token_file = tmp_path / "api-admin.token"
    token_file.write_text(ADMIN + "\n")
    token_file.chmod(0o640)
    config = config_for(tmp_path, token_file=str(token_file), read_token=READ)
    sipd = start_sipd(tmp_path, config)
    assert sipd.token == ADMIN  # the helper read the file
    try:
        yield sipd
    finally:
        sipd.stop()


READ_ROUTES = [
    ("GET", "/metrics"),
    ("GET", "/api/calls"),
    ("GET", "/api/cdrs"),
    ("GET", "/api/bans"),
    ("GET", "/api/registrations"),
    ("GET", "/api/endpoints"),
]
ADMIN_ROUTES = [
    ("POST", "/api/drain"),
    ("POST", "/api/undrain"),
    ("POST", "/api/config/reload"),
    ("DELETE", "/api/bans/192.0.2.1"),  # 404 once through: nothing banned
    ("DELETE", "/api/bans"),
]


def test_every_endpoint_wants_its_scope(secured: Sipd) -> None:
    for method, path in READ_ROUTES + ADMIN_ROUTES:
        status, headers, _ = request(secured, path, method)
        assert status == 401, (method, path)
        assert headers["WWW-Authenticate"].startswith("Bearer"), (method, path)
        status, headers, _ = request(secured, path, method, token="not-" + ADMIN)
        assert status == 401 and 'error="invalid_token"' in headers["WWW-Authenticate"]
    for method, path in READ_ROUTES:
        assert request(secured, path, method, token=READ)[0] == 200, (method, path)
        assert request(secured, path, method, token=ADMIN)[0] == 200, (method, path)
    for method, path in ADMIN_ROUTES:
        status, headers, _ = request(secured, path, method, token=READ)
        assert status == 403, (method, path)
        assert 'error="insufficient_scope"' in headers["WWW-Authenticate"]
    assert secured.api("/healthz")["status"] == "ok"  # the read token drained nothing
    for method, path in ADMIN_ROUTES:
        status, _, body = request(secured, path, method, token=ADMIN)
        expected = 404 if path.endswith("192.0.2.1") else 200
        assert status == expected, (method, path, body)
    assert secured.alive()


def test_healthz_is_open_but_says_more_with_a_token(secured: Sipd) -> None:
    status, _, body = request(secured, "/healthz")
    assert (status, yaml.safe_load(body)) == (200, {"status": "ok"})
    status, _, body = request(secured, "/healthz", token=READ)
    full = yaml.safe_load(body)
    assert status == 200 and {"status", "version", "uptime", "active_calls"} <= set(full)


def test_healthz_says_a_first_boot_seed_was_refused_and_why_only_with_a_token(
    tmp_path: Path,
) -> None:
    """sipedge-provision leaves its verdict in <storage.path>/provision.json; a refused seed
    keeps the daemon healthy (the boot check must not roll the slot back) but says so."""
    state = tmp_path / "state"
    state.mkdir()
    reason = "user-data sipedge.config: routing_gateways[0].port: 70000 (the previous config stays)"
    (state / "provision.json").write_text(json.dumps({"instance_id": "i-1", "error": reason}))
    sipd = start_sipd(tmp_path, config_for(tmp_path, token=ADMIN, read_token=READ))
    try:
        status, _, body = request(sipd, "/healthz")
        assert (status, json.loads(body)) == (200, {"status": "ok", "provisioning": "refused"})
        status, _, body = request(sipd, "/healthz", token=READ)
        full = json.loads(body)
        assert status == 200 and full["provisioning"] == {"status": "refused", "error": reason}
        assert "the first-boot seed was refused" in sipd.log()
        # a seed applied again (sipedge-provision --force) is read at reload
        (state / "provision.json").write_text(json.dumps({"instance_id": "i-1", "error": None}))
        sipd.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "provisioning" in json.loads(request(sipd, "/healthz")[2]):
            assert time.monotonic() < deadline, "the reload did not read provision.json again"
            time.sleep(0.1)
    finally:
        sipd.stop()


def test_a_foreign_host_header_is_refused(secured: Sipd) -> None:
    for host in ("evil.example", f"evil.example:{secured.api_port}", "127.0.0.1.nip.io"):
        for path in ("/healthz", "/metrics", "/api/cdrs"):
            status, _, body = request(secured, path, token=ADMIN, host=host)
            assert status == 421 and b"Host" in body, (host, path)
    status, _, body = request(secured, "/api/drain", "POST", token=ADMIN, host="evil.example")
    assert status == 421
    local = f"localhost:{secured.api_port}"
    assert request(secured, "/api/calls", token=READ, host=local)[0] == 200


def test_metrics_open_opens_metrics_only(tmp_path: Path) -> None:
    sipd = start_sipd(tmp_path, config_for(tmp_path, token=ADMIN, metrics_open=True))
    try:
        status, _, body = request(sipd, "/metrics")
        assert status == 200 and b"sipedge_cdr_db_bytes" in body
        assert request(sipd, "/api/calls")[0] == 401
    finally:
        sipd.stop()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_serves_https_and_refuses_tls_1_1(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    sipd = start_sipd(
        tmp_path, config_for(tmp_path, token=ADMIN, tls_cert=str(cert), tls_key=str(key))
    )
    try:
        assert sipd.api_url.startswith("https://")
        assert sipd.api("/api/calls") == []
        assert "sipedge_calls_active" in sipd.metrics().__repr__()
        # with verification of the certificate and its name (SAN 127.0.0.1)
        strict = ssl.create_default_context(cafile=str(cert))
        with urllib.request.urlopen(f"{sipd.api_url}/healthz", context=strict, timeout=5) as r:
            assert r.status == 200
        # TLS 1.1 (allowed on our side, down to security level 0): no handshake
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.check_hostname = False
        old.verify_mode = ssl.CERT_NONE
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        with (
            socket.create_connection(("127.0.0.1", sipd.api_port), timeout=5) as raw,
            pytest.raises(ssl.SSLError),
        ):
            old.wrap_socket(raw).close()
        # plain HTTP gets nothing useful
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{sipd.api_port}/healthz", timeout=5).read()
        # a renewed certificate is read again on reload
        new_cert, new_key = self_signed_cert(tmp_path, "renewed")
        cert.write_bytes(new_cert.read_bytes())
        key.write_bytes(new_key.read_bytes())
        assert sipd.api("/api/config/reload", method="POST")["ok"] is True
        renewed = ssl.create_default_context(cafile=str(new_cert))
        with urllib.request.urlopen(f"{sipd.api_url}/healthz", context=renewed, timeout=5) as r:
            assert r.status == 200
    finally:
        sipd.stop()


def write_cdrs(directory: Path, count: int) -> list[str]:
    store = open_cdr_store(directory)
    now = time.time()
    ids = []
    for i in range(count):
        call_id = f"paged-{i}@test"
        ids.append(call_id)
        store.write(
            CallRecord(
                call_id=call_id,
                caller="1001",
                callee="2002",
                source="127.0.0.1:5070",
                mapping_gateway="test-caller",
                setup_time=now - 60 + i,
                answer_time=now - 59 + i,
                end_time=now - 50 + i,
                release_side="caller",
                cause="normal clearing",
                final_status=200,
                routing_gateway="gw1",
                attempts=[AttemptRecord("gw1", now - 60 + i, now - 59 + i, "200", 200)],
            )
        )
    store.close()
    return ids


def test_cdr_limits_and_cursor_paging(tmp_path: Path) -> None:
    config = config_for(tmp_path, token=ADMIN, read_token=READ)
    written = write_cdrs(Path(config["storage"]["path"]), 25)
    sipd = start_sipd(tmp_path, config)
    sipd.token = READ
    try:
        for query in ("limit=-1", "limit=100000", "limit=0", "limit=1001", "limit=x", "before=-1"):
            status, _, body = request(sipd, f"/api/cdrs?{query}", token=READ)
            assert status == 400, query
            assert b"1 to 1000" in body or b"id of a CDR" in body
        seen: list[str] = []
        url: str | None = "/api/cdrs?limit=10"
        pages = 0
        while url is not None:
            status, headers, body = request(sipd, url, token=READ)
            assert status == 200
            seen += [r["call_id"] for r in yaml.safe_load(body)]
            pages += 1
            link = headers.get("Link")
            url = link[1 : link.index(">")] if link else None
            assert pages <= 4
        assert seen == written[::-1]  # every one once, newest first
        assert pages == 3
        assert len(sipd.api("/api/cdrs?limit=1000")) == 25
        assert sipd.metrics()["sipedge_cdr_db_bytes"] > 0
    finally:
        sipd.stop()
