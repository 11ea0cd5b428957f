"""`sipedge-provision`: apply the first-boot seed (NoCloud, ConfigDrive or QEMU fw_cfg).

Why not cloud-init: it would add about 40 MiB of Python packages and several seconds of every
boot (under TCG, tens of seconds) for the handful of keys an edge needs; this reads the same
seed formats (seed.py says which keys) and nothing else, and refuses what it does not read.

Order of a boot (sipedge-provision.service runs at every boot, after /data is mounted and
grown, before systemd-networkd, ssh and the sipedge daemons): retire the image's DHCP
catch-all again if a seeded network replaced it (a new A/B slot brings it back; the seeded
files themselves are carried over by sipedge-update), find the seed volume (label
`cidata`/`CIDATA`, then `config-2`; or QEMU's fw_cfg items
`opt/sipedge/{meta-data,user-data,network-config}`), mount it read-only, parse it, then
apply it once per instance-id: host name, root's SSH keys, networkd files (replacing the
DHCP catch-all), written files, the TLS material and API tokens, and the sipedge config, which
is checked with the same loader as `sipedge check-config` before it replaces the running one.
A seed that fails anywhere changes nothing after the failing step's predecessors and leaves
its reason in the journal and in `/var/lib/sipedge/provision.json` (read by `/healthz`); SSH
keys and network go first so that a bad config still leaves the appliance reachable.

Owns: finding, reading and applying the seed. Must not: parse the seed formats (seed.py),
render networkd files (networkd.py), or start services.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sipedge.appliance import networkd, seed
from sipedge.appliance.seed import Seed, SeedError

NOCLOUD_FILES = ("meta-data", "user-data", "network-config")
CONFIGDRIVE_FILES = ("openstack/latest/meta_data.json", "openstack/latest/user_data")
FW_CFG = Path("/sys/firmware/qemu_fw_cfg/by_name/opt/sipedge")
SEED_LABELS = ("cidata", "CIDATA", "config-2")  # NoCloud (ISO or vfat), OpenStack ConfigDrive
STATUS = "var/lib/sipedge/provision.json"
CONFIG = "etc/sipedge/sipedge.yaml"
TLS_DIR = "etc/sipedge/tls"
NETWORK_DIR = "etc/systemd/network"
CATCH_ALL = "20-wired.network"  # the image's DHCP on eth*/en*: a seeded network replaces it

ConfigCheck = Callable[[Path], "str | None"]  # a config file -> the reason it is refused, or None


@dataclass
class Report:
    instance_id: str = ""
    source: str = ""
    applied: list[str] = field(default_factory=list)
    error: str | None = None
    media_interfaces: list[str] = field(default_factory=list)
    hostname: str | None = None  # applied to /etc/hostname

    def as_dict(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "source": self.source,
            "applied": self.applied,
            "error": self.error,
            "media_interfaces": self.media_interfaces,
            "time": int(time.time()),
        }


def read_files(folder: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """The seed files present in a mounted seed (regular files only, size-limited)."""
    out = {}
    for name in names:
        path = folder / name
        if path.is_symlink() or not path.is_file():
            continue
        with path.open("rb") as f:
            data = f.read(seed.MAX_FILE + 1)
        out[name] = data
    return out


def parse_folder(folder: Path) -> Seed:
    """A mounted NoCloud or ConfigDrive volume, or fw_cfg's folder of NoCloud items."""
    if (folder / CONFIGDRIVE_FILES[0]).exists():
        return seed.configdrive(read_files(folder, CONFIGDRIVE_FILES))
    return seed.nocloud(read_files(folder, NOCLOUD_FILES))


def _owner(target: Path) -> tuple[int, int]:
    """Who a replaced file belongs to: the file it replaces (root:sipedge for the config and
    the tokens, so that the daemons can read them), else the folder's group."""
    try:
        st = target.lstat()
        if not target.is_symlink():
            return st.st_uid, st.st_gid
    except FileNotFoundError:
        pass
    return os.geteuid(), target.parent.stat().st_gid


def _make_folders(folder: Path) -> None:
    """Create folder and its missing parents, each in its parent's group (etc/sipedge/tls
    is then the daemons' group, as etc/sipedge is)."""
    if folder.is_dir():
        return
    _make_folders(folder.parent)
    folder.mkdir(exist_ok=True)
    gid = folder.parent.stat().st_gid
    if folder.stat().st_gid != gid:
        os.chown(folder, -1, gid)


def _write(root: Path, rel: str, data: bytes, mode: int) -> None:
    """Replace root/rel atomically; an existing symlink is replaced, never followed."""
    target = root / rel.lstrip("/")
    _make_folders(target.parent)
    uid, gid = _owner(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        if (uid, gid) != (os.geteuid(), os.getegid()):
            os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _config_text(s: Seed, media: list[str]) -> str | None:
    """The seeded config, with the interfaces marked for media when it names none itself."""
    if s.sipedge_config is None:
        return None
    if not media:
        return s.sipedge_config
    try:
        data = yaml.safe_load(s.sipedge_config)
    except yaml.YAMLError:
        return s.sipedge_config  # the check refuses it with the loader's own words
    if not isinstance(data, dict):
        return s.sipedge_config
    section = data.setdefault("media", {})
    if isinstance(section, dict) and "interfaces" not in section:
        section["interfaces"] = media
    return yaml.safe_dump(data, sort_keys=False)


def apply(s: Seed, root: Path, check: ConfigCheck) -> Report:
    """Apply the seed under root (/ on the appliance, a folder in tests)."""
    report = Report(instance_id=s.instance_id, source=s.source)
    try:
        if s.authorized_keys:  # first: whatever fails later, the operator can log in
            (root / "root/.ssh").mkdir(parents=True, exist_ok=True, mode=0o700)
            _write(
                root,
                "root/.ssh/authorized_keys",
                ("\n".join(s.authorized_keys) + "\n").encode(),
                0o600,
            )
            report.applied.append(f"{len(s.authorized_keys)} SSH key(s) for root")
        if s.hostname:
            _write(root, "etc/hostname", f"{s.hostname}\n".encode(), 0o644)
            report.hostname = s.hostname
            report.applied.append(f"host name {s.hostname}")
        if s.network is not None:
            rendered = networkd.render(s.network)
            folder = root / NETWORK_DIR
            folder.mkdir(parents=True, exist_ok=True)
            for old in folder.glob("*-sipedge-*"):
                old.unlink()
            for unit_file, unit_text in rendered.files.items():
                _write(root, f"{NETWORK_DIR}/{unit_file}", unit_text.encode(), 0o644)
            with contextlib.suppress(FileNotFoundError):
                (folder / CATCH_ALL).rename(folder / f"{CATCH_ALL}.replaced-by-seed")
            report.media_interfaces = list(rendered.media_interfaces)
            report.applied.append(f"network: {len(rendered.files)} networkd file(s)")
        for w in s.write_files:
            _write(root, w.path, w.content, w.mode)
            report.applied.append(f"file {w.path}")
        for part, pem in sorted(s.tls.items()):
            mode = 0o640 if part == "key" else 0o644
            _write(root, f"{TLS_DIR}/{part}.pem", pem.encode(), mode)
            report.applied.append(f"TLS {part}")
        for file_name, token in (("api-token", s.api_token), ("api-read-token", s.api_read_token)):
            if token is not None:
                _write(root, f"etc/sipedge/{file_name}", f"{token}\n".encode(), 0o640)
                report.applied.append(file_name)
        text = _config_text(s, report.media_interfaces)
        if text is not None:
            candidate = root / f"{CONFIG}.seed"
            _write(root, f"{CONFIG}.seed", text.encode(), 0o640)
            problem = check(candidate)
            if problem is not None:
                raise SeedError(f"user-data sipedge.config: {problem} (the previous config stays)")
            os.replace(candidate, root / CONFIG)
            report.applied.append("sipedge config")
    except (SeedError, OSError) as exc:
        report.error = str(exc)
    return report


def check_with_cli(path: Path) -> str | None:
    """`sipedge check-config`'s verdict on a config file (None: good), run as the operator
    would run it (the appliance layer does not import the config package)."""
    done = subprocess.run(
        [sys.executable, "-c", "from sipedge.cli import main; main()", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode == 0:
        return None
    return (done.stdout + done.stderr).strip()[-2000:] or f"check-config exited {done.returncode}"


def _labelled_volume() -> str | None:
    """The device of the first volume labelled as a seed, or None."""
    for label in SEED_LABELS:
        found = subprocess.run(["blkid", "-L", label], capture_output=True, text=True)
        device = found.stdout.strip()
        if found.returncode == 0 and device:
            return device
    return None


@contextlib.contextmanager
def mounted_seed() -> Iterator[Path | None]:
    """The seed volume mounted read-only (by label), else fw_cfg's folder, else None."""
    device = _labelled_volume()
    if device is None:
        # An ISO seed comes as a CD-ROM (Proxmox, libvirt), whose device appears only once
        # udev's coldplug has loaded sr_mod, which may still be running this early: wait for
        # udev's queue (bounded) and look once more.
        subprocess.run(["udevadm", "settle", "--timeout=15"], capture_output=True, check=False)
        device = _labelled_volume()
    if device is not None:
        with tempfile.TemporaryDirectory(prefix="sipedge-seed-") as where:
            subprocess.run(["mount", "-o", "ro,nosuid,nodev,noexec", device, where], check=True)
            try:
                yield Path(where)
            finally:
                subprocess.run(["umount", where], check=False)
        return
    subprocess.run(["modprobe", "qemu_fw_cfg"], capture_output=True, check=False)
    if FW_CFG.is_dir():
        with tempfile.TemporaryDirectory(prefix="sipedge-seed-") as where:
            for name in NOCLOUD_FILES:
                raw = FW_CFG / name / "raw"
                if raw.is_file():
                    (Path(where) / name).write_bytes(raw.read_bytes()[: seed.MAX_FILE + 1])
            yield Path(where) if any(Path(where).iterdir()) else None
        return
    yield None


def retire_catch_all(root: Path) -> bool:
    """A seeded network replaced the image's DHCP catch-all; a new root slot (an A/B update
    carries the seeded files and the marker, the slot brings the catch-all back) retires it
    again. Run at every boot, before systemd-networkd. True when it did."""
    folder = root / NETWORK_DIR
    marker = folder / f"{CATCH_ALL}.replaced-by-seed"
    if not marker.is_file() or not (folder / CATCH_ALL).is_file():
        return False
    (folder / CATCH_ALL).replace(marker)
    return True


def set_hostname(root: Path, report: Report) -> None:
    """The seeded host name for this boot too (systemd read /etc/hostname before us)."""
    if root.resolve() != Path("/") or not report.hostname:
        return
    try:
        socket.sethostname(report.hostname)
    except OSError as exc:
        print(f"sipedge-provision: host name for this boot: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sipedge-provision", description=__doc__)
    parser.add_argument("--root", type=Path, default=Path("/"))
    parser.add_argument("--seed-dir", type=Path, help="a seed folder (default: find the volume)")
    parser.add_argument("--force", action="store_true", help="apply even if this instance was")
    args = parser.parse_args(argv)
    status = args.root / STATUS
    if retire_catch_all(args.root):
        print(f"sipedge-provision: {NETWORK_DIR}/{CATCH_ALL} retired again (a seeded network)")
    with contextlib.ExitStack() as stack:
        folder = args.seed_dir or stack.enter_context(mounted_seed())
        if folder is None:
            print("sipedge-provision: no seed (cidata, config-2 or fw_cfg); nothing to do")
            return 0
        try:
            s = parse_folder(folder)
        except SeedError as exc:
            report = Report(error=str(exc))
        else:
            done = {}
            with contextlib.suppress(OSError, ValueError):
                done = json.loads(status.read_text())
            if (
                done.get("instance_id") == s.instance_id
                and not done.get("error")
                and not args.force
            ):
                print(f"sipedge-provision: instance {s.instance_id} was provisioned already")
                return 0
            report = apply(s, args.root, check_with_cli)
            set_hostname(args.root, report)
    _write(args.root, STATUS, json.dumps(report.as_dict(), indent=1).encode(), 0o644)
    for line in report.applied:
        print(f"sipedge-provision: {line}")
    if report.error:
        print(f"sipedge-provision: the seed was refused: {report.error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
