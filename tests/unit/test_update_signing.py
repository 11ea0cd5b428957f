"""Signed update manifests (sipedge.appliance.signing): what a baked key set accepts.

Keys are made here, for the test only; no private key is ever committed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sipedge.appliance import signing
from sipedge.appliance.signing import Manifest, Refused

MANIFEST = Manifest(
    version="0.2.0", build_id="test-build", min_version="0.1.0", sha256="ab" * 32, size=4096
)


def bake(folder: Path, name: str, key: Ed25519PrivateKey, pem: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    public = key.public_key()
    if pem:
        (folder / name).write_bytes(signing.public_pem(key))
    else:
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        (folder / name).write_bytes(raw)


def test_a_manifest_signed_with_a_baked_key_verifies(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    bake(tmp_path, "release.pub", key)
    data, sig = signing.sign(MANIFEST, key)
    manifest, name = signing.verify(data, sig, signing.load_keys(tmp_path))
    assert (manifest, name) == (MANIFEST, "release.pub")


def test_a_raw_32_byte_key_works_as_well_as_pem(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    bake(tmp_path, "raw.pub", key, pem=False)
    data, sig = signing.sign(MANIFEST, key)
    assert signing.verify(data, sig, signing.load_keys(tmp_path))[1] == "raw.pub"


def test_a_manifest_signed_with_an_unknown_key_is_refused(tmp_path: Path) -> None:
    bake(tmp_path, "release.pub", Ed25519PrivateKey.generate())
    data, sig = signing.sign(MANIFEST, Ed25519PrivateKey.generate())
    with pytest.raises(Refused, match="unknown key"):
        signing.verify(data, sig, signing.load_keys(tmp_path))


def test_a_tampered_manifest_is_refused(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    bake(tmp_path, "release.pub", key)
    data, sig = signing.sign(MANIFEST, key)
    tampered = data.replace(b'"0.2.0"', b'"9.2.0"')
    assert tampered != data
    with pytest.raises(Refused, match="altered"):
        signing.verify(tampered, sig, signing.load_keys(tmp_path))
    # even a whitespace change: the signature is over the exact bytes
    with pytest.raises(Refused):
        signing.verify(data + b"\n", sig, signing.load_keys(tmp_path))


def test_no_baked_key_accepts_nothing(tmp_path: Path) -> None:
    data, sig = signing.sign(MANIFEST, Ed25519PrivateKey.generate())
    with pytest.raises(Refused, match="no update keys"):
        signing.verify(data, sig, signing.load_keys(tmp_path / "missing"))


def test_key_rotation_old_and_new_keys_then_new_only(tmp_path: Path) -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    # image N carries the old key only; image N+1 (signed with old) carries old + new
    transition = tmp_path / "n+1"
    bake(transition, "2025-old.pub", old)
    bake(transition, "2026-new.pub", new)
    for key, name in ((old, "2025-old.pub"), (new, "2026-new.pub")):
        data, sig = signing.sign(MANIFEST, key)
        assert signing.verify(data, sig, signing.load_keys(transition))[1] == name
    # image N+2 dropped the old key: what the old key signs is refused from then on
    after = tmp_path / "n+2"
    bake(after, "2026-new.pub", new)
    data, sig = signing.sign(MANIFEST, old)
    with pytest.raises(Refused):
        signing.verify(data, sig, signing.load_keys(after))
    data, sig = signing.sign(MANIFEST, new)
    assert signing.verify(data, sig, signing.load_keys(after))[1] == "2026-new.pub"


def test_a_malformed_key_file_is_an_error_not_a_silent_skip(tmp_path: Path) -> None:
    (tmp_path / "broken.pub").write_bytes(b"not a key")
    with pytest.raises(ValueError, match=r"broken\.pub"):
        signing.load_keys(tmp_path)


def test_missing_or_short_signature_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Refused, match="not signed"):
        signing.read_signature(tmp_path / "m.sig")
    (tmp_path / "m.sig").write_bytes(b"x" * 10)
    with pytest.raises(Refused, match="64"):
        signing.read_signature(tmp_path / "m.sig")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": 2}, "format 2"),
        ({"version": "1.2"}, "not X.Y.Z"),
        ({"min_version": "01.0.0"}, "not X.Y.Z"),
        ({"sha256": "AB" * 32}, "sha256"),
        ({"size": 0}, "size"),
        ({"size": True}, "size"),
        ({"build_id": ""}, "build_id"),
    ],
)
def test_a_manifest_of_another_format_is_refused(change: dict[str, object], message: str) -> None:
    doc = {**MANIFEST.as_dict(), **change}
    with pytest.raises(Refused, match=message):
        signing.parse_manifest(json.dumps(doc).encode())


def test_a_manifest_that_lacks_a_field_or_is_not_json_is_refused() -> None:
    doc = MANIFEST.as_dict()
    del doc["min_version"]
    with pytest.raises(Refused, match="lacks min_version"):
        signing.parse_manifest(json.dumps(doc).encode())
    with pytest.raises(Refused, match="not JSON"):
        signing.parse_manifest(b"\xff{")
    with pytest.raises(Refused, match="object"):
        signing.parse_manifest(b"[]")


def test_versions_order_numerically() -> None:
    assert signing.parse_version("0.10.0") > signing.parse_version("0.9.9")
    with pytest.raises(ValueError):
        signing.parse_version("1.0.0-rc1")


@pytest.mark.parametrize(
    ("running", "allow", "message"),
    [
        ("0.2.0", False, "not newer"),  # the same version again
        ("0.3.1", False, "not newer"),  # older
        ("0.0.9", False, "at least 0.1.0"),  # below min_version
        ("0.0.9", True, "at least 0.1.0"),  # --allow-downgrade does not skip min_version
        ("dev", False, "not X.Y.Z"),
    ],
)
def test_version_refusals(running: str, allow: bool, message: str) -> None:
    with pytest.raises(Refused, match=message):
        signing.check_versions(MANIFEST, running, allow)


@pytest.mark.parametrize(
    ("running", "allow"), [("0.1.0", False), ("0.1.9", False), ("0.3.1", True)]
)
def test_version_accepted(running: str, allow: bool) -> None:
    signing.check_versions(MANIFEST, running, allow)


def test_private_key_round_trip_pem_and_raw(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    (tmp_path / "k.pem").write_bytes(signing.private_pem(key))
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    (tmp_path / "k.raw").write_bytes(raw)
    bake(tmp_path / "keys", "k.pub", key)
    for path in (tmp_path / "k.pem", tmp_path / "k.raw"):
        data, sig = signing.sign(MANIFEST, signing.load_private_key(path))
        signing.verify(data, sig, signing.load_keys(tmp_path / "keys"))


def test_signed_sums_for_flashing(tmp_path: Path) -> None:
    """image/lib/sign sign-sums / verify-sums: what docs/install.md has operators check."""
    tool = [sys.executable, str(Path(__file__).resolve().parents[2] / "image/lib/sign")]
    key, pub = tmp_path / "k.pem", tmp_path / "k.pub"
    subprocess.run([*tool, "keygen", str(key), str(pub)], check=True, capture_output=True)
    (tmp_path / "sipedge.raw").write_bytes(b"disk" * 1000)
    (tmp_path / "sipedge.qcow2").write_bytes(b"qcow")
    files = [str(tmp_path / "sipedge.raw"), str(tmp_path / "sipedge.qcow2")]
    subprocess.run(
        [*tool, "sign-sums", "--key", str(key), "--out", str(tmp_path), *files], check=True
    )

    def verify() -> int:
        return subprocess.run(
            [*tool, "verify-sums", "--public", str(pub), str(tmp_path)]
        ).returncode

    assert verify() == 0
    with (tmp_path / "sipedge.raw").open("ab") as f:
        f.write(b"x")
    assert verify() == 1  # a changed image
    (tmp_path / "sipedge.raw").write_bytes(b"disk" * 1000)
    sums = (tmp_path / "SHA256SUMS").read_bytes()
    (tmp_path / "SHA256SUMS").write_bytes(sums.replace(b"sipedge.qcow2", b"sipedge.qcow3"))
    assert verify() == 1  # a changed list: the signature no longer verifies
