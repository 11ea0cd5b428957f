"""Gateways by host name in the call layer: a name's targets tried in turn on silence, a name
that does not resolve failing over to the next gateway at once, with the CDR saying why.

An in-process sipd (tests/unit/test_call_garbage.py's `Stack`: transport, transactions, B2BUA
on a fake clock) whose resolver is a fake that answers from a dict, at once or when told.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sipedge.config import parse_config
from sipedge.resolver import Targets
from sipedge.sip.message import Request, Response
from tests.conftest import gateway, make_config
from tests.unit.memory_cdrs import MemoryCdrs
from tests.unit.test_call_garbage import CALLER, GW2, Stack

T1 = ("127.0.0.1", 5091)
T2 = ("127.0.0.1", 5092)


class FakeResolver:
    def __init__(self, answers: dict[str, Targets], deferred: bool = False) -> None:
        self.answers = answers
        self.deferred = deferred
        self.asked: list[tuple[str, int | None]] = []
        self.waiting: list[Callable[[], None]] = []

    def resolve(
        self, host: str, port: int | None, done: Callable[[Targets], None], transport: str = "udp"
    ) -> None:
        self.asked.append((host, port))
        found = self.answers.get(host) or Targets(host, ((host, port or 5060),))
        if self.deferred:
            self.waiting.append(lambda: done(found))
        else:
            done(found)

    def knows(self, address: str) -> bool:
        return any(address == a[0] for t in self.answers.values() for a in t.addresses)


def stack(
    tmp_path: Path, resolver: FakeResolver, port: int | None = None, **gw1: Any
) -> tuple[Stack, MemoryCdrs]:
    sipd = Stack(tmp_path)
    first = gateway("gw1", port or 5060, address="gw.test", **gw1)
    if port is None:
        del first["port"]  # no port: NAPTR/SRV apply to the name
    data = make_config(
        tmp_path,
        5060,
        8080,
        [first, gateway("gw2", GW2[1])],
        routes=[{"prefix": "44", "gateways": ["gw1", "gw2"]}],
        parameters={"SS_SIP_TIMEOUT_INVITE": 5},
    )
    sipd.b2bua.apply_config(parse_config(data))
    sipd.b2bua.resolver = resolver
    cdrs = MemoryCdrs()
    sipd.b2bua.cdrs = cdrs  # type: ignore[assignment]
    return sipd, cdrs


def invites(sipd: Stack, to: tuple[str, int]) -> list[Request]:
    return [m for m in sipd.sent(to) if isinstance(m, Request) and m.method == "INVITE"]


def caller_finals(sipd: Stack) -> list[int]:
    return [m.status for m in sipd.sent(CALLER) if isinstance(m, Response) and m.status >= 200]


def test_silence_moves_to_the_next_target_of_the_same_gateway(tmp_path: Path) -> None:
    resolver = FakeResolver({"gw.test": Targets("gw.test", (T1, T2))})
    sipd, cdrs = stack(tmp_path, resolver)
    sipd.invite()
    assert resolver.asked == [("gw.test", None)]
    first = invites(sipd, T1)[0]
    assert first.uri == "sip:4420001@gw.test"  # the name, no port: SRV gave it
    assert invites(sipd, T2) == []
    sipd.advance(5.1)  # SS_SIP_TIMEOUT_INVITE with no response at all
    ours = sipd.last_request("INVITE", T2)
    assert invites(sipd, GW2) == []  # still gw1: switching was not asked
    sipd.answer(ours, 200, T2)
    assert caller_finals(sipd) == [200]
    call = next(iter(sipd.b2bua.calls.values()))
    assert call.record.routing_gateway == "gw1"
    results = [(a.gateway, a.target, a.result) for a in call.record.attempts]
    assert results == [
        ("gw1", "127.0.0.1:5091", "timeout: invite"),
        ("gw1", "127.0.0.1:5092", "answered"),
    ]
    assert cdrs.records == []  # the call is up


def test_a_failure_response_is_the_gateways_answer_not_a_reason_to_try_its_next_target(
    tmp_path: Path,
) -> None:
    sipd, _ = stack(tmp_path, FakeResolver({"gw.test": Targets("gw.test", (T1, T2))}))
    sipd.invite()
    ours = sipd.last_request("INVITE", T1)
    sipd.answer(ours, 100, T1)
    sipd.answer(ours, 503, T1)
    assert invites(sipd, T2) == [] and len(invites(sipd, GW2)) == 1


def test_after_the_last_target_switching_decides_as_for_any_invite_timeout(
    tmp_path: Path,
) -> None:
    resolver = FakeResolver({"gw.test": Targets("gw.test", (T1, T2))})
    sipd, cdrs = stack(tmp_path, resolver, stop_switch_after_invite_timeout="On")
    sipd.invite()
    sipd.advance(5.1)
    sipd.advance(5.1)
    assert len(invites(sipd, T1)) >= 1 and len(invites(sipd, T2)) >= 1
    assert invites(sipd, GW2) == []  # R5c: stop after the INVITE timeout, 408
    assert caller_finals(sipd) == [408]
    record = cdrs.records[-1]
    assert [a.result for a in record.attempts] == ["timeout: invite", "timeout: invite"]
    assert record.switch_stop_reason == "stop after INVITE timeout"
    assert record.attempts[-1].stop_reason == "stop after INVITE timeout"


def test_a_name_that_does_not_resolve_fails_over_at_once(tmp_path: Path) -> None:
    resolver = FakeResolver({"gw.test": Targets("gw.test", (), "NXDOMAIN")})
    sipd, cdrs = stack(tmp_path, resolver)
    sipd.invite()
    ours = sipd.last_request("INVITE", GW2)  # no INVITE went anywhere else, no wait
    sipd.answer(ours, 486, GW2)
    assert caller_finals(sipd) == [486]
    record = cdrs.records[-1]
    assert [(a.gateway, a.result, a.target) for a in record.attempts] == [
        ("gw1", "dns-failure: gw.test: NXDOMAIN", ""),
        ("gw2", "486", "127.0.0.1:5082"),
    ]
    assert sipd.b2bua.stats.unresolved == 1 and sipd.b2bua.stats.attempts == 1


def test_the_last_gateway_unresolved_gives_the_caller_503(tmp_path: Path) -> None:
    resolver = FakeResolver({"gw.test": Targets("gw.test", (), "timeout")})
    sipd, cdrs = stack(tmp_path, resolver)
    sipd.b2bua.routes = type(sipd.b2bua.routes)([("44", ["gw1"])])
    sipd.invite()
    assert caller_finals(sipd) == [503]
    record = cdrs.records[-1]
    assert record.attempts[0].result == "dns-failure: gw.test: timeout"
    assert record.attempts[0].stop_reason == record.switch_stop_reason == "no more gateways"


def test_a_cancel_while_the_name_is_looked_up(tmp_path: Path) -> None:
    resolver = FakeResolver({"gw.test": Targets("gw.test", (T1,))}, deferred=True)
    sipd, cdrs = stack(tmp_path, resolver)
    invite = sipd.invite()
    assert sipd.sent(T1) == []
    sipd.caller_request(invite, "CANCEL", 1)
    assert 487 in caller_finals(sipd)
    resolver.waiting.pop()()  # the answer comes after the call ended: nothing is sent
    assert invites(sipd, T1) == [] and invites(sipd, GW2) == []
    assert cdrs.records[-1].attempts == []


@pytest.mark.parametrize("port", [None, 5070])
def test_the_port_given_decides_between_srv_and_a(tmp_path: Path, port: int | None) -> None:
    resolver = FakeResolver({"gw.test": Targets("gw.test", (T1,))})
    sipd, _ = stack(tmp_path, resolver, port)
    sipd.invite()
    assert resolver.asked == [("gw.test", port)]
    uri = sipd.last_request("INVITE", T1).uri
    assert uri == ("sip:4420001@gw.test" if port is None else "sip:4420001@gw.test:5070")


def test_the_addresses_a_gateway_name_resolved_to_are_gateways(tmp_path: Path) -> None:
    resolver = FakeResolver({"gw.test": Targets("gw.test", (("192.0.2.44", 5060),))})
    sipd, _ = stack(tmp_path, resolver)
    assert sipd.b2bua.is_gateway("192.0.2.44")
    assert not sipd.b2bua.is_gateway("192.0.2.45")
