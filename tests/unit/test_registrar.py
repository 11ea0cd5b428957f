"""The registrar's rules (pure): expiry, NAT detection, bindings, replace, suspension."""

from __future__ import annotations

import pytest

from sipedge.registrar.rules import (
    AuthGuard,
    BindingTable,
    Outcome,
    behind_nat,
    decide_expiry,
    parse_expires,
)
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
