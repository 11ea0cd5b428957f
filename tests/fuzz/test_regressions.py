"""Every fuzz finding, minimized, as a regression test (tests/fuzz/long_run.py finds them)."""

from __future__ import annotations

import pytest

from tests.fuzz.harness import Stack

FINDINGS = {
    # long run, seed 0: a response whose Via passes the parser's quick check (";>branch=")
    # but not the full parse raised ParseError out of the transaction layer.
    "response Via with a bad parameter": (
        b"SIP/2.0 121 x\r\nCSeq: 94 REFER\r\nCall-ID: c2@fuzz\r\nTo: <sip:a@b>\r\n"
        b"From: <sip:c@d>;tag=t1\r\nVia: SIP/2.0/UDP h.example:1481;>branch=z9hG4bK1\r\n\r\n"
    ),
    # long run, seed 0: a 2xx to INVITE with a From that does not parse reached the B2BUA's
    # stray-response handling, which read its tag and raised.
    "stray 2xx with a broken From": (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\nCall-ID: c1@fuzz\r\n"
        b"f: <sip:alice@y.example>gtag=t2\r\nCSeq: 2 INVITE\r\nTo: <sip:b@y>;tag=t1\r\n\r\n"
    ),
}


@pytest.mark.parametrize("name", sorted(FINDINGS))
def test_finding(name: str) -> None:
    stack = Stack()
    stack.feed(FINDINGS[name], ("127.0.0.1", 5060))
    stack.settle()
