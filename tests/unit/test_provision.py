"""sipedge-provision (appliance/provision.py) applying seeds to a folder standing for /."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from sipedge.appliance import provision, seed

REPO = Path(__file__).resolve().parents[2]
_example = yaml.safe_load((REPO / "daemons/conf/sipedge.example.yaml").read_text())
_example["media"].pop("interfaces")  # so that the network config's media marks decide
EXAMPLE = yaml.safe_dump(_example, sort_keys=False)
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEx3mpleKeyBytesForTestsOnly0000000000000 op@lab"


def user_data(config: str) -> bytes:
    indented = "\n".join("    " + line for line in config.splitlines())
    return (
        "#cloud-config\n"
        "hostname: edge-9\n"
        f"ssh_authorized_keys: ['{KEY}']\n"
        "sipedge:\n"
        f"  api_token: {'b' * 64}\n"
        "  config: |\n"
        f"{indented}\n"
    ).encode()


NETWORK = b"""version: 2
ethernets:
  eth0: {dhcp4: true}
  eth1: {addresses: [192.0.2.10/24], sipedge-media: true}
"""


def write_seed(folder: Path, config: str, instance: str = "iid-1") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta-data").write_text(f"instance-id: {instance}\n")
    (folder / "user-data").write_bytes(user_data(config))
    (folder / "network-config").write_bytes(NETWORK)
    return folder


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc/sipedge").mkdir(parents=True)
    (r / "etc/sipedge/sipedge.yaml").write_text("# the baked config\n")
    (r / "etc/systemd/network").mkdir(parents=True)
    (r / "etc/systemd/network/20-wired.network").write_text("[Match]\nName=eth*\n")
    return r


def test_a_good_seed_is_applied_once(tmp_path: Path, root: Path) -> None:
    folder = write_seed(tmp_path / "seed", EXAMPLE)
    assert provision.main(["--root", str(root), "--seed-dir", str(folder)]) == 0
    assert (root / "etc/hostname").read_text() == "edge-9\n"
    keys = root / "root/.ssh/authorized_keys"
    assert keys.read_text() == KEY + "\n" and stat.S_IMODE(keys.stat().st_mode) == 0o600
    assert (root / "etc/sipedge/api-token").read_text() == "b" * 64 + "\n"
    config = (root / "etc/sipedge/sipedge.yaml").read_text()
    assert yaml.safe_load(config)["media"]["interfaces"] == ["eth1"]  # marked for media
    network = root / "etc/systemd/network"
    assert not (network / "20-wired.network").exists()
    assert (network / "21-sipedge-eth1.network").read_text().count("Address=192.0.2.10/24") == 1
    status = json.loads((root / "var/lib/sipedge/provision.json").read_text())
    assert status["error"] is None and status["instance_id"] == "iid-1"
    assert status["media_interfaces"] == ["eth1"] and "sipedge config" in status["applied"]
    # the same instance again: nothing is done (an operator's later edits stay)
    (root / "etc/hostname").write_text("edited\n")
    assert provision.main(["--root", str(root), "--seed-dir", str(folder)]) == 0
    assert (root / "etc/hostname").read_text() == "edited\n"


def test_a_bad_config_keeps_the_old_one_and_says_why(tmp_path: Path, root: Path) -> None:
    folder = write_seed(tmp_path / "seed", "sip:\n  listen: [nonsense]\n")
    assert provision.main(["--root", str(root), "--seed-dir", str(folder)]) == 1
    assert (root / "etc/sipedge/sipedge.yaml").read_text() == "# the baked config\n"
    assert (root / "root/.ssh/authorized_keys").read_text() == KEY + "\n"  # still reachable
    status = json.loads((root / "var/lib/sipedge/provision.json").read_text())
    assert (
        "user-data sipedge.config" in status["error"] and "previous config stays" in status["error"]
    )
    assert "sipedge config" not in status["applied"]


def test_an_unreadable_seed_is_recorded(tmp_path: Path, root: Path) -> None:
    folder = tmp_path / "seed"
    folder.mkdir()
    (folder / "meta-data").write_text("instance-id: x\n")
    (folder / "user-data").write_text("#!/bin/sh\necho hi\n")
    assert provision.main(["--root", str(root), "--seed-dir", str(folder)]) == 1
    status = json.loads((root / "var/lib/sipedge/provision.json").read_text())
    assert "no scripts are run" in status["error"]
    assert (root / "etc/sipedge/sipedge.yaml").read_text() == "# the baked config\n"


def test_write_files_replace_a_symlink_instead_of_following_it(tmp_path: Path, root: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    (root / "etc/motd").symlink_to(victim)
    s = seed.nocloud(
        {
            "meta-data": b"instance-id: y",
            "user-data": b"#cloud-config\nwrite_files: [{path: /etc/motd, content: hi}]",
        }
    )
    report = provision.apply(s, root, provision.check_with_cli)
    assert report.error is None and victim.read_text() == "untouched"
    assert not (root / "etc/motd").is_symlink() and (root / "etc/motd").read_text() == "hi"


def test_configdrive_folder(tmp_path: Path) -> None:
    folder = tmp_path / "cd"
    (folder / "openstack/latest").mkdir(parents=True)
    (folder / "openstack/latest/meta_data.json").write_text(
        json.dumps({"uuid": "u", "hostname": "h"})
    )
    s = provision.parse_folder(folder)
    assert (s.source, s.instance_id, s.hostname) == ("configdrive", "u", "h")


def test_a_new_root_slot_has_the_catch_all_retired_again(tmp_path: Path, root: Path) -> None:
    """An A/B update carries the seeded network files and the marker into the new slot, whose
    image brings the DHCP catch-all back: the next boot retires it before systemd-networkd."""
    folder = root / "etc/systemd/network"
    assert not provision.retire_catch_all(root)  # no seeded network: the catch-all stays
    assert (folder / "20-wired.network").is_file()
    write_seed(tmp_path / "seed", EXAMPLE)
    assert provision.main(["--root", str(root), "--seed-dir", str(tmp_path / "seed")]) == 0
    assert not (folder / "20-wired.network").exists()
    (folder / "20-wired.network").write_text("[Match]\nName=eth*\n")  # the new slot's copy
    assert provision.main(["--root", str(root), "--seed-dir", str(tmp_path / "seed")]) == 0
    assert not (folder / "20-wired.network").exists()  # already provisioned, retired again
    assert (folder / "20-wired.network.replaced-by-seed").is_file()
    assert not provision.retire_catch_all(root)


def test_the_host_name_of_this_boot_is_set_only_on_the_real_root(root: Path) -> None:
    report = provision.Report(hostname="edge-9")
    provision.set_hostname(root, report)  # a folder in a test: never the build host's name
    assert report.hostname == "edge-9"


def test_replaced_files_keep_their_owner_and_new_ones_take_the_folders_group(
    tmp_path: Path, root: Path
) -> None:
    """The daemons run as the sipedge group and read /etc/sipedge (root:sipedge 0750): a
    seeded config, token or TLS key written root:root 0640 would stop them."""
    if os.geteuid() != 0:
        pytest.skip("needs root (chown)")
    daemons_gid = 4242
    os.chown(root / "etc/sipedge", 0, daemons_gid)
    os.chown(root / "etc/sipedge/sipedge.yaml", 0, daemons_gid)
    folder = write_seed(tmp_path / "seed", EXAMPLE)
    assert provision.main(["--root", str(root), "--seed-dir", str(folder)]) == 0
    for rel in ("etc/sipedge/sipedge.yaml", "etc/sipedge/api-token"):
        st = (root / rel).stat()
        assert (st.st_uid, st.st_gid) == (0, daemons_gid), rel
    seeded_tls = seed.Seed(source="nocloud", instance_id="iid-2", tls={"key": "PEM"})
    report = provision.apply(seeded_tls, root, lambda path: None)
    assert report.error is None
    for rel in ("etc/sipedge/tls", "etc/sipedge/tls/key.pem"):
        assert (root / rel).stat().st_gid == daemons_gid, rel
    assert stat.S_IMODE((root / "etc/sipedge/tls/key.pem").stat().st_mode) == 0o640
