#!/usr/bin/env python3
"""Make the NoCloud seed the `vm` scenario boots its factory-new appliance with (issue 19).

    make_seed.py IMAGE.raw KEY.pub OUT.iso|OUT.img [--bad-config]

OUT.iso: an ISO 9660 volume labelled `cidata` (Rock Ridge and Joliet names: what
`cloud-localds` makes by default, with genisoimage); any other name: a vfat volume labelled
CIDATA (`cloud-localds --filesystem vfat`). Either holds:
- meta-data: an instance-id and a local-hostname;
- user-data (#cloud-config): the host name, root's SSH key, and `sipedge.config`: the image's
  own baked config (read from IMAGE's data partition with debugfs, nothing mounted) with a
  routing gateway, a route to it and a mapping gateway added (the QEMU host, 10.0.2.2, on
  both sides: the calls of call_through_qemu.py) and media.interfaces left to the network
  config's marks;
  with --bad-config a gateway port the config refuses (and another instance-id);
- network-config (v2): eth0 by DHCP, eth1 (the second NIC, by MAC) a static address; both
  marked for media (`sipedge-media: true`).

Tools: sfdisk, debugfs (e2fsprogs), genisoimage, or mkfs.vfat (dosfstools) and mcopy
(mtools); PyYAML.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

HOSTNAME = "edge-molecule"
INSTANCE = "molecule-vm-seed-1"
SECOND_NIC_MAC = "52:54:00:5e:00:02"  # image/vm --second-nic
SECOND_NIC_ADDRESS = "10.0.3.10/24"
GATEWAY = {
    "name": "seeded-carrier",
    "address": "10.0.2.2",  # the QEMU host, as the guest sees it
    "port": 5090,
    "transport": "udp",
    "trusted": True,
}
# Calls through QEMU's forwarded SIP port arrive from the host, as the guest sees it.
CALLER = {"name": "qemu-host", "addresses": ["10.0.2.2/32"]}
ROUTE = {"prefix": "555", "gateways": ["seeded-carrier"]}  # call_through_qemu.py dials 5551000


def baked_config(image: Path) -> dict[str, object]:
    table = json.loads(
        subprocess.run(
            ["sfdisk", "-J", str(image)], check=True, capture_output=True, text=True
        ).stdout
    )
    data = next(p for p in table["partitiontable"]["partitions"] if p.get("name") == "data")
    with tempfile.NamedTemporaryFile(suffix=".ext4") as part:
        subprocess.run(
            [
                "dd",
                f"if={image}",
                f"of={part.name}",
                "bs=512",
                f"skip={data['start']}",
                f"count={data['size']}",
                "status=none",
                "conv=sparse",
            ],
            check=True,
        )
        text = subprocess.run(
            ["debugfs", "-R", "cat /etc/sipedge/sipedge.yaml", part.name],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    config = yaml.safe_load(text)
    assert isinstance(config, dict) and "sip" in config, f"no sipedge config in {image}"
    return config


def write_iso(out: Path, files: dict[str, str]) -> None:
    """An ISO 9660 volume labelled cidata holding files, as cloud-localds makes it."""
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for name, text in files.items():
            (Path(folder) / name).write_text(text)
            paths.append(str(Path(folder) / name))
        command = ["genisoimage", "-quiet", "-output", str(out), "-volid", "cidata"]
        subprocess.run([*command, "-joliet", "-rock", *paths], check=True)


def write_volume(out: Path, files: dict[str, str]) -> None:
    """A vfat volume labelled CIDATA holding files (no mount: mtools)."""
    out.unlink(missing_ok=True)
    subprocess.run(
        ["mkfs.vfat", "-n", "CIDATA", "-C", str(out), "2048"], check=True, capture_output=True
    )
    with tempfile.TemporaryDirectory() as folder:
        for name, text in files.items():
            (Path(folder) / name).write_text(text)
            subprocess.run(
                ["mcopy", "-i", str(out), str(Path(folder) / name), f"::/{name}"],
                check=True,
                env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
            )


def main() -> int:
    image, key, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    bad = "--bad-config" in sys.argv[4:]
    config = baked_config(image)
    config.setdefault("media", {}).pop("interfaces", None)  # the network config's marks decide
    gateway = dict(GATEWAY, port=70000) if bad else GATEWAY
    config["routing_gateways"] = [*(config.get("routing_gateways") or []), gateway]
    config["mapping_gateways"] = [*(config.get("mapping_gateways") or []), CALLER]
    config["routes"] = [*(config.get("routes") or []), ROUTE]
    files = {
        "meta-data": yaml.safe_dump(
            {"instance-id": INSTANCE + ("-bad" if bad else ""), "local-hostname": HOSTNAME}
        ),
        "user-data": "#cloud-config\n"
        + yaml.safe_dump(
            {
                "hostname": HOSTNAME,
                "ssh_authorized_keys": [key.read_text().strip()],
                "sipedge": {"config": config},
            },
            sort_keys=False,
        ),
        "network-config": yaml.safe_dump(
            {
                "version": 2,
                "ethernets": {
                    "eth0": {"dhcp4": True, "sipedge-media": True},
                    "eth1": {
                        "match": {"macaddress": SECOND_NIC_MAC},
                        "set-name": "eth1",
                        "addresses": [SECOND_NIC_ADDRESS],
                        "sipedge-media": True,
                    },
                },
            },
            sort_keys=False,
        ),
    }
    if out.suffix == ".iso":
        write_iso(out, files)
    else:
        write_volume(out, files)
    print(
        json.dumps(
            {
                "seed": str(out),
                "hostname": HOSTNAME,
                "gateway": gateway["name"],
                "second_nic_address": SECOND_NIC_ADDRESS,
                "bad_config": bad,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
