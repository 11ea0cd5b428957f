"""Independent reference implementations of the payload ciphers (not sipedge code)."""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def payload_offset(pkt: bytes) -> int:
    cc = pkt[0] & 0x0F
    off = 12 + 4 * cc
    if pkt[0] & 0x10:
        (words,) = struct.unpack_from("!H", pkt, off + 2)
        off += 4 + 4 * words
    return off


def rc4(key: bytes, data: bytes) -> bytes:
    S = list(range(256))
    j = 0
    for i in range(256):
        j = (j + S[i] + key[i % len(key)]) % 256
        S[i], S[j] = S[j], S[i]
    out = []
    i = j = 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + S[i]) % 256
        S[i], S[j] = S[j], S[i]
        out.append(byte ^ S[(S[i] + S[j]) % 256])
    return bytes(out)


def encrypt(mode: int, key: bytes, pkt: bytes) -> bytes:
    off = payload_offset(pkt)
    head, body = pkt[:off], pkt[off:]
    if mode == 0:
        return pkt
    if mode == 1:
        return head + bytes(b ^ key[i % len(key)] for i, b in enumerate(body))
    ssrc, seq, ts = pkt[8:12], pkt[2:4], pkt[4:8]
    if mode == 2:
        return head + rc4(key + ssrc + seq, body)
    iv = ssrc + ts + seq + b"\x00" * 6
    enc = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return head + enc.update(body) + enc.finalize()


def rtp(seq: int, ts: int = 0, ssrc: int = 0x11223344, payload: bytes = b"", pt: int = 0) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload
