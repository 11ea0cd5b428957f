"""RTP payload transforms for SS_RTPENCRYPTIONMODE (pure functions, no I/O).

The byte layout is the contract of `parameters.md` and is pinned by the test vectors in
`docs/media.md`:

* Only the RTP payload changes: the 12-byte fixed header, the CSRC list and the header
  extension stay in clear; the packet length never changes. Padding bytes (P bit) are treated
  as payload (the XDP program does the same), so the P bit has no effect on the layout.
* XOR: key of 1-64 bytes applied cyclically from payload byte 0.
* RC4: key of 5-64 bytes; each packet gets a fresh RC4 keystream keyed with
  key || SSRC (4) || sequence number (2), both as they stand in the header (network order).
* AES128: key of exactly 16 bytes; AES-128-CTR, initial counter block
  SSRC (4) || timestamp (4) || sequence number (2) || six zero bytes, incremented as one
  128-bit big-endian integer per 16-byte block.

Every transform is its own inverse (a keystream XOR), so `transform()` both encrypts and
decrypts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections.abc import Sequence
from enum import IntEnum
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

MAX_KEY = 64


class Mode(IntEnum):
    NONE = 0
    XOR = 1
    RC4 = 2
    AES128 = 3


MODE_NAMES = {m: m.name.lower() for m in Mode}


class KeyError_(ValueError):
    """The key does not fit the mode (length out of range)."""


def parse_mode(value: object) -> Mode:
    """Accept 0-3 or the names none/xor/rc4/aes128 (any case)."""
    if isinstance(value, bool):
        raise ValueError(f"encryption mode must be 0-3 or none/xor/rc4/aes128, not {value!r}")
    if isinstance(value, int):
        try:
            return Mode(value)
        except ValueError:
            raise ValueError(f"encryption mode must be 0-3, not {value}") from None
    if isinstance(value, str):
        text = value.strip().lower()
        if text.isdigit():
            return parse_mode(int(text))
        for mode, name in MODE_NAMES.items():
            if name == text:
                return mode
    raise ValueError(f"encryption mode must be 0-3 or none/xor/rc4/aes128, not {value!r}")


def check_key(mode: Mode, key: bytes) -> None:
    """Raise KeyError_ with a clear message when `key` is not valid for `mode`."""
    n = len(key)
    if mode == Mode.XOR and not 1 <= n <= MAX_KEY:
        raise KeyError_(f"XOR needs a key of 1-64 bytes, got {n}")
    if mode == Mode.RC4 and not 5 <= n <= MAX_KEY:
        raise KeyError_(f"RC4 needs a key of 5-64 bytes, got {n}")
    if mode == Mode.AES128 and n != 16:
        raise KeyError_(f"AES128 needs a key of exactly 16 bytes, got {n}")


def payload_offset(packet: bytes | bytearray | memoryview) -> int | None:
    """Offset of the RTP payload, or None when the packet is not a well-formed RTP packet."""
    n = len(packet)
    if n < 12 or (packet[0] >> 6) != 2:
        return None
    off = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:
        if off + 4 > n:
            return None
        off += 4 + 4 * ((packet[off + 2] << 8) | packet[off + 3])
    if off > n:
        return None
    return off


def xor_bytes(data: bytes, stream: bytes) -> bytes:
    """data XOR stream[:len(data)] (stream at least as long as data)."""
    n = len(data)
    if n == 0:
        return b""
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream[:n], "big")).to_bytes(n, "big")


def xor_payload(key: bytes, payload: bytes) -> bytes:
    n = len(payload)
    reps = n // len(key) + 1
    return xor_bytes(payload, key * reps)


def rc4_keystream(key: bytes, n: int) -> bytes:
    """n bytes of RC4 keystream (KSA + PRGA, no drop)."""
    s = list(range(256))
    j = 0
    klen = len(key)
    for i in range(256):
        j = (j + s[i] + key[i % klen]) & 0xFF
        s[i], s[j] = s[j], s[i]
    out = bytearray(n)
    i = j = 0
    for k in range(n):
        i = (i + 1) & 0xFF
        j = (j + s[i]) & 0xFF
        s[i], s[j] = s[j], s[i]
        out[k] = s[(s[i] + s[j]) & 0xFF]
    return bytes(out)


def _find_arc4() -> Any:
    try:
        from cryptography.hazmat.decrepit.ciphers import algorithms as decrepit
    except ImportError:  # pragma: no cover - older cryptography
        return getattr(algorithms, "ARC4", None)
    return decrepit.ARC4


_ARC4 = _find_arc4()

# Key sizes (bytes) `cryptography`'s ARC4 accepts (40-256 bits in fixed steps); our per-packet
# keys are 11-70 bytes, so it covers only some (key of 10, 14, 18 or 26 bytes).
_RC4_SIZES = frozenset({5, 7, 8, 10, 16, 20, 24, 32})


class _LibcryptoRC4:
    """OpenSSL's RC4 (libcrypto's RC4_set_key / RC4 through ctypes): any key of 1-256 bytes,
    so every per-packet key length; about 3 µs per packet from Python."""

    STATE_SIZE = 4096  # RC4_KEY is 258 ints (1032 bytes); generous

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._set_key = lib.RC4_set_key
        self._set_key.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p]
        self._set_key.restype = None
        self._rc4 = lib.RC4
        self._rc4.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
        self._rc4.restype = None
        self._local = threading.local()

    def _buffers(self) -> tuple[Any, Any]:
        """Key state and output buffer, one pair per thread (re-allocating costs ~1 µs)."""
        bufs: tuple[Any, Any] | None = getattr(self._local, "bufs", None)
        if bufs is None:
            bufs = (ctypes.create_string_buffer(self.STATE_SIZE), ctypes.create_string_buffer(0))
            self._local.bufs = bufs
        return bufs

    def crypt(self, key: bytes, data: bytes) -> bytes:
        state, out = self._buffers()
        n = len(data)
        if ctypes.sizeof(out) < n:
            out = ctypes.create_string_buffer(max(n, 2048))
            self._local.bufs = (state, out)
        self._set_key(state, len(key), key)
        self._rc4(state, n, data, out)
        return ctypes.string_at(out, n)


def _load_libcrypto() -> _LibcryptoRC4 | None:
    if os.environ.get("SIPEDGE_RC4_BACKEND", "") == "python":
        return None
    for name in (ctypes.util.find_library("crypto"), "libcrypto.so.3"):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            impl = _LibcryptoRC4(lib)
            probe = b"sipedge-rc4" + bytes(6)  # 17 bytes: a length ARC4 refuses
            if impl.crypt(probe, bytes(8)) == rc4_keystream(probe, 8):
                return impl
        except (OSError, AttributeError):  # no library / built without RC4
            continue
    return None


_LIBCRYPTO_RC4 = _load_libcrypto()


def rc4_backend() -> str:
    """Which RC4 the userspace relay uses (logged at start, in /healthz)."""
    if _LIBCRYPTO_RC4 is not None:
        return "openssl-libcrypto"
    if _ARC4 is not None and os.environ.get("SIPEDGE_RC4_BACKEND", "") != "python":
        return "cryptography-arc4+python"  # ARC4 for the sizes it accepts, Python otherwise
    return "python"


def _rc4_ctx(key: bytes) -> CipherContext | None:
    if _ARC4 is None or len(key) not in _RC4_SIZES:
        return None
    if os.environ.get("SIPEDGE_RC4_BACKEND", "") == "python":
        return None
    return Cipher(_ARC4(key), mode=None).encryptor()


def rc4_payload(key: bytes, header: bytes, payload: bytes) -> bytes:
    """RC4 with the per-packet key key || SSRC || seq taken from the RTP header."""
    pkey = key + header[8:12] + header[2:4]
    if _LIBCRYPTO_RC4 is not None:
        return _LIBCRYPTO_RC4.crypt(pkey, payload)
    ctx = _rc4_ctx(pkey)
    if ctx is not None:
        return ctx.update(payload)
    return xor_bytes(payload, rc4_keystream(pkey, len(payload)))


def aes_counter_block(header: bytes) -> bytes:
    return header[8:12] + header[4:8] + header[2:4] + bytes(6)


def aes_payload(key: bytes, header: bytes, payload: bytes) -> bytes:
    """Single-packet AES128-CTR (reference shape; the relay uses AesCtrBatch)."""
    ctx = Cipher(algorithms.AES(key), modes.CTR(aes_counter_block(header))).encryptor()
    return ctx.update(payload) + ctx.finalize()


_LOW_CACHE: dict[int, int] = {}


def _low_counters(nblocks: int) -> int:
    """The integer whose 16-byte blocks hold 0, 1, ..., nblocks-1 in their low bytes."""
    value = _LOW_CACHE.get(nblocks)
    if value is None:
        value = int.from_bytes(b"".join(i.to_bytes(16, "big") for i in range(nblocks)), "big")
        _LOW_CACHE[nblocks] = value
    return value


class AesCtrBatch:
    """AES128-CTR for many packets with one ECB encryptor (no Cipher object per packet).

    The counter blocks of all packets of a batch are built as one integer, encrypted with a
    single `update()` call, and XOR-ed into each payload with `int.from_bytes`.
    """

    def __init__(self, key: bytes) -> None:
        check_key(Mode.AES128, key)
        self.key = key
        self._ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()

    def keystream(self, header: bytes, n: int) -> bytes:
        nblocks = (n + 15) >> 4
        if nblocks == 0:
            return b""
        # The low 48 bits of the initial block are zero, so adding i never carries into the
        # prefix for payloads below 2**52 bytes: the blocks are prefix | i.
        rep = int.from_bytes(aes_counter_block(header) * nblocks, "big")
        blocks = (rep | _low_counters(nblocks)).to_bytes(nblocks << 4, "big")
        return self._ecb.update(blocks)

    def payload(self, header: bytes, payload: bytes) -> bytes:
        return xor_bytes(payload, self.keystream(header, len(payload)))

    def packets(self, packets: Sequence[tuple[bytes, int]]) -> list[bytes]:
        """Transform many (packet, payload_offset) pairs with a single ECB call."""
        parts: list[bytes] = []
        sizes: list[int] = []
        for pkt, off in packets:
            n = len(pkt) - off
            nblocks = (n + 15) >> 4
            sizes.append(nblocks)
            if nblocks:
                block = pkt[8:12] + pkt[4:8] + pkt[2:4] + b"\0\0\0\0\0\0"
                rep = int.from_bytes(block * nblocks, "big")
                parts.append((rep | _low_counters(nblocks)).to_bytes(nblocks << 4, "big"))
        stream = self._ecb.update(b"".join(parts))
        out: list[bytes] = []
        pos = 0
        for (pkt, off), nblocks in zip(packets, sizes, strict=True):
            n = len(pkt) - off
            if n == 0:
                out.append(bytes(pkt))
                continue
            ks = stream[pos : pos + n]
            pos += nblocks << 4
            body = (int.from_bytes(pkt[off:], "big") ^ int.from_bytes(ks, "big")).to_bytes(n, "big")
            out.append(bytes(pkt[:off]) + body)
        return out


class Transform:
    """A leg's cipher: mode + key, applied to whole RTP packets."""

    __slots__ = ("_aes", "_xor_stream", "key", "mode")

    def __init__(self, mode: Mode, key: bytes) -> None:
        if mode != Mode.NONE:
            check_key(mode, key)
        self.mode = mode
        self.key = key
        self._aes = AesCtrBatch(key) if mode == Mode.AES128 else None
        self._xor_stream = key * (2048 // max(len(key), 1) + 1) if mode == Mode.XOR else b""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Transform) and self.mode == other.mode and self.key == other.key

    def __hash__(self) -> int:
        return hash((self.mode, self.key))

    @property
    def active(self) -> bool:
        return self.mode != Mode.NONE

    def apply(self, packet: bytes) -> bytes:
        """Encrypt/decrypt one packet; non-RTP packets come back unchanged."""
        if self.mode == Mode.NONE:
            return packet
        off = payload_offset(packet)
        if off is None or off == len(packet):
            return packet
        header, payload = packet[:off], packet[off:]
        if self.mode == Mode.XOR:
            if len(payload) <= len(self._xor_stream):
                return header + xor_bytes(payload, self._xor_stream)
            return header + xor_payload(self.key, payload)
        if self.mode == Mode.RC4:
            return header + rc4_payload(self.key, header, payload)
        assert self._aes is not None
        return header + self._aes.payload(header, payload)

    def apply_many(self, packets: list[bytes]) -> list[bytes]:
        if self.mode != Mode.AES128:
            return [self.apply(p) for p in packets]
        assert self._aes is not None
        todo: list[tuple[bytes, int]] = []
        index: list[int] = []
        out = list(packets)
        for i, p in enumerate(packets):
            off = payload_offset(p)
            if off is not None and off < len(p):
                todo.append((p, off))
                index.append(i)
        if todo:
            for i, res in zip(index, self._aes.packets(todo), strict=True):
                out[i] = res
        return out


def transform(mode: Mode | int, key: bytes, packet: bytes) -> bytes:
    """Encrypt or decrypt one RTP packet (same operation both ways)."""
    return Transform(Mode(mode), key).apply(packet)
