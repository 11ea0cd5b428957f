"""Signed update manifests: Ed25519 over the manifest's exact bytes, keys baked in the image.

A manifest is a small JSON document that travels with a root image (``IMAGE.manifest``, its
signature ``IMAGE.manifest.sig`` next to it)::

    {"format": 1, "version": "0.2.0", "build_id": "...", "min_version": "0.1.0",
     "sha256": "<sha256 of the image>", "size": <bytes>}

The signature is 64 raw bytes (Ed25519) over the manifest file as it is, byte for byte; the
JSON is parsed only once the signature verified. Public keys live in a folder
(``/usr/share/sipedge/update-keys/*.pub`` on the appliance): a raw 32-byte key or a PEM
``PUBLIC KEY``; the manifest is accepted when any one of them verifies it. Key rotation: an
image carries the old and the new public key and is signed with the old one; once the fleet
runs it, images are signed with the new key and the next image may drop the old one.

Owns: the manifest format, the version order (``X.Y.Z``, numeric), key loading, verifying and
signing (image/build and image/lib/variant sign through ``image/lib/sign``).
Must not: read the running system, touch a disk or a slot, or import anything of sipedge but
itself. The caller (update.py) decides what a verified manifest allows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

FORMAT = 1
KEYS_DIR = Path("/usr/share/sipedge/update-keys")
MAX_MANIFEST = 64 << 10
SIGNATURE_SIZE = 64
VERSION_RE = re.compile(r"^(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
FIELDS = ("format", "version", "build_id", "min_version", "sha256", "size")


class Refused(Exception):
    """An update the appliance must not install; the message says why, for the operator."""


@dataclass(frozen=True)
class Manifest:
    version: str
    build_id: str
    min_version: str
    sha256: str
    size: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": self.version,
            "build_id": self.build_id,
            "min_version": self.min_version,
            "sha256": self.sha256,
            "size": self.size,
        }

    def to_bytes(self) -> bytes:
        return (json.dumps(self.as_dict(), indent=1, sort_keys=False) + "\n").encode()


@dataclass(frozen=True)
class PublicKey:
    name: str
    key: Ed25519PublicKey


def parse_version(text: str) -> tuple[int, int, int]:
    """``X.Y.Z`` (decimal, no leading zeros) as a tuple that orders numerically."""
    match = VERSION_RE.match(text)
    if match is None:
        raise ValueError(f"version {text!r} is not X.Y.Z")
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def parse_manifest(data: bytes) -> Manifest:
    """The fields of a (verified) manifest; Refused when it is not format 1 or a field is off."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise Refused(f"the manifest is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise Refused("the manifest is not a JSON object")
    if doc.get("format") != FORMAT:
        raise Refused(f"manifest format {doc.get('format')!r}, this updater reads format {FORMAT}")
    missing = [f for f in FIELDS if f not in doc]
    if missing:
        raise Refused(f"the manifest lacks {', '.join(missing)}")
    for field in ("version", "min_version"):
        value = doc[field]
        if not isinstance(value, str) or VERSION_RE.match(value) is None:
            raise Refused(f"manifest {field} {value!r} is not X.Y.Z")
    build_id = doc["build_id"]
    if not isinstance(build_id, str) or not build_id or len(build_id) > 200:
        raise Refused("manifest build_id must be a non-empty string")
    sha256 = doc["sha256"]
    if not isinstance(sha256, str) or SHA256_RE.match(sha256) is None:
        raise Refused("manifest sha256 must be 64 lower-case hex digits")
    size = doc["size"]
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise Refused("manifest size must be a positive integer")
    return Manifest(doc["version"], build_id, doc["min_version"], sha256, size)


def load_public_key(path: Path) -> Ed25519PublicKey:
    data = path.read_bytes()
    if len(data) == 32:
        return Ed25519PublicKey.from_public_bytes(data)
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise ValueError(f"{path}: not a raw 32-byte or PEM Ed25519 public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: a PEM public key, but not Ed25519")
    return key


def load_keys(folder: Path) -> list[PublicKey]:
    """Every ``*.pub`` in `folder`, sorted by name; a malformed key file is an error."""
    if not folder.is_dir():
        return []
    return [PublicKey(p.name, load_public_key(p)) for p in sorted(folder.glob("*.pub"))]


def read_signature(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise Refused(f"no signature {path}: the manifest is not signed") from None
    if len(data) != SIGNATURE_SIZE:
        raise Refused(f"{path}: {len(data)} bytes, an Ed25519 signature has {SIGNATURE_SIZE}")
    return data


def read_manifest_bytes(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_MANIFEST + 1)
    except FileNotFoundError:
        raise Refused(f"no manifest {path}") from None
    if len(data) > MAX_MANIFEST:
        raise Refused(f"{path}: larger than {MAX_MANIFEST} bytes, not a manifest")
    return data


def verify(data: bytes, signature: bytes, keys: Iterable[PublicKey]) -> tuple[Manifest, str]:
    """The manifest and the name of the key that signed it; Refused when no key verifies it."""
    keys = list(keys)
    if not keys:
        raise Refused(f"no update keys (*.pub in {KEYS_DIR}): this image accepts no signed update")
    for key in keys:
        try:
            key.key.verify(signature, data)
        except InvalidSignature:
            continue
        return parse_manifest(data), key.name
    names = ", ".join(k.name for k in keys)
    raise Refused(
        f"the manifest's signature does not verify with any trusted key ({names}):"
        " signed with an unknown key, or the manifest was altered"
    )


def check_versions(manifest: Manifest, running: str, allow_downgrade: bool) -> None:
    """Refused when the image is not newer than `running`, or `running` is below min_version."""
    try:
        current = parse_version(running)
    except ValueError:
        if not allow_downgrade:
            raise Refused(
                f"the running image's version {running!r} is not X.Y.Z: cannot tell whether"
                f" {manifest.version} is newer (--allow-downgrade to install it anyway)"
            ) from None
        return
    if current < parse_version(manifest.min_version):
        raise Refused(
            f"image {manifest.version} needs at least {manifest.min_version} running"
            f" (running {running}): update to {manifest.min_version} first"
        )
    if parse_version(manifest.version) <= current and not allow_downgrade:
        raise Refused(
            f"image {manifest.version} is not newer than the running {running}"
            " (--allow-downgrade installs it anyway)"
        )


# --- signing side (image/build, image/lib/variant, the release manager) ---------------------


def load_private_key(path: Path) -> Ed25519PrivateKey:
    data = path.read_bytes()
    if len(data) == 32:
        return Ed25519PrivateKey.from_private_bytes(data)
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: a PEM private key, but not Ed25519")
    return key


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def sign(manifest: Manifest, key: Ed25519PrivateKey) -> tuple[bytes, bytes]:
    """(manifest bytes, signature): write both as they are, the signature over those bytes."""
    data = manifest.to_bytes()
    return data, key.sign(data)
