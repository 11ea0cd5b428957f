"""mediad's session journal: the live sessions and the retired counter totals, on disk.

One JSON object per line, appended as things happen, so a call costs O(1) disk:

    {"op": "journal", "version": 1}        first line of a compacted file
    {"op": "put", "s": {session}}          a session created or changed (offer, answer, latch)
    {"op": "del", "id": "call-id"}         a session deleted or expired
    {"op": "totals", "t": {...}}           retired counter totals (metrics stay monotonic)

When the lines written since the last compaction exceed max(COMPACT_MIN, 2 x live sessions),
the caller compacts: the live state is written to a new file that replaces the old one
atomically, so the file stays O(live sessions) and the work per operation stays O(1) amortised.

Replay (at start) reads lines of at most MAX_LINE bytes; a torn last line (a crash mid-write)
is ignored and cut off, other unreadable lines are skipped and counted. The file is opened with
O_NOFOLLOW, created 0600, and refused unless it is a regular file with one link owned by one of
`owners`; its directory must pass `appliance.privileges.private_dir` first (the daemon checks).

Owns: the file format, replay and compaction. Must not: know what a session holds (it stores
the dicts `Session.to_dict` gives) or decide when sessions end.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("sipedge.media.journal")

VERSION = 1
MAX_LINE = 64 * 1024
COMPACT_MIN = 1024
_OPEN_FLAGS = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC


class JournalError(RuntimeError):
    """The journal cannot be used (unsafe file, unreadable); the message says why."""


@dataclass
class Replayed:
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    totals: dict[str, Any] = field(default_factory=dict)
    lines: int = 0
    skipped: int = 0  # unreadable lines (not counting a torn last line)
    torn: bool = False


def _check(fd: int, path: Path, owners: Collection[int]) -> None:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise JournalError(f"{path} is not a regular file")
    if st.st_nlink != 1:
        raise JournalError(f"{path} has {st.st_nlink} links; refusing a planted hard link")
    if st.st_uid not in owners:
        raise JournalError(f"{path} is owned by uid {st.st_uid}, not by root or mediad's user")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.fchmod(fd, 0o600)


def _open(path: Path, owners: Collection[int], create: bool) -> int:
    flags = _OPEN_FLAGS | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        raise JournalError(f"{path}: cannot open ({exc.strerror})") from None
    try:
        _check(fd, path, owners)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read(path: Path, owners: Collection[int]) -> Replayed:
    """Replay an existing journal without changing it (mediad --cleanup)."""
    try:
        fd = _open(path, owners, create=False)
    except JournalError:
        if not path.exists() and not path.is_symlink():
            return Replayed()
        raise
    try:
        replayed, _good = _replay(fd)
    finally:
        os.close(fd)
    return replayed


def _apply(out: Replayed, record: Any) -> bool:
    if not isinstance(record, dict):
        return False
    op = record.get("op")
    if op == "put" and isinstance(record.get("s"), dict):
        call_id = record["s"].get("call_id")
        if isinstance(call_id, str):
            out.sessions[call_id] = record["s"]
            return True
    elif op == "del" and isinstance(record.get("id"), str):
        out.sessions.pop(record["id"], None)
        return True
    elif op == "totals" and isinstance(record.get("t"), dict):
        out.totals = record["t"]
        return True
    elif op == "journal":
        version = record.get("version")
        if isinstance(version, int) and version > VERSION:
            # a newer mediad's state (a downgrade): its records may mean something else here
            raise JournalError(
                f"journal format {version} is newer than this mediad's ({VERSION}); "
                "refusing it (docs/upgrades.md: downgrades)"
            )
        return True
    return False


def _replay(fd: int) -> tuple[Replayed, int]:
    """Read from the start; returns what the lines say and the offset after the last whole
    line (what follows is a torn write)."""
    out = Replayed()
    good = 0
    os.lseek(fd, 0, os.SEEK_SET)
    with os.fdopen(os.dup(fd), "rb") as f:
        while True:
            line = f.readline(MAX_LINE + 1)
            if not line:
                break
            if not line.endswith(b"\n"):
                if len(line) <= MAX_LINE:  # the end of the file: a torn last line
                    out.torn = True
                    break
                while line and not line.endswith(b"\n"):  # too long: skip to its end
                    line = f.readline(MAX_LINE + 1)
                if not line:
                    out.torn = True
                    break
                out.skipped += 1
                good = f.tell()
                continue
            good = f.tell()
            out.lines += 1
            try:
                record = json.loads(line)
            except ValueError:
                out.skipped += 1
                continue
            if not _apply(out, record):
                out.skipped += 1
    return out, good


class Journal:
    """The open journal. `bytes_written` and `ops` are for tests and compaction."""

    def __init__(self, path: Path, owners: Collection[int]) -> None:
        self.path = path
        self.owners = tuple(owners)
        self.fd = -1
        self.ops = 0  # lines appended since the last compaction (or open)
        self.bytes_written = 0

    def open(self) -> Replayed:
        """Open (creating it), replay, and cut off a torn last line."""
        self.fd = _open(self.path, self.owners, create=True)
        replayed, good = _replay(self.fd)
        size = os.fstat(self.fd).st_size
        if size > good:
            log.warning("%s: cutting a torn last line (%d bytes)", self.path, size - good)
            os.ftruncate(self.fd, good)
        if replayed.skipped:
            log.warning("%s: skipped %d unreadable lines", self.path, replayed.skipped)
        self.ops = replayed.lines
        return replayed

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _write(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        self.bytes_written += len(data)
        self.ops += 1

    def put(self, session: dict[str, Any]) -> None:
        self._write({"op": "put", "s": session})

    def delete(self, call_id: str) -> None:
        self._write({"op": "del", "id": call_id})

    def totals(self, totals: dict[str, Any]) -> None:
        self._write({"op": "totals", "t": totals})

    def needs_compaction(self, live: int) -> bool:
        return self.ops > max(COMPACT_MIN, 2 * live)

    def compact(self, sessions: Iterable[dict[str, Any]], totals: dict[str, Any]) -> None:
        """Replace the file by the live state (written to a new file, fsynced, renamed)."""
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, _OPEN_FLAGS | os.O_CREAT | os.O_EXCL, 0o600)
        old, self.fd = self.fd, fd
        try:
            self._write({"op": "journal", "version": VERSION})
            self._write({"op": "totals", "t": totals})
            for session in sessions:
                self._write({"op": "put", "s": session})
            os.fsync(fd)
            os.replace(tmp, self.path)
        except BaseException:
            self.fd = old
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        os.close(old)
        dfd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        self.ops = 0
