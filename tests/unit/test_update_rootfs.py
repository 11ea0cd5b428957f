"""Nothing inside an update image is followed outside it (sipedge.appliance.rootfs).

A crafted image tree has links pointing at files of "the running system" (a folder beside
it); reading the kernel or writing the identity must neither read nor write them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sipedge.appliance import rootfs


@pytest.fixture
def crafted(tmp_path: Path) -> tuple[Path, Path]:
    image, host = tmp_path / "image", tmp_path / "host"
    (host / "etc" / "ssh").mkdir(parents=True)
    (host / "secret").write_text("root's secret\n")
    (host / "etc" / "machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (host / "etc" / "ssh" / "ssh_host_ed25519_key").write_text("host key\n")
    os.chmod(host / "etc" / "ssh" / "ssh_host_ed25519_key", 0o600)
    (image / "boot").mkdir(parents=True)
    (image / "etc").mkdir()
    (image / "boot" / "vmlinuz-6.1.0-56-amd64").write_bytes(b"kernel")
    return image, host


def test_regular_files_are_read_and_written(crafted: tuple[Path, Path], tmp_path: Path) -> None:
    image, host = crafted
    assert rootfs.list_folder(image, "boot") == ["vmlinuz-6.1.0-56-amd64"]
    rootfs.copy_out(image, "boot/vmlinuz-6.1.0-56-amd64", tmp_path / "vmlinuz")
    assert (tmp_path / "vmlinuz").read_bytes() == b"kernel"
    rootfs.copy_in(host / "etc/ssh/ssh_host_ed25519_key", image, "etc/ssh/ssh_host_ed25519_key")
    copied = image / "etc" / "ssh" / "ssh_host_ed25519_key"
    assert copied.read_text() == "host key\n"
    assert copied.stat().st_mode & 0o777 == 0o600


def test_a_kernel_that_is_a_link_out_of_the_image_is_refused(
    crafted: tuple[Path, Path], tmp_path: Path
) -> None:
    image, host = crafted
    (image / "boot" / "vmlinuz-9").symlink_to(host / "secret")
    with pytest.raises(rootfs.LinkRefused, match="symbolic link"):
        rootfs.copy_out(image, "boot/vmlinuz-9", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(rootfs.LinkRefused):
        rootfs.read_file(image, "boot/vmlinuz-9")


def test_a_folder_that_is_a_link_out_of_the_image_is_refused(crafted: tuple[Path, Path]) -> None:
    image, host = crafted
    (image / "boot").rename(image / "boot.real")
    (image / "boot").symlink_to(host)
    with pytest.raises(rootfs.LinkRefused, match="boot in the image is a link"):
        rootfs.list_folder(image, "boot")
    with pytest.raises(rootfs.LinkRefused):
        rootfs.read_file(image, "boot/secret")


def test_identity_is_not_written_through_a_linked_folder(crafted: tuple[Path, Path]) -> None:
    image, host = crafted
    outside = host / "root-ssh"
    outside.mkdir()
    (image / "etc" / "ssh").symlink_to(outside)
    with pytest.raises(rootfs.LinkRefused, match="etc/ssh"):
        rootfs.copy_in(host / "etc/ssh/ssh_host_ed25519_key", image, "etc/ssh/x")
    assert list(outside.iterdir()) == []


def test_a_linked_file_in_the_image_is_replaced_not_followed(crafted: tuple[Path, Path]) -> None:
    image, host = crafted
    (image / "etc" / "machine-id").symlink_to(host / "secret")
    rootfs.copy_in(host / "etc" / "machine-id", image, "etc/machine-id")
    assert (host / "secret").read_text() == "root's secret\n"
    assert not (image / "etc" / "machine-id").is_symlink()
    assert (image / "etc" / "machine-id").read_text().startswith("0123")


def test_a_relative_link_climbing_out_is_refused_too(crafted: tuple[Path, Path]) -> None:
    image, _ = crafted
    (image / "usr").symlink_to("../host")
    with pytest.raises(rootfs.LinkRefused):
        rootfs.read_file(image, "usr/secret")


@pytest.mark.parametrize("rel", ["../host/secret", "", "/", "boot/../../host/secret"])
def test_paths_must_stay_inside(crafted: tuple[Path, Path], rel: str) -> None:
    image, _ = crafted
    with pytest.raises(rootfs.LinkRefused, match="plain relative path"):
        rootfs.read_file(image, rel)


def test_a_fifo_or_folder_is_not_read(crafted: tuple[Path, Path]) -> None:
    image, _ = crafted
    os.mkfifo(image / "boot" / "vmlinuz-fifo")
    with pytest.raises(rootfs.LinkRefused, match="not a regular file"):
        rootfs.read_file(image, "boot/vmlinuz-fifo")
