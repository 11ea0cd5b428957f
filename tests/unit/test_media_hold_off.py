"""Calls while mediad is held off as unreachable: their media work runs at once, in the SIP
message's own stack (`CallMedia._run`), with the outcome the queued work would have had.

Each test runs the same call twice against an in-memory mediad that is down: once held off
(the outcome computed without asking), once with the hold-off disabled (every request reaches
the fake mediad and fails `unreachable`, through the call's queue and a task). What the peers
receive and what the counters say must be the same; only the held-off run takes no task.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from sipedge.calls.media_service import MediaService
from sipedge.calls.service import media_policy
from sipedge.sip.message import Request, Response, make_response, parse_message
from tests.conftest import gateway, hold_off, make_config
from tests.unit.test_media_reconcile import FakeMediad, invite, settle
from tests.unit.test_session_timer_call import CALLER, GW, Edge

GW_SDP = (
    b"v=0\r\no=- 7 7 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\n"
    b"t=0 0\r\nm=audio 6000 RTP/AVP 0\r\n"
)


async def edge_down(
    tmp: Path, held_off: bool, *, encrypted: bool = False
) -> tuple[Edge, FakeMediad]:
    """An edge whose mediad is down; `held_off`: as after a failed request (else never)."""
    data = make_config(
        tmp,
        5060,
        8080,
        [gateway("gw1", 5060, address=GW[0], rtp_encryption=encrypted)],
        parameters={"SS_RTPENCRYPTIONMODE": 1, "SS_RTPENCRYPTIONKEY": "k3y"} if encrypted else None,
    )
    edge = Edge(tmp, data=data)
    fake = FakeMediad()
    fake.down = True
    service = MediaService(fake, policy=media_policy(edge.b2bua.config.media))
    if held_off:
        await hold_off(service)
    else:
        service.holding_off = lambda: False  # type: ignore[method-assign]
    edge.b2bua.media = service
    return edge, fake


def ok_with_sdp(request: Request) -> Response:
    response = make_response(request, 200, to_tag="gw-tag")
    response.headers.add("Contact", f"<sip:peer@{GW[0]}:{GW[1]}>")
    response.headers.add("Content-Type", "application/sdp")
    response.body = GW_SDP
    return response


def bye_from_caller(ok: Response) -> Request:
    msg = parse_message(
        (
            "BYE sip:10.0.0.9:5060 SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-hold-bye\r\n"
            f"From: <sip:1000@10.0.0.1>;tag=caller-tag\r\nTo: {ok.headers.get('To')}\r\n"
            "Call-ID: media-call-1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(msg, Request)
    return msg


async def whole_call(edge: Edge) -> dict[str, Any]:
    """INVITE, the gateway's 200 with SDP, BYE; what each side got and the counters."""
    tasks = edge.b2bua.media._tasks
    spawned = 0
    edge.feed(invite(), CALLER)
    spawned += len(tasks)
    await settle()
    (gw_invite,) = edge.requests("INVITE", GW)
    edge.feed(ok_with_sdp(gw_invite), GW)
    spawned += len(tasks)
    await settle()
    (ok,) = edge.responses(200, CALLER)
    edge.feed(bye_from_caller(ok), CALLER)
    spawned += len(tasks)
    await settle()
    stats = edge.b2bua.media.stats
    return {
        "gateway_sdp": gw_invite.body,
        "caller_sdp": ok.body,
        "byes_to_gateway": len(edge.requests("BYE", GW)),
        "unanchored": dict(stats.unanchored),
        "errors": dict(stats.errors),
        "owned": set(edge.b2bua.media.reconciler.owned),
        "spawned": spawned,
    }


def test_a_held_off_call_ends_as_a_queued_one_without_a_task(tmp_path: Path) -> None:
    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        held, _ = await edge_down(tmp_path / "held", held_off=True)
        queued, _ = await edge_down(tmp_path / "queued", held_off=False)
        return await whole_call(held), await whole_call(queued)

    (tmp_path / "held").mkdir()
    (tmp_path / "queued").mkdir()
    held, queued = asyncio.run(main())
    assert queued["spawned"] > 0 and held["spawned"] == 0
    held.pop("spawned"), queued.pop("spawned")
    assert held == queued
    assert held["gateway_sdp"] == invite().body  # unanchored: the caller's own SDP
    assert held["caller_sdp"] == GW_SDP
    assert held["unanchored"] == {"unreachable": 1} and held["errors"] == {"unreachable": 1}
    assert held["byes_to_gateway"] == 1 and held["owned"] == set()


@pytest.mark.parametrize("held_off", [True, False])
def test_an_encrypted_leg_held_off_fails_the_attempt_as_before(
    tmp_path: Path, held_off: bool
) -> None:
    async def main() -> None:
        edge, _ = await edge_down(tmp_path, held_off, encrypted=True)
        edge.feed(invite(), CALLER)
        await settle()
        assert edge.requests("INVITE", GW) == []  # no clear media toward an encrypted peer
        finals = [m.status for m, to in edge.sent if isinstance(m, Response) and to == CALLER]
        assert [status for status in finals if status >= 200] == [503]
        assert edge.b2bua.media.stats.unanchored == {"unreachable": 1}

    asyncio.run(main())


def test_a_held_off_delete_releases_the_ids_at_once(tmp_path: Path) -> None:
    async def main() -> None:
        edge, fake = await edge_down(tmp_path, held_off=False)
        fake.down = False  # the call is anchored while mediad is up
        edge.feed(invite(), CALLER)
        await settle()
        (gw_invite,) = edge.requests("INVITE", GW)
        assert b"10.0.0.9" in gw_invite.body  # the relay's address
        edge.feed(ok_with_sdp(gw_invite), GW)
        await settle()
        owned = edge.b2bua.media.reconciler.owned
        assert len(owned) == 1
        fake.down = True  # then mediad goes away and the hold-off starts
        service = edge.b2bua.media
        del service.holding_off  # the class's own again
        await hold_off(service)
        (ok,) = edge.responses(200, CALLER)
        before = set(service._tasks)  # the call's RTP watchdog
        edge.feed(bye_from_caller(ok), CALLER)
        # at once, without a turn of the loop: not deleted, released for reconciliation
        assert owned == set() and service._tasks <= before
        assert fake.calls("delete") == []
        assert service.stats.errors == {"unreachable": 1}
        assert service.stats.sessions_deleted == 0

    asyncio.run(main())
