"""The image's first-boot growth of the data partition (image/rootfs/usr/lib/sipedge-image/
grow-data), run on a loop device laid out as image/lib/assemble lays out the disk.

The file system is unmounted here (this machine's containers refuse ext4's online resize,
which the appliance does as root on /data); e2fsck runs first as resize2fs asks offline."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GROW = REPO / "image/rootfs/usr/lib/sipedge-image/grow-data"
MIB = 1 << 20

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (loop devices)"),
    pytest.mark.skipif(
        not Path("/dev/loop-control").exists() or shutil.which("sfdisk") is None,
        reason="needs loop devices and sfdisk",
    ),
]

LAYOUT = """label: gpt
start=1MiB, size=1MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=esp
start=2MiB, size=2MiB, name=root-a
start=4MiB, size=2MiB, name=root-b
start=6MiB, size=9MiB, name=data
"""


def sh(*argv: str, **env_vars: str) -> str:
    env = {**os.environ, **env_vars}
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"
    return done.stdout + done.stderr


class Loop:
    """A disk image on a loop device with /dev nodes for its partitions (no udev here)."""

    def __init__(self, backing: Path) -> None:
        self.backing = backing
        self.dev = sh("losetup", "--show", "-fP", str(backing)).strip()
        self.nodes: list[Path] = []
        self.refresh()

    def refresh(self) -> None:
        subprocess.run(["partx", "-a", self.dev], capture_output=True)  # "busy": already there
        name = Path(self.dev).name
        for part in sorted(Path("/sys/class/block").glob(f"{name}p*")):
            node = Path("/dev") / part.name
            if not node.exists():
                major, minor = (part / "dev").read_text().strip().split(":")
                os.mknod(node, 0o600 | 0o060000, os.makedev(int(major), int(minor)))
                self.nodes.append(node)

    def part(self, n: int) -> str:
        return f"{self.dev}p{n}"

    def sectors(self, n: int) -> int:
        return int(Path(f"/sys/class/block/{Path(self.dev).name}p{n}/size").read_text())

    def close(self) -> None:
        subprocess.run(["losetup", "-d", self.dev], capture_output=True)
        for node in self.nodes:
            node.unlink(missing_ok=True)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Loop]:
    backing = tmp_path / "disk.raw"
    backing.write_bytes(b"")
    os.truncate(backing, 16 * MIB)
    subprocess.run(["sfdisk", "-q", str(backing)], input=LAYOUT, text=True, check=True)
    loop = Loop(backing)
    try:
        sh("mkfs.ext4", "-q", "-L", "data", loop.part(4))
        yield loop
    finally:
        loop.close()


def enlarge(loop: Loop, mib: int) -> None:
    """The disk made bigger than the image, as a resized VM disk is."""
    os.truncate(loop.backing, mib * MIB)
    sh("losetup", "-c", loop.dev)


def grow(loop: Loop) -> str:
    sh("e2fsck", "-fy", loop.part(4))  # resize2fs on an unmounted file system asks for it
    return sh("sh", str(GROW), SIPEDGE_DATA_PARTITION=loop.part(4))


def fs_bytes(loop: Loop) -> int:
    info = dict(
        line.split(":", 1)
        for line in sh("dumpe2fs", "-h", loop.part(4)).splitlines()
        if ":" in line
    )
    return int(info["Block count"]) * int(info["Block size"])


def test_a_disk_the_size_of_the_image_is_left_alone(disk: Loop) -> None:
    before = disk.sectors(4)
    assert "growing" not in grow(disk)
    assert disk.sectors(4) == before


def test_a_bigger_disk_grows_the_data_partition_and_its_file_system_once(disk: Loop) -> None:
    roots = (disk.sectors(2), disk.sectors(3))
    enlarge(disk, 64)
    out = grow(disk)
    assert "growing it to the end of the disk" in out and "file system grown" in out
    assert disk.sectors(4) * 512 > 57 * MIB  # 64 MiB less the 6 MiB before it and GPT's tail
    assert fs_bytes(disk) > 56 * MIB
    assert (disk.sectors(2), disk.sectors(3)) == roots  # root-a and root-b keep their size
    assert "No errors detected" in sh("sfdisk", "--verify", disk.dev)  # backup GPT at the end
    assert "growing" not in grow(disk)  # the next boot: nothing to do


def test_a_data_partition_that_is_not_the_last_is_not_grown(tmp_path: Path) -> None:
    backing = tmp_path / "odd.raw"
    backing.write_bytes(b"")
    os.truncate(backing, 16 * MIB)
    layout = LAYOUT.replace("size=9MiB, name=data", "size=4MiB, name=data") + (
        "start=10MiB, size=4MiB, name=other\n"
    )
    subprocess.run(["sfdisk", "-q", str(backing)], input=layout, text=True, check=True)
    loop = Loop(backing)
    try:
        sh("mkfs.ext4", "-q", "-L", "data", loop.part(4))
        enlarge(loop, 64)
        before = loop.sectors(4)
        assert "is not the last partition" in grow(loop)
        assert loop.sectors(4) == before
    finally:
        loop.close()


def test_the_table_is_rewritten_under_the_disks_lock(disk: Loop) -> None:
    """While another holder has the disk's BSD lock (udev, probing it), grow-data waits; it
    writes the table only under the lock, so udev never probes a half-written GPT (the probe
    that dropped /dev/disk/by-partlabel/data on a factory-new VM)."""
    enlarge(disk, 64)
    sh("e2fsck", "-fy", disk.part(4))
    before = disk.sectors(4)
    held = os.open(disk.dev, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        child = subprocess.Popen(
            ["sh", str(GROW)],
            env={**os.environ, "SIPEDGE_DATA_PARTITION": disk.part(4)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=3)
        assert disk.sectors(4) == before  # nothing written while the lock is someone else's
    finally:
        os.close(held)  # the lock goes with the descriptor
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0, out
    assert "growing it to the end of the disk" in out
    assert disk.sectors(4) * 512 > 57 * MIB
