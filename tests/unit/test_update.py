"""sipedge-update: boot entries, the image reader/writer, and install's refusals.

The whole update (boot counting, bless, rollback) runs on the real image in the Molecule
scenario `vm`; these tests pin the decisions it rests on without a disk or a reboot. The
refusals run `plan` (every check of `install`) against a fake appliance: /proc/self/mountinfo,
a sysfs tree, an ESP, baked keys and a slot that is a plain file, which must be unchanged.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sipedge.appliance import artifact, signing, slots, update

ENTRY_A = """title sipedge 0.1.0 (slot a)
version 1
linux /sipedge/a/vmlinuz
initrd /sipedge/a/initrd
options root=PARTLABEL=root-a ro quiet net.ifnames=0 console=ttyS0
"""


def write_entries(esp: Path, files: dict[str, int]) -> None:
    folder = esp / "loader" / "entries"
    folder.mkdir(parents=True, exist_ok=True)
    for name, version in files.items():
        (folder / name).write_text(f"title x\nversion {version}\n")


@pytest.mark.parametrize(
    ("cmdline", "slot"),
    [
        ("BOOT_IMAGE=/x root=PARTLABEL=root-a ro", "a"),
        ("root=PARTLABEL=root-b quiet", "b"),
    ],
)
def test_booted_slot_is_read_from_the_kernel_command_line(cmdline: str, slot: str) -> None:
    assert update.booted_slot(cmdline) == slot


@pytest.mark.parametrize("cmdline", ["root=/dev/vda2 ro", "root=PARTLABEL=root-c", ""])
def test_a_system_not_booted_from_a_slot_is_refused(cmdline: str) -> None:
    with pytest.raises(update.UpdateError):
        update.booted_slot(cmdline)


def test_entry_states_follow_systemd_boot_counting(tmp_path: Path) -> None:
    write_entries(
        tmp_path,
        {
            "sipedge-a.conf": 1,  # blessed
            "sipedge-b+3.conf": 2,  # new, not tried yet
            "other.conf": 9,  # not ours: ignored
        },
    )
    states = {e.path.name: (e.slot, e.state, e.version) for e in update.read_entries(tmp_path)}
    assert states == {"sipedge-a.conf": ("a", "good", 1), "sipedge-b+3.conf": ("b", "trial", 2)}


@pytest.mark.parametrize(
    ("name", "state", "left", "done"),
    [
        ("sipedge-b.conf", "good", None, 0),
        ("sipedge-b+3.conf", "trial", 3, 0),
        ("sipedge-b+2-1.conf", "trial", 2, 1),
        ("sipedge-b+0-3.conf", "bad", 0, 3),
    ],
)
def test_boot_counter_in_the_file_name(
    tmp_path: Path, name: str, state: str, left: int | None, done: int
) -> None:
    write_entries(tmp_path, {name: 4})
    (entry,) = update.read_entries(tmp_path)
    assert (entry.state, entry.tries_left, entry.tries_done) == (state, left, done)


def test_rendered_entry_points_everything_at_the_new_slot() -> None:
    text = update.render_entry(ENTRY_A, "b", 7, "sipedge 0.2.0 (slot b)")
    assert text.splitlines() == [
        "title sipedge 0.2.0 (slot b)",
        "version 7",
        "linux /sipedge/b/vmlinuz",
        "initrd /sipedge/b/initrd",
        # the operator's own options are kept; only the root partition changes
        "options root=PARTLABEL=root-b ro quiet net.ifnames=0 console=ttyS0",
    ]


def test_other_slot() -> None:
    assert [update.other(s) for s in update.SLOTS] == ["b", "a"]


def test_write_image_streams_and_hashes(tmp_path: Path) -> None:
    slot = tmp_path / "slot"
    slot.write_bytes(b"\xff" * (3 * artifact.CHUNK))
    data = bytes(range(256)) * (artifact.CHUNK // 256 + 17)  # more than one chunk
    digest = artifact.write_image(io.BytesIO(data), slot, 3 * artifact.CHUNK, len(data))
    assert digest == hashlib.sha256(data).hexdigest()
    assert slot.read_bytes()[: len(data)] == data
    assert artifact.sha256_of(slot, len(data)) == digest


def test_write_image_refuses_an_image_larger_than_the_slot(tmp_path: Path) -> None:
    slot = tmp_path / "slot"
    slot.write_bytes(bytes(1000))
    with pytest.raises(artifact.BadImage, match="larger than the slot"):
        artifact.write_image(io.BytesIO(bytes(1001)), slot, 1000, 1001)
    assert slot.read_bytes() == bytes(1000)


@pytest.mark.parametrize(
    ("data", "size", "to_end", "message"),
    [
        (b"", None, True, "empty"),
        (b"abc", 4, True, "truncated: 3 bytes"),
        (b"abcde", 4, True, "longer"),
    ],
)
def test_copy_exact_refuses_the_wrong_length(
    data: bytes, size: int | None, to_end: bool, message: str
) -> None:
    with pytest.raises(artifact.BadImage, match=message):
        artifact.copy_exact(io.BytesIO(data), size, lambda b: None, to_end)


def test_copy_exact_stops_at_the_size_on_a_device() -> None:
    got: list[bytes] = []
    digest, done = artifact.copy_exact(io.BytesIO(b"abcdef"), 4, got.append, to_end=False)
    assert (b"".join(got), done, digest) == (b"abcd", 4, hashlib.sha256(b"abcd").hexdigest())


def test_sha256_of_a_short_device_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "short"
    path.write_bytes(bytes(10))
    with pytest.raises(artifact.BadImage, match="short"):
        artifact.sha256_of(path, 11)


# --- install's checks against a fake appliance --------------------------------------------

VDA = "devices/pci0000:00/0000:00:04.0/virtio1/block/vda"
SLOT_B = b"old slot b content" * 1000


def fake_ext4(size: int = 3 << 20, seed: int = 1) -> bytes:
    data = bytearray(random.Random(seed).randbytes(size))
    data[artifact.EXT4_MAGIC_AT : artifact.EXT4_MAGIC_AT + 2] = artifact.EXT4_MAGIC
    return bytes(data)


class Appliance:
    """Booted from vda2 (root-a), target vda3 (root-b) as a plain file, ESP at esp/."""

    def __init__(self, base: Path, running: str = "0.2.0") -> None:
        self.base = base
        self.system = update.System(
            esp=base / "esp",
            keys=base / "root/usr/share/sipedge/update-keys",
            root=base / "root",
            proc=base / "proc",
            sys=base / "sys",
            dev=base / "dev",
        )
        entries = self.system.esp / "loader" / "entries"
        entries.mkdir(parents=True)
        (entries / "sipedge-a.conf").write_text(ENTRY_A)
        (entries / "sipedge-b.conf").write_text(ENTRY_A.replace("root-a", "root-b"))
        (self.system.esp / "sipedge" / "b").mkdir(parents=True)
        (self.system.esp / "sipedge" / "b" / "vmlinuz").write_bytes(b"old kernel")
        release = self.system.root / update.RELEASE_FILE
        release.parent.mkdir(parents=True)
        release.write_text(f"IMAGE_VERSION={running}\n")
        (self.system.proc / "self").mkdir(parents=True)
        (self.system.proc / "self" / "mountinfo").write_text(
            f"28 1 254:2 / / rw - ext4 /dev/vda2 rw\n"
            f"30 28 254:1 / {self.system.esp} rw - vfat /dev/vda1 rw\n"
        )
        (self.system.proc / "cmdline").write_text("root=PARTLABEL=root-a rw quiet\n")
        disk = self.system.sys / VDA
        for n, label in ((1, "esp"), (2, "root-a"), (3, "root-b")):
            part = disk / f"vda{n}"
            part.mkdir(parents=True)
            (part / "partition").write_text(f"{n}\n")
            (part / "dev").write_text(f"254:{n}\n")
            (part / "uevent").write_text(f"DEVNAME=vda{n}\nPARTNAME={label}\n")
            link = self.system.sys / "dev" / "block" / f"254:{n}"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(part, link.parent))
        self.slot = base / "dev" / "vda3"
        self.slot.parent.mkdir()
        self.slot.write_bytes(SLOT_B + bytes((8 << 20) - len(SLOT_B)))
        self.key = Ed25519PrivateKey.generate()
        self.system.keys.mkdir(parents=True)
        (self.system.keys / "release.pub").write_bytes(signing.public_pem(self.key))

    def image(
        self,
        version: str = "0.3.0",
        data: bytes | None = None,
        key: Ed25519PrivateKey | None = None,
        min_version: str = "0.1.0",
        name: str = "root.img",
    ) -> update.Request:
        data = fake_ext4() if data is None else data
        image = self.base / name
        image.write_bytes(data)
        manifest = signing.Manifest(
            version, "b1", min_version, hashlib.sha256(data).hexdigest(), len(data)
        )
        text, sig = signing.sign(manifest, key or self.key)
        (self.base / f"{name}.manifest").write_bytes(text)
        (self.base / f"{name}.manifest.sig").write_bytes(sig)
        return update.Request(image=image, manifest=self.base / f"{name}.manifest")

    def untouched(self) -> bool:
        esp = self.system.esp
        return (
            self.slot.read_bytes()[: len(SLOT_B)] == SLOT_B
            and sorted(p.name for p in (esp / "loader" / "entries").iterdir())
            == ["sipedge-a.conf", "sipedge-b.conf"]
            and (esp / "sipedge" / "b" / "vmlinuz").read_bytes() == b"old kernel"
        )


@pytest.fixture
def appliance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Appliance:
    box = Appliance(tmp_path)

    def node(partition: slots.Partition, dev: Path) -> Path:
        # the real check wants a block device with the partition's number (test_update_slots)
        assert (partition.name, partition.devnum) == ("vda3", (254, 3))
        return dev / partition.name

    monkeypatch.setattr(slots, "device_node", node)
    return box


def test_a_correctly_signed_newer_image_passes_every_check(appliance: Appliance) -> None:
    req = appliance.image()
    checked = update.plan(req, appliance.system)
    assert (checked.target, checked.device, checked.key) == ("b", appliance.slot, "release.pub")
    assert checked.manifest is not None and checked.manifest.version == "0.3.0"
    assert checked.size == 3 << 20 and not checked.compressed
    assert appliance.untouched()


def test_a_zstd_compressed_image_is_checked_decompressed(appliance: Appliance) -> None:
    req = appliance.image()
    subprocess.run(["zstd", "-q", "-1", str(req.image)], check=True)
    zst = req.image.with_name(req.image.name + ".zst")
    checked = update.plan(
        update.Request(image=zst, manifest=req.manifest, signature=None), appliance.system
    )
    assert checked.compressed and checked.size == 3 << 20
    # a truncated .zst is refused too
    zst.write_bytes(zst.read_bytes()[:2000])
    with pytest.raises(update.Refused):
        update.plan(update.Request(image=zst, manifest=req.manifest), appliance.system)
    assert appliance.untouched()


def refused(appliance: Appliance, req: update.Request, message: str) -> None:
    with pytest.raises(update.Refused, match=message):
        update.plan(req, appliance.system)
    assert appliance.untouched()


def test_an_image_signed_with_a_wrong_key_is_refused(appliance: Appliance) -> None:
    refused(appliance, appliance.image(key=Ed25519PrivateKey.generate()), "unknown key")


def test_a_tampered_manifest_is_refused(appliance: Appliance) -> None:
    req = appliance.image()
    assert req.manifest is not None
    req.manifest.write_bytes(req.manifest.read_bytes().replace(b'"b1"', b'"b2"'))
    refused(appliance, req, "altered")


def test_an_unsigned_manifest_is_refused(appliance: Appliance) -> None:
    req = appliance.image()
    assert req.manifest is not None
    req.manifest.with_name(req.manifest.name + ".sig").unlink()
    refused(appliance, req, "not signed")


def test_an_older_or_same_image_is_refused_unless_downgrade_is_allowed(
    appliance: Appliance,
) -> None:
    refused(appliance, appliance.image(version="0.1.5"), "not newer than the running 0.2.0")
    refused(appliance, appliance.image(version="0.2.0"), "not newer")
    req = appliance.image(version="0.1.5")
    allowed = update.Request(image=req.image, manifest=req.manifest, allow_downgrade=True)
    assert update.plan(allowed, appliance.system).target == "b"


def test_running_below_min_version_is_refused(appliance: Appliance) -> None:
    refused(appliance, appliance.image(version="1.0.0", min_version="0.5.0"), "at least 0.5.0")


def test_a_truncated_image_is_refused(appliance: Appliance) -> None:
    req = appliance.image()
    req.image.write_bytes(req.image.read_bytes()[: 1 << 20])
    refused(appliance, req, "truncated")


def test_an_image_with_another_content_is_refused(appliance: Appliance) -> None:
    req = appliance.image()
    req.image.write_bytes(fake_ext4(seed=2))
    refused(appliance, req, "sha256")


def test_an_image_that_is_not_ext4_is_refused(appliance: Appliance) -> None:
    refused(appliance, appliance.image(data=bytes(4096)), "not an ext4")


def test_sha256_only_with_the_insecure_flag(appliance: Appliance) -> None:
    req = appliance.image()
    digest = hashlib.sha256(req.image.read_bytes()).hexdigest()
    refused(appliance, update.Request(image=req.image, sha256=digest), "only with --insecure")
    refused(appliance, update.Request(image=req.image), "signed manifest is required")
    refused(appliance, update.Request(image=req.image, insecure=True), "needs --sha256")
    lab = update.Request(image=req.image, sha256=digest, insecure=True)
    assert update.plan(lab, appliance.system).manifest is None
    bad = update.Request(image=req.image, sha256="0" * 64, insecure=True)
    refused(appliance, bad, "sha256")


def test_a_kernel_command_line_naming_the_other_slot_is_refused(appliance: Appliance) -> None:
    (appliance.system.proc / "cmdline").write_text("root=PARTLABEL=root-b\n")
    refused(appliance, appliance.image(), "another slot")


def test_an_esp_on_another_disk_is_refused(appliance: Appliance) -> None:
    mountinfo = appliance.system.proc / "self" / "mountinfo"
    mountinfo.write_text(mountinfo.read_text().replace("254:1", "8:1"))
    refused(appliance, appliance.image(), "not a partition of vda")


@pytest.mark.parametrize(("tries", "message"), [(0, "1-9"), (10, "1-9")])
def test_install_refuses_bad_tries(appliance: Appliance, tries: int, message: str) -> None:
    req = appliance.image()
    refused(appliance, update.Request(image=req.image, manifest=req.manifest, tries=tries), message)


def test_a_folder_that_is_not_the_esp_is_refused(tmp_path: Path) -> None:
    with pytest.raises(update.Refused, match="not the mounted ESP"):
        update.plan(update.Request(image=tmp_path / "img"), update.System(esp=tmp_path))


def test_the_command_exits_3_when_refused(
    appliance: Appliance, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    req = appliance.image(key=Ed25519PrivateKey.generate())
    monkeypatch.setattr(update, "System", lambda esp: appliance.system)
    code = update.main(["install", str(req.image), "--manifest", str(req.manifest)])
    assert code == update.EXIT_REFUSED
    assert "refused: the manifest's signature" in capsys.readouterr().err
    assert appliance.untouched()
    good = appliance.image(name="good.img")
    assert update.main(["verify", str(good.image), "--manifest", str(good.manifest)]) == 0
    assert json.loads(capsys.readouterr().out)["slot"] == "b"
