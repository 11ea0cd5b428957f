"""sipedge-update install end to end on real block devices (loop devices), as root.

Two loop devices are root-a and root-b; a fake sysfs tree makes them partitions of one disk
(this machine's loop driver does not scan partitions), /proc/self/mountinfo is faked to say
that / is root-a and the ESP (a plain folder here) is that disk's esp, and /dev is the real
one: the target's node is checked, the image written, read back, grown, mounted
(nosuid,nodev,noexec), the identity copied in, the kernel copied out, and the entry written.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sipedge.appliance import signing, update

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (loop devices, mount)"),
    pytest.mark.skipif(
        not Path("/dev/loop-control").exists() or shutil.which("losetup") is None,
        reason="needs loop devices",
    ),
]

ENTRY = """title sipedge 0.2.0 (slot a)
sort-key sipedge
version 1
linux /sipedge/a/vmlinuz
initrd /sipedge/a/initrd
options root=PARTLABEL=root-a rw quiet
"""


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


@dataclass
class Disk:
    """Two loop devices as root-a and root-b of one disk, as a fake sysfs tells it."""

    sys: Path
    root_a: str  # loopN
    root_b: str
    esp_dev: str = "254:1"


def attach(backing: Path) -> str:
    try:
        return Path(sh("losetup", "--show", "-f", str(backing))).name
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"losetup: {exc.stderr}")


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    # The loop driver here does not scan partitions (no loopNp3), so the disk's layout is a
    # fake sysfs tree whose partitions are two whole loop devices: /dev and the devices real.
    loops: list[str] = []
    try:
        for name in ("root-a", "root-b"):
            backing = tmp_path / f"{name}.part"
            with backing.open("wb") as f:
                f.write(b"old " + name.encode() + b" " * 4000)
                f.truncate(24 << 20)
            loops.append(attach(backing))
        sys = tmp_path / "sys"
        folder = sys / "devices/virtual/block/vdx"
        parts = {"vdx1": ("esp", "254:1"), loops[0]: ("root-a", ""), loops[1]: ("root-b", "")}
        for name, (label, dev) in parts.items():
            dev = dev or Path(f"/sys/block/{name}/dev").read_text().strip()
            (folder / name).mkdir(parents=True)
            (folder / name / "partition").write_text("1\n")
            (folder / name / "dev").write_text(dev + "\n")
            (folder / name / "uevent").write_text(f"DEVNAME={name}\nPARTNAME={label}\n")
            link = sys / "dev" / "block" / dev
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(folder / name, link.parent))
        yield Disk(sys, loops[0], loops[1])
    finally:
        for loop in loops:
            subprocess.run(["losetup", "-d", f"/dev/{loop}"], check=False)


def make_image(tmp_path: Path, version: str, kernel_link: str | None = None) -> Path:
    tree = tmp_path / f"tree-{version}"
    (tree / "boot").mkdir(parents=True)
    (tree / "etc" / "ssh").mkdir(parents=True)
    (tree / "etc" / "machine-id").write_text("")
    (tree / "usr/lib/sipedge-image").mkdir(parents=True)
    (tree / "usr/lib/sipedge-image/release").write_text(f"IMAGE_VERSION={version}\n")
    (tree / "boot" / "initrd.img-6.1.0-56-amd64").write_bytes(b"initrd " + version.encode())
    if kernel_link is None:
        (tree / "boot" / "vmlinuz-6.1.0-56-amd64").write_bytes(b"kernel " + version.encode())
    else:
        (tree / "boot" / "vmlinuz-6.1.0-56-amd64").symlink_to(kernel_link)
    image = tmp_path / f"root-{version}.img"
    sh("mkfs.ext4", "-q", "-d", str(tree), str(image), "12M")
    return image


def appliance(tmp_path: Path, disk: Disk) -> tuple[update.System, Ed25519PrivateKey]:
    root_dev = Path(f"/sys/block/{disk.root_a}/dev").read_text().strip()
    esp, proc, root = tmp_path / "esp", tmp_path / "proc", tmp_path / "root"
    (esp / "loader" / "entries").mkdir(parents=True)
    (esp / "loader" / "entries" / "sipedge-a.conf").write_text(ENTRY)
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text(
        f"28 1 {root_dev} / / rw - ext4 /dev/{disk.root_a} rw\n"
        f"30 28 {disk.esp_dev} / {esp} rw - vfat /dev/vdx1 rw\n"
    )
    (proc / "cmdline").write_text("root=PARTLABEL=root-a rw\n")
    (root / "usr/lib/sipedge-image").mkdir(parents=True)
    (root / "usr/lib/sipedge-image/release").write_text("IMAGE_VERSION=0.2.0\n")
    key = Ed25519PrivateKey.generate()
    keys = root / "usr/share/sipedge/update-keys"
    keys.mkdir(parents=True)
    (keys / "test.pub").write_bytes(signing.public_pem(key))
    return update.System(esp=esp, keys=keys, root=root, proc=proc, sys=disk.sys), key


def signed(image: Path, version: str, key: Ed25519PrivateKey) -> update.Request:
    data = image.read_bytes()
    manifest = signing.Manifest(version, "t", "0.1.0", hashlib.sha256(data).hexdigest(), len(data))
    text, sig = signing.sign(manifest, key)
    Path(f"{image}.manifest").write_bytes(text)
    Path(f"{image}.manifest.sig").write_bytes(sig)
    return update.Request(image=image, manifest=Path(f"{image}.manifest"), tries=2)


def test_a_signed_image_is_installed_into_the_sibling_partition(tmp_path: Path, disk: Disk) -> None:
    system, key = appliance(tmp_path, disk)
    image = make_image(tmp_path, "0.3.0")
    subprocess.run(["zstd", "-q", "-1", str(image)], check=True)
    req = signed(image, "0.3.0", key)
    zst = update.Request(image=Path(f"{image}.zst"), manifest=req.manifest, tries=2)
    result = update.install(zst, system)
    assert (result["slot"], result["image_version"], result["key"]) == ("b", "0.3.0", "test.pub")
    assert result["device"] == f"/dev/{disk.root_b}"
    assert (system.esp / "sipedge/b/vmlinuz").read_bytes() == b"kernel 0.3.0"
    assert (system.esp / "sipedge/b/initrd").read_bytes() == b"initrd 0.3.0"
    entry = system.esp / "loader/entries/sipedge-b+2.conf"
    assert "options root=PARTLABEL=root-b rw quiet" in entry.read_text()
    assert "version 2" in entry.read_text()
    # the slot holds the image, grown to the partition, with this machine's identity
    assert sh("blkid", "-o", "value", "-s", "TYPE", f"/dev/{disk.root_b}") == "ext4"
    machine_id = sh("debugfs", "-R", "cat /etc/machine-id", f"/dev/{disk.root_b}")
    assert machine_id == Path("/etc/machine-id").read_text().strip()


def test_a_kernel_linking_out_of_the_image_is_not_copied(tmp_path: Path, disk: Disk) -> None:
    system, key = appliance(tmp_path, disk)
    secret = tmp_path / "secret"
    secret.write_text("host secret\n")
    image = make_image(tmp_path, "0.3.0", kernel_link=str(secret))
    with pytest.raises(update.UpdateError, match="symbolic link"):
        update.install(signed(image, "0.3.0", key), system)
    assert not (system.esp / "sipedge/b/vmlinuz").exists()
    assert not (system.esp / "sipedge/b/vmlinuz.new").exists()
    assert sorted(p.name for p in (system.esp / "loader/entries").iterdir()) == ["sipedge-a.conf"]


def test_a_refused_image_leaves_the_partition_alone(tmp_path: Path, disk: Disk) -> None:
    system, key = appliance(tmp_path, disk)
    target = Path(f"/dev/{disk.root_b}")
    before = hashlib.sha256(target.read_bytes()).hexdigest()
    image = make_image(tmp_path, "0.3.0")
    req = signed(image, "0.3.0", key)
    image.write_bytes(image.read_bytes()[: 4 << 20])  # truncated
    with pytest.raises(update.Refused, match="truncated"):
        update.install(req, system)
    older = signed(make_image(tmp_path, "0.1.9"), "0.1.9", key)
    with pytest.raises(update.Refused, match="not newer"):
        update.install(older, system)
    assert hashlib.sha256(target.read_bytes()).hexdigest() == before


def test_a_slot_itself_is_not_an_update_image(tmp_path: Path, disk: Disk) -> None:
    system, _ = appliance(tmp_path, disk)
    for loop in (disk.root_a, disk.root_b):
        req = update.Request(image=Path(f"/dev/{loop}"), sha256="0" * 64, insecure=True)
        with pytest.raises(update.Refused, match="a root slot of this appliance"):
            update.install(req, system)
