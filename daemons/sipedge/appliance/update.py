"""sipedge-update: signed A/B updates of the appliance image under systemd-boot boot counting.

The disk (image/build) has GPT partitions named esp, root-a, root-b and data. Commands:

``status``
    The booted slot, the image release of each slot and the boot entries with their counters.
``install IMAGE --manifest MANIFEST [--signature SIG]``
    Verify, then write a root file system image (image/out/sipedge-root.img, raw or zstd
    compressed; a file or a block device) to the inactive slot. Before anything is written:
    the manifest's Ed25519 signature (signing.py) with the keys baked in the image, its
    version (newer than the running one unless ``--allow-downgrade``; the running one at least
    its ``min_version``), the image's size and sha256 against the manifest (a truncated image
    is refused) and its format (ext4); the target is the other root partition of the disk
    that holds ``/`` (slots.py). Any of these refuses the update with exit code 3. Then: write
    while hashing again (what is written is what was verified), carry the machine identity
    (machine-id, SSH host keys) over, put the slot's kernel and initrd on the ESP, without
    following any link in the image (rootfs.py), and add the entry
    ``sipedge-<slot>+<tries>.conf`` with the next version: systemd-boot boots it first, counting
    the tries down; ``systemd-bless-boot`` marks it good once boot-complete.target is reached,
    which ``sipedge-boot-check.service`` holds back until the daemons are healthy. An entry
    whose tries ran out sorts last, so the old slot boots again. The data partition is not
    touched. ``--reboot`` reboots at the end.
    ``--insecure-no-signature --sha256 HEX`` skips the manifest (lab use only).
``verify IMAGE --manifest MANIFEST``
    The checks of ``install`` up to the write, nothing written (exit 3 when refused).
``boot-check``
    Wait until sipd's and mediad's /healthz answer 200 (health.py).

Exit codes: 0 done, 1 failed (the new slot has no boot entry), 2 usage, 3 refused (nothing
was written).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sipedge.appliance import artifact, health, rootfs, signing, slots

SLOTS = ("a", "b")
ESP = Path(os.environ.get("SIPEDGE_ESP", "/efi"))
CONFIG = Path("/etc/sipedge/sipedge.yaml")
RELEASE_FILE = "usr/lib/sipedge-image/release"
ENTRY_RE = re.compile(r"^sipedge-(?P<slot>[ab])(?:\+(?P<left>\d+)(?:-(?P<done>\d+))?)?\.conf$")
# What makes this appliance itself and lives on the root slot, carried into the new slot: the
# machine identity, and what the first-boot seed applied there (sipedge-provision applies a
# seed once per instance: the host name, root's keys and the network files would otherwise be
# lost with the old slot; the seed volume need not stay attached).
IDENTITY_FILES = ("etc/machine-id", "etc/hostname", "root/.ssh/authorized_keys")
IDENTITY_GLOBS = (
    "etc/ssh/ssh_host_*",
    "etc/systemd/network/*-sipedge-*",
    "etc/systemd/network/*.replaced-by-seed",  # sipedge-provision retires the catch-all again
)
EXIT_REFUSED = 3


class UpdateError(Exception):
    """A failed update, with a message for the operator."""


class Refused(UpdateError):
    """An update refused before anything was written (exit code 3)."""


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


@dataclass(frozen=True)
class System:
    """Where install looks at the running system (tests point these at fake trees)."""

    esp: Path = ESP
    keys: Path = signing.KEYS_DIR
    root: Path = Path("/")
    proc: Path = Path("/proc")
    sys: Path = Path("/sys")
    dev: Path = Path("/dev")


@dataclass(frozen=True)
class Request:
    image: Path
    manifest: Path | None = None
    signature: Path | None = None
    sha256: str | None = None
    insecure: bool = False
    allow_downgrade: bool = False
    tries: int = 3


@dataclass
class Plan:
    """Everything install checked before writing: what goes where."""

    image: Path
    compressed: bool
    to_end: bool
    size: int
    sha256: str
    target: str
    device: Path
    current: str
    template: Entry
    entries: list[Entry]
    manifest: signing.Manifest | None = None
    key: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)


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


def read_release_text(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def read_release(root: Path) -> dict[str, str]:
    """The release file of the running system (trusted: it is the booted root)."""
    path = root / RELEASE_FILE
    return read_release_text(path.read_text()) if path.exists() else {}


def run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise UpdateError(f"{' '.join(argv)}: {(result.stderr or result.stdout).strip()}")


@contextlib.contextmanager
def mounted(device: Path) -> Iterator[Path]:
    where = Path(tempfile.mkdtemp(prefix="sipedge-update-"))
    options = "rw,nosuid,nodev,noexec"
    try:
        run(["mount", "-t", "ext4", "-o", options, "--", str(device), str(where)])
        try:
            yield where
        finally:
            run(["umount", "--", str(where)])
    finally:
        with contextlib.suppress(OSError):
            where.rmdir()


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


def _check_manifest(req: Request, system: System) -> tuple[signing.Manifest | None, str | None]:
    if req.insecure:
        if req.sha256 is None:
            raise Refused("--insecure-no-signature needs --sha256")
        if req.manifest is not None:
            raise Refused("--insecure-no-signature takes --sha256, not --manifest")
        return None, None
    if req.sha256 is not None:
        raise Refused("--sha256 is accepted only with --insecure-no-signature (lab use)")
    if req.manifest is None:
        raise Refused("no --manifest: a signed manifest is required")
    sig_path = req.signature or req.manifest.with_name(req.manifest.name + ".sig")
    try:
        data = signing.read_manifest_bytes(req.manifest)
        signature = signing.read_signature(sig_path)
        manifest, key = signing.verify(data, signature, signing.load_keys(system.keys))
        running = read_release(system.root).get("IMAGE_VERSION", "")
        signing.check_versions(manifest, running, req.allow_downgrade)
    except signing.Refused as exc:
        raise Refused(str(exc)) from None
    except ValueError as exc:  # a malformed key file in the image
        raise UpdateError(str(exc)) from None
    return manifest, key


def plan(req: Request, system: System) -> Plan:
    """Every check of an install, in order; Refused on the first that fails. Writes nothing."""
    if not 1 <= req.tries <= 9:
        raise Refused("--tries must be 1-9")
    expected = ""
    if req.sha256 is not None:
        expected = req.sha256.strip().lower().split()[0] if req.sha256.strip() else ""
        if not re.fullmatch(r"[0-9a-f]{64}", expected):
            raise Refused("--sha256 must be 64 hex digits")
    if not (system.esp / "loader" / "entries").is_dir():
        raise Refused(f"{system.esp} is not the mounted ESP (no loader/entries)")
    manifest, key = _check_manifest(req, system)
    # The target: the other root partition of the disk that holds /, and the ESP on it too.
    try:
        found = slots.find_slots(system.proc, system.sys)
        mountinfo = (system.proc / "self" / "mountinfo").read_text()
        if not slots.on_disk(mountinfo, str(system.esp), found.disk, system.sys):
            raise slots.SlotError(f"{system.esp} is not a partition of {found.disk}, which holds /")
        device = slots.device_node(found.target, system.dev)
    except slots.SlotError as exc:
        raise Refused(str(exc)) from None
    cmdline = (system.proc / "cmdline").read_text()
    if "root=PARTLABEL=" in cmdline and booted_slot(cmdline) != found.booted:
        raise Refused(f"the kernel command line names another slot than / ({found.running.name})")
    entries = read_entries(system.esp)
    template = next((e for e in entries if e.slot == found.booted), None)
    if template is None:
        raise Refused(f"no boot entry for the booted slot {found.booted}")
    # The image: its size, format and hash, read once before anything is written.
    try:
        st = req.image.stat()
    except OSError as exc:
        raise Refused(f"{req.image}: {exc.strerror}") from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise Refused(f"{req.image}: not a file or a block device")
    if stat.S_ISBLK(st.st_mode) and (os.major(st.st_rdev), os.minor(st.st_rdev)) in (
        found.target.devnum,
        found.running.devnum,
    ):
        raise Refused(f"{req.image} is a root slot of this appliance, not an update image")
    compressed = artifact.is_compressed(req.image)
    size: int | None = manifest.size if manifest else None
    if not compressed:
        have = artifact.byte_size(req.image)
        if size is None:
            size = have
        elif have < size or (have > size and stat.S_ISREG(st.st_mode)):
            what = "truncated" if have < size else "longer than the manifest says"
            raise Refused(f"{req.image} is {what}: {have} bytes, the manifest says {size}")
    capacity = artifact.byte_size(device)
    if size is not None and size > capacity:
        raise Refused(f"the image ({size} bytes) is larger than {found.target.name} ({capacity})")
    expected = manifest.sha256 if manifest else expected
    to_end = compressed or not stat.S_ISBLK(st.st_mode)
    try:
        size = artifact.check_image(req.image, compressed, size, expected, to_end)
    except artifact.BadImage as exc:
        raise Refused(str(exc)) from None
    if size > capacity:
        raise Refused(f"the image ({size} bytes) is larger than {found.target.name} ({capacity})")
    return Plan(
        image=req.image,
        compressed=compressed,
        to_end=to_end,
        size=size,
        sha256=expected,
        target=other(found.booted),
        device=device,
        current=found.booted,
        template=template,
        entries=entries,
        manifest=manifest,
        key=key,
        notes={"device": str(device), "disk": found.disk},
    )


def _take_boot_files(root: Path, folder: Path) -> dict[str, str]:
    """Identity into the new root, its kernel and initrd onto the ESP; links never followed."""
    try:
        # regular files only: a link (to anywhere) is not carried, and fails nothing
        for rel in IDENTITY_FILES:
            path = Path("/") / rel
            if path.is_file() and not path.is_symlink():
                rootfs.copy_in(path, root, rel)
        for pattern in IDENTITY_GLOBS:
            for path in sorted(Path("/").glob(pattern)):
                if path.is_file() and not path.is_symlink():
                    rootfs.copy_in(path, root, str(path.relative_to("/")))
        release = read_release_text(rootfs.read_file(root, RELEASE_FILE).decode())
        names = rootfs.list_folder(root, "boot")
        kernels = sorted(n for n in names if n.startswith("vmlinuz-"))
        initrds = sorted(n for n in names if n.startswith("initrd.img-"))
        if not kernels or not initrds:
            raise UpdateError("no /boot/vmlinuz-* or /boot/initrd.img-* in the image")
        folder.mkdir(parents=True, exist_ok=True)
        rootfs.copy_out(root, f"boot/{kernels[-1]}", folder / "vmlinuz.new")
        rootfs.copy_out(root, f"boot/{initrds[-1]}", folder / "initrd.new")
    except (rootfs.LinkRefused, FileNotFoundError) as exc:
        raise UpdateError(f"the image: {exc}") from None
    return release


def apply(p: Plan, tries: int, esp: Path) -> dict[str, Any]:
    """Write the checked image to the target slot and make it the next boot (tries times)."""
    # 1. The target slot stops being bootable before it is overwritten.
    for e in p.entries:
        if e.slot == p.target:
            e.path.unlink()
    for name in ("vmlinuz", "initrd", "version"):
        with contextlib.suppress(FileNotFoundError):
            (esp / "sipedge" / p.target / name).unlink()
    # 2. Write, hashing the bytes on their way to the slot: what is written is what was
    #    verified (an image changed since the check is caught here, and the slot gets no
    #    entry). No read-back pass: as with Mender or RAUC, the block layer's fsync is trusted
    #    and e2fsck below reads the file system's metadata; reading 1.2 GiB again cost
    #    80-100 s under TCG and minutes on a slow appliance.
    try:
        with artifact.open_image(p.image, p.compressed) as src:
            capacity = artifact.byte_size(p.device)
            written = artifact.write_image(src, p.device, capacity, p.size, p.to_end)
    except artifact.BadImage as exc:
        raise UpdateError(f"{exc} (the slot has no boot entry)") from None
    if written != p.sha256:
        raise UpdateError(
            f"{p.image} changed while it was written: sha256 {written}, expected {p.sha256}"
            " (the slot has no boot entry)"
        )
    # 3. Grow the file system to the slot, carry the identity over, take kernel and initrd.
    run(["e2fsck", "-fy", str(p.device)])
    run(["resize2fs", str(p.device)])
    folder = esp / "sipedge" / p.target
    with mounted(p.device) as root:
        release = _take_boot_files(root, folder)
    image_version = release.get("IMAGE_VERSION", "unknown")
    if p.manifest is not None and image_version != p.manifest.version:
        raise UpdateError(
            f"the image says IMAGE_VERSION={image_version}, its manifest {p.manifest.version}"
        )
    os.replace(folder / "vmlinuz.new", folder / "vmlinuz")
    os.replace(folder / "initrd.new", folder / "initrd")
    (folder / "version").write_text(image_version + "\n")
    # 4. The entry last: from now on systemd-boot tries the new slot first, `tries` times.
    version = max((e.version for e in p.entries), default=0) + 1
    text = render_entry(
        p.template.path.read_text(), p.target, version, f"sipedge {image_version} (slot {p.target})"
    )
    entry = esp / "loader" / "entries" / f"sipedge-{p.target}+{tries}.conf"
    tmp = entry.with_name(entry.name + ".tmp")
    tmp.write_text(text)
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, entry)
    os.sync()
    return {
        "result": "installed",
        "slot": p.target,
        "entry": entry.name,
        "image_version": image_version,
        "release": release,
        "manifest": p.manifest.as_dict() if p.manifest else None,
        "key": p.key,
        "sha256": p.sha256,
        "bytes": p.size,
        **p.notes,
    }


def install(req: Request, system: System | None = None) -> dict[str, Any]:
    system = system or System()
    return apply(plan(req, system), req.tries, system.esp)


def _request(args: argparse.Namespace) -> Request:
    return Request(
        image=args.image,
        manifest=args.manifest,
        signature=args.signature,
        sha256=args.sha256,
        insecure=args.insecure_no_signature,
        allow_downgrade=args.allow_downgrade,
        tries=getattr(args, "tries", 3),
    )


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or "sipedge-update"
    parser = argparse.ArgumentParser(prog="sipedge-update", description=doc.splitlines()[0])
    parser.add_argument("--esp", type=Path, default=ESP, help=f"mounted ESP ({ESP})")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="slots, boot entries and counters (JSON)")
    p_install = sub.add_parser("install", help="verify a signed root image, write it, boot it")
    p_verify = sub.add_parser("verify", help="the checks of install, nothing written")
    for p in (p_install, p_verify):
        p.add_argument("image", type=Path, help="root image (raw or .zst): a file or a device")
        p.add_argument("--manifest", type=Path, help="signed manifest (IMAGE.manifest)")
        p.add_argument("--signature", type=Path, help="its signature (default MANIFEST.sig)")
        p.add_argument("--allow-downgrade", action="store_true", help="also an older image")
        p.add_argument("--insecure-no-signature", action="store_true", help="lab only: no manifest")
        p.add_argument("--sha256", help="with --insecure-no-signature: the image's sha256")
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
        if args.command == "verify":
            checked = plan(_request(args), System(esp=args.esp))
            print(json.dumps({"result": "verified", "slot": checked.target, **checked.notes}))
            return 0
        if args.command == "install":
            result = install(_request(args), System(esp=args.esp))
            print(json.dumps(result, indent=2))
            if args.reboot:
                subprocess.run(["systemctl", "reboot"], check=False)
            return 0
        if args.command == "boot-check":
            return 0 if health.boot_check(args.config, args.timeout) else 1
    except Refused as exc:
        print(f"sipedge-update: refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except (UpdateError, OSError) as exc:
        print(f"sipedge-update: {exc}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
