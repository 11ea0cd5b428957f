"""Which partition is the other A/B slot: found from the running root's own disk.

The running root is the file system mounted on ``/`` (``/proc/self/mountinfo`` gives its
device number); sysfs (``/sys/dev/block/MAJ:MIN``) leads from that partition to its disk, and
only that disk's partitions are candidates. Partition names (GPT ``root-a``/``root-b``, the
``PARTNAME`` of each partition's ``uevent``) pick among them: a USB stick or a second disk
carrying a partition named ``root-b`` is never chosen, because it is not a sibling of the
running root. The device node is then checked to be that very device number (``st_rdev``),
so a stale or planted ``/dev`` entry is refused too.

Owns: reading mountinfo and the sysfs block tree, the choice of the target partition.
Must not: write anything, or choose by a label found anywhere else (``/dev/disk/by-partlabel``).
Driven by: update.py (``find_slots``), with the roots of /proc, /sys and /dev as arguments so
that tests run it on fake trees.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

SLOT_NAMES = {"root-a": "a", "root-b": "b"}


class SlotError(Exception):
    """The running system is not an A/B appliance whose slots can be told apart safely."""


@dataclass(frozen=True)
class Partition:
    name: str  # kernel name: vda3, nvme0n1p3
    partname: str  # GPT partition name: root-b
    devnum: tuple[int, int]

    @property
    def dev(self) -> str:
        return f"{self.devnum[0]}:{self.devnum[1]}"


@dataclass(frozen=True)
class Slots:
    disk: str  # kernel name of the disk: vda
    booted: str  # a or b
    running: Partition
    target: Partition


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_device(mountinfo: str, mount_point: str) -> tuple[int, int] | None:
    """MAJ:MIN of the file system visible at `mount_point` (the last mount over it wins)."""
    found: tuple[int, int] | None = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 5 or "-" not in fields[6:]:
            continue
        if _unescape(fields[4]) != mount_point:
            continue
        major, sep, minor = fields[2].partition(":")
        if not sep or not major.isdigit() or not minor.isdigit():
            continue
        found = (int(major), int(minor))
    return found


def _uevent(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key] = value
    return values


def _devnum(text: str) -> tuple[int, int]:
    major, _, minor = text.strip().partition(":")
    return int(major), int(minor)


def _partition(folder: Path) -> Partition:
    event = _uevent(folder / "uevent")
    return Partition(
        name=event.get("DEVNAME", folder.name),
        partname=event.get("PARTNAME", ""),
        devnum=_devnum((folder / "dev").read_text()),
    )


def find_slots(proc: Path = Path("/proc"), sys: Path = Path("/sys")) -> Slots:
    """The booted slot and the target partition, both on the disk that holds ``/``."""
    root_dev = mount_device((proc / "self" / "mountinfo").read_text(), "/")
    if root_dev is None:
        raise SlotError("no file system mounted on / in /proc/self/mountinfo")
    dev = f"{root_dev[0]}:{root_dev[1]}"
    link = sys / "dev" / "block" / dev
    if not link.exists():
        raise SlotError(f"/ is on device {dev}, which is not a block device (no {link})")
    part_dir = link.resolve()
    if not (part_dir / "partition").is_file():
        raise SlotError(f"/ is on {part_dir.name} ({dev}), which is not a partition of a disk")
    running = _partition(part_dir)
    booted = SLOT_NAMES.get(running.partname)
    if booted is None:
        raise SlotError(
            f"/ is on {running.name}, GPT name {running.partname!r}: not root-a or root-b"
        )
    disk_dir = part_dir.parent
    want = "root-b" if booted == "a" else "root-a"
    siblings = [
        _partition(child)
        for child in sorted(disk_dir.iterdir())
        if child.is_dir() and (child / "partition").is_file() and (child / "uevent").is_file()
    ]
    matches = [p for p in siblings if p.partname == want]
    if not matches:
        raise SlotError(f"no partition named {want} on {disk_dir.name}, the disk that holds /")
    if len(matches) > 1:
        names = ", ".join(p.name for p in matches)
        raise SlotError(f"more than one partition named {want} on {disk_dir.name}: {names}")
    return Slots(disk=disk_dir.name, booted=booted, running=running, target=matches[0])


def on_disk(mountinfo: str, mount_point: str, disk: str, sys: Path = Path("/sys")) -> bool:
    """True when the file system at `mount_point` is a partition of `disk` (e.g. the ESP)."""
    devnum = mount_device(mountinfo, mount_point)
    if devnum is None:
        return False
    link = sys / "dev" / "block" / f"{devnum[0]}:{devnum[1]}"
    if not link.exists():
        return False
    part_dir = link.resolve()
    return (part_dir / "partition").is_file() and part_dir.parent.name == disk


def device_node(partition: Partition, dev: Path = Path("/dev")) -> Path:
    """/dev/<name>, checked to be the block device with the partition's own number."""
    node = dev / partition.name
    try:
        st = os.stat(node, follow_symlinks=False)
    except FileNotFoundError:
        raise SlotError(f"no device node {node}") from None
    if not stat.S_ISBLK(st.st_mode):
        raise SlotError(f"{node} is not a block device")
    if (os.major(st.st_rdev), os.minor(st.st_rdev)) != partition.devnum:
        raise SlotError(
            f"{node} is device {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}, "
            f"expected {partition.dev}"
        )
    return node
