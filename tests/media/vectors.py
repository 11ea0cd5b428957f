"""Test vectors of docs/media.md (the byte layout contract of SS_RTPENCRYPTIONKEY)."""

from __future__ import annotations

HEADER = bytes.fromhex("8000123400005678deadbeef")  # V=2, PT 0, seq 0x1234, ts 0x5678
PLAINTEXT = bytes(range(32))
# header with one CSRC and a one-word header extension: all of it stays in clear
HEADER_EXT = bytes.fromhex("91001235000056d8deadbeefcafebabebede000111223344")

VECTORS = [
    # (mode, key, header, plaintext, ciphertext payload)
    (
        1,
        b"sipedge",
        HEADER,
        PLAINTEXT,
        "736872666062637461796f6f6b687d666074767471667f677d7d7d7e6f746e7a",
    ),
    (
        2,
        b"sipedge-rc4",
        HEADER,
        PLAINTEXT,
        "8778b4ba90ccdea67fab1c03ad95ec0e2e4c770c6e313d9f1625574d53f296c9",
    ),
    (
        3,
        b"0123456789abcdef",
        HEADER,
        PLAINTEXT,
        "66aa9763d280a88c5568205a9e5accf5074d5d6960dc650209d2eb519b33a4a0",
    ),
    (
        1,
        b"sipedge",
        HEADER_EXT,
        PLAINTEXT,
        "736872666062637461796f6f6b687d666074767471667f677d7d7d7e6f746e7a",
    ),
]
