"""The boot hand-over: mediad is ready in userspace before its XDP program is compiled, RTP that
flows while the loader child compiles and attaches loses no packet, and the leg's counters move
from packets-userspace to packets-xdp. Also the loader's failure (media.fast_path auto stays in
userspace with the reason; a strict value stops mediad), and the map layer (bpfmap.MapFd over
the fds the loader hands over) against bcc's own tables of the compiled program."""

from __future__ import annotations

import ctypes
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sipedge.media.bpfmap import MapFd, decode, possible_cpus
from sipedge.media.handover import reopen
from sipedge.media.loader import LOADER_NICE, parse
from sipedge.media.tally import XdpTally
from sipedge.media.xdp import (
    SESSIONS_KEY_SIZE,
    SESSIONS_VALUE_SIZE,
    STATS_VALUE_SIZE,
    Entry,
    XdpPath,
)
from tests.media import reference
from tests.media.netns import Mediad, Topology, ns_socket, recv_all
from tests.media.test_relay import (
    KEYS,
    SO_RCVBUFFORCE,
    call,
    ns_mediad,
    pinned_entries,
    xdp_attached,
)
from tests.media.test_xdp_strict import Bench, bench  # noqa: F401 (fixture)

MAX_PACKETS = 60000  # 2 min or more at one packet per 2 ms (RTP seq < 65536): bounded
AFTER = 600  # packets sent once the hand-over is seen


def _leg_a_of(m: Mediad, call_id: str) -> dict[str, Any]:
    return dict(m.ok({"command": "query", "call-id": call_id})["legs"][0])


def _leg_a(m: Mediad) -> dict[str, Any]:
    return _leg_a_of(m, "ho")


@pytest.mark.root
@pytest.mark.xdp
@pytest.mark.slow
def test_rtp_during_xdp_load_loses_nothing(topo: Topology, tmp_path: Path, bpffs: Path) -> None:
    pin = bpffs / "handover"
    m = ns_mediad(topo, tmp_path, "xdp-native", pin)
    t0 = time.monotonic()
    m.start(wait_xdp=False)
    ready_after = time.monotonic() - t0
    health = m.get("/healthz")[1]
    if health["xdp_loader"] is None and health["path"] == "userspace":
        m.stop()
        why = f"XDP cannot load here: {health['path_reason']}"
        if os.environ.get("CI") == "true":  # CI's machines load XDP: never hide the hand-over
            pytest.fail(why)
        pytest.skip(why)
    # ready (READY=1, /healthz) in userspace while the program is still being compiled
    assert health["path"] == "userspace" and health["xdp_loader"] == "loading", health
    assert health["path_reason"] == "XDP loading" and health["xdp_ready_seconds"] is None
    assert not xdp_attached(topo, "ra")
    assert "sipedge_media_xdp_loading 1.0" in m.get("/metrics")[1]
    sa = ns_socket(topo.a, (topo.a_ip, 5200))
    sb = ns_socket(topo.b, (topo.b_ip, 6200))
    sb.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
    key = KEYS[2].encode()
    received: list[bytes] = []
    stop_rx = threading.Event()

    def rx() -> None:
        while not stop_rx.is_set():
            received.extend(d for d, _ in recv_all(sb, 1000, timeout=0.5))

    receiver = threading.Thread(target=rx)
    try:
        offer, answer = call(m, "ho", sa.getsockname(), sb.getsockname(), 2)
        assert answer["path"] == "userspace"
        relay_a = (offer["address"], answer["port"])
        receiver.start()
        sent: list[bytes] = []
        before: dict[str, Any] | None = None
        handed_at: int | None = None
        while len(sent) < MAX_PACKETS:
            i = len(sent)
            pkt = reference.rtp(i, ts=i * 160, ssrc=9, payload=bytes([i % 251]) * 160)
            sa.sendto(reference.encrypt(2, key, pkt), relay_a)
            sent.append(pkt)
            time.sleep(0.002)
            if i == 200:
                before = _leg_a(m)
            if i % 100 == 99 and handed_at is None and i > 200:
                h = m.get("/healthz")[1]
                if h["path"] == "xdp-native":
                    handed_at = i
                assert h["xdp_loader"] == "loading" or h["path"] == "xdp-native", h
            if handed_at is not None and i >= handed_at + AFTER:
                break
        assert handed_at is not None, f"no hand-over after {len(sent)} packets\n{m.log()}"
        deadline = time.monotonic() + 30
        while len(received) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.1)
        stop_rx.set()
        receiver.join()
        # every packet, byte for byte (order may differ at the hand-over: sort by RTP seq)
        got = sorted(received, key=lambda d: int.from_bytes(d[2:4], "big"))
        assert len(got) == len(sent), f"lost {len(sent) - len(got)} of {len(sent)}\n{m.log()}"
        assert got == sent
        # the leg's counters: userspace first, then XDP
        assert before is not None
        assert before["packets-userspace"] > 200 and before["packets-xdp"] == 0, before
        after = _leg_a(m)
        assert after["packets-xdp"] >= AFTER - 100, after
        assert after["packets-userspace"] + after["packets-xdp"] == len(sent), after
        assert after["packets"] == len(sent)
        # more packets now: only the XDP counter moves
        for i in range(len(sent), len(sent) + 100):
            pkt = reference.rtp(i, ts=i * 160, ssrc=9, payload=b"x" * 160)
            sa.sendto(reference.encrypt(2, key, pkt), relay_a)
            time.sleep(0.002)
        assert len(recv_all(sb, 100, timeout=5)) == 100
        last = _leg_a(m)
        assert last["packets-userspace"] == after["packets-userspace"], (after, last)
        assert last["packets-xdp"] == after["packets-xdp"] + 100, (after, last)
        health = m.get("/healthz")[1]
        assert health["path"] == "xdp-native" and health["xdp_loader"] is None
        assert ready_after < health["xdp_ready_seconds"], (ready_after, health)
        assert health["xdp_verdicts"]["relayed"] >= AFTER
        metrics = m.get("/metrics")[1]
        assert "sipedge_media_xdp_ready_seconds" in metrics
        assert "sipedge_media_xdp_loading 0.0" in metrics
        assert "sessions moved" in m.log()
        m.ok({"command": "delete", "call-id": "ho"})
        assert m.stop() == 0
        assert not xdp_attached(topo, "ra") and not (pin / "sessions").exists()
    finally:
        stop_rx.set()
        if receiver.is_alive():
            receiver.join()
        m.stop()
        sa.close()
        sb.close()


@pytest.mark.root
@pytest.mark.xdp
@pytest.mark.slow
def test_loader_failure(topo: Topology, tmp_path: Path) -> None:
    """The loader child fails (its pin folder cannot be made): with media.fast_path auto mediad
    relays on in userspace and says why; with xdp-native it was ready, then stops with 1."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    pin = blocker / "pins"  # mkdir fails in the child, after the quick checks passed
    m = ns_mediad(topo, tmp_path, "auto", pin).start()
    sa = ns_socket(topo.a, (topo.a_ip, 5300))
    sb = ns_socket(topo.b, (topo.b_ip, 6300))
    try:
        health = m.get("/healthz")[1]
        assert health["path"] == "userspace" and health["xdp_loader"] is None, health
        assert health["path_reason"].startswith("XDP unavailable:"), health
        assert "not-a-dir" in health["path_reason"], health
        offer, answer = call(m, "fail", sa.getsockname(), sb.getsockname(), 0)
        assert answer["path"] == "userspace"
        for i in range(20):
            sa.sendto(reference.rtp(i, payload=b"u" * 40), (offer["address"], answer["port"]))
        assert len(recv_all(sb, 20)) == 20
        assert m.ok({"command": "query", "call-id": "fail"})["legs"][0]["packets-xdp"] == 0
    finally:
        m.stop()
        sa.close()
        sb.close()
    strict = ns_mediad(topo, tmp_path / "strict", "xdp-native", pin)
    (tmp_path / "strict").mkdir()
    try:
        strict.start(wait_xdp=False)
    except RuntimeError as exc:  # the loader failed before /healthz was polled
        assert "exited 1" in str(exc)
    assert strict.proc is not None
    assert strict.proc.wait(timeout=120) == 1
    log = strict.log()
    assert log.index("mediad ready: path userspace (XDP loading)") < log.index("stopping"), log
    assert "media.fast_path xdp-native" in log and "not-a-dir" in log
    strict.proc = None


@pytest.mark.root
@pytest.mark.xdp
@pytest.mark.slow
def test_map_fds_match_bcc_tables(bench: Bench) -> None:  # noqa: F811
    """What the loader hands over, read and written through bpfmap.MapFd, is what bcc's own
    tables of the compiled program read and write (same layout, same per-CPU values)."""
    xdp = bench.xdp
    descs, fds = bench.run(xdp.handover)
    maps = {
        d["name"]: MapFd(os.dup(fd), decode(d["key"]), decode(d["leaf"]), d["percpu"])
        for d, fd in zip(descs, fds, strict=True)
    }
    t = bench.topo
    other = XdpPath(list(t.r_ifs), "native", xdp.pin_dir, max_sessions=xdp.max_sessions)
    rc4 = Entry(t.b_ip, 6000, 47002, t.ra_ip, t.a_ip, 5000, in_mode=2, in_key=b"k" * 17)
    xor = Entry(t.a_ip, 5000, 47000, t.rb_ip, latch=True, rtcp=True, out_mode=1, out_key=b"x")
    assert ctypes.sizeof(maps["sessions"].Leaf) == SESSIONS_VALUE_SIZE
    assert ctypes.sizeof(maps["sessions"].Key) == SESSIONS_KEY_SIZE
    assert ctypes.sizeof(maps["stats"].Leaf) == STATS_VALUE_SIZE * possible_cpus()
    try:
        bench.run(xdp.put, t.ra_ip, 47000, rc4)  # bcc writes, MapFd reads
        other.adopt_maps("native", True, maps)  # learns the counter slot bcc's side took
        other.put(t.rb_ip, 47003, xor)  # MapFd writes, bcc reads
        assert other.get(t.ra_ip, 47000) == rc4
        assert bench.run(xdp.get, t.rb_ip, 47003) == xor
        assert sorted(other.keys()) == sorted(bench.run(lambda: list(xdp.keys())))
        assert other.stats(t.ra_ip, 47000) == bench.run(xdp.stats, t.ra_ip, 47000)
        assert other.verdicts() == bench.run(xdp.verdicts)
        other.remove(t.rb_ip, 47003)
        assert bench.run(xdp.get, t.rb_ip, 47003) is None
    finally:
        other.close()


@pytest.mark.root
@pytest.mark.xdp
@pytest.mark.slow
def test_restart_keeps_the_previous_maps_in_step(
    topo: Topology, tmp_path: Path, bpffs: Path
) -> None:
    """A restart with calls live: the previous program relays on while the new one compiles,
    and the new mediad keeps its pinned maps in step from the start (a call ended in that
    window leaves no entry behind; a leg that latches in it goes to XDP at once)."""
    pin = bpffs / "window"
    m = ns_mediad(topo, tmp_path, "xdp-native", pin).start()
    sa = ns_socket(topo.a, (topo.a_ip, 5400))
    sb = ns_socket(topo.b, (topo.b_ip, 6400))
    try:
        offer, answer = call(m, "keep", sa.getsockname(), sb.getsockname(), 1)
        call(m, "gone", (topo.a_ip, 5402), (topo.b_ip, 6402), 0)
        assert len(pinned_entries(pin)) == 8  # two calls, four directions each
        m.stop()  # calls live: the program stays attached, the maps pinned
        assert xdp_attached(topo, "ra")
        m.start(wait_xdp=False)
        health = m.get("/healthz")[1]
        assert health["xdp_loader"] == "loading", health
        assert health["path"] == "xdp-native", health
        assert health["path_reason"].startswith("previous XDP program"), health
        m.ok({"command": "delete", "call-id": "gone"})
        assert len(pinned_entries(pin)) == 4  # at once, not at the hand-over
        key = KEYS[1].encode()
        relay_a = (offer["address"], answer["port"])
        sent = [reference.rtp(i, payload=bytes([i]) * 80) for i in range(50)]
        for pkt in sent:
            sa.sendto(reference.encrypt(1, key, pkt), relay_a)
            time.sleep(0.002)
        assert [d for d, _ in recv_all(sb, 50)] == sent
        leg = _leg_a_of(m, "keep")
        assert leg["packets-xdp"] > 0 and m.get("/healthz")[1]["xdp_loader"] == "loading", leg
        deadline = time.monotonic() + 300
        while m.get("/healthz")[1]["xdp_loader"] and time.monotonic() < deadline:
            time.sleep(0.2)
        health = m.get("/healthz")[1]
        assert health["path"] == "xdp-native" and health["path_reason"].startswith("attached")
        assert len(pinned_entries(pin)) == 4
        assert _leg_a_of(m, "keep")["packets"] == 50
        m.ok({"command": "delete", "call-id": "keep"})
        assert pinned_entries(pin) == []
        assert m.stop() == 0
        assert not xdp_attached(topo, "ra")
    finally:
        m.stop()
        sa.close()
        sb.close()


def _loaders(pin: Path) -> list[int]:
    """Pids of loader children working for `pin`."""
    out = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"sipedge.media.loader" in cmdline and str(pin).encode() in cmdline:
            out.append(int(proc.name))
    return out


@pytest.mark.root
@pytest.mark.xdp
@pytest.mark.slow
def test_stop_while_loading_ends_the_loader(topo: Topology, tmp_path: Path, bpffs: Path) -> None:
    pin = bpffs / "early"
    m = ns_mediad(topo, tmp_path, "xdp-native", pin).start(wait_xdp=False)
    try:
        if m.get("/healthz")[1]["xdp_loader"] != "loading":
            pytest.skip("the loader was done before the test could stop mediad")
        loaders = _loaders(pin)
        assert loaders, "no loader child while /healthz says loading"
        # the compile yields to the daemons' start-ups (mediad inherits this test's niceness)
        nice = min(19, os.getpriority(os.PRIO_PROCESS, 0) + LOADER_NICE)
        assert [os.getpriority(os.PRIO_PROCESS, pid) for pid in loaders] == [nice] * len(loaders)
        assert m.stop() == 0
        deadline = time.monotonic() + 10
        while _loaders(pin) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _loaders(pin) == []
    finally:
        m.stop()


def test_loader_report_refusals() -> None:
    """mediad's reading of the child's report: a failure keeps its reason, a malformed or
    inconsistent report is refused and the fds that came with it are closed."""
    assert parse(b'{"ok": false, "error": "verifier said no"}', []).error == "verifier said no"
    assert not parse(b"not json", []).ok
    r, w = os.pipe()
    os.close(w)
    bad = parse(b'{"ok": true, "mode": "native", "adopted": false, "seconds": 1, "maps": []}', [r])
    assert not bad.ok and "1 map fds for 0 maps" in bad.error
    with pytest.raises(OSError):
        os.fstat(r)  # closed by the refusal


def test_layout_file_refusals(tmp_path: Path) -> None:
    """`reopen` uses the saved layout only when it is a regular file (no link, no FIFO) and
    the pins exist; anything else means: wait for the loader."""
    pin = tmp_path / "pins"
    pin.mkdir()
    xdp = XdpPath(["lo"], "native", pin, max_sessions=8)
    args = ("127.0.0.1", None, XdpTally(), time.time)
    assert reopen(xdp, tmp_path, *args) is None  # no pins
    for name in ("sessions", "stats"):
        (pin / name).write_text("")
    assert reopen(xdp, tmp_path, *args) is None  # no layout saved
    os.mkfifo(tmp_path / "xdp-maps.json")
    assert reopen(xdp, tmp_path, *args) is None  # a FIFO: refused, not waited on
    (tmp_path / "xdp-maps.json").unlink()
    (tmp_path / "elsewhere.json").write_text('{"version": 1}')
    (tmp_path / "xdp-maps.json").symlink_to(tmp_path / "elsewhere.json")
    assert reopen(xdp, tmp_path, *args) is None
    assert not xdp.loaded
