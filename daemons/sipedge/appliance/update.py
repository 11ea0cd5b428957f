"""sipedge-update: A/B updates of the appliance image under systemd-boot boot counting.

The disk (image/build) has GPT partitions named esp, root-a, root-b and data. The booted slot is
the one named by ``root=PARTLABEL=root-<slot>`` on the kernel command line. Commands:

``status``
    The booted slot, the image release of each slot and the boot entries with their counters.
``install IMAGE --sha256 HEX``
    Write a root file system image (image/out/sipedge-root.img; a file, a block device, or ``-``
    for standard input, so that it can be streamed over ssh without a copy on the appliance's
    disk) to the inactive slot, verify
    the checksum of what was written, carry the machine identity (machine-id, SSH host keys)
    over, put the slot's kernel and initrd on the ESP and add the entry
    ``sipedge-<slot>+<tries>.conf`` with the next version: systemd-boot boots it first, counting
    the tries down; ``systemd-bless-boot`` marks it good once boot-complete.target is reached,
    which ``sipedge-boot-check.service`` holds back until the daemons are healthy. An entry
    whose tries ran out sorts last, so the old slot boots again. The data partition is not
    touched. ``--reboot`` reboots at the end.
``boot-check``
    Wait until sipd's /healthz (api.listen of the config) and mediad's /healthz (its control
    socket) answer 200; exit 1 after ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

SLOTS = ("a", "b")
ESP = Path(os.environ.get("SIPEDGE_ESP", "/efi"))
PARTLABELS = Path("/dev/disk/by-partlabel")
CONFIG = Path("/etc/sipedge/sipedge.yaml")
RELEASE_FILE = "usr/lib/sipedge-image/release"
CHUNK = 4 << 20
ENTRY_RE = re.compile(r"^sipedge-(?P<slot>[ab])(?:\+(?P<left>\d+)(?:-(?P<done>\d+))?)?\.conf$")
IDENTITY_FILES = ("etc/machine-id",)
IDENTITY_GLOBS = ("etc/ssh/ssh_host_*",)


class UpdateError(Exception):
    """A refused or failed update, with a message for the operator."""


@dataclass
class Entry:
    slot: str
    path: Path
    version: int
    tries_left: int | None
    tries_done: int

    @property
    def state(self) -> str:
        if self.tries_left is None:
            return "good"
        return "bad" if self.tries_left == 0 else "trial"

    def as_dict(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "file": self.path.name,
            "version": self.version,
            "state": self.state,
            "tries_left": self.tries_left,
            "tries_done": self.tries_done,
        }


def booted_slot(cmdline: str | None = None) -> str:
    text = cmdline if cmdline is not None else Path("/proc/cmdline").read_text()
    match = re.search(r"\broot=PARTLABEL=root-([ab])\b", text)
    if match is None:
        raise UpdateError("not booted from an A/B slot (no root=PARTLABEL=root-a|b)")
    return match.group(1)


def other(slot: str) -> str:
    return "b" if slot == "a" else "a"


def read_entries(esp: Path) -> list[Entry]:
    entries: list[Entry] = []
    folder = esp / "loader" / "entries"
    if not folder.is_dir():
        return entries
    for path in sorted(folder.iterdir()):
        match = ENTRY_RE.match(path.name)
        if match is None:
            continue
        version = 0
        for line in path.read_text().splitlines():
            key, _, value = line.strip().partition(" ")
            if key == "version" and value.strip().isdigit():
                version = int(value.strip())
        left = match.group("left")
        entries.append(
            Entry(
                slot=match.group("slot"),
                path=path,
                version=version,
                tries_left=int(left) if left is not None else None,
                tries_done=int(match.group("done") or 0),
            )
        )
    return entries


def render_entry(template: str, slot: str, version: int, title: str) -> str:
    """An entry for `slot` built from the booted slot's entry (keeps the operator's options)."""
    lines: list[str] = []
    for line in template.splitlines():
        key = line.strip().split(" ", 1)[0]
        if key == "title":
            line = f"title {title}"
        elif key == "version":
            line = f"version {version}"
        elif key in ("linux", "initrd"):
            line = re.sub(r"/sipedge/[ab]/", f"/sipedge/{slot}/", line)
        elif key == "options":
            line = re.sub(r"\broot=PARTLABEL=root-[ab]\b", f"root=PARTLABEL=root-{slot}", line)
        lines.append(line)
    return "\n".join(lines) + "\n"


def sha256_of(path: Path, size: int | None = None) -> str:
    digest = hashlib.sha256()
    remaining = size
    with path.open("rb") as f:
        while remaining is None or remaining > 0:
            want = CHUNK if remaining is None else min(CHUNK, remaining)
            block = f.read(want)
            if not block:
                break
            digest.update(block)
            if remaining is not None:
                remaining -= len(block)
    if remaining:
        raise UpdateError(f"{path}: {remaining} bytes short")
    return digest.hexdigest()


def write_image(src: BinaryIO, device: Path, capacity: int) -> tuple[str, int]:
    """Copy src to its end onto device, flushed to the disk; return (sha256, bytes written).

    A source longer than `capacity` (a stream whose length nobody knew) is refused once it
    passes it; the slot is then half written, which is harmless: it has no boot entry."""
    digest = hashlib.sha256()
    written = 0
    with device.open("r+b") as dst:
        while True:
            block = src.read(CHUNK)
            if not block:
                break
            if written + len(block) > capacity:
                raise UpdateError(f"the image is larger than the slot ({capacity} bytes)")
            digest.update(block)
            dst.write(block)
            written += len(block)
        dst.flush()
        os.fsync(dst.fileno())
    if written == 0:
        raise UpdateError("the image is empty")
    return digest.hexdigest(), written


def is_stdin(image: Path) -> bool:
    return str(image) == "-"


def image_size(image: Path) -> int | None:
    """Bytes in a file or block device; None for standard input (known once it ends)."""
    if is_stdin(image):
        return None
    with image.open("rb") as f:
        return f.seek(0, os.SEEK_END)


def _drop_caches(device: Path) -> None:
    # Read the slot back from the disk, not from the page cache.
    with contextlib.suppress(OSError), device.open("rb") as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise UpdateError(f"{' '.join(argv)}: {(result.stderr or result.stdout).strip()}")


@contextlib.contextmanager
def mounted(device: Path, readonly: bool) -> Iterator[Path]:
    where = Path(tempfile.mkdtemp(prefix="sipedge-update-"))
    try:
        run(["mount", "-t", "ext4", "-o", "ro" if readonly else "rw", str(device), str(where)])
        try:
            yield where
        finally:
            run(["umount", str(where)])
    finally:
        with contextlib.suppress(OSError):
            where.rmdir()


def read_release(root: Path) -> dict[str, str]:
    path = root / RELEASE_FILE
    if not path.exists():
        return {}
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def status(esp: Path = ESP) -> dict[str, Any]:
    slot = booted_slot()
    count_path = any(Path("/sys/firmware/efi/efivars").glob("LoaderBootCountPath-*"))
    versions: dict[str, str | None] = {}
    for s in SLOTS:
        marker = esp / "sipedge" / s / "version"
        versions[s] = marker.read_text().strip() if marker.exists() else None
    return {
        "boot_id": Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
        "booted": slot,
        "inactive": other(slot),
        "trial_boot": count_path,
        "running": read_release(Path("/")),
        "slot_versions": versions,
        "entries": [e.as_dict() for e in read_entries(esp)],
    }


def install(image: Path, sha256: str, tries: int, esp: Path = ESP) -> dict[str, Any]:
    if not 1 <= tries <= 9:
        raise UpdateError("--tries must be 1-9")
    expected = sha256.strip().lower().split()[0]
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise UpdateError("--sha256 must be 64 hex digits")
    if not (esp / "loader" / "entries").is_dir():
        raise UpdateError(f"{esp} is not the mounted ESP (no loader/entries)")
    current = booted_slot()
    target = other(current)
    device = (PARTLABELS / f"root-{target}").resolve()
    if not device.exists():
        raise UpdateError(f"no partition root-{target}")
    with device.open("rb") as f:
        capacity = f.seek(0, os.SEEK_END)
    known_size = image_size(image)
    if known_size is not None and known_size > capacity:
        raise UpdateError(f"{image} ({known_size} bytes) is larger than root-{target} ({capacity})")
    entries = read_entries(esp)
    template_entry = next((e for e in entries if e.slot == current), None)
    if template_entry is None:
        raise UpdateError(f"no boot entry for the booted slot {current}")

    # 1. The target slot stops being bootable before it is overwritten.
    for e in entries:
        if e.slot == target:
            e.path.unlink()
    for name in ("vmlinuz", "initrd", "version"):
        with contextlib.suppress(FileNotFoundError):
            (esp / "sipedge" / target / name).unlink()
    # 2. Write (hashing the source on the way), then verify what is on the disk.
    with contextlib.ExitStack() as stack:
        src = sys.stdin.buffer if is_stdin(image) else stack.enter_context(image.open("rb"))
        source, size = write_image(src, device, capacity)
    if source != expected:
        raise UpdateError(f"{image}: sha256 {source}, expected {expected}")
    _drop_caches(device)
    got = sha256_of(device, size)
    if got != expected:
        raise UpdateError(f"root-{target}: written image has sha256 {got}, expected {expected}")
    # 3. Grow the file system to the slot, carry the identity over, take kernel and initrd.
    run(["e2fsck", "-fy", str(device)])
    run(["resize2fs", str(device)])
    with mounted(device, readonly=False) as root:
        for rel in IDENTITY_FILES:
            shutil.copy2(Path("/") / rel, root / rel)
        for pattern in IDENTITY_GLOBS:
            for path in Path("/").glob(pattern):
                shutil.copy2(path, root / path.relative_to("/"))
        release = read_release(root)
        kernels = sorted((root / "boot").glob("vmlinuz-*"))
        initrds = sorted((root / "boot").glob("initrd.img-*"))
        if not kernels or not initrds:
            raise UpdateError(f"root-{target}: no /boot/vmlinuz-* or /boot/initrd.img-*")
        folder = esp / "sipedge" / target
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(kernels[-1], folder / "vmlinuz.new")
        shutil.copyfile(initrds[-1], folder / "initrd.new")
    os.replace(folder / "vmlinuz.new", folder / "vmlinuz")
    os.replace(folder / "initrd.new", folder / "initrd")
    image_version = release.get("IMAGE_VERSION", "unknown")
    (folder / "version").write_text(image_version + "\n")
    # 4. The entry last: from now on systemd-boot tries the new slot first, `tries` times.
    version = max((e.version for e in entries), default=0) + 1
    text = render_entry(
        template_entry.path.read_text(), target, version, f"sipedge {image_version} (slot {target})"
    )
    entry = esp / "loader" / "entries" / f"sipedge-{target}+{tries}.conf"
    tmp = entry.with_name(entry.name + ".tmp")
    tmp.write_text(text)
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, entry)
    os.sync()
    return {
        "result": "installed",
        "slot": target,
        "entry": entry.name,
        "image_version": image_version,
        "release": release,
        "sha256": expected,
        "bytes": size,
    }


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sipedge-update", description=__doc__.splitlines()[0])
    parser.add_argument("--esp", type=Path, default=ESP, help=f"mounted ESP ({ESP})")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="slots, boot entries and counters (JSON)")
    p_install = sub.add_parser("install", help="write a root image to the inactive slot")
    p_install.add_argument(
        "image", type=Path, help="root file system image: a file, a block device or - (stdin)"
    )
    p_install.add_argument("--sha256", required=True, help="expected sha256 of the image")
    p_install.add_argument("--tries", type=int, default=3, help="boot tries before fallback")
    p_install.add_argument("--reboot", action="store_true", help="reboot into it afterwards")
    p_check = sub.add_parser("boot-check", help="wait for the daemons' /healthz")
    p_check.add_argument("--config", type=Path, default=CONFIG)
    p_check.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)

    try:
        if args.command == "status":
            print(json.dumps(status(args.esp), indent=2))
            return 0
        if args.command == "install":
            result = install(args.image, args.sha256, args.tries, args.esp)
            print(json.dumps(result, indent=2))
            if args.reboot:
                subprocess.run(["systemctl", "reboot"], check=False)
            return 0
        if args.command == "boot-check":
            return 0 if boot_check(args.config, args.timeout) else 1
    except (UpdateError, OSError) as exc:
        print(f"sipedge-update: {exc}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
