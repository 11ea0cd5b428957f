"""Port allocator, session table and the source rule (latching): pure state."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from sipedge.media.crypto import Mode
from sipedge.media.ports import PROBE_ATTEMPTS, PortAllocator, PortsExhausted
from sipedge.media.session import (
    ACCEPT,
    FOREIGN,
    LATCH,
    NO_SESSION,
    UNLEARNED,
    ControlError,
    Route,
    SessionTable,
    admit,
)

# -- ports --------------------------------------------------------------------------------


def test_ports_even_pairs_never_twice() -> None:
    ports = PortAllocator(20001, 20010)
    got = [ports.allocate() for _ in range(ports.capacity)]
    assert sorted(got) == [20002, 20004, 20006, 20008]  # 20010 has no 20011 in range
    with pytest.raises(PortsExhausted):
        ports.allocate()
    ports.release(20004)
    assert ports.allocate() == 20004
    ports.release(20004)
    ports.release(20004)  # twice: no duplicate in the free list
    assert ports.allocate() == 20004
    with pytest.raises(PortsExhausted):
        ports.allocate()


def test_ports_random_and_never_reused_while_held() -> None:
    ports = PortAllocator(20000, 29999)
    held: set[int] = set()
    rng = random.Random(7)
    order: list[int] = []
    for _ in range(20000):
        if held and rng.random() < 0.45:
            port = rng.choice(sorted(held))
            held.remove(port)
            ports.release(port)
            continue
        port = ports.allocate()
        assert port not in held and port % 2 == 0 and 20000 <= port <= 29998
        held.add(port)
        order.append(port)
    assert ports.used == len(held) and ports.in_use == held
    # unpredictable: consecutive ports are not a fixed step apart, and they cover the range
    steps = {b - a for a, b in itertools.pairwise(order)}
    assert len(steps) > 1000
    first = order[:2000]
    assert min(first) < 20500 and max(first) > 29500
    buckets = [0] * 10
    for port in first:
        buckets[(port - 20000) // 1000] += 1
    assert min(buckets) > 120, buckets  # about 200 each


def test_ports_probe_skips_busy_and_is_bounded() -> None:
    ports = PortAllocator(30000, 30007)
    for _ in range(20):
        port = ports.allocate(lambda p: p != 30000)
        assert port != 30000
        ports.release(port)
    calls: list[int] = []

    def refuse(port: int) -> bool:
        calls.append(port)
        return False

    big = PortAllocator(20000, 29999)
    with pytest.raises(PortsExhausted):
        big.allocate(refuse)
    assert len(calls) == PROBE_ATTEMPTS  # bounded, not the whole range
    assert big.used == 0 and big.allocate() % 2 == 0  # refused ports went back


def test_ports_reserve() -> None:
    ports = PortAllocator(30000, 30007)
    ports.reserve(30004)
    with pytest.raises(ValueError):
        ports.reserve(30004)
    with pytest.raises(ValueError):
        ports.reserve(30005)
    got = {ports.allocate() for _ in range(3)}
    assert got == {30000, 30002, 30006}


# -- sessions -----------------------------------------------------------------------------


def table(latching: bool = False, **kw: Any) -> SessionTable:
    return SessionTable(PortAllocator(40000, 40007), Mode.XOR, b"secret", latching=latching, **kw)


def offer(call: str = "c1", **kw: object) -> dict[str, object]:
    req: dict[str, object] = {
        "call-id": call,
        "from-tag": "ta",
        "address": "10.0.0.1",
        "port": 4000,
    }
    req.update(kw)
    return req


def answer(call: str = "c1", **kw: object) -> dict[str, object]:
    req: dict[str, object] = {
        "call-id": call,
        "from-tag": "ta",
        "to-tag": "tb",
        "address": "10.0.0.2",
        "port": 5000,
    }
    req.update(kw)
    return req


def test_offer_answer_routes() -> None:
    t = table()
    s, leg_b = t.offer(offer(encryption=True))
    assert leg_b is s.b and s.a.port != s.b.port
    s2, leg_a = t.answer(answer())
    assert s2 is s and leg_a is s.a
    r: Route = t.by_port[s.a.port]
    assert r.destination == ("10.0.0.2", 5000) and r.out_port == s.b.port
    dec, enc = r.transforms
    assert dec is not None and dec.mode == Mode.XOR and enc is None
    rtcp = t.by_port[s.b.port + 1]
    assert rtcp.destination == ("10.0.0.1", 4001) and rtcp.transforms == (None, None)


@pytest.mark.parametrize(
    ("req", "code"),
    [
        (offer(port=0), "bad-port"),
        (offer(port=70000), "bad-port"),
        (offer(port="x"), "bad-port"),
        (offer(address="nope"), "bad-address"),
        (offer(address="fe80::1%eth0"), "bad-address"),  # scoped: no zone ids
        (offer(address="1.2.3.4" * 10), "bad-address"),
        (offer(**{"signal-address": "nope"}), "bad-address"),
        (offer(**{"signal-address": "fe80::2%lo"}), "bad-address"),
        (offer(**{"address-family": "IPv6"}), "bad-request"),
        (offer(**{"address-family": 6}), "bad-request"),
        (offer(**{"signal-address": 5}), "bad-address"),
        (offer(encryption=True, **{"encryption-mode": 3}), "bad-key"),
        (offer(encryption=True, **{"encryption-mode": 9}), "bad-mode"),
        (offer(encryption="maybe"), "bad-request"),
        ({"from-tag": "x", "address": "1.2.3.4", "port": 5}, "bad-request"),
    ],
)
def test_bad_requests(req: dict[str, object], code: str) -> None:
    t = table()
    with pytest.raises(ControlError) as exc:
        t.offer(req)
    assert exc.value.code == code
    assert t.ports.in_use == frozenset()


def test_caps_and_no_leak() -> None:
    t = table(max_sessions=10)  # the ports run out first: 4 pairs, 2 per call
    t.offer(offer("c1"))
    t.offer(offer("c2"))
    with pytest.raises(ControlError) as exc:
        t.offer(offer("c3"))
    assert exc.value.code == "ports-exhausted" and exc.value.status == 503
    assert len(t.ports.in_use) == 4
    t.delete("c1")
    t.delete("c2")
    assert t.ports.in_use == frozenset() and t.by_port == {} and len(t) == 0
    with pytest.raises(ControlError) as exc:
        t.delete("c1")
    assert exc.value.code == "unknown-call"


def test_max_sessions() -> None:
    t = SessionTable(PortAllocator(40000, 40099), Mode.NONE, b"", latching=True, max_sessions=2)
    t.offer(offer("c1"))
    t.offer(offer("c2"))
    t.offer(offer("c1", port=4100))  # a re-offer of a known call is no new session
    with pytest.raises(ControlError) as exc:
        t.offer(offer("c3"))
    assert (exc.value.code, exc.value.status) == ("too-many-sessions", 503)
    assert t.ports.used == 4
    # default: one session per two port pairs
    assert table().max_sessions == 2


def test_touch() -> None:
    now = [100.0]
    t = table(clock=lambda: now[0])
    s, _ = t.offer(offer("c1"))
    assert s.touched == 100.0
    now[0] = 150.0
    assert t.touch(["c1", "gone"]) == (1, ["gone"])
    assert s.touched == 150.0


# -- the source rule ----------------------------------------------------------------------


def latching_call(signal: str | None = "198.51.100.7") -> tuple[SessionTable, Any]:
    t = SessionTable(PortAllocator(40000, 40007), Mode.NONE, b"", latching=True)
    extra = {"signal-address": signal} if signal else {}
    s, _ = t.offer(offer(**extra))  # SDP 10.0.0.1:4000
    return t, s


def test_latch_on_sdp_address() -> None:
    t, s = latching_call()
    r = t.by_port[s.a.port]
    assert r.latch_pending
    assert t.receive(r, ("10.0.0.1", 7000)) == LATCH  # SDP IP, another port (NAT'd port)
    assert s.a.rtp_peer == ("10.0.0.1", 7000) and not r.latch_pending
    assert t.receive(r, ("10.0.0.1", 7000)) == ACCEPT
    # after the latch only that exact source: same IP other port, other IP same port
    assert t.receive(r, ("10.0.0.1", 7002)) == FOREIGN
    assert t.receive(r, ("198.51.100.7", 7000)) == FOREIGN
    assert s.a.rtp_peer == ("10.0.0.1", 7000)
    assert s.a.dropped == {FOREIGN: 2, UNLEARNED: 0} and t.drops[FOREIGN] == 2


def test_latch_on_signal_address_behind_nat() -> None:
    t, s = latching_call(signal="198.51.100.7")
    r = t.by_port[s.a.port]
    assert t.receive(r, ("203.0.113.9", 4000)) == UNLEARNED  # neither SDP nor signal IP
    assert r.latch_pending
    assert t.receive(r, ("198.51.100.7", 31000)) == LATCH  # the NAT's public address
    assert s.a.rtp_peer == ("198.51.100.7", 31000)
    assert s.a.dropped[UNLEARNED] == 1 and t.drops[UNLEARNED] == 1
    # toward A, packets now go to the latched address, not the private SDP one
    assert t.by_port[s.b.port].destination == ("198.51.100.7", 31000)


def test_no_signal_address_only_sdp_latches() -> None:
    t, s = latching_call(signal=None)
    r = t.by_port[s.a.port]
    assert t.receive(r, ("198.51.100.7", 31000)) == UNLEARNED
    assert t.receive(r, ("10.0.0.1", 4000)) == LATCH


def test_rtcp_latches_separately() -> None:
    t, s = latching_call(signal=None)
    rtp, rtcp = t.by_port[s.a.port], t.by_port[s.a.rtcp_port]
    # RTCP before RTP: candidates are the SDP and signal IPs
    assert t.receive(rtcp, ("192.0.2.50", 4001)) == UNLEARNED
    assert t.receive(rtp, ("10.0.0.1", 7000)) == LATCH
    # RTCP now also accepts the IP RTP latched to (here the same), on any port
    assert t.receive(rtcp, ("10.0.0.1", 7011)) == LATCH
    assert s.a.rtcp_peer == ("10.0.0.1", 7011) and s.a.rtp_peer == ("10.0.0.1", 7000)
    assert t.receive(rtcp, ("10.0.0.1", 7001)) == FOREIGN


def test_rtcp_candidate_is_rtp_latched_ip() -> None:
    t, s = latching_call(signal="198.51.100.7")
    rtp, rtcp = t.by_port[s.a.port], t.by_port[s.a.rtcp_port]
    assert t.receive(rtp, ("198.51.100.7", 31000)) == LATCH
    # before RTCP latches, RTCP toward A goes to the latched RTP address + 1
    assert t.by_port[s.b.rtcp_port].destination == ("198.51.100.7", 31001)
    assert t.receive(rtcp, ("203.0.113.1", 31001)) == UNLEARNED
    assert t.receive(rtcp, ("198.51.100.7", 31005)) == LATCH


def test_latching_off_is_latched_to_sdp() -> None:
    t = table(latching=False)
    s, _ = t.offer(offer(**{"signal-address": "198.51.100.7"}))
    r, rtcp = t.by_port[s.a.port], t.by_port[s.a.rtcp_port]
    assert s.a.rtp_peer == ("10.0.0.1", 4000) and s.a.rtcp_peer == ("10.0.0.1", 4001)
    assert t.receive(r, ("10.0.0.1", 4000)) == ACCEPT
    assert t.receive(r, ("10.0.0.1", 4002)) == FOREIGN  # exact match, no learning
    assert t.receive(r, ("198.51.100.7", 4000)) == FOREIGN  # the signal IP does not count
    assert t.receive(rtcp, ("10.0.0.1", 4001)) == ACCEPT
    assert t.receive(rtcp, ("10.0.0.1", 4000)) == FOREIGN
    # leg B before its answer: no SDP, nothing is accepted
    rb = t.by_port[s.b.port]
    assert t.receive(rb, ("10.0.0.2", 5000)) == UNLEARNED
    t.answer(answer())
    assert t.receive(rb, ("10.0.0.2", 5000)) == ACCEPT


def test_unchanged_reoffer_keeps_latch_changed_reopens() -> None:
    t, s = latching_call(signal="198.51.100.7")
    r = t.by_port[s.a.port]
    assert t.receive(r, ("198.51.100.7", 31000)) == LATCH
    same = offer(**{"signal-address": "198.51.100.7"})
    t.offer(same)  # a session refresh
    assert s.a.rtp_peer == ("198.51.100.7", 31000)
    t.offer(offer(port=4002, **{"signal-address": "198.51.100.7"}))  # SDP port changed
    assert s.a.rtp_peer is None and s.a.rtcp_peer is None
    assert t.receive(r, ("198.51.100.7", 31000)) == LATCH
    t.offer(offer(port=4002, **{"signal-address": "198.51.100.8"}))  # signal changed
    assert s.a.rtp_peer is None
    assert t.receive(r, ("198.51.100.7", 31000)) == UNLEARNED  # the old one is no candidate
    assert t.receive(r, ("198.51.100.8", 31000)) == LATCH
    t.offer(offer(address="10.0.0.9", port=4002, **{"signal-address": "198.51.100.8"}))
    assert s.a.rtp_peer is None  # SDP address changed


def test_answer_latches_callee_and_reanswer() -> None:
    t, s = latching_call()
    t.answer(answer(**{"signal-address": "10.0.0.2"}))
    rb = t.by_port[s.b.port]
    assert t.receive(rb, ("10.0.0.2", 5000)) == LATCH
    t.answer(answer(**{"signal-address": "10.0.0.2"}))  # same answer again
    assert s.b.rtp_peer == ("10.0.0.2", 5000)


def test_admit_is_pure() -> None:
    _t, s = latching_call()
    assert admit(s.a, False, ("10.0.0.1", 1), latching=True) == LATCH
    assert s.a.rtp_peer is None  # admit decides, receive applies
    assert admit(s.a, False, ("10.0.0.1", 1), latching=False) == UNLEARNED


def test_no_session_drops() -> None:
    t = table()
    t.no_session(3)
    assert t.drops[NO_SESSION] == 3


def test_session_roundtrip_keeps_latch_and_drops() -> None:
    from sipedge.media.session import Session

    t, s = latching_call()
    r = t.by_port[s.a.port]
    t.receive(r, ("10.0.0.1", 7000))
    t.receive(r, ("10.0.0.66", 7000))
    back = Session.from_dict(s.to_dict())
    assert back.a.rtp_peer == ("10.0.0.1", 7000) and back.a.signal == "198.51.100.7"
    assert back.a.dropped[FOREIGN] == 1 and back.a.sdp == ("10.0.0.1", 4000)
