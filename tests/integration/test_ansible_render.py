"""The Ansible roles' templates rendered by ansible-core itself (.venv-ansible, from
`./molecule/setup`), on localhost, nothing installed: the firewall opens the TCP and TLS SIP
listener ports, and the sipedge role's SIP TLS variables end up in a config that
`sipedge check-config` accepts, with the files they name.

Skips (saying why) when .venv-ansible is missing; Molecule covers the roles on a real host."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import BIN, self_signed_cert

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK_BIN = REPO / ".venv-ansible" / "bin" / "ansible-playbook"
ROLES = REPO / "ansible" / "roles"


def render(tmp: Path, role: str, template: str, extra: dict[str, Any]) -> str:
    """`template` of `role`, rendered with the role's defaults and vars and `extra` on top."""
    if not PLAYBOOK_BIN.exists():
        pytest.skip(f"{PLAYBOOK_BIN} missing: run ./molecule/setup to render the roles")
    out = tmp / f"{role}-{Path(template).stem}"
    play = [
        {
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "vars_files": [
                str(ROLES / role / "defaults/main.yml"),
                str(ROLES / role / "vars/main.yml"),
            ],
            "tasks": [
                {
                    "ansible.builtin.template": {
                        "src": str(ROLES / role / "templates" / template),
                        "dest": str(out),
                        "mode": "0600",
                    }
                }
            ],
        }
    ]
    playbook = tmp / f"render-{role}.yml"
    playbook.write_text(yaml.safe_dump(play))
    extra_vars = tmp / f"extra-{role}.json"
    extra_vars.write_text(json.dumps(extra))
    result = subprocess.run(
        [str(PLAYBOOK_BIN), "-i", "localhost,", str(playbook), "-e", f"@{extra_vars}"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO / "ansible",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out.read_text()


def sip_rule(text: str, proto: str) -> set[int]:
    """The ports of the `<proto> dport { ... } accept comment "SIP..."` rule."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(f"{proto} dport {{") and 'comment "SIP' in line:
            inside = line.split("{", 1)[1].split("}", 1)[0]
            return {int(p) for p in inside.split(",")}
    return set()


def test_firewall_opens_the_tcp_and_tls_listener_ports(tmp_path: Path) -> None:
    text = render(
        tmp_path,
        "appliance_base",
        "nftables.conf.j2",
        {
            "appliance_base_lab": True,
            "appliance_base_sip_tcp_ports": [5070],
            "sipedge_sip_listen": [
                "udp://0.0.0.0:5060",
                "udp://0.0.0.0:5062",
                "tcp://0.0.0.0:5060",
                "tls://[::]:5061",
            ],
        },
    )
    assert sip_rule(text, "udp") == {5060, 5062}
    assert sip_rule(text, "tcp") == {5060, 5061, 5070}
    # the per-source flood limit covers every UDP listener
    assert "udp dport { 5060, 5062 } update @sip_flood4" in text
    nft = shutil.which("nft")
    if nft is not None:
        checked = subprocess.run([nft, "-c", "-f", "-"], input=text, capture_output=True, text=True)
        if "Operation not permitted" not in checked.stderr:
            assert checked.returncode == 0, checked.stderr


def test_firewall_without_stream_listeners_opens_no_tcp_sip_port(tmp_path: Path) -> None:
    text = render(tmp_path, "appliance_base", "nftables.conf.j2", {"appliance_base_lab": True})
    assert sip_rule(text, "udp") == {5060}
    assert sip_rule(text, "tcp") == set()


def test_sipedge_config_names_the_sip_tls_files(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    cert, key = self_signed_cert(tmp_path, "sip")
    extra: dict[str, Any] = {
        "sipedge_config_path": str(etc / "sipedge.yaml"),
        "sipedge_version": "test",
        "sipedge_sip_listen": ["udp://127.0.0.1:5060", "tls://127.0.0.1:5061"],
        "sipedge_sip_tls_cert": cert.read_text(),
        "sipedge_sip_tls_key": key.read_text(),
        "sipedge_sip_tls_ca": cert.read_text(),
        "sipedge_sip_tls_verify_client": True,
        "_sipedge_api_files": True,
        "_sipedge_mediad_has_run_as": True,
        "_sipedge_api_hosts": [],  # (from facts on a real host)
    }
    text = render(tmp_path, "sipedge", "sipedge.yaml.j2", extra)
    sip = yaml.safe_load(text)["sip"]
    assert sip["tls_cert"] == str(etc / "sip-tls.crt")
    assert sip["tls_key"] == str(etc / "sip-tls.key")
    assert sip["tls_ca"] == str(etc / "sip-tls-ca.crt")
    assert sip["tls_verify_client"] is True
    # the files the role writes there (tasks/config.yml) make a config check-config accepts
    shutil.copy(cert, etc / "sip-tls.crt")
    shutil.copy(key, etc / "sip-tls.key")
    shutil.copy(cert, etc / "sip-tls-ca.crt")
    check = check_config(tmp_path, text)
    assert check.returncode == 0, check.stdout + check.stderr


def check_config(tmp: Path, text: str) -> subprocess.CompletedProcess[str]:
    """`sipedge check-config` of a rendered config."""
    rendered = tmp / "sipedge.yaml"
    rendered.write_text(text)
    return subprocess.run(
        [str(BIN / "sipedge"), "check-config", str(rendered)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def validate(tmp: Path, provided: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """The sipedge role's argument specs applied to `provided` by ansible-core."""
    if not PLAYBOOK_BIN.exists():
        pytest.skip(f"{PLAYBOOK_BIN} missing: run ./molecule/setup to check the specs")
    spec = yaml.safe_load((ROLES / "sipedge/meta/argument_specs.yml").read_text())
    play = [
        {
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": False,
            "tasks": [
                {
                    "ansible.builtin.validate_argument_spec": {
                        "argument_spec": spec["argument_specs"]["main"]["options"],
                        "provided_arguments": provided,
                    }
                }
            ],
        }
    ]
    playbook = tmp / "validate.yml"
    playbook.write_text(yaml.safe_dump(play))
    return subprocess.run(
        [str(PLAYBOOK_BIN), "-i", "localhost,", str(playbook)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO / "ansible",
    )


def test_argument_specs_take_tls_gateways_mapping_digest_and_the_sip_tls_files(
    tmp_path: Path,
) -> None:
    good = {
        "sipedge_version": "1.0.0",
        "sipedge_wheelhouse": "/srv/wheels",
        "sipedge_sip_listen": ["udp://0.0.0.0:5060", "tls://0.0.0.0:5061"],
        "sipedge_sip_tls_cert": "PEM",
        "sipedge_sip_tls_key": "PEM",
        "sipedge_sip_tls_ca": "PEM",
        "sipedge_sip_tls_verify_client": True,
        "sipedge_mapping_gateways": [
            {
                "name": "pbx",
                "addresses": ["198.51.100.0/24"],
                "auth": "source+digest",
                "username": "pbx",
                "password_file": "/etc/sipedge/pbx.password",
            }
        ],
        "sipedge_routing_gateways": [
            {
                "name": "carrier",
                "address": "sip.carrier.example",
                "transport": "tls",
                "tls_ca": "/etc/sipedge/carrier-ca.pem",
                "tls_server_name": "sip.carrier.example",
            }
        ],
    }
    result = validate(tmp_path, good)
    assert result.returncode == 0, result.stdout + result.stderr
    bad = dict(good, sipedge_mapping_gateways=[{"name": "x", "addresses": [], "auth": "token"}])
    refused = validate(tmp_path, bad)
    assert refused.returncode != 0 and "auth" in refused.stdout, refused.stdout


def test_sipedge_config_writes_the_fleet_section(tmp_path: Path) -> None:
    fleet = {
        "sipedge_fleet_address": "10.20.0.11",
        "sipedge_fleet_port": 5070,
        "sipedge_fleet_peers": ["10.20.0.0/24"],
        "sipedge_fleet_node_timeout": 15,
    }
    extra: dict[str, Any] = {
        "sipedge_config_path": str(tmp_path / "sipedge.yaml"),
        "sipedge_version": "test",
        "sipedge_storage_backend": "postgresql",
        "sipedge_storage_dsn": "postgresql://sipedge@db.example.net/sipedge",
        "_sipedge_api_files": True,
        "_sipedge_mediad_has_run_as": True,
        "_sipedge_api_hosts": [],
        **fleet,
    }
    text = render(tmp_path, "sipedge", "sipedge.yaml.j2", extra)
    assert yaml.safe_load(text)["fleet"] == {
        "address": "10.20.0.11", "port": 5070, "peers": ["10.20.0.0/24"], "node_timeout": 15,
    }  # fmt: skip
    check = check_config(tmp_path, text)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "fleet at 10.20.0.11 with 1 peer" in check.stdout
    # without an address: no fleet section at all
    extra["sipedge_fleet_address"] = ""
    assert "fleet" not in yaml.safe_load(render(tmp_path, "sipedge", "sipedge.yaml.j2", extra))
    required = {"sipedge_version": "1.0.0", "sipedge_wheelhouse": "/srv/wheels"}
    specs = validate(tmp_path, {**required, **fleet})
    assert specs.returncode == 0, specs.stdout[-3000:] + specs.stderr
    refused = validate(tmp_path, {**required, "sipedge_fleet_port": "five"})
    assert refused.returncode != 0 and "sipedge_fleet_port" in refused.stdout, refused.stdout[
        -3000:
    ]


def test_mediad_and_natd_start_without_the_system_ca_store(tmp_path: Path) -> None:
    """Neither verifies a TLS peer, so their units point OpenSSL's default CA paths at nothing:
    importing aiohttp then builds its two TLS client contexts without parsing the CA bundle
    (seconds per start under emulation). sipd keeps the store (SIP over TLS to carriers)."""
    env_line = "Environment=SSL_CERT_FILE=/dev/null SSL_CERT_DIR=/nonexistent"
    environments: dict[str, dict[str, str]] = {}
    for daemon in ("mediad", "natd", "sipd"):
        unit = render(tmp_path, "sipedge", f"sipedge-{daemon}.service.j2", {})
        lines = [line for line in unit.splitlines() if line.startswith("Environment=")]
        assert (env_line in lines) == (daemon != "sipd"), (daemon, lines)
        environments[daemon] = dict(
            pair.split("=", 1) for line in lines for pair in line.split("=", 1)[1].split()
        )
    # sipd's objects live in glibc's heap, whose free pages sipedge.gcwatch.heap gives back
    assert environments["sipd"] == {"PYTHONMALLOC": "malloc"}
    probe = (
        "import ssl, sipedge.media.daemon, sipedge.natd.daemon; "
        "print(len(ssl.create_default_context().get_ca_certs()))"
    )
    for daemon, expected_empty in (("natd", True), ("sipd", False)):
        env = {"PATH": "/usr/bin:/bin", **environments[daemon]}
        done = subprocess.run(
            [str(BIN / "python"), "-c", probe], capture_output=True, text=True, env=env, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert (int(done.stdout) == 0) == expected_empty, (daemon, done.stdout)
