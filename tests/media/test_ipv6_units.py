"""IPv6 in mediad's pure parts (no root, no namespace): addresses in one normal form, the
ng `address-family`, leg families and cross-family routes, the strict source rule on exact
IPv6 (address, port), the journal form, the 16-byte map addresses, the family of an XDP
entry (the one it writes) and the entries of a cross-family call, the relay address checks,
and the client's `address_family` on a real unix socket."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from sipedge.media import MediaClient, MediaError
from sipedge.media.crypto import Mode
from sipedge.media.kernel import KernelTable
from sipedge.media.ports import PortAllocator
from sipedge.media.report import leg_info
from sipedge.media.session import (
    ACCEPT,
    FOREIGN,
    LATCH,
    UNLEARNED,
    ControlError,
    Route,
    Session,
    SessionTable,
    address_family,
    admit,
    normal_ip,
)
from sipedge.media.settings import MediaSettings, ipv6_relay_problem
from sipedge.media.tally import XdpTally
from sipedge.media.xdp import Entry, XdpPath, _ip16, _un16, out_family

A6, B6, A4 = "2001:db8:a::7", "2001:db8:b::9", "198.51.100.7"


def table(latching: bool = True) -> SessionTable:
    return SessionTable(PortAllocator(30000, 30099), Mode.NONE, b"", latching=latching)


def offer(**extra: Any) -> dict[str, Any]:
    return {"call-id": "c", "from-tag": "ta", "address": A6, "port": 4000, **extra}


def answer(**extra: Any) -> dict[str, Any]:
    body = {"call-id": "c", "from-tag": "ta", "to-tag": "tb", "address": B6, "port": 5000}
    return {**body, **extra}


def test_normal_form() -> None:
    assert normal_ip("2001:DB8:A:0::7") == A6
    assert normal_ip("::ffff:198.51.100.7") == A4  # what an IPv4 socket reports
    assert normal_ip("10.0.0.1") == "10.0.0.1"
    with pytest.raises(ValueError):
        normal_ip("example.org")


@pytest.mark.parametrize(("value", "family"), [(None, 4), ("IP4", 4), ("IP6", 6)])
def test_address_family_values(value: str | None, family: int) -> None:
    req = {} if value is None else {"address-family": value}
    assert address_family(req) == family


@pytest.mark.parametrize("value", ["ip6", "IPv6", 6, "", None, ["IP6"]])
def test_address_family_refusals(value: Any) -> None:
    with pytest.raises(ControlError) as exc:
        address_family({"address-family": value})
    assert exc.value.code == "bad-request" and exc.value.status == 400


def test_v6_call_families_and_normalised_addresses() -> None:
    t = table()
    session, leg_b = t.offer(offer(address="2001:DB8:A::7", **{"address-family": "IP6"}))
    assert leg_b.af == 6 and session.a.sdp == (A6, 4000)
    assert session.a.af == 6  # the caller's family until the answer says otherwise
    _session, leg_a = t.answer(answer())  # no address-family: IPv4 toward the caller
    assert leg_a is session.a and leg_a.af == 4
    # a re-offer from the caller changes the family of the callee's relay address only
    t.offer(offer(**{"address-family": "IP4"}))
    assert session.b.af == 4 and session.a.af == 4


def test_cross_family_routes() -> None:
    t = table()
    session, _ = t.offer(offer(address=A4, **{"address-family": "IP6"}))
    t.answer(answer(**{"address-family": "IP4"}))
    a_to_b = Route(session, session.a, session.b, rtcp=False)
    b_to_a = Route(session, session.b, session.a, rtcp=True)
    assert a_to_b.cross_family and b_to_a.cross_family and session.cross_family
    t2 = table()
    s2, _ = t2.offer(offer(**{"address-family": "IP6"}))
    t2.answer(answer(**{"address-family": "IP6"}))
    assert not s2.cross_family
    # before its latch a direction takes its family from the relay address its leg was given
    assert not Route(s2, s2.b, s2.a, rtcp=False).cross_family


def test_strict_source_exact_v6_pair() -> None:
    t = table()
    session, _ = t.offer(offer(**{"signal-address": "2001:db8:a::1"}))
    leg = session.a
    assert admit(leg, False, ("2001:db8:a::99", 4000), True) == UNLEARNED
    assert admit(leg, False, (A4, 4000), True) == UNLEARNED
    assert admit(leg, False, ("2001:db8:a::1", 6000), True) == LATCH  # the signal address
    route = t.by_port[leg.port]
    assert t.receive(route, (A6, 4002)) == LATCH and leg.rtp_peer == (A6, 4002)
    assert t.receive(route, (A6, 4002)) == ACCEPT
    assert t.receive(route, (A6, 4004)) == FOREIGN  # same address, another port
    assert t.receive(route, ("2001:db8:a::8", 4002)) == FOREIGN  # another address
    assert leg.dropped == {FOREIGN: 2, UNLEARNED: 0}
    # RTCP may latch from the address RTP latched to
    assert t.receive(t.by_port[leg.rtcp_port], (A6, 4003)) == LATCH


def test_journal_form_keeps_the_family() -> None:
    t = table()
    session, _ = t.offer(offer(**{"address-family": "IP6"}))
    again = Session.from_dict(session.to_dict())
    assert (again.a.af, again.b.af) == (6, 6) and again.a.sdp == (A6, 4000)
    old = session.to_dict()
    del old["b"]["af"]  # a journal written before IPv6
    assert Session.from_dict(old).b.af == 4


def test_leg_report_brackets_ipv6() -> None:
    t = table()
    session, _ = t.offer(offer())
    t.receive(t.by_port[session.a.port], (A6, 4000))
    info = leg_info(session.a, None, None)
    assert info["latched-address"] == f"[{A6}]:4000"
    assert info["remote-address"] == A6 and info["relay-family"] == "IP6"


def test_map_addresses_are_16_bytes() -> None:
    assert _ip16(A4) == bytes(10) + b"\xff\xff" + bytes([198, 51, 100, 7])
    assert _un16(_ip16(A4)) == A4
    assert _un16(_ip16(A6)) == A6 and len(_ip16(A6)) == 16
    xdp = XdpPath(["lo"])  # not loaded: put checks before it touches a map
    with pytest.raises(ValueError, match="::"):
        xdp.put("::", 30000, Entry(B6, 5000, 30002, A6, A6, 4000))
    with pytest.raises(ValueError, match="source is of its destination's family"):
        xdp.put("2001:db8::1", 30000, Entry(A4, 5000, 30002, "2001:db8::1", A6, 4000))


def test_entry_family_is_the_one_written() -> None:
    """An entry's family byte is its destination's (the header the program writes); its peer
    is of the key's family (the packets it receives): 4-to-6 and 6-to-4 entries are valid."""
    assert out_family("192.0.2.1", Entry(B6, 5000, 30002, "2001:db8::1", A4, 4000)) == 6
    assert out_family("2001:db8::1", Entry(A4, 5000, 30002, "192.0.2.1", B6, 4000)) == 4
    assert out_family("2001:db8::1", Entry(B6, 5000, 30002, "2001:db8::1", A6, 4000)) == 6
    # not latched yet: the peer is "::" of the key's family
    assert out_family("2001:db8::1", Entry(A4, 5000, 30002, "192.0.2.1", "::")) == 4
    with pytest.raises(ValueError, match="peer is of its local address's family"):
        out_family("192.0.2.1", Entry(B6, 5000, 30002, "2001:db8::1", A6, 4000))
    with pytest.raises(ValueError, match="source is of its destination's family"):
        out_family("192.0.2.1", Entry(B6, 5000, 30002, "192.0.2.1", A4, 4000))


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("2001:db8::1", None),
        ("fd00::1", None),
        ("::", "not ::"),
        ("ff02::1", "multicast"),
        ("fe80::1", "link-local"),
        ("::ffff:10.0.0.1", "IPv4-mapped"),
        ("10.0.0.1", "not an IPv6"),
    ],
)
def test_ipv6_relay_address_checks(value: str, problem: str | None) -> None:
    got = ipv6_relay_problem(value)
    assert got is None if problem is None else (got is not None and problem in got)


def test_settings_refuse_advertise_v6_without_bind_v6(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"needs media\.bind_address_v6"):
        MediaSettings(tmp_path / "s", advertise_address_v6="2001:db8::1")
    with pytest.raises(ValueError, match=r"media\.bind_address_v6"):
        MediaSettings(tmp_path / "s", bind_address_v6="fe80::1")
    s = MediaSettings(tmp_path / "s", bind_address_v6="2001:db8::1")
    assert s.advertise_address_v6 is None


def test_client_sends_address_family_only_for_ipv6(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    async def ng(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(body)
        if body.get("address-family") == "IP6" and body["call-id"] == "none":
            return web.json_response(
                {"result": "error", "error-code": "address-family-unavailable",
                 "error-reason": "no IPv6"},
                status=409,
            )  # fmt: skip
        address = "2001:db8::10" if body.get("address-family") == "IP6" else "192.0.2.10"
        reply = {"result": "ok", "call-id": body["call-id"], "address": address}
        return web.json_response({**reply, "port": 30000, "rtcp-port": 30001})

    async def run() -> None:
        app = web.Application()
        app.router.add_post("/ng", ng)
        runner = web.AppRunner(app)
        await runner.setup()
        sock = tmp_path / "m.sock"
        await web.UnixSite(runner, str(sock)).start()
        try:
            async with MediaClient(sock) as media:
                r = await media.offer("c", "ta", A4, 4000, address_family="IP6")
                assert r.address == "2001:db8::10"
                r = await media.answer("c", "ta", "tb", B6, 5000)
                assert r.address == "192.0.2.10"
                await media.answer("c", "ta", "tb", B6, 5000, address_family="IP4")
                with pytest.raises(MediaError) as exc:
                    await media.offer("none", "ta", A4, 4000, address_family="IP6")
                assert exc.value.code == "address-family-unavailable"
                assert exc.value.status == 409
                with pytest.raises(ValueError):
                    await media.offer("c", "ta", A4, 4000, address_family="inet6")
        finally:
            await runner.cleanup()

    asyncio.run(run())
    assert [b.get("address-family") for b in seen] == ["IP6", None, None, "IP6"]


def test_kernel_entries_of_a_cross_family_call() -> None:
    """A 4-to-6 call's directions each get an entry under the bind address of the family they
    arrive in, sending from the bind address of the family they leave in."""
    t = table()
    session, _ = t.offer(offer(address=A4, **{"address-family": "IP6"}))
    t.answer(answer(**{"address-family": "IP4"}))
    t.receive(t.by_port[session.a.port], (A4, 4000))  # A latches
    kernel = KernelTable(XdpPath(["lo"]), "192.0.2.1", XdpTally(), time.time, "2001:db8::1")
    a_to_b = Route(session, session.a, session.b, rtcp=False)
    b_to_a = Route(session, session.b, session.a, rtcp=False)
    assert (kernel.in_family(a_to_b), kernel.out_family(a_to_b)) == (4, 6)
    assert (kernel.in_family(b_to_a), kernel.out_family(b_to_a)) == (6, 4)
    entry = kernel.entry(a_to_b)
    assert (entry.src_addr, entry.dst_addr, entry.peer_addr) == ("2001:db8::1", B6, A4)
    assert not entry.latch and out_family("192.0.2.1", entry) == 6
    back = kernel.entry(b_to_a)  # B not latched yet: its peer is "::", packets go up
    assert (back.src_addr, back.dst_addr, back.peer_addr, back.latch) == (
        "192.0.2.1",
        A4,
        "::",
        True,
    )
    assert out_family("2001:db8::1", back) == 4
