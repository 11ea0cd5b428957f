"""Payload ciphers: docs vectors, the independent reference, and the batch AES path."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from sipedge.media import crypto
from tests.media import reference
from tests.media.vectors import VECTORS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "media.md"


@pytest.mark.parametrize(("mode", "key", "header", "plain", "cipher"), VECTORS)
def test_vectors(mode: int, key: bytes, header: bytes, plain: bytes, cipher: str) -> None:
    pkt = header + plain
    out = crypto.transform(mode, key, pkt)
    assert out[: len(header)] == header
    assert out[len(header) :].hex() == cipher
    assert reference.encrypt(mode, key, pkt) == out
    assert crypto.transform(mode, key, out) == pkt  # decrypt = encrypt


@pytest.mark.parametrize(("mode", "key", "header", "plain", "cipher"), VECTORS)
def test_vectors_are_in_the_docs(
    mode: int, key: bytes, header: bytes, plain: bytes, cipher: str
) -> None:
    text = DOCS.read_text()
    assert cipher in text
    assert header.hex() in text
    assert key.decode() in text


@pytest.mark.parametrize(
    ("mode", "key"),
    [
        (1, b"k"),
        (1, os.urandom(64)),
        (2, b"12345"),
        (2, b"0123456789"),
        (2, os.urandom(64)),
        (3, b"0123456789abcdef"),
    ],
    # ids that do not name the random keys: every pytest-xdist worker must collect the same ids
    ids=["xor-1", "xor-random64", "rc4-5", "rc4-10", "rc4-random64", "aes128"],
)
def test_random_packets_match_reference(mode: int, key: bytes) -> None:
    rng = random.Random(mode * 1000 + len(key))
    packets = []
    for seq in range(40):
        payload = rng.randbytes(rng.choice([0, 1, 15, 16, 17, 160, 1400, 1500]))
        packets.append(reference.rtp(seq, ts=seq * 160, ssrc=rng.getrandbits(32), payload=payload))
    t = crypto.Transform(crypto.Mode(mode), key)
    for pkt in packets:
        assert t.apply(pkt) == reference.encrypt(mode, key, pkt)
        assert len(t.apply(pkt)) == len(pkt)
    assert t.apply_many(packets) == [reference.encrypt(mode, key, p) for p in packets]


def test_non_rtp_untouched() -> None:
    t = crypto.Transform(crypto.Mode.XOR, b"key")
    assert t.apply(b"\x00" * 40) == b"\x00" * 40  # version 0
    assert t.apply(b"\x80\x00") == b"\x80\x00"  # too short


@pytest.mark.parametrize(
    ("mode", "key", "ok"),
    [
        (1, b"", False),
        (1, b"x" * 65, False),
        (2, b"1234", False),
        (2, b"12345", True),
        (3, b"x" * 15, False),
        (3, b"x" * 16, True),
        (3, b"x" * 17, False),
    ],
)
def test_key_lengths(mode: int, key: bytes, ok: bool) -> None:
    if ok:
        crypto.check_key(crypto.Mode(mode), key)
    else:
        with pytest.raises(crypto.KeyError_):
            crypto.check_key(crypto.Mode(mode), key)


def test_parse_mode() -> None:
    assert crypto.parse_mode("aes128") == crypto.Mode.AES128
    assert crypto.parse_mode(2) == crypto.Mode.RC4
    assert crypto.parse_mode("1") == crypto.Mode.XOR
    for bad in (4, "des", True, None):
        with pytest.raises(ValueError):
            crypto.parse_mode(bad)


def test_rc4_uses_openssl_for_every_key_length() -> None:
    """libcrypto's RC4 takes every per-packet key length (key 5-64 bytes + 6 = 11-70), which
    cryptography's ARC4 does not (it accepts 5, 7, 8, 10, 16, 20, 24 and 32 bytes only)."""
    assert crypto.rc4_backend() == "openssl-libcrypto"  # Debian's libcrypto.so.3 has RC4
    rng = random.Random(5)
    for n in range(5, 65):
        key = rng.randbytes(n)
        pkt = reference.rtp(n, ts=n, ssrc=rng.getrandbits(32), payload=rng.randbytes(160))
        assert crypto.transform(2, key, pkt) == reference.encrypt(2, key, pkt), n


def test_rc4_fallbacks_match(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without libcrypto: cryptography's ARC4 where it accepts the length, else pure Python."""
    monkeypatch.setattr(crypto, "_LIBCRYPTO_RC4", None)
    assert crypto.rc4_backend() == "cryptography-arc4+python"
    # per-packet key of 16 bytes (ARC4), 21 and 70 bytes (pure Python)
    for key in (b"0123456789", b"sipedge-rc4-key", os.urandom(64)):
        pkt = reference.rtp(7, ts=9, ssrc=0xABCDEF01, payload=os.urandom(200))
        assert crypto.transform(2, key, pkt) == reference.encrypt(2, key, pkt)
    monkeypatch.setenv("SIPEDGE_RC4_BACKEND", "python")
    assert crypto.rc4_backend() == "python"
    pkt = reference.rtp(8, payload=os.urandom(64))
    assert crypto.transform(2, b"12345", pkt) == reference.encrypt(2, b"12345", pkt)
