"""Files inside a mounted root image, reached without following any link.

The image written to the inactive slot is data from outside: a symbolic link in it (say
``etc/ssh -> /root/.ssh`` or ``boot/vmlinuz-x -> /etc/shadow``) must not make the updater,
which runs as root on the live system, read or write a file of the running system. Every path
here is walked from a directory descriptor of the image's root, one component at a time, with
``O_NOFOLLOW``: a link anywhere on the way is refused (``LinkRefused``), and only regular files
are read. A file written into the image replaces a link found at its own name (the link is
removed, not followed).

Owns: reading a file out of the image, listing a folder of it, writing a file into it.
Must not: mount, choose a slot, or open anything by a path that the kernel would resolve
through the image's links.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class LinkRefused(Exception):
    """A path in the image goes through a symbolic link or names something not regular."""


def _parts(rel: str) -> list[str]:
    parts = [p for p in PurePosixPath(rel).parts if p not in ("/", ".")]
    if not parts or ".." in parts:
        raise LinkRefused(f"{rel!r}: not a plain relative path")
    return parts


@contextlib.contextmanager
def _folder(root: Path, parts: list[str], create: bool = False) -> Iterator[int]:
    """A descriptor of root/parts..., every component opened without following links."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for i, name in enumerate(parts):
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(name, 0o755, dir_fd=fd)
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    where = "/".join(parts[: i + 1])
                    raise LinkRefused(f"{where} in the image is a link or not a folder") from None
                raise
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _open_regular(dir_fd: int, name: str, where: str) -> int:
    try:
        # O_NONBLOCK: a FIFO planted in the image must not hang the open
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LinkRefused(f"{where} in the image is a symbolic link") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LinkRefused(f"{where} in the image is not a regular file")
    return fd


def list_folder(root: Path, rel: str) -> list[str]:
    """Names in the image's folder `rel` (the folder itself reached without links)."""
    with _folder(root, _parts(rel)) as fd:
        return sorted(os.listdir(fd))


def read_file(root: Path, rel: str, limit: int = 1 << 20) -> bytes:
    parts = _parts(rel)
    with _folder(root, parts[:-1]) as dir_fd:
        fd = _open_regular(dir_fd, parts[-1], rel)
        with os.fdopen(fd, "rb") as f:
            return f.read(limit)


def copy_out(root: Path, rel: str, dest: Path) -> None:
    """Copy the regular file `rel` of the image to `dest` (outside the image), flushed."""
    parts = _parts(rel)
    with _folder(root, parts[:-1]) as dir_fd:
        fd = _open_regular(dir_fd, parts[-1], rel)
        with os.fdopen(fd, "rb") as src, dest.open("wb") as dst:
            while block := src.read(CHUNK):
                dst.write(block)
            dst.flush()
            os.fsync(dst.fileno())


def copy_in(source: Path, root: Path, rel: str) -> None:
    """Copy `source` (a file of the running system) to `rel` in the image, mode and times kept.

    Folders on the way are created when missing and refused when they are links; a link at
    `rel` itself is removed, never written through."""
    parts = _parts(rel)
    st = os.stat(source, follow_symlinks=False)
    if not stat.S_ISREG(st.st_mode):
        raise LinkRefused(f"{source} is not a regular file")
    with _folder(root, parts[:-1], create=True) as dir_fd:
        name = parts[-1]
        with contextlib.suppress(FileNotFoundError):
            existing = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISDIR(existing.st_mode):
                raise LinkRefused(f"{rel} in the image is a folder")
            os.unlink(name, dir_fd=dir_fd)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, stat.S_IMODE(st.st_mode), dir_fd=dir_fd)
        with os.fdopen(fd, "wb") as dst, source.open("rb") as src:
            while block := src.read(CHUNK):
                dst.write(block)
            os.fchmod(dst.fileno(), stat.S_IMODE(st.st_mode))
            with contextlib.suppress(PermissionError):
                os.fchown(dst.fileno(), st.st_uid, st.st_gid)
            dst.flush()
            os.utime(dst.fileno(), ns=(st.st_atime_ns, st.st_mtime_ns))
