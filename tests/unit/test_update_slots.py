"""The target slot from the running root's own disk (sipedge.appliance.slots), on fake trees.

A fake /proc/self/mountinfo and a fake sysfs (``/sys/dev/block/MAJ:MIN`` links into
``/sys/devices/.../block/<disk>/<partition>``) stand in for the appliance.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sipedge.appliance import slots

VDA = "devices/pci0000:00/0000:00:04.0/virtio1/block/vda"
SDA = "devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/host6/target6:0:0/6:0:0:0/block/sda"


def add_disk(sys: Path, disk_path: str, parts: dict[str, tuple[str, str]]) -> None:
    """parts: kernel name -> (MAJ:MIN, GPT name)"""
    disk = sys / disk_path
    disk.mkdir(parents=True)
    (disk / "dev").write_text("0:0\n")
    for name, (dev, partname) in parts.items():
        folder = disk / name
        folder.mkdir()
        (folder / "partition").write_text("1\n")
        (folder / "dev").write_text(dev + "\n")
        (folder / "uevent").write_text(
            f"MAJOR={dev.split(':')[0]}\nMINOR={dev.split(':')[1]}\nDEVNAME={name}\n"
            f"DEVTYPE=partition\nPARTN=1\nPARTNAME={partname}\n"
        )
        link = sys / "dev" / "block" / dev
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(folder, link.parent))


def mountinfo(root_dev: str, extra: str = "") -> str:
    return (
        "22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
        f"28 1 {root_dev} / / rw,relatime shared:1 - ext4 /dev/vda2 rw\n"
        "30 28 254:1 / /efi rw,relatime shared:9 - vfat /dev/vda1 rw,umask=0077\n" + extra
    )


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    proc, sys = tmp_path / "proc", tmp_path / "sys"
    (proc / "self").mkdir(parents=True)
    add_disk(
        sys,
        VDA,
        {
            "vda1": ("254:1", "esp"),
            "vda2": ("254:2", "root-a"),
            "vda3": ("254:3", "root-b"),
            "vda4": ("254:4", "data"),
        },
    )
    # a USB stick carrying the same partition names
    add_disk(sys, SDA, {"sda1": ("8:1", "root-a"), "sda2": ("8:2", "root-b")})
    return proc, sys


def test_the_target_is_the_sibling_of_the_running_root(tree: tuple[Path, Path]) -> None:
    proc, sys = tree
    (proc / "self" / "mountinfo").write_text(mountinfo("254:2"))
    found = slots.find_slots(proc, sys)
    assert (found.disk, found.booted, found.running.name) == ("vda", "a", "vda2")
    assert (found.target.name, found.target.partname, found.target.devnum) == (
        "vda3",
        "root-b",
        (254, 3),
    )


def test_booted_from_b_the_target_is_a(tree: tuple[Path, Path]) -> None:
    proc, sys = tree
    (proc / "self" / "mountinfo").write_text(mountinfo("254:3"))
    found = slots.find_slots(proc, sys)
    assert (found.booted, found.target.name) == ("b", "vda2")


def test_a_usb_stick_with_the_same_label_is_never_chosen(tree: tuple[Path, Path]) -> None:
    proc, sys = tree
    # the appliance disk has no root-b (say, repartitioned); the stick has one: refused
    vda3 = sys / VDA / "vda3" / "uevent"
    vda3.write_text(vda3.read_text().replace("PARTNAME=root-b", "PARTNAME=spare"))
    (proc / "self" / "mountinfo").write_text(mountinfo("254:2"))
    with pytest.raises(slots.SlotError, match="no partition named root-b on vda"):
        slots.find_slots(proc, sys)


def test_booted_from_the_stick_the_target_is_on_the_stick(tree: tuple[Path, Path]) -> None:
    proc, sys = tree
    (proc / "self" / "mountinfo").write_text(mountinfo("8:1"))
    found = slots.find_slots(proc, sys)
    assert (found.disk, found.target.name) == ("sda", "sda2")


def test_the_last_mount_on_slash_wins_and_escapes_are_read(tree: tuple[Path, Path]) -> None:
    text = (
        "28 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
        "29 28 254:2 / / rw shared:2 master:1 - ext4 /dev/vda2 rw\n"
        "31 29 254:4 / /mnt/with\\040space rw - ext4 /dev/vda4 rw\n"
    )
    assert slots.mount_device(text, "/") == (254, 2)
    assert slots.mount_device(text, "/mnt/with space") == (254, 4)
    assert slots.mount_device(text, "/nowhere") is None


def test_a_root_that_is_not_a_partition_is_refused(tree: tuple[Path, Path]) -> None:
    proc, sys = tree
    (proc / "self" / "mountinfo").write_text(mountinfo("0:30"))
    with pytest.raises(slots.SlotError, match="not a block device"):
        slots.find_slots(proc, sys)
    whole = sys / "dev" / "block" / "254:0"
    whole.symlink_to(os.path.relpath(sys / VDA, whole.parent))
    (proc / "self" / "mountinfo").write_text(mountinfo("254:0"))
    with pytest.raises(slots.SlotError, match="not a partition"):
        slots.find_slots(proc, sys)


def test_a_root_partition_that_is_not_a_slot_is_refused(tree: tuple[Path, Path]) -> None:
    proc, sys = tree
    (proc / "self" / "mountinfo").write_text(mountinfo("254:4"))
    with pytest.raises(slots.SlotError, match="not root-a or root-b"):
        slots.find_slots(proc, sys)


def test_two_partitions_with_the_target_name_are_refused(tree: tuple[Path, Path]) -> None:
    proc, sys = tree
    vda4 = sys / VDA / "vda4" / "uevent"
    vda4.write_text(vda4.read_text().replace("PARTNAME=data", "PARTNAME=root-b"))
    (proc / "self" / "mountinfo").write_text(mountinfo("254:2"))
    with pytest.raises(slots.SlotError, match="more than one"):
        slots.find_slots(proc, sys)


def test_the_esp_must_be_on_the_same_disk(tree: tuple[Path, Path]) -> None:
    _, sys = tree
    assert slots.on_disk(mountinfo("254:2"), "/efi", "vda", sys)
    other = mountinfo("254:2").replace("254:1 / /efi", "8:2 / /efi")
    assert not slots.on_disk(other, "/efi", "vda", sys)
    assert not slots.on_disk(mountinfo("254:2"), "/boot/efi", "vda", sys)


def test_the_device_node_must_be_the_partition_itself(tmp_path: Path) -> None:
    part = slots.Partition(name="vda3", partname="root-b", devnum=(254, 3))
    with pytest.raises(slots.SlotError, match="no device node"):
        slots.device_node(part, tmp_path)
    (tmp_path / "vda3").write_bytes(b"")  # a planted regular file
    with pytest.raises(slots.SlotError, match="not a block device"):
        slots.device_node(part, tmp_path)
    (tmp_path / "vda3").unlink()
    (tmp_path / "vda3").symlink_to("/dev/null")  # a link is not followed either
    with pytest.raises(slots.SlotError, match="not a block device"):
        slots.device_node(part, tmp_path)
