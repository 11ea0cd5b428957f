"""The update artifact's bytes: a raw or zstd-compressed ext4 image, read to its exact length.

The manifest (signing.py) says how many bytes the image has and their sha256. Everything here
reads exactly that many: a shorter source is a truncated image, a longer file or stream is not
the one that was signed (a block device holding the image may go on past it). A ``.zst``
artifact is decompressed by ``zstd`` run with an argument vector, once to check it and once
more to write it; a decompression error is a bad image too.

Owns: the zstd and ext4 magic numbers, exact-length reading with hashing, writing to a slot
device and reading it back. Raises ``BadImage`` for the caller to turn into a refusal (before
writing) or a failure (while writing).
Must not: choose the target, parse the manifest or touch the ESP.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

CHUNK = 4 << 20
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
EXT4_MAGIC_AT = 1080  # superblock at 1024, s_magic at 0x38
EXT4_MAGIC = b"\x53\xef"


class BadImage(Exception):
    """The image's bytes are not what they must be (length, hash, format, compression)."""


def sha256_of(path: Path, size: int | None = None) -> str:
    digest = hashlib.sha256()
    remaining = size
    with path.open("rb") as f:
        while remaining is None or remaining > 0:
            want = CHUNK if remaining is None else min(CHUNK, remaining)
            block = f.read(want)
            if not block:
                break
            digest.update(block)
            if remaining is not None:
                remaining -= len(block)
    if remaining:
        raise BadImage(f"{path}: {remaining} bytes short")
    return digest.hexdigest()


def copy_exact(
    src: IO[bytes], size: int | None, sink: Callable[[bytes], object], to_end: bool = True
) -> tuple[str, int]:
    """Read `size` bytes (to the end when None) through `sink`; (sha256, bytes).

    A source shorter than `size` is refused (a truncated image), and so is one longer unless
    `to_end` is false (a block device holding the image, followed by whatever else)."""
    digest = hashlib.sha256()
    done = 0
    while size is None or done < size:
        block = src.read(CHUNK if size is None else min(CHUNK, size - done))
        if not block:
            break
        digest.update(block)
        sink(block)
        done += len(block)
    if size is not None and done < size:
        raise BadImage(f"the image is truncated: {done} bytes, the manifest says {size}")
    if size is not None and to_end and src.read(1):
        raise BadImage(f"the image is longer than the {size} bytes the manifest says")
    if done == 0:
        raise BadImage("the image is empty")
    return digest.hexdigest(), done


def write_image(src: IO[bytes], device: Path, capacity: int, size: int, to_end: bool = True) -> str:
    """Copy exactly `size` bytes of src onto device, flushed to the disk; return their sha256."""
    if size > capacity:
        raise BadImage(f"the image ({size} bytes) is larger than the slot ({capacity} bytes)")
    with device.open("r+b") as dst:
        digest, _ = copy_exact(src, size, dst.write, to_end)
        dst.flush()
        os.fsync(dst.fileno())
    return digest


def is_compressed(image: Path) -> bool:
    with image.open("rb") as f:
        return f.read(4) == ZSTD_MAGIC


def byte_size(image: Path) -> int:
    """Bytes in a regular file or a block device."""
    with image.open("rb") as f:
        return f.seek(0, os.SEEK_END)


@contextlib.contextmanager
def open_image(image: Path, compressed: bool) -> Iterator[IO[bytes]]:
    """The image's bytes: the file itself, or zstd's output when it is compressed.

    zstd runs with an argument vector; a decompression error (a truncated .zst) is a refusal."""
    if not compressed:
        with image.open("rb") as f:
            yield f
        return
    argv = ["zstd", "-q", "-d", "-c", "--", str(image)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        try:
            yield proc.stdout
        except BaseException:
            proc.kill()
            raise
        proc.stdout.close()
        error = proc.stderr.read().decode(errors="replace").strip()
        if proc.wait() != 0:
            raise BadImage(f"{image}: zstd could not decompress it ({error or 'truncated?'})")


def check_image(
    image: Path, compressed: bool, size: int | None, expected: str, to_end: bool
) -> int:
    """Hash the image (decompressed) without writing anything; return its size in bytes."""
    head = bytearray()

    def keep_head(block: bytes) -> None:
        if len(head) < EXT4_MAGIC_AT + 2:
            head.extend(block[: EXT4_MAGIC_AT + 2 - len(head)])

    with open_image(image, compressed) as src:
        got, done = copy_exact(src, size, keep_head, to_end)
    if bytes(head[EXT4_MAGIC_AT : EXT4_MAGIC_AT + 2]) != EXT4_MAGIC:
        raise BadImage(f"{image} is not an ext4 root file system image")
    if got != expected:
        raise BadImage(f"{image}: sha256 {got}, expected {expected}")
    return done
