"""Fixtures of the namespace tests (test_relay.py, test_ipv6.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.media.netns import Topology, mount_bpffs, umount


@pytest.fixture(scope="module")
def bpffs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private bpffs (ip netns exec remounts /sys, so /sys/fs/bpf is not shared)."""
    path = tmp_path_factory.mktemp("bpffs")
    mount_bpffs(path)
    yield path
    umount(path)


@pytest.fixture
def topo() -> Iterator[Topology]:
    t = Topology.create()
    yield t
    t.destroy()
