"""BPF maps by file descriptor: lookup, update, delete and iteration through libbpf's syscall
wrappers (ctypes), with no bcc module and no compile.

The XDP loader child (media/loader.py) compiles and attaches the program, then hands its map
file descriptors and bcc's type descriptions of their keys and values to mediad, which runs as
`run_as` with CAP_BPF only and reads and writes the maps through `MapFd`. The key and value
classes are decoded from the compiled program's own descriptions (`decode`), so the structs in
ebpf/media_relay.c stay the only layout definition.

`open_pinned` gives root mediad (before its drop) the maps a previous mediad left pinned, so
that it keeps them in step while its own program is still being compiled.

Owns: the subset of bcc's table interface that xdp.XdpPath uses (`Key`, `Leaf`, `[]`, `del`,
`keys`, `items`, `getvalue`; per-CPU values as one `Leaf` array over the possible CPUs, as bcc
does). Must not: compile, attach, pin or unpin anything.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator
from typing import Any

_lib: Any = None


def _libbpf() -> Any:
    global _lib
    if _lib is None:
        lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
        for name in ("bpf_map_lookup_elem", "bpf_map_delete_elem", "bpf_map_get_next_key"):
            fn = getattr(lib, name)
            fn.restype = ctypes.c_int
        lib.bpf_map_lookup_elem.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        lib.bpf_map_get_next_key.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        lib.bpf_map_delete_elem.argtypes = [ctypes.c_int, ctypes.c_void_p]
        lib.bpf_map_update_elem.restype = ctypes.c_int
        lib.bpf_map_update_elem.argtypes = [
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_uint64,
        ]
        lib.libbpf_num_possible_cpus.restype = ctypes.c_int
        lib.bpf_obj_get.restype = ctypes.c_int
        lib.bpf_obj_get.argtypes = [ctypes.c_char_p]
        lib.bpf_obj_get_info_by_fd.restype = ctypes.c_int
        lib.bpf_obj_get_info_by_fd.argtypes = [
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_uint32),
        ]
        _lib = lib
    return _lib


def possible_cpus() -> int:
    n = int(_libbpf().libbpf_num_possible_cpus())
    if n <= 0:
        raise OSError(-n, "libbpf_num_possible_cpus failed")
    return n


def decode(desc: Any) -> Any:
    """A ctypes type from bcc's JSON description of a map's key or value type."""
    from bcc import BPF

    return BPF._decode_table_type(desc)


class _MapInfo(ctypes.Structure):
    """The head of the kernel's struct bpf_map_info (it copies what fits)."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
    ]


def open_pinned(path: str) -> int:
    """A new fd of the map pinned at `path` (needs the pin's file permissions: root)."""
    fd = int(_libbpf().bpf_obj_get(path.encode()))
    if fd < 0:
        raise _err(fd, f"bpf_obj_get {path}")
    return fd


def _err(rc: int, what: str) -> OSError:
    code = ctypes.get_errno() or -rc
    return OSError(code, f"{what}: {os.strerror(code)}")


class MapFd:
    """One map, by an fd this object owns (closed by `close`)."""

    def __init__(self, fd: int, key: Any, leaf: Any, percpu: bool = False) -> None:
        self.fd = fd
        self.Key = key
        self.percpu = percpu
        if percpu:
            if ctypes.sizeof(leaf) % 8:  # the kernel rounds each CPU's value up to 8 bytes
                raise ValueError("per-CPU values must be a multiple of 8 bytes")
            self.Leaf = leaf * possible_cpus()
        else:
            self.Leaf = leaf

    def check(self, max_entries: int) -> None:
        """Raise ValueError unless the map's key, value and size are what this object
        reads and writes."""
        info = _MapInfo()
        size = ctypes.c_uint32(ctypes.sizeof(info))
        rc = _libbpf().bpf_obj_get_info_by_fd(self.fd, ctypes.byref(info), ctypes.byref(size))
        if rc < 0:
            raise _err(rc, "bpf_obj_get_info_by_fd")
        value = ctypes.sizeof(self.Leaf) // (possible_cpus() if self.percpu else 1)
        want = (ctypes.sizeof(self.Key), value, max_entries)
        have = (info.key_size, info.value_size, info.max_entries)
        if have != want:
            raise ValueError(f"map key/value/entries {have}, not {want}")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __getitem__(self, key: Any) -> Any:
        leaf = self.Leaf()
        if _libbpf().bpf_map_lookup_elem(self.fd, ctypes.byref(key), ctypes.byref(leaf)) < 0:
            exc = _err(-1, "map lookup")
            if exc.errno == errno.ENOENT:
                raise KeyError(key)
            raise exc
        return leaf

    def getvalue(self, key: Any) -> Any:
        return self[key]

    def __setitem__(self, key: Any, leaf: Any) -> None:
        rc = _libbpf().bpf_map_update_elem(self.fd, ctypes.byref(key), ctypes.byref(leaf), 0)
        if rc < 0:
            raise _err(rc, "map update")

    def __delitem__(self, key: Any) -> None:
        rc = _libbpf().bpf_map_delete_elem(self.fd, ctypes.byref(key))
        if rc < 0:
            exc = _err(rc, "map delete")
            if exc.errno == errno.ENOENT:
                raise KeyError(key)
            raise exc

    def keys(self) -> Iterator[Any]:
        """Every key (a hash map changed meanwhile may skip or repeat some, as in bcc)."""
        lib = _libbpf()
        prev: Any = None
        while True:
            nxt = self.Key()
            ref = None if prev is None else ctypes.byref(prev)
            if lib.bpf_map_get_next_key(self.fd, ref, ctypes.byref(nxt)) < 0:
                exc = _err(-1, "map get_next_key")
                if exc.errno == errno.ENOENT:
                    return
                raise exc
            yield nxt
            prev = nxt

    def items(self) -> Iterator[tuple[Any, Any]]:
        for key in list(self.keys()):
            try:
                yield key, self[key]
            except KeyError:
                continue
