"""The registrar's rules (pure): expiry, NAT detection, bindings, replace, suspension."""

from __future__ import annotations

import pytest

from sipedge.config import parse_config
from sipedge.registrar.rules import (
    AuthGuard,
    BindingTable,
    Outcome,
    behind_nat,
    decide_expiry,
    parse_expires,
)
from sipedge.registrar.service import EndpointService
from sipedge.sip.digest import answer_challenge, pick_challenge
from sipedge.sip.message import Request, Response, new_tag, parse_message
from sipedge.store import Binding


@pytest.mark.parametrize(
    ("asked", "nat", "granted"),
    [
        (None, False, 3600),
        (None, True, 300),
        (7200, False, 3600),
        (7200, True, 300),
        (120, False, 120),
        (60, True, 60),
        (59, False, None),  # 423
        (1, True, None),
    ],
)
def test_expiry(asked: int | None, nat: bool, granted: int | None) -> None:
    assert decide_expiry(asked, nat, 3600, 300).granted == granted


def test_parse_expires_contact_param_wins() -> None:
    assert parse_expires("30", "3600") == 30
    assert parse_expires(None, "3600") == 3600
    assert parse_expires(None, None) is None
    with pytest.raises(ValueError):
        parse_expires("soon", None)


def test_nat_detection() -> None:
    src = ("203.0.113.5", 40000)
    assert behind_nat(src, "192.168.1.10", 5060, "192.168.1.10", 5060)
    assert behind_nat(src, "203.0.113.5", 40000, "192.168.1.10", 5060)  # Contact differs
    assert not behind_nat(src, "203.0.113.5", 40000, "203.0.113.5", 40000)
    assert not behind_nat(("10.0.0.1", 5060), "10.0.0.1", None, "10.0.0.1", None)


def binding(account: str, call_id: str, port: int, now: float, nat: bool = True) -> Binding:
    return Binding(account, f"sip:{account}@10.0.0.{port % 250}:{port}", ("198.51.100.1", port),
                   nat, now + 300, call_id, 1, now)  # fmt: skip


def test_replace_rules() -> None:
    t = BindingTable()
    assert t.register(binding("a", "c1", 5000, 0), replace=False, now=0) == Outcome.OK
    # a refresh of the same device (same Call-ID) is always fine
    assert t.register(binding("a", "c1", 5000, 10), replace=False, now=10) == Outcome.OK
    # another device while the first lives: refused when replace is Off ...
    assert t.register(binding("a", "c2", 5001, 20), False, 20) == Outcome.REFUSED_EXISTS
    # ... and taken when On
    assert t.register(binding("a", "c2", 5001, 20), True, 20) == Outcome.OK
    assert t.get("a", 20).source == ("198.51.100.1", 5001)  # type: ignore[union-attr]
    # once the old one expired, a new device is welcome even with replace Off
    assert t.register(binding("a", "c3", 5002, 400), False, 400) == Outcome.OK


def test_expiry_and_nat_device_list_order() -> None:
    t = BindingTable()
    t.register(binding("b", "1", 5001, 0), True, 0)
    t.register(binding("a", "2", 5002, 1), True, 1)
    t.register(binding("c", "3", 5003, 2, nat=False), True, 2)
    v = t.version
    assert t.nat_devices(5) == [("198.51.100.1", 5001), ("198.51.100.1", 5002)]
    assert t.expire(300.5) == ["b"] and t.version > v
    assert t.nat_devices(300.5) == [("198.51.100.1", 5002)]


def test_suspension_per_account_and_per_source() -> None:
    g = AuthGuard(retry=3, suspend=180)
    assert not g.failure("alice", "1.1.1.1", 0)
    assert not g.failure("alice", "1.1.1.1", 1)
    assert g.failure("alice", "1.1.1.1", 2)  # the third in a row suspends both
    assert g.suspended("alice", "9.9.9.9", 100)  # the account, from anywhere
    assert g.suspended(None, "1.1.1.1", 100)  # the source, whatever account
    assert not g.suspended("alice", "9.9.9.9", 182.1)
    # a success resets the count
    g.failure("bob", "2.2.2.2", 300)
    g.failure("bob", "2.2.2.2", 301)
    g.success("bob", "2.2.2.2")
    assert not g.failure("bob", "2.2.2.2", 302)
    # unknown accounts only count against the source
    for t in range(3):
        g.failure(None, "3.3.3.3", 400 + t)
    assert g.suspended(None, "3.3.3.3", 403) and not g.suspended("x", "4.4.4.4", 403)


# -- the service's answers: one shape for unknown, wrong and suspended -------------------------


class FakeTx:
    """A server transaction that records how it was answered."""

    def __init__(self, request: Request, source: tuple[str, int]) -> None:
        self.request, self.source = request, source
        self.answers: list[tuple[str, Response]] = []

    def respond(self, response: Response) -> None:
        self.answers.append(("stateful", response))

    def respond_stateless(self, response: Response) -> None:
        self.answers.append(("stateless", response))


class Clock:
    now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def service(clock: Clock, retry: int = 3) -> EndpointService:
    config = parse_config(
        {
            "node": {"name": "edge"},
            "parameters": {"SS_ENDPOINT_REGISTER_RETRY": retry, "SS_ENDPOINT_REGISTER_SUSPEND": 60},
            "endpoints": [{"account": "alice", "password": "secret"}],
        }
    )
    return EndpointService(config, None, clock=clock)


def register(
    svc: EndpointService, user: str, password: str | None, src: str = "198.51.100.7"
) -> tuple[str, Response]:
    """One REGISTER for `user` (answering a fresh challenge when `password` is given)."""

    def send(auth: str | None) -> tuple[str, Response]:
        lines = [
            "REGISTER sip:edge SIP/2.0",
            f"Via: SIP/2.0/UDP {src}:5060;branch=z9hG4bK{new_tag()}",
            f"From: <sip:{user}@edge>;tag=1",
            f"To: <sip:{user}@edge>",
            "Call-ID: c1",
            "CSeq: 1 REGISTER",
            f"Contact: <sip:{user}@{src}:5060>",
            *([f"Authorization: {auth}"] if auth else []),
            "Content-Length: 0",
        ]
        request = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
        assert isinstance(request, Request)
        tx = FakeTx(request, (src, 5060))
        svc.on_register(tx)  # type: ignore[arg-type]
        assert len(tx.answers) == 1
        return tx.answers[0]

    kind, first = send(None)
    if password is None:
        return kind, first
    challenge = pick_challenge(first.headers.get_all("WWW-Authenticate"))
    assert challenge is not None
    return send(answer_challenge(challenge, user=user, password=password, method="REGISTER",
                                 uri="sip:edge"))  # fmt: skip


def shape(answer: tuple[str, Response]) -> tuple[object, ...]:
    kind, r = answer
    names = [n for n, _ in r.headers.items()]
    return kind, r.status, r.reason, names


def test_unknown_wrong_and_suspended_look_the_same() -> None:
    clock = Clock()
    svc = service(clock, retry=3)
    unknown = register(svc, "mallory", "guess", src="203.0.113.1")
    wrong = register(svc, "alice", "guess", src="203.0.113.2")
    assert shape(unknown) == shape(wrong) == ("stateless", 403, "Forbidden", shape(wrong)[3])
    # the first requests (no credentials) too: the same challenge, stateless
    assert shape(register(svc, "mallory", None)) == shape(register(svc, "alice", None))
    assert register(svc, "alice", None)[1].status == 401
    # suspend alice from several sources (the sources stay below their own limit)
    register(svc, "alice", "guess", src="203.0.113.3")
    register(svc, "alice", "guess", src="203.0.113.4")
    assert svc.guard.suspended("alice", "192.0.2.1", clock.now)
    # suspended: still a challenge first, and the right password gets the same 403
    assert shape(register(svc, "alice", None, src="192.0.2.1")) == shape(
        register(svc, "mallory", None, src="192.0.2.1")
    )
    suspended = register(svc, "alice", "secret", src="192.0.2.1")
    assert shape(suspended) == shape(wrong)
    assert svc.stats.suspended_rejects == 1
    # ... until the suspension ends
    clock.now += 61
    ok = register(svc, "alice", "secret", src="192.0.2.1")
    assert ok[0] == "stateful" and ok[1].status == 200


def test_a_suspended_source_is_refused_like_a_wrong_password() -> None:
    clock = Clock()
    svc = service(clock, retry=2)
    for user in ("mallory", "trudy"):  # unknown accounts count against the source
        assert register(svc, user, "x", src="203.0.113.9")[1].status == 403
    assert svc.guard.suspended(None, "203.0.113.9", clock.now)
    assert shape(register(svc, "alice", "secret", src="203.0.113.9")) == shape(
        register(svc, "alice", "guess", src="203.0.113.10")
    )


def test_the_failure_table_is_bounded_and_keeps_the_newest() -> None:
    guard = AuthGuard(retry=1, suspend=600, max_tracked=4)
    for i in range(10):  # every failure suspends: a table full of suspensions
        guard.failure(None, f"192.0.2.{i}", now=0.0)
    assert len(guard) == 4
    assert guard.suspended(None, "192.0.2.9", now=1.0)  # the newest kept, the oldest gone
    assert not guard.suspended(None, "192.0.2.0", now=1.0)
