"""mediad in-process on loopback (userspace path, no root): touch and idle expiry with an
injected clock, counters that only grow across ends and restarts, the metrics listener."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from sipedge.media import journal
from sipedge.media.api import build_metrics_app
from sipedge.media.daemon import MediaDaemon
from sipedge.media.expiry import MIN_BATCH, IdleSweeper
from sipedge.media.session import ControlError
from sipedge.media.settings import MediaSettings
from tests.conftest import free_port
from tests.media.netns import Mediad


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def settings(tmp: Path, **kw: Any) -> MediaSettings:
    base: dict[str, Any] = {
        "control_socket": tmp / "run" / "mediad.sock",
        "fast_path": "userspace",
        "bind_address": "127.0.0.1",
        "port_range": (43000, 43039),
        "state_path": tmp / "state" / "sessions.journal",
        "idle_timeout": 30.0,
    }
    base.update(kw)
    return MediaSettings(**base)


MakeDaemon = Callable[..., Any]


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[MakeDaemon]:
    started: list[MediaDaemon] = []

    async def factory(clock: Clock | None = None, **kw: Any) -> MediaDaemon:
        d = MediaDaemon(settings(tmp_path, **kw), clock=clock or time.time)
        await d.start()
        started.append(d)
        return d

    yield factory
    for d in started:
        await d.stop()  # a second stop does nothing more


def offer(call_id: str, port: int = 30000) -> dict[str, Any]:
    return {
        "command": "offer",
        "call-id": call_id,
        "from-tag": "caller",
        "address": "127.0.0.1",
        "port": port,
    }


async def test_touch_and_idle_expiry(make: MakeDaemon, tmp_path: Path) -> None:
    clock = Clock()
    d = await make(clock)
    d.command(offer("idle"))
    d.command(offer("busy", 30002))
    d.command(offer("queried", 30004))
    clock.now += 20
    assert d.command({"command": "touch", "call-ids": ["busy", "nope"]}) == {
        "result": "ok",
        "touched": 1,
        "unknown": ["nope"],
    }
    d.command({"command": "query", "call-id": "queried"})  # a command naming it counts
    clock.now += 15  # idle: 35 s, busy and queried: 15 s
    assert d.sweep() == ["idle"]
    assert sorted(s.call_id for s in d.table) == ["busy", "queried"]
    assert d.counters().expired == 1 and d.table.ports.used == 4
    clock.now += 31
    assert sorted(d.sweep()) == ["busy", "queried"]
    assert d.counters().expired == 3 and d.table.ports.used == 0
    await d.stop()
    # the expired count survives a restart (saved in the journal)
    d2 = await make(clock)
    assert d2.counters().expired == 3
    assert journal.read(tmp_path / "state" / "sessions.journal", {0}).totals["expired"] == 3


async def test_packets_keep_a_session_alive(make: MakeDaemon) -> None:
    clock = Clock()
    d = await make(clock)
    d.command(offer("talking"))
    clock.now += 100
    d.table.sessions["talking"].a.rtp.last_seen = clock.now - 5  # a packet 5 s ago
    assert d.sweep() == []


async def test_touch_validation(make: MakeDaemon) -> None:
    d = await make()
    for bad in ([1], "x", ["a"] * 65537, [""]):
        with pytest.raises(ControlError) as exc:
            d.command({"command": "touch", "call-ids": bad})
        assert exc.value.code == "bad-request"


def test_sweeper_bounded_and_forgets_deleted() -> None:
    sweeper: IdleSweeper[object] = IdleSweeper(10.0)
    live = {f"c{i}": object() for i in range(1000)}
    for call_id, s in live.items():
        sweeper.add(call_id, s)
    seen: list[object] = []

    def activity(s: object) -> float:
        seen.append(s)
        return 0.0

    assert len(sweeper.due(live, activity, now=5.0)) == 0
    assert len(seen) == sweeper.batch() == max(MIN_BATCH, 200)  # one fifth per run
    # deleted sessions (or a call id offered again: another object) leave the queue
    for i in range(500):
        live[f"c{i}"] = object()
    for _ in range(10):
        sweeper.due(live, activity, now=5.0)
    assert len(sweeper.queue) == 500  # only the sessions still live are queued
    assert all(live[c] is s for c, s in sweeper.queue)


def test_sweeper_expires_idle() -> None:
    sweeper: IdleSweeper[str] = IdleSweeper(10.0)
    live = {"a": "A", "b": "B"}
    sweeper.add("a", "A")
    sweeper.add("b", "B")
    last = {"A": 0.0, "B": 8.0}
    assert sweeper.due(live, last.__getitem__, now=12.0) == ["a"]
    assert sweeper.due(live, last.__getitem__, now=17.0) == []
    assert sweeper.due(live, last.__getitem__, now=18.0) == ["b"]
    assert not sweeper.queue


async def test_counters_monotonic_across_ends(make: MakeDaemon) -> None:
    d = await make(behind_nat=True)
    d.command(offer("c1"))
    route = d.table.by_port[d.table.sessions["c1"].a.port]
    d.table.receive(route, ("127.0.0.9", 1))  # unlearned
    d.table.receive(route, ("127.0.0.1", 30000))  # latches
    d.table.receive(route, ("127.0.0.1", 30002))  # foreign
    before = d.counters().dropped
    d.command({"command": "delete", "call-id": "c1"})
    after = d.counters().dropped
    assert before == after == {"foreign-source": 1, "unlearned-source": 1, "no-session": 0}
    await d.stop()
    d2 = await make()
    assert d2.counters().dropped == after


async def test_metrics_app_token(make: MakeDaemon) -> None:
    d = await make()
    async with TestClient(TestServer(build_metrics_app(d, "s3cret"))) as client:
        assert (await client.get("/metrics")).status == 401
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status == 401
        ok = await client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert ok.status == 200
        text = await ok.text()
        assert "sipedge_media_sessions_expired_total 0.0" in text
        assert 'sipedge_media_dropped_packets_total{reason="foreign-source"} 0.0' in text
        assert "sipedge_media_xdp_packets_total" in text
        assert (await client.get("/healthz")).status == 200
        ng = await client.post("/ng", json={"command": "list"})
        assert ng.status in (404, 405)  # never the ng commands


def test_metrics_listen_loopback_rule(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loopback"):
        settings(tmp_path, metrics_listen="0.0.0.0:9100")
    with pytest.raises(ValueError, match="loopback"):
        settings(tmp_path, metrics_listen="[2001:db8::1]:9100")
    settings(tmp_path, metrics_listen="0.0.0.0:9100", metrics_token_file=tmp_path / "t")
    settings(tmp_path, metrics_listen="127.0.0.1:9100")
    settings(tmp_path, metrics_listen="[::1]:9100")
    with pytest.raises(ValueError):
        settings(tmp_path, bind_address="0.0.0.0")


def test_real_mediad_metrics_listener(tmp_path: Path) -> None:
    import http.client

    token = tmp_path / "token"
    token.write_text("tok-123\n")
    port = free_port(kind=1)
    m = Mediad(
        tmp_path / "m.sock",
        ["--fast-path", "userspace", "--bind", "127.0.0.1", "--port-range", "43100-43109",
         "--metrics-listen", f"127.0.0.1:{port}", "--metrics-token-file", str(token)],
        tmp_path / "m.log",
    ).start()  # fmt: skip

    def get(path: str, auth: str | None = None) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", path, headers={"Authorization": auth} if auth else {})
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    try:
        assert get("/metrics")[0] == 401
        status, text = get("/metrics", "Bearer tok-123")
        assert status == 200 and "sipedge_media_sessions 0.0" in text
        assert get("/healthz")[0] == 200
        assert get("/ng")[0] == 404
    finally:
        m.stop()
    # a non-loopback listener without a token: refused at start
    bad = Mediad(
        tmp_path / "b.sock",
        ["--fast-path", "userspace", "--bind", "127.0.0.1", "--metrics-listen", "0.0.0.0:9999"],
        tmp_path / "b.log",
    )
    with pytest.raises(RuntimeError, match="loopback"):
        bad.start(timeout=10)
