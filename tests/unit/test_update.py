"""sipedge-update's pure parts: boot entries, their states and order, and the slot writer.

The whole update (boot counting, bless, rollback) runs on the real image in the Molecule
scenario `vm`; these tests pin the decisions it rests on without a disk or a reboot.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from sipedge.appliance import update

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
    slot.write_bytes(b"\xff" * (3 * update.CHUNK))
    data = bytes(range(256)) * (update.CHUNK // 256 + 17)  # more than one chunk
    digest, written = update.write_image(io.BytesIO(data), slot, capacity=3 * update.CHUNK)
    assert (digest, written) == (hashlib.sha256(data).hexdigest(), len(data))
    assert slot.read_bytes()[: len(data)] == data
    assert update.sha256_of(slot, written) == digest


def test_write_image_refuses_a_stream_longer_than_the_slot(tmp_path: Path) -> None:
    slot = tmp_path / "slot"
    slot.write_bytes(bytes(1000))
    with pytest.raises(update.UpdateError, match="larger than the slot"):
        update.write_image(io.BytesIO(bytes(1001)), slot, capacity=1000)


def test_write_image_refuses_an_empty_stream(tmp_path: Path) -> None:
    slot = tmp_path / "slot"
    slot.write_bytes(bytes(10))
    with pytest.raises(update.UpdateError, match="empty"):
        update.write_image(io.BytesIO(b""), slot, capacity=10)


def test_sha256_of_a_short_device_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "short"
    path.write_bytes(bytes(10))
    with pytest.raises(update.UpdateError, match="short"):
        update.sha256_of(path, 11)


def test_image_size(tmp_path: Path) -> None:
    path = tmp_path / "img"
    path.write_bytes(bytes(1234))
    assert update.image_size(path) == 1234
    assert update.image_size(Path("-")) is None


@pytest.mark.parametrize(
    ("sha", "tries", "message"),
    [("abc", 3, "64 hex digits"), ("0" * 64, 0, "1-9"), ("0" * 64, 10, "1-9")],
)
def test_install_refuses_bad_arguments_before_touching_anything(
    tmp_path: Path, sha: str, tries: int, message: str
) -> None:
    with pytest.raises(update.UpdateError, match=message):
        update.install(tmp_path / "img", sha, tries, esp=tmp_path)


def test_install_refuses_a_folder_that_is_not_the_esp(tmp_path: Path) -> None:
    with pytest.raises(update.UpdateError, match="not the mounted ESP"):
        update.install(tmp_path / "img", "0" * 64, 3, esp=tmp_path)
