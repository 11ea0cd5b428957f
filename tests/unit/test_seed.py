"""The first-boot seed (appliance/seed.py) and its network config (appliance/networkd.py)."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipedge.appliance import networkd, seed
from sipedge.appliance.seed import SeedError

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEx3mpleKeyBytesForTestsOnly0000000000000 op@lab"
KEY2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAISecondKeyBytesForTestsOnly000000000000 two@lab"

BLOB_B64 = base64.b64encode(bytes([0, 1])).decode()
META = b"instance-id: iid-edge-7\nlocal-hostname: meta-name\n"
USER = f"""#cloud-config
hostname: edge-7
ssh_authorized_keys:
  - {KEY}
users:
  - default
  - name: root
    ssh_authorized_keys: [{KEY2}, {KEY}]
write_files:
  - path: /etc/sipedge/extra.txt
    content: hello
    permissions: '0640'
  - path: /etc/sipedge/blob
    encoding: b64
    content: {BLOB_B64}
sipedge:
  config:
    sip: {{listen: ["udp://0.0.0.0:5060"]}}
  api_token: {"a" * 64}
  tls:
    cert: "-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n"
""".encode()
NETWORK = b"""version: 2
ethernets:
  eth0:
    dhcp4: true
  media:
    match: {macaddress: "52:54:00:AA:BB:02"}
    set-name: media0
    addresses: [192.0.2.10/24, "2001:db8::10/64"]
    gateway4: 192.0.2.1
    routes: [{to: 198.51.100.0/24, via: 192.0.2.254, metric: 50}]
    nameservers: {addresses: [192.0.2.53], search: [lab.example]}
    mtu: 1500
    sipedge-media: true
vlans:
  vlan20:
    id: 20
    link: eth0
    addresses: [10.20.0.5/24]
"""


def test_a_whole_nocloud_seed() -> None:
    s = seed.nocloud({"meta-data": META, "user-data": USER, "network-config": NETWORK})
    assert s.source == "nocloud" and s.instance_id == "iid-edge-7"
    assert s.hostname == "edge-7"  # user-data outranks meta-data
    assert s.authorized_keys == (KEY, KEY2)  # once each, in order
    assert [(w.path, w.content, w.mode) for w in s.write_files] == [
        ("/etc/sipedge/extra.txt", b"hello", 0o640),
        ("/etc/sipedge/blob", b"\x00\x01", 0o644),
    ]
    assert s.sipedge_config is not None and "udp://0.0.0.0:5060" in s.sipedge_config
    assert s.api_token == "a" * 64 and s.api_read_token is None
    assert s.tls["cert"].startswith("-----BEGIN CERTIFICATE-----")
    assert s.network is not None and s.network["version"] == 2


def test_meta_data_alone_is_enough() -> None:
    s = seed.nocloud({"meta-data": b"instance-id: x\nlocal-hostname: Edge-1.Lab.\n"})
    assert s.hostname == "edge-1.lab" and s.authorized_keys == () and s.network is None


def test_configdrive() -> None:
    meta = {"uuid": "u-1", "hostname": "cd-edge", "public_keys": {"k": KEY}}
    s = seed.configdrive(
        {
            "openstack/latest/meta_data.json": json.dumps(meta).encode(),
            "openstack/latest/user_data": b"#cloud-config\nsipedge:\n  network: {version: 2}\n",
        }
    )
    assert (s.source, s.instance_id, s.hostname, s.authorized_keys) == (
        "configdrive", "u-1", "cd-edge", (KEY,)
    )  # fmt: skip
    assert s.network == {"version": 2}


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "meta-data: missing"),
        ({"meta-data": b"[1, 2"}, "meta-data: not YAML"),
        ({"meta-data": b"- a list"}, "meta-data: a mapping"),
        ({"meta-data": b"local-hostname: 'bad name!'"}, "not a host name"),
        ({"meta-data": b"public-keys: [not-a-key]"}, "not an SSH public key"),
        ({"meta-data": b"x: 1", "user-data": b"#!/bin/sh\nrm -rf /"}, "no scripts are run"),
        ({"meta-data": b"x: 1", "user-data": b"\xff\xfe"}, "not UTF-8"),
        ({"meta-data": b"x" * (seed.MAX_FILE + 1)}, "more than"),
        (
            {
                "meta-data": b"x: 1",
                "user-data": b"#cloud-config\nwrite_files: [{path: /etc/../usr/bin/x}]",
            },
            "outside",
        ),
        (
            {
                "meta-data": b"x: 1",
                "user-data": b"#cloud-config\nwrite_files: [{path: /usr/bin/x}]",
            },
            "outside",
        ),
        (
            {
                "meta-data": b"x: 1",
                "user-data": b"#cloud-config\nwrite_files: [{path: /etc/x, owner: 'a:b'}]",
            },
            "root:root",
        ),
        (
            {"meta-data": b"x: 1", "user-data": b"#cloud-config\nusers: [{name: alice}]"},
            "only root",
        ),
        (
            {"meta-data": b"x: 1", "user-data": b"#cloud-config\nsipedge: {shell: x}"},
            "unsupported keys",
        ),
        (
            {"meta-data": b"x: 1", "user-data": b"#cloud-config\nsipedge: {api_token: short}"},
            "token",
        ),
        ({"meta-data": b"x: 1", "user-data": b"#cloud-config\nsipedge: {tls: {cert: x}}"}, "PEM"),
        ({"meta-data": b"x: 1", "network-config": b"version: 1\nconfig: []"}, "version 2"),
    ],
)
def test_refusals_name_the_place(files: dict[str, bytes], message: str) -> None:
    with pytest.raises(SeedError, match=message):
        seed.nocloud(files)


def test_network_rendering() -> None:
    s = seed.nocloud({"meta-data": META, "network-config": NETWORK})
    assert s.network is not None
    r = networkd.render(s.network)
    assert r.media_interfaces == ("media0",)
    assert set(r.files) == {
        "10-sipedge-media0.link", "20-sipedge-eth0.network", "21-sipedge-media0.network",
        "15-sipedge-vlan20.netdev", "60-sipedge-vlan20.network",
    }  # fmt: skip
    assert (
        "MACAddress=52:54:00:aa:bb:02\n\n[Link]\nName=media0" in r.files["10-sipedge-media0.link"]
    )
    media = r.files["21-sipedge-media0.network"]
    for line in (
        "Name=media0", "MTUBytes=1500", "DHCP=no", "Address=192.0.2.10/24",
        "Address=2001:db8::10/64", "Gateway=192.0.2.1", "DNS=192.0.2.53", "Domains=lab.example",
        "Destination=198.51.100.0/24", "Gateway=192.0.2.254", "Metric=50", "IPv6AcceptRA=no",
    ):  # fmt: skip
        assert line + "\n" in media, line
    assert "DHCP=ipv4\n" in r.files["20-sipedge-eth0.network"]
    assert "VLAN=vlan20\n" in r.files["20-sipedge-eth0.network"]
    assert "Kind=vlan\n\n[VLAN]\nId=20\n" in r.files["15-sipedge-vlan20.netdev"]
    assert "Address=10.20.0.5/24\n" in r.files["60-sipedge-vlan20.network"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"version": 2, "bonds": {}}, "unsupported keys"),
        (
            {"version": 2, "ethernets": {"eth0": {"addresses": ["300.1.1.1/24"]}}},
            "not an IP prefix",
        ),
        ({"version": 2, "ethernets": {"eth0": {"gateway4": "x"}}}, "not an IP address"),
        ({"version": 2, "ethernets": {"eth0": {"dhcp4": "yes"}}}, "true or false"),
        ({"version": 2, "ethernets": {"eth0": {"mtu": 100}}}, "576 to 9216"),
        ({"version": 2, "ethernets": {"e": {"set-name": "x"}}}, "needs match.macaddress"),
        ({"version": 2, "ethernets": {"e": {"match": {"macaddress": "zz"}}}}, "not a MAC"),
        ({"version": 2, "ethernets": {"averyveryverylongname": {}}}, "not an interface name"),
        ({"version": 2, "vlans": {"v": {"id": 5000, "link": "eth0"}}}, "1 to 4094"),
        ({"version": 2, "vlans": {"v": {"id": 5, "link": "eth9"}}}, "not one of the ethernets"),
        ({"version": 2, "ethernets": {"eth0": {"routes": [{"via": "1.2.3.4"}]}}}, "to, via"),
    ],
)
def test_network_refusals(config: dict[str, object], message: str) -> None:
    with pytest.raises(SeedError, match=message):
        networkd.render(config)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["meta-data", "user-data", "network-config"]), st.binary(max_size=300)
    )
)
def test_arbitrary_files_give_a_seed_or_a_seed_error(files: dict[str, bytes]) -> None:
    try:
        s = seed.nocloud(files)
    except SeedError:
        return
    if s.network is not None:
        try:
            networkd.render(s.network)
        except SeedError:
            pass
