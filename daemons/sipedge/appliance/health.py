"""The boot check of an A/B update: are sipd and mediad healthy on this boot?

``sipedge-update boot-check`` (run by sipedge-boot-check.service before boot-complete.target,
which systemd-bless-boot waits for) polls sipd's /healthz (``api.listen`` of the config) and
mediad's /healthz (its control socket) until both answer 200, and gives up early when systemd
gave up on either unit.

Owns: reading the two health endpoints. Must not: write anything, or import the daemons (it
reads the config file itself and talks HTTP only).
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, dict[str, Any]]:
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            data = {}
        return response.status, data if isinstance(data, dict) else {}
    finally:
        conn.close()


def health_targets(config: Path) -> tuple[str, int, str]:
    """(api host, api port, mediad control socket) from the sipedge config."""
    import yaml

    data = yaml.safe_load(config.read_text()) or {}
    listen = str((data.get("api") or {}).get("listen") or "127.0.0.1:8080")
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    media = data.get("media") or {}
    return host, int(port), str(media.get("control_socket") or "/run/sipedge/mediad.sock")


def check_once(config: Path) -> tuple[bool, str]:
    try:
        host, port, sock = health_targets(config)
    except (OSError, ValueError) as exc:
        return False, f"config {config}: {exc}"
    try:
        code, sipd = _get(http.client.HTTPConnection(host, port, timeout=3), "/healthz")
    except OSError as exc:
        return False, f"sipd {host}:{port}: {exc}"
    if code != 200:
        return False, f"sipd /healthz: HTTP {code}"
    try:
        code, mediad = _get(_UnixHTTPConnection(sock, timeout=3), "/healthz")
    except OSError as exc:
        return False, f"mediad {sock}: {exc}"
    if code != 200:
        return False, f"mediad /healthz: HTTP {code}"
    return True, f"sipd {sipd.get('version', '?')} healthy, mediad path {mediad.get('path', '?')}"


def failed_units(units: tuple[str, ...]) -> list[str]:
    """The units systemd gave up on (failed state, e.g. after their start limit)."""
    result = subprocess.run(
        ["systemctl", "is-failed", *units], capture_output=True, text=True, check=False
    )
    states = result.stdout.split()
    return [u for u, state in zip(units, states, strict=False) if state == "failed"]


def boot_check(config: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    reason = "not checked"
    while time.monotonic() < deadline:
        ok, reason = check_once(config)
        if ok:
            print(f"sipedge-update: healthy: {reason}")
            return True
        failed = failed_units(("sipedge-sipd.service", "sipedge-mediad.service"))
        if failed:
            print(f"sipedge-update: not healthy: {', '.join(failed)} failed", file=sys.stderr)
            return False
        time.sleep(2)
    print(f"sipedge-update: not healthy after {timeout:.0f} s: {reason}", file=sys.stderr)
    return False
