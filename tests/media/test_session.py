"""Port allocator and session table: pure state."""

from __future__ import annotations

import pytest

from sipedge.media.crypto import Mode
from sipedge.media.ports import PortAllocator, PortsExhausted
from sipedge.media.session import ControlError, Route, SessionTable


def test_ports_even_pairs_never_twice() -> None:
    ports = PortAllocator(20001, 20010)
    got = [ports.allocate() for _ in range(ports.capacity)]
    assert got == [20002, 20004, 20006, 20008]  # 20010 has no 20011 in range
    assert len(set(got)) == len(got)
    with pytest.raises(PortsExhausted):
        ports.allocate()
    ports.release(20004)
    assert ports.allocate() == 20004


def test_ports_probe_skips_busy() -> None:
    ports = PortAllocator(30000, 30007)
    assert ports.allocate(lambda p: p != 30000) == 30002
    assert ports.in_use == {30002}


def table(**kw: object) -> SessionTable:
    return SessionTable(PortAllocator(40000, 40007), Mode.XOR, b"secret", latching=False, **kw)  # type: ignore[arg-type]


def offer(call: str = "c1", **kw: object) -> dict[str, object]:
    req: dict[str, object] = {
        "call-id": call,
        "from-tag": "ta",
        "address": "10.0.0.1",
        "port": 4000,
    }
    req.update(kw)
    return req


def test_offer_answer_routes() -> None:
    t = table()
    s, leg_b = t.offer(offer(encryption=True))
    assert leg_b is s.b and s.a.port != s.b.port
    s2, leg_a = t.answer(
        {"call-id": "c1", "from-tag": "ta", "to-tag": "tb", "address": "10.0.0.2", "port": 5000}
    )
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
        (offer(address="::1"), "bad-address"),
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


def test_exhaustion_and_no_leak() -> None:
    t = table()
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


def test_latching() -> None:
    t = SessionTable(PortAllocator(40000, 40007), Mode.NONE, b"", latching=True)
    s, _ = t.offer(offer())
    r = t.by_port[s.a.port]
    assert r.latch_pending
    assert t.latch(r, ("192.0.2.9", 7000))
    assert s.a.remote == ("192.0.2.9", 7000) and not r.latch_pending
    assert not t.latch(r, ("192.0.2.10", 7000))  # latched once
