"""sipd against a fake mediad: reconciliation, signal addresses, SDP refusals on a call.

The fake implements `calls.media_link.MediaBackend` in memory; calls run through the real
B2BUA on a fake clock (the harness of test_session_timer_call), the media FIFO on asyncio.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sipedge.calls.media_policy import MediaPolicy
from sipedge.calls.media_reconcile import TOUCH_CHUNK, Reconciler, interval_for, plan
from sipedge.calls.media_service import UNREACHABLE_HOLD_OFF, MediaService
from sipedge.calls.service import media_policy
from sipedge.config import MediaConfig
from sipedge.media.client import FAMILY_UNAVAILABLE, MediaError, RelayAddress
from sipedge.sip.message import Request, Response, host_text, make_response, parse_message
from tests.unit.memory_cdrs import MemoryCdrs
from tests.unit.test_session_timer_call import CALLER, GW, SDP, Edge

LOOPBACK_SDP = SDP.replace(b"10.0.0.1", b"127.0.0.1")


class FakeMediad:
    """In-memory mediad: sessions by call-id, every request recorded."""

    def __init__(self) -> None:
        self.sessions: dict[str, dict[str, Any]] = {}
        self.log: list[tuple[str, Any]] = []
        self.touch_known = True
        self.down = False
        self.gate: asyncio.Event | None = None  # offers wait on it when set
        self.on_list: Any = None  # called after list is answered (for races)
        self.next_port = 30000
        # the relay address by family (mediad's advertise_address, advertise_address_v6)
        self.relay = {"IP4": "10.0.0.9", "IP6": "2001:db8::9"}
        self.families: list[tuple[str, str]] = []  # (command, address-family) asked

    def _check(self) -> None:
        if self.down:
            raise MediaError("unreachable", "mediad down")

    def _check_family(self, address_family: str) -> None:
        """As mediad: an error when it has no relay address of the family asked for."""
        if address_family not in self.relay:
            raise MediaError(FAMILY_UNAVAILABLE, f"no {address_family} relay address", 400)

    async def offer(
        self,
        call_id: str,
        from_tag: str,
        address: str,
        port: int,
        encryption: bool = False,
        mode: int | str | None = None,
        key: str | None = None,
        signal_address: str | None = None,
        *,
        address_family: str = "IP4",
    ) -> RelayAddress:
        self._check()
        self._check_family(address_family)
        if self.gate is not None:
            await self.gate.wait()
        self.log.append(("offer", (call_id, from_tag, address, port, signal_address)))
        self.families.append(("offer", address_family))
        self.sessions.setdefault(call_id, {"legs": []})
        self.next_port += 2
        relay = self.relay[address_family]
        return RelayAddress(call_id, relay, self.next_port, self.next_port + 1, "userspace")

    async def answer(
        self,
        call_id: str,
        from_tag: str,
        to_tag: str,
        address: str,
        port: int,
        encryption: bool = False,
        mode: int | str | None = None,
        key: str | None = None,
        signal_address: str | None = None,
        *,
        address_family: str = "IP4",
    ) -> RelayAddress:
        self._check()
        self._check_family(address_family)
        self.log.append(("answer", (call_id, to_tag, address, port, signal_address)))
        self.families.append(("answer", address_family))
        return RelayAddress(call_id, self.relay[address_family], 31000, 31001, "userspace")

    async def relay_families(self) -> frozenset[str] | None:
        self._check()
        self.log.append(("ping", None))
        return frozenset(self.relay)

    async def delete(self, call_id: str) -> dict[str, Any]:
        self._check()
        self.log.append(("delete", call_id))
        if self.sessions.pop(call_id, None) is None:
            raise MediaError("unknown-call", f"no call {call_id}", 404)
        return {"result": "ok"}

    async def query(self, call_id: str) -> dict[str, Any]:
        self._check()
        return {"legs": []}

    async def list(self) -> list[dict[str, Any]]:
        self._check()
        self.log.append(("list", None))
        calls = [{"call-id": i} for i in self.sessions]
        if self.on_list is not None:
            self.on_list()
        return calls

    async def touch(self, call_ids: Sequence[str]) -> dict[str, Any]:
        self._check()
        if not self.touch_known:
            raise MediaError("unknown-command", "unknown command 'touch'", 404)
        self.log.append(("touch", list(call_ids)))
        return {"result": "ok", "touched": len(call_ids), "unknown": []}

    async def close(self) -> None:
        return None

    def calls(self, command: str) -> list[Any]:
        return [args for name, args in self.log if name == command]


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


# -- reconciliation ---------------------------------------------------------------------------


def test_plan_is_pure_and_skips_junk() -> None:
    listed = [{"call-id": "a/0"}, {"call-id": "b/0"}, {"x": 1}, "junk", {"call-id": ""}]
    p = plan(listed, {"a/0", "z/0"})
    assert p.orphans == ("b/0",) and p.ours == ("a/0",)


def test_interval_is_a_quarter_of_the_idle_timeout_within_bounds() -> None:
    assert interval_for(120) == 30
    assert interval_for(10) == 5
    assert interval_for(86400) == 60


def test_orphans_deleted_own_sessions_touched() -> None:
    async def main() -> None:
        fake = FakeMediad()
        fake.sessions = {"old-1/0": {}, "old-2/0": {}, "mine/0": {}}
        deleted: list[int] = []
        r = Reconciler(fake, 120, lambda: deleted.append(1))
        r.claim("mine/0")
        await r.reconcile()
        assert sorted(fake.calls("delete")) == ["old-1/0", "old-2/0"]
        assert fake.calls("touch") == [["mine/0"]]
        assert list(fake.sessions) == ["mine/0"]
        assert r.orphans_deleted == 2 and len(deleted) == 2
        # an orphan deleted meanwhile by someone else (404) is not an error, not counted
        fake.sessions["gone/0"] = {}
        fake.on_list = lambda: fake.sessions.pop("gone/0", None)
        await r.reconcile()
        assert r.orphans_deleted == 2

    asyncio.run(main())


def test_an_offer_in_flight_is_never_deleted() -> None:
    """The id is claimed before the offer leaves, so a list answered while mediad is creating
    the session (or just after) finds it owned."""

    async def main() -> None:
        fake = FakeMediad()
        service = MediaService(fake, policy=MediaPolicy((), 8))
        r = service.reconciler
        fake.gate = asyncio.Event()

        async def offer_in_flight() -> None:
            r.claim("new/0")  # what CallMedia._offer does before sending
            await service.request(fake.offer("new/0", "caller", "198.51.100.7", 4000))

        task = asyncio.create_task(offer_in_flight())
        await settle()
        fake.sessions["new/0"] = {}  # mediad created it; its answer has not come back yet
        await r.reconcile()
        assert fake.calls("delete") == []
        assert fake.calls("touch") == [["new/0"]]
        fake.gate.set()
        await task

    asyncio.run(main())


def test_touch_in_chunks_and_unknown_command_tolerated() -> None:
    async def main() -> None:
        fake = FakeMediad()
        r = Reconciler(fake, 120)
        ids = [f"c{i}/0" for i in range(TOUCH_CHUNK * 2 + 5)]
        for i in ids:
            fake.sessions[i] = {}
            r.claim(i)
        await r.reconcile()
        chunks = fake.calls("touch")
        assert [len(c) for c in chunks] == [TOUCH_CHUNK, TOUCH_CHUNK, 5]
        assert r.touch_supported is True
        fake.touch_known = False
        fake.sessions["orphan/0"] = {}
        await r.reconcile()  # an old mediad: logged, the round still deletes orphans
        await r.reconcile()
        assert r.touch_supported is False
        assert fake.calls("delete") == ["orphan/0"]

    asyncio.run(main())


def on_fake_clock(fake: FakeMediad) -> tuple[MediaService, list[float]]:
    """A MediaService whose hold-off clock is `now[0]` (tests move it)."""
    service = MediaService(fake)
    now = [100.0]
    service.clock = lambda: now[0]
    return service, now


def test_reachable_again_triggers_a_round() -> None:
    async def main() -> None:
        fake = FakeMediad()
        service, now = on_fake_clock(fake)
        fake.down = True
        with pytest.raises(MediaError):
            await service.request(fake.query("x"))
        assert service.reconciler.reachable is False
        fake.down = False
        fake.sessions["orphan/0"] = {}
        now[0] += UNREACHABLE_HOLD_OFF
        await service.request(fake.query("x"))
        await settle()
        assert fake.calls("delete") == ["orphan/0"]
        assert service.stats.orphans_deleted == 1
        await service.close()

    asyncio.run(main())


class CountingMediad(FakeMediad):
    def __init__(self) -> None:
        super().__init__()
        self.queries = 0

    async def query(self, call_id: str) -> dict[str, Any]:
        self.queries += 1
        return await super().query(call_id)


def test_calls_hold_off_a_dead_mediad_and_probe_once_per_interval() -> None:
    async def main() -> None:
        fake = CountingMediad()
        service, now = on_fake_clock(fake)
        fake.down = True
        for _ in range(50):  # a burst of calls within the hold-off: one request reaches mediad
            with pytest.raises(MediaError) as failed:
                await service.request(fake.query("x"))
            assert failed.value.code == "unreachable"
        assert fake.queries == 1 and service.holding_off()
        now[0] += UNREACHABLE_HOLD_OFF  # the next call probes, fails, holds off again
        with pytest.raises(MediaError):
            await service.request(fake.query("x"))
        assert fake.queries == 2 and service.holding_off()
        fake.down = False  # a reconciliation round that reaches mediad ends the hold-off
        await service.reconciler.reconcile()
        assert not service.holding_off()
        await service.request(fake.query("x"))
        assert fake.queries == 3
        await service.close()

    asyncio.run(main())


def test_loop_runs_at_start_and_a_dead_mediad_does_not_break_it() -> None:
    async def main() -> None:
        fake = FakeMediad()
        fake.down = True
        service = MediaService(fake)
        service.start()
        await settle()  # the first round failed quietly
        assert service._loops and not any(task.done() for task in service._loops)
        await service.close()
        fake.down = False
        fake.sessions["orphan/0"] = {}
        service = MediaService(fake)
        service.start()
        await settle()
        assert fake.calls("delete") == ["orphan/0"]
        await service.close()

    asyncio.run(main())


# -- calls: ids owned, signal addresses, refusals -------------------------------------------


def invite(body: bytes = SDP, caller: str = "10.0.0.1", ours: str = "10.0.0.9") -> Request:
    """The caller's INVITE with SDP; `caller` and `ours` may be IPv6 (written in brackets)."""
    them, us = host_text(caller), host_text(ours)
    text = (
        f"INVITE sip:4420001@{us} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {them}:5060;branch=z9hG4bK-media-1\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:1000@{them}>;tag=caller-tag\r\n"
        f"To: <sip:4420001@{us}>\r\nCall-ID: media-call-1\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:1000@{them}:5060>\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    msg = parse_message(text.encode() + body)
    assert isinstance(msg, Request)
    return msg


def edge_with(tmp: Path, fake: FakeMediad, **media: Any) -> Edge:
    edge = Edge(tmp)
    config = edge.b2bua.config
    if media:
        config = replace(config, media=replace(config.media, **media))
    edge.b2bua.media = MediaService(fake, policy=media_policy(config.media))
    return edge


def test_calls_with_mediad_down_proceed_and_log_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        fake = CountingMediad()
        fake.down = True
        edge = edge_with(tmp_path, fake)
        for n in range(5):
            text = invite().to_bytes().replace(b"media-call-1", f"media-call-{n}".encode())
            text = text.replace(b"z9hG4bK-media-1", f"z9hG4bK-media-{n}".encode())
            msg = parse_message(text)
            assert isinstance(msg, Request)
            edge.feed(msg, CALLER)
            await settle()
        invites = edge.requests("INVITE", GW)
        assert len(invites) == 5 and all(b"10.0.0.1" in i.body for i in invites)  # unanchored
        stats = edge.b2bua.media.stats
        assert stats.unanchored == {"unreachable": 5}
        assert stats.errors == {"unreachable": 5}

    with caplog.at_level("WARNING", logger="sipedge.calls.media_link"):
        asyncio.run(main())
    lines = [r for r in caplog.records if "mediad offer failed" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]


def test_signal_addresses_and_owned_ids_follow_the_call(tmp_path: Path) -> None:
    async def main() -> None:
        fake = FakeMediad()
        edge = edge_with(tmp_path, fake)
        owned = edge.b2bua.media.reconciler.owned
        edge.feed(invite(), CALLER)
        await settle()
        offers = fake.calls("offer")
        assert len(offers) == 1
        call_id, tag, address, port, signal = offers[0]
        assert (tag, address, port, signal) == ("caller", "10.0.0.1", 4000, CALLER[0])
        assert owned == {call_id}
        gw_invite = edge.requests("INVITE", GW)[0]
        assert b"10.0.0.9" in gw_invite.body  # the relay, not the caller
        edge.answer(gw_invite, 200, GW)
        await settle()
        answers = fake.calls("answer")
        assert answers[0][1:] == ("callee", "10.0.0.1", 4000, GW[0])
        # the caller hangs up: the session is deleted and no longer owned
        ok = edge.responses(200, CALLER)[0]
        bye = parse_message(
            (
                "BYE sip:10.0.0.9:5060 SIP/2.0\r\n"
                "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-media-bye\r\n"
                f"From: <sip:1000@10.0.0.1>;tag=caller-tag\r\nTo: {ok.headers.get('To')}\r\n"
                "Call-ID: media-call-1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
            ).encode()
        )
        edge.feed(bye, CALLER)
        await settle()
        assert fake.calls("delete") == [call_id]
        assert owned == set()

    asyncio.run(main())


def test_caller_sdp_in_a_refused_network_gets_488(tmp_path: Path) -> None:
    async def main() -> None:
        fake = FakeMediad()
        edge = edge_with(tmp_path, fake, refused_networks=MediaConfig().refused_networks)
        records: list[Any] = []
        edge.b2bua.cdrs = MemoryCdrs(records)
        edge.feed(invite(LOOPBACK_SDP), CALLER)
        await settle()
        assert fake.log == []  # mediad never asked, the gateway never tried
        assert edge.requests("INVITE", GW) == []
        refused = edge.responses(488, CALLER)
        assert len(refused) == 1
        warning = refused[0].headers.get("Warning") or ""
        assert warning.startswith("301 10.0.0.9 ") and "media-address-refused" in warning
        assert "127.0.0.0/8" in warning
        (record,) = records
        assert (record.cause, record.final_status) == ("media-address-refused", 488)
        assert record.attempts[0].result == "media-address-refused"
        assert edge.b2bua.media.stats.refused == {"media-address-refused": 1}

    asyncio.run(main())


def test_too_many_streams_gets_488(tmp_path: Path) -> None:
    async def main() -> None:
        fake = FakeMediad()
        edge = edge_with(tmp_path, fake, max_streams_per_call=1)
        body = SDP + b"m=video 4002 RTP/AVP 31\r\n"
        edge.feed(invite(body), CALLER)
        await settle()
        refused = edge.responses(488, CALLER)
        assert len(refused) == 1 and "too-many-streams" in (refused[0].headers.get("Warning") or "")
        assert fake.log == []

    asyncio.run(main())


def test_callee_sdp_refused_fails_the_attempt_and_hangs_up(tmp_path: Path) -> None:
    async def main() -> None:
        fake = FakeMediad()
        edge = edge_with(tmp_path, fake, refused_networks=MediaConfig().refused_networks)
        records: list[Any] = []
        edge.b2bua.cdrs = MemoryCdrs(records)
        edge.feed(invite(), CALLER)
        await settle()
        gw_invite = edge.requests("INVITE", GW)[0]
        response = _response_with_sdp(gw_invite, LOOPBACK_SDP)
        edge.feed(response, GW)
        await settle()
        # the gateway is ACKed and hung up on; the caller never sees the loopback address
        assert len(edge.requests("ACK", GW)) == 1 and len(edge.requests("BYE", GW)) == 1
        assert not any(
            isinstance(m, Response) and b"127.0.0.1" in m.body for m, a in edge.sent if a == CALLER
        )
        assert edge.responses(503, CALLER)  # the only gateway failed
        (record,) = records
        assert record.attempts[0].result == "media-address-refused"
        assert len(fake.calls("answer")) == 0
        assert fake.calls("delete")  # the attempt's relay session was freed

    asyncio.run(main())


def _response_with_sdp(request: Request, body: bytes) -> Response:
    response = make_response(request, 200, to_tag="peer-tag")
    response.headers.add("Contact", f"<sip:peer@{GW[0]}:{GW[1]}>")
    response.headers.add("Content-Type", "application/sdp")
    response.body = body
    return response
