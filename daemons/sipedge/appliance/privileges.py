"""Least privilege for daemons started as root: drop to a user with a chosen capability set,
check that it took, and private directories that no less-privileged user can plant files in.

`drop_privileges(user, keep)` (root only, before any other thread exists): clears every
capability but `keep` from the bounding set, switches groups and uid/gid to `user`, sets the
effective and permitted sets to `keep`, clears the inheritable and ambient sets, sets
no_new_privs, then reads `/proc/self/task/*/status` and raises `PrivilegeError` unless every
thread shows exactly that. ctypes over libc `prctl`/`capset`; uid and gid calls go through
`os` (libc's setresuid/setresgid/setgroups, which apply to every thread).

`private_dir(path, owners, chown_to)`: creates a directory (0700) or accepts an existing one
only when it is owned by one of `owners` and writable by its owner alone; as root it may hand
a root-owned one to the daemon's user with `fchown` on a descriptor (never a path).

`bind_unix(path, mode)`: a listening Unix socket born with `mode` (umask around bind, never a
chmod on a path).

Owns: the syscalls and the /proc parsing of process privileges. Must not: import anything of
sipedge or know which capabilities a daemon needs (callers pass them).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import socket
import stat
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

CAP_BPF = 39
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class PrivilegeError(RuntimeError):
    """Privileges could not be dropped as asked, or a path is not safe to use."""


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _prctl(libc: ctypes.CDLL, option: int, arg: int = 0) -> None:
    args = [ctypes.c_ulong(v) for v in (arg, 0, 0, 0)]
    if libc.prctl(ctypes.c_int(option), *args) != 0:
        err = ctypes.get_errno()
        raise PrivilegeError(f"prctl({option}, {arg}): {os.strerror(err)}")


def cap_mask(caps: Collection[int]) -> int:
    mask = 0
    for cap in caps:
        mask |= 1 << cap
    return mask


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int


def lookup_user(name: str) -> User:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise PrivilegeError(f"run_as: no user {name!r}") from None
    if entry.pw_uid == 0:
        raise PrivilegeError(f"run_as: {name!r} is root (uid 0); name an unprivileged user")
    return User(name, entry.pw_uid, entry.pw_gid)


@dataclass(frozen=True)
class Status:
    """The privilege lines of /proc/<pid>/status."""

    uids: tuple[int, ...]
    gids: tuple[int, ...]
    groups: tuple[int, ...]
    inheritable: int
    permitted: int
    effective: int
    bounding: int
    ambient: int
    no_new_privs: bool


def parse_status(text: str) -> Status:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()

    def ints(name: str) -> tuple[int, ...]:
        return tuple(int(v) for v in fields.get(name, "").split())

    def hexa(name: str) -> int:
        return int(fields.get(name, "0") or "0", 16)

    return Status(
        uids=ints("Uid"),
        gids=ints("Gid"),
        groups=ints("Groups"),
        inheritable=hexa("CapInh"),
        permitted=hexa("CapPrm"),
        effective=hexa("CapEff"),
        bounding=hexa("CapBnd"),
        ambient=hexa("CapAmb"),
        no_new_privs=fields.get("NoNewPrivs", "0") == "1",
    )


def _task_statuses() -> Iterator[tuple[str, Status]]:
    for tid in sorted(os.listdir("/proc/self/task")):
        with contextlib.suppress(FileNotFoundError):  # a thread that just ended
            yield tid, parse_status(Path(f"/proc/self/task/{tid}/status").read_text())


def verify(user: User, keep: Collection[int]) -> Status:
    """Raise PrivilegeError unless every thread runs as `user` with exactly `keep`."""
    mask = cap_mask(keep)
    last: Status | None = None
    for tid, st in _task_statuses():
        wrong = []
        if set(st.uids) != {user.uid}:
            wrong.append(f"Uid {st.uids}")
        if set(st.gids) != {user.gid}:
            wrong.append(f"Gid {st.gids}")
        if any(g != user.gid for g in st.groups):
            wrong.append(f"Groups {st.groups}")
        for name, value in (
            ("CapEff", st.effective),
            ("CapPrm", st.permitted),
            ("CapBnd", st.bounding),
        ):
            if value != mask:
                wrong.append(f"{name} {value:016x} (want {mask:016x})")
        if st.inheritable or st.ambient:
            wrong.append(f"CapInh {st.inheritable:016x} CapAmb {st.ambient:016x}")
        if not st.no_new_privs:
            wrong.append("NoNewPrivs 0")
        if wrong:
            raise PrivilegeError(f"privilege drop did not take on thread {tid}: {', '.join(wrong)}")
        last = st
    if last is None:  # pragma: no cover - /proc without tasks
        raise PrivilegeError("cannot read /proc/self/task/*/status")
    return last


def drop_privileges(user: User, keep: Collection[int] = ()) -> Status:
    """Become `user` keeping only the capabilities `keep`; returns the verified status."""
    if os.geteuid() != 0:
        raise PrivilegeError("dropping privileges needs root")
    threads = os.listdir("/proc/self/task")
    if len(threads) != 1:
        raise PrivilegeError(
            f"{len(threads)} threads: capabilities are per thread, drop before starting any"
        )
    last_cap = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    if any(cap > last_cap for cap in keep):
        raise PrivilegeError(f"this kernel knows capabilities up to {last_cap} only")
    libc = _libc()
    for cap in range(last_cap + 1):
        if cap not in keep:
            _prctl(libc, PR_CAPBSET_DROP, cap)
    _prctl(libc, PR_SET_KEEPCAPS, 1)
    os.setgroups([])
    os.setresgid(user.gid, user.gid, user.gid)
    os.setresuid(user.uid, user.uid, user.uid)
    mask = cap_mask(keep)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        word = (mask >> (32 * i)) & 0xFFFFFFFF
        data[i].effective = data[i].permitted = word
        data[i].inheritable = 0
    if libc.capset(ctypes.byref(header), ctypes.byref(data)) != 0:
        raise PrivilegeError(f"capset: {os.strerror(ctypes.get_errno())}")
    _prctl(libc, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    _prctl(libc, PR_SET_KEEPCAPS, 0)
    _prctl(libc, PR_SET_NO_NEW_PRIVS, 1)
    return verify(user, keep)


def private_dir(
    path: Path,
    owners: Collection[int],
    chown_to: tuple[int, int] | None = None,
    mode: int = 0o700,
) -> None:
    """Make sure `path` is a directory (not a symlink) owned by one of `owners` that neither
    group nor others can write; create it (`mode`, parents 0755) when missing. With `chown_to`
    and root, a root-owned directory is handed to that user (fchown on an O_NOFOLLOW
    descriptor, group kept). Checks use lstat, so root without CAP_DAC_OVERRIDE can check a
    directory the daemon's user owns."""
    if not os.path.lexists(path):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=mode)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise PrivilegeError(f"{path} is not a directory (a symlink is refused)")
    if st.st_uid not in owners:
        raise PrivilegeError(
            f"{path} is owned by uid {st.st_uid}, not by root or the daemon's user: "
            "refusing what another user could plant there"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise PrivilegeError(
            f"{path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
        )
    if chown_to is None or os.geteuid() != 0 or st.st_uid != 0 or chown_to[0] == 0:
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        again = os.fstat(fd)
        if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino):
            raise PrivilegeError(f"{path} changed while being checked")
        os.fchown(fd, chown_to[0], -1)
    finally:
        os.close(fd)


def hand_file_to(path: Path, uid: int, gid: int) -> None:
    """As root, give an existing root-owned regular file with one link to uid/gid (fchown on
    an O_NOFOLLOW descriptor; a hard link planted to another file is refused). A file the user
    already owns is left alone without being opened."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, PermissionError):
        return  # missing, or in a directory root may not search: the user's own
    if st.st_uid == uid:
        return
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_uid != 0:
        raise PrivilegeError(f"{path}: not a plain root-owned file with one link; refusing")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        again = os.fstat(fd)
        if (again.st_dev, again.st_ino, again.st_nlink) != (st.st_dev, st.st_ino, 1):
            raise PrivilegeError(f"{path} changed while being checked")
        os.fchown(fd, uid, gid)
    finally:
        os.close(fd)


def bind_unix(path: Path, mode: int) -> socket.socket:
    """A listening, non-blocking Unix stream socket at `path` (a stale one is replaced), born
    with `mode` (umask around bind; no chmod on a path someone could swap)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o777 & ~mode)
    try:
        sock.bind(str(path))
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    sock.listen(128)
    sock.setblocking(False)
    return sock
