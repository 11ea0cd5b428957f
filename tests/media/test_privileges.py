"""mediad started as root with --run-as: the capabilities it keeps (from /proc/<pid>/status),
its files, and `--cleanup`. Userspace on loopback; XDP in namespaces."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sipedge.appliance.privileges import CAP_BPF, cap_mask, parse_status
from tests.media.netns import BIN, Mediad, Topology, mount_bpffs, ns_socket, umount
from tests.media.test_relay import call, pinned_entries, stream, xdp_attached

ROOT_ONLY = "needs root: starts mediad as root and checks the privileges it drops"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Path]:
    """A folder `nobody` can traverse (pytest's tmp folders are 0700 root)."""
    if os.geteuid() != 0:
        print(f"skipped: {ROOT_ONLY}")
        pytest.skip(ROOT_ONLY)
    path = Path(tempfile.mkdtemp(prefix="sipedge-runas-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def status(pid: int) -> str:
    return Path(f"/proc/{pid}/status").read_text()


@pytest.mark.root
def test_run_as_userspace_drops_everything(world: Path, tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    m = Mediad(
        world / "run" / "mediad.sock",
        ["--fast-path", "userspace", "--bind", "127.0.0.1", "--port-range", "41500-41509",
         "--state", str(world / "state" / "sessions.journal"), "--run-as", "nobody",
         "--behind-nat", "Off"],
        tmp_path / "m.log",
    )  # fmt: skip
    m.start()
    sa = ns_socket(None, ("127.0.0.1", 0))
    sb = ns_socket(None, ("127.0.0.1", 0))
    try:
        assert m.proc is not None
        st = parse_status(status(m.proc.pid))
        assert set(st.uids) == {nobody.pw_uid} and st.uids[0] != 0
        assert set(st.gids) == {nobody.pw_gid}
        assert st.effective == st.permitted == st.bounding == 0, status(m.proc.pid)
        assert st.inheritable == st.ambient == 0 and st.no_new_privs
        assert m.get("/healthz")[1]["user"] == "nobody"
        # it still works: sockets bound and the journal written after the drop
        offer, answer = call(m, "u1", sa.getsockname(), sb.getsockname(), 1)
        stream(m, sa, sb, ("127.0.0.1", answer["port"]), ("127.0.0.1", offer["port"]), 1)
        sock = world / "run" / "mediad.sock"
        assert sock.stat().st_uid == nobody.pw_uid and sock.stat().st_mode & 0o777 == 0o660
        journal = world / "state" / "sessions.journal"
        assert journal.stat().st_uid == nobody.pw_uid and journal.stat().st_mode & 0o777 == 0o600
        assert (world / "state").stat().st_uid == nobody.pw_uid
        m.ok({"command": "delete", "call-id": "u1"})
    finally:
        m.stop()
        sa.close()
        sb.close()
    assert "Traceback" not in m.log()


@pytest.mark.root
def test_refuses_state_dir_of_another_user(world: Path, tmp_path: Path) -> None:
    state = world / "state"
    state.mkdir(mode=0o700)
    os.chown(state, 12345, 12345)  # neither root nor run_as
    m = Mediad(
        world / "m.sock",
        ["--fast-path", "userspace", "--bind", "127.0.0.1", "--port-range", "41510-41519",
         "--state", str(state / "sessions.journal"), "--run-as", "nobody"],
        tmp_path / "m.log",
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="owned by uid 12345"):
        m.start(timeout=10)


@pytest.fixture(scope="module")
def bpffs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("bpffs")
    mount_bpffs(path)
    yield path
    umount(path)


@pytest.mark.root
@pytest.mark.xdp
@pytest.mark.slow
def test_run_as_xdp_keeps_cap_bpf_only(world: Path, tmp_path: Path, bpffs: Path) -> None:
    """Section 7 of the spec: CapEff = CapPrm = CapBnd = CAP_BPF; the XDP path still relays
    and latches (map updates with CAP_BPF only); stop leaves XDP attached, --cleanup (root,
    no live session) detaches it and removes the pins."""
    topo = Topology.create()
    pin = bpffs / "runas"
    args = ["--fast-path", "xdp-native", "--interface", "ra", "--interface", "rb",
            "--port-range", "42100-42199", "--pin-dir", str(pin),
            "--state", str(world / "state" / "sessions.journal")]  # fmt: skip
    m = Mediad(
        world / "run" / "mediad.sock",
        [*args, "--run-as", "nobody"],
        tmp_path / "m.log",
        netns=topo.r,
    )
    try:
        m.start()
        assert m.proc is not None
        pid = m.proc.pid  # ip netns exec execs mediad in place
        st = parse_status(status(pid))
        assert st.uids[0] == pwd.getpwnam("nobody").pw_uid
        want = cap_mask([CAP_BPF])
        assert want == 0x0000008000000000
        assert st.effective == st.permitted == st.bounding == want, status(pid)
        assert st.inheritable == st.ambient == 0
        sa = ns_socket(topo.a, (topo.a_ip, 5000))
        sb = ns_socket(topo.b, (topo.b_ip, 6000))
        offer, answer = call(m, "x1", sa.getsockname(), sb.getsockname(), 1, a_sdp_port=7000)
        relay_a = (offer["address"], answer["port"])
        relay_b = (offer["address"], offer["port"])
        stream(m, sa, sb, relay_a, relay_b, 1, count=40)
        q = m.ok({"command": "query", "call-id": "x1"})
        assert q["legs"][0]["packets-xdp"] >= 35, q
        m.ok({"command": "delete", "call-id": "x1"})
        assert pinned_entries(pin) == []
        sa.close()
        sb.close()
        m.stop()
        assert xdp_attached(topo, "ra")  # not root any more: it cannot detach
        cleanup = subprocess.run(
            ["ip", "netns", "exec", topo.r, str(BIN / "sipedge-mediad"), "--control-socket",
             str(world / "run" / "mediad.sock"), *args, "--run-as", "nobody", "--cleanup"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert cleanup.returncode == 0, cleanup.stderr
        assert not xdp_attached(topo, "ra") and not xdp_attached(topo, "rb")
        assert not (pin / "sessions").exists()
    finally:
        m.stop()
        topo.destroy()
