"""The first-boot seed: what a NoCloud or OpenStack ConfigDrive volume asks of the appliance.

A seed is untrusted input from whoever made the VM (the hypervisor's user): it is parsed with
`yaml.safe_load`, every file is size-limited, every field is type-checked, and anything this
module does not understand is an error with its place named, never ignored silently. The
result is a `Seed`: plain values that `provision.py` applies.

Formats (the subset sipedge reads; docs/install.md has the examples):
- NoCloud (`cidata` ISO or vfat volume, as `cloud-localds` makes it): `meta-data`
  (`instance-id`, `local-hostname`, `public-keys`), `user-data` (`#cloud-config`: `hostname`,
  `fqdn`, `ssh_authorized_keys`, `users[].ssh_authorized_keys` of root, `write_files`,
  and the `sipedge:` key below), `network-config` (network config version 2).
- OpenStack ConfigDrive (`config-2`): `openstack/latest/meta_data.json` (`uuid`, `hostname`,
  `public_keys`), `user_data` (as above), `network_data.json` is not read: give
  `network-config` v2 in the user-data's `sipedge.network` instead (documented).
- The `sipedge:` key of the user-data: `config` (the sipedge.yaml, a mapping or its text),
  `api_token`, `api_read_token`, `tls` (`cert`, `key`, `ca`: PEM text), `network` (a network
  config v2 mapping, for ConfigDrive).

Owns: the formats, their limits and the `Seed` they make. Must not: touch the system (mount,
write, run commands): provision.py does, and networkd.py renders the network part.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

MAX_FILE = 1 << 20  # bytes per seed file: a config and a few PEM files fit many times over
MAX_KEYS = 64
MAX_WRITE_FILES = 32
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
KEY_LINE = re.compile(
    r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-\S+) [A-Za-z0-9+/=]+( .*)?$"
)
# write_files may only create files under these folders (not /usr, /boot, /root's shell files)
WRITABLE_PREFIXES = ("/etc/", "/var/lib/sipedge/", "/root/.ssh/")


class SeedError(ValueError):
    """The seed is unusable; the message names the file and the field."""


@dataclass(frozen=True)
class WriteFile:
    path: str
    content: bytes
    mode: int  # permission bits only


@dataclass(frozen=True)
class Seed:
    source: str  # "nocloud" or "configdrive"
    instance_id: str
    hostname: str | None = None
    authorized_keys: tuple[str, ...] = ()
    network: dict[str, Any] | None = None  # network config v2 (networkd.py renders it)
    write_files: tuple[WriteFile, ...] = ()
    sipedge_config: str | None = None  # the text of /etc/sipedge/sipedge.yaml
    api_token: str | None = None
    api_read_token: str | None = None
    tls: dict[str, str] = field(default_factory=dict)  # cert/key/ca PEM text


def _text(name: str, raw: bytes) -> str:
    if len(raw) > MAX_FILE:
        raise SeedError(f"{name}: {len(raw)} bytes, more than {MAX_FILE}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SeedError(f"{name}: not UTF-8") from None


def _yaml(name: str, raw: bytes) -> Any:
    try:
        return yaml.safe_load(_text(name, raw))
    except yaml.YAMLError as exc:
        raise SeedError(f"{name}: not YAML ({exc.__class__.__name__})") from None


def _mapping(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise SeedError(f"{name}: a mapping with string keys is expected")
    return value


def _string(name: str, value: Any, limit: int = 4096) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise SeedError(f"{name}: a non-empty string of at most {limit} characters is expected")
    return value


def _hostname(name: str, value: Any) -> str:
    host = _string(name, value, 253).strip().lower().rstrip(".")
    if not HOSTNAME.match(host):
        raise SeedError(f"{name}: {host!r} is not a host name")
    return host


def _keys(name: str, value: Any) -> list[str]:
    """public-keys: a list, a single string, or (meta-data style) a mapping of name -> key."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    elif isinstance(value, dict):
        value = list(value.values())
    if not isinstance(value, list) or len(value) > MAX_KEYS:
        raise SeedError(f"{name}: a list of at most {MAX_KEYS} SSH public keys is expected")
    keys = []
    for i, key in enumerate(value):
        line = _string(f"{name}[{i}]", key, 16384).strip()
        if "\n" in line or not KEY_LINE.match(line):
            raise SeedError(f"{name}[{i}]: not an SSH public key line")
        keys.append(line)
    return keys


def _write_files(value: Any) -> list[WriteFile]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_WRITE_FILES:
        raise SeedError(f"user-data write_files: a list of at most {MAX_WRITE_FILES} is expected")
    out = []
    for i, item in enumerate(value):
        where = f"user-data write_files[{i}]"
        item = _mapping(where, item)
        unknown = set(item) - {"path", "content", "encoding", "permissions", "owner"}
        if unknown:
            raise SeedError(f"{where}: unsupported keys {sorted(unknown)}")
        path = _string(f"{where}.path", item.get("path"), 255)
        parts = path.split("/")
        if not path.startswith(WRITABLE_PREFIXES) or ".." in parts or "" in parts[1:]:
            raise SeedError(f"{where}.path: {path!r} is outside {', '.join(WRITABLE_PREFIXES)}")
        if item.get("owner", "root:root") != "root:root":
            raise SeedError(f"{where}.owner: only root:root is supported")
        content = item.get("content", "")
        if not isinstance(content, str):
            raise SeedError(f"{where}.content: a string is expected")
        encoding = item.get("encoding", "text")
        if encoding in ("b64", "base64"):
            try:
                data = base64.b64decode(content, validate=True)
            except ValueError:
                raise SeedError(f"{where}.content: not base64") from None
        elif encoding == "text":
            data = content.encode()
        else:
            raise SeedError(f"{where}.encoding: {encoding!r} (text or b64)")
        if len(data) > MAX_FILE:
            raise SeedError(f"{where}.content: more than {MAX_FILE} bytes")
        perms = item.get("permissions", "0644")
        if not isinstance(perms, str) or not re.fullmatch(r"0?[0-7]{3}", perms):
            raise SeedError(f"{where}.permissions: an octal string such as '0640' is expected")
        out.append(WriteFile(path, data, int(perms, 8)))
    return out


def _sipedge(value: Any) -> dict[str, Any]:
    s = _mapping("user-data sipedge", value)
    unknown = set(s) - {"config", "api_token", "api_read_token", "tls", "network"}
    if unknown:
        raise SeedError(f"user-data sipedge: unsupported keys {sorted(unknown)}")
    out: dict[str, Any] = {}
    config = s.get("config")
    if isinstance(config, dict):
        out["sipedge_config"] = yaml.safe_dump(config, sort_keys=False)
    elif config is not None:
        out["sipedge_config"] = _string("user-data sipedge.config", config, MAX_FILE)
    for name in ("api_token", "api_read_token"):
        if s.get(name) is not None:
            token = _string(f"user-data sipedge.{name}", s[name], 256).strip()
            if not re.fullmatch(r"[A-Za-z0-9._~+/=-]{32,256}", token):
                raise SeedError(f"user-data sipedge.{name}: 32 or more token characters expected")
            out[name] = token
    tls = _mapping("user-data sipedge.tls", s.get("tls"))
    if set(tls) - {"cert", "key", "ca"}:
        raise SeedError(
            f"user-data sipedge.tls: unsupported keys {sorted(set(tls) - {'cert', 'key', 'ca'})}"
        )
    out["tls"] = {}
    for name, pem in tls.items():
        text = _string(f"user-data sipedge.tls.{name}", pem, MAX_FILE)
        if "-----BEGIN " not in text:
            raise SeedError(f"user-data sipedge.tls.{name}: PEM text expected")
        out["tls"][name] = text
    if s.get("network") is not None:
        out["network"] = network_config("user-data sipedge.network", s["network"])
    return out


def network_config(name: str, value: Any) -> dict[str, Any]:
    """Network config version 2 (the `network:` wrapper is optional); checked by networkd.py
    when it renders, here only its shape."""
    v = _mapping(name, value)
    if "network" in v and set(v) == {"network"}:
        v = _mapping(f"{name}.network", v["network"])
    if v.get("version") != 2:
        raise SeedError(f"{name}: only network config version 2 is read")
    return v


def user_data(raw: bytes) -> dict[str, Any]:
    """The `#cloud-config` user-data as keyword arguments of `Seed` (empty data: nothing)."""
    text = _text("user-data", raw)
    if not text.strip():
        return {}
    if not text.startswith("#cloud-config"):
        raise SeedError("user-data: only '#cloud-config' is read (no scripts are run)")
    data = _mapping("user-data", _yaml("user-data", raw))
    out: dict[str, Any] = {}
    for key in ("fqdn", "hostname"):  # fqdn wins, as in cloud-init
        if data.get(key) is not None:
            out["hostname"] = _hostname(f"user-data {key}", data[key])
            break
    keys = _keys("user-data ssh_authorized_keys", data.get("ssh_authorized_keys"))
    users = data.get("users") or []
    if not isinstance(users, list):
        raise SeedError("user-data users: a list is expected")
    for i, user in enumerate(users):
        if user == "default":
            continue
        u = _mapping(f"user-data users[{i}]", user)
        if u.get("name") != "root":
            raise SeedError(f"user-data users[{i}]: only root is configured on the appliance")
        keys += _keys(f"user-data users[{i}].ssh_authorized_keys", u.get("ssh_authorized_keys"))
    out["authorized_keys"] = keys
    out["write_files"] = _write_files(data.get("write_files"))
    out.update(_sipedge(data.get("sipedge")))
    return out


def nocloud(files: dict[str, bytes]) -> Seed:
    """A NoCloud seed from its files (meta-data is required, the others optional)."""
    if "meta-data" not in files:
        raise SeedError("meta-data: missing (a NoCloud seed has meta-data, user-data)")
    meta = _mapping("meta-data", _yaml("meta-data", files["meta-data"]))
    instance = _string("meta-data instance-id", meta.get("instance-id", "nocloud"), 255)
    fields: dict[str, Any] = {}
    if meta.get("local-hostname") is not None:
        fields["hostname"] = _hostname("meta-data local-hostname", meta["local-hostname"])
    keys = _keys("meta-data public-keys", meta.get("public-keys"))
    ud = user_data(files.get("user-data", b""))
    if "network-config" in files:
        cfg = _yaml("network-config", files["network-config"])
        if cfg is not None:
            ud.setdefault("network", network_config("network-config", cfg))
    return _seed("nocloud", instance, fields, keys, ud)


def configdrive(files: dict[str, bytes]) -> Seed:
    """An OpenStack ConfigDrive from openstack/latest/{meta_data.json,user_data}."""
    name = "openstack/latest/meta_data.json"
    if name not in files:
        raise SeedError(f"{name}: missing")
    try:
        meta = _mapping(name, json.loads(_text(name, files[name])))
    except json.JSONDecodeError:
        raise SeedError(f"{name}: not JSON") from None
    instance = _string(f"{name} uuid", meta.get("uuid", "configdrive"), 255)
    fields: dict[str, Any] = {}
    if meta.get("hostname") is not None:
        fields["hostname"] = _hostname(f"{name} hostname", meta["hostname"])
    keys = _keys(f"{name} public_keys", meta.get("public_keys"))
    ud = user_data(files.get("openstack/latest/user_data", b""))
    return _seed("configdrive", instance, fields, keys, ud)


def _seed(
    source: str, instance: str, fields: dict[str, Any], keys: list[str], ud: dict[str, Any]
) -> Seed:
    # user-data outranks meta-data for the host name; keys from both are kept, once each
    hostname = ud.pop("hostname", fields.get("hostname"))
    all_keys = tuple(dict.fromkeys([*keys, *ud.pop("authorized_keys", [])]))
    if len(all_keys) > MAX_KEYS:
        raise SeedError(f"more than {MAX_KEYS} SSH keys in all")
    return Seed(
        source=source,
        instance_id=instance,
        hostname=hostname,
        authorized_keys=all_keys,
        write_files=tuple(ud.pop("write_files", ())),
        **ud,
    )
