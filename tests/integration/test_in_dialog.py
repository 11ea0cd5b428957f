"""In-dialog requests through the B2BUA, both directions, SIPp on each side.

After the answer, a request on either leg is re-originated on the other leg with that leg's
own Call-ID, tags and CSeq, carrying the body; its final response comes back with the answer's
body, and the ACK of a re-INVITE is relayed (docs/call-control.md, "Dialogs and in-dialog
requests"). The traces of both SIPp peers say what each side actually received.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import free_port, gateway
from tests.sipp.harness import Sipp, SippMessage, SippResult

pytestmark = [pytest.mark.sipp, pytest.mark.slow]


def tag(value: str | None) -> str | None:
    match = re.search(r";\s*tag=([^;>\s]+)", value or "")
    return match.group(1) if match else None


def cseq(message: SippMessage) -> tuple[int, str]:
    number, method = (message.header("CSeq") or "").split()
    return int(number), method


def only(messages: list[SippMessage], what: str) -> SippMessage:
    assert len(messages) == 1, f"{what}: {[str(m) for m in messages]}"
    return messages[0]


def requests(result: SippResult, direction: str, method: str) -> list[SippMessage]:
    """Requests of `method`, retransmissions folded (same CSeq and branch counted once)."""
    found = result.sent(method) if direction == "sent" else result.received(method)
    seen: set[tuple[str | None, str | None]] = set()
    out = []
    for m in found:
        key = (m.header("CSeq"), m.branch)
        if key not in seen:
            seen.add(key)
            out.append(m)
    return out


def final(result: SippResult, direction: str, method: str, cseq_number: int) -> SippMessage:
    """The (first) final response to the request `cseq_number method`."""
    found = result.sent() if direction == "sent" else result.received()
    for m in found:
        if (
            not m.is_request
            and (m.status or 0) >= 200
            and m.header("CSeq") == f"{cseq_number} {method}"
        ):
            return m
    raise AssertionError(f"no final to {cseq_number} {method}:\n{result.describe()}")


def run_call(
    sipd: Any, gw_port: int, uac: str, uas: str, number: str = "4420001"
) -> tuple[SippResult, SippResult]:
    with Sipp(uas, port=gw_port, calls=1, timeout=30) as gw:
        caller = Sipp(
            uac, port=free_port(), remote=sipd.sip_target, calls=1, timeout=30, service=number
        )
        caller.start()
        caller_result = caller.wait(40)
        gw_result = gw.wait(20) if caller_result.ok else gw.stop(grace=1)
    return caller_result, gw_result


# ---------------------------------------------------------------------------------------------


def dialog_ids(message: SippMessage) -> tuple[str | None, str | None, str | None]:
    """Call-ID, From tag, To tag."""
    return message.call_id, tag(message.header("From")), tag(message.header("To"))


def test_in_dialog_requests_from_the_caller(sipd_factory: Any) -> None:
    port = free_port()
    sipd = sipd_factory([gateway("gw1", port)])
    caller, gw = run_call(sipd, port, "uac_in_dialog", "uas_answer_accept_in_dialog")
    assert caller.ok, caller.describe() + sipd.log()
    assert gw.ok, gw.describe()

    # the gateway leg: our own dialog, fixed by the initial INVITE and the gateway's 200
    invites = requests(gw, "received", "INVITE")
    assert [cseq(m) for m in invites] == [(1, "INVITE"), (2, "INVITE")], gw.describe()
    initial, reinvite = invites
    gw_tag = tag(gw.sent(200)[0].header("To"))
    leg = (initial.call_id, tag(initial.header("From")), gw_tag)
    caller_invite = requests(caller, "sent", "INVITE")[0]
    assert leg[0] != caller_invite.call_id
    assert leg[1] != tag(caller_invite.header("From"))

    # every in-dialog request reached the gateway in the gateway leg's dialog, with the
    # gateway leg's own CSeq (the caller's were 21..25)
    in_dialog = [
        m for m in gw.received() if m.is_request and m is not initial and m.method != "ACK"
    ]
    in_dialog += requests(gw, "received", "ACK")
    for m in in_dialog:
        assert dialog_ids(m) == leg, m.text
    order = [
        cseq(m)
        for m in sorted(
            {m.header("CSeq"): m for m in in_dialog}.values(), key=lambda m: m.timestamp
        )
    ]
    assert order == [
        (1, "ACK"),
        (2, "INVITE"),
        (2, "ACK"),
        (3, "UPDATE"),
        (4, "INFO"),
        (5, "OPTIONS"),
        (6, "BYE"),
    ], gw.describe()

    # re-INVITE: the caller's new offer to the gateway, the gateway's answer to the caller,
    # then the caller's ACK to the gateway
    assert "s=caller-reinvite" in reinvite.body and "a=sendonly" in reinvite.body
    assert reinvite.header("Content-Type") == "application/sdp"
    answer = final(caller, "received", "INVITE", 21)
    assert answer.status == 200
    assert "s=gw-reinvite-answer" in answer.body and "a=recvonly" in answer.body
    assert answer.header("Content-Type") == "application/sdp"
    assert answer.header("Contact"), answer.text  # a 2xx to INVITE carries a Contact
    reinvite_ack = [m for m in requests(gw, "received", "ACK") if cseq(m) == (2, "ACK")]
    assert len(reinvite_ack) == 1 and reinvite_ack[0].timestamp > reinvite.timestamp

    # UPDATE with SDP both ways
    update = only(requests(gw, "received", "UPDATE"), "UPDATE at the gateway")
    assert "s=caller-update" in update.body
    update_answer = final(caller, "received", "UPDATE", 22)
    assert update_answer.status == 200 and "s=gw-update-answer" in update_answer.body

    # INFO with its body and Content-Type; the request with the unknown To tag never left
    info = only(requests(gw, "received", "INFO"), "INFO at the gateway")
    assert info.header("Content-Type") == "application/dtmf-relay"
    assert "Signal=5" in info.body and "Duration=160" in info.body
    assert final(caller, "received", "INFO", 23).status == 200

    # OPTIONS in the dialog is relayed (not answered by the B2BUA itself)
    only(requests(gw, "received", "OPTIONS"), "OPTIONS at the gateway")
    assert final(caller, "received", "OPTIONS", 24).status == 200

    # an in-dialog request for a dialog we do not have: 481, and nothing forwarded
    bad = final(caller, "received", "INFO", 70)
    assert bad.status == 481 and tag(bad.header("To")) == "no-such-dialog"
    assert not any("Signal=9" in m.body for m in gw.received())

    # BYE from the caller ends both legs
    assert final(caller, "received", "BYE", 25).status == 200
    only(requests(gw, "received", "BYE"), "BYE at the gateway")
    records = sipd.cdrs(wait_for=1)
    assert records and records[0]["release_side"] == "caller", records
    assert records[0]["answer_time"] is not None


def test_in_dialog_requests_from_the_callee(sipd_factory: Any) -> None:
    port = free_port()
    sipd = sipd_factory([gateway("gw1", port)])
    caller, gw = run_call(sipd, port, "uac_accept_in_dialog", "uas_answer_then_reinvite")
    assert caller.ok, caller.describe() + sipd.log()
    assert gw.ok, gw.describe()

    # the caller leg: the caller's dialog (its Call-ID, its tag as To, our To tag as From)
    caller_invite = requests(caller, "sent", "INVITE")[0]
    our_tag = tag(final(caller, "received", "INVITE", 20).header("To"))
    assert our_tag
    leg = (caller_invite.call_id, our_tag, tag(caller_invite.header("From")))
    received = [m for m in caller.received() if m.is_request]
    assert received, caller.describe()
    for m in received:
        assert dialog_ids(m) == leg, m.text
    gw_invite = requests(gw, "received", "INVITE")[0]
    assert gw_invite.call_id != caller_invite.call_id

    # the caller leg's own CSeq space (the gateway used 101..105), in order
    seen = sorted({m.header("CSeq"): m for m in received}.values(), key=lambda m: m.timestamp)
    methods = [cseq(m)[1] for m in seen]
    numbers = [cseq(m)[0] for m in seen]
    assert methods == ["INVITE", "ACK", "UPDATE", "INFO", "OPTIONS", "BYE"], caller.describe()
    assert numbers[0] == numbers[1]  # the ACK of the re-INVITE carries its CSeq
    assert numbers[1:] == sorted(set(numbers[1:])), numbers
    assert not set(numbers) & {101, 102, 103, 104, 105}, numbers

    # re-INVITE from the callee: its offer to the caller, the caller's answer back, the ACK
    reinvite = only(requests(caller, "received", "INVITE"), "re-INVITE at the caller")
    assert "s=gw-reinvite" in reinvite.body and "a=sendonly" in reinvite.body
    answer = final(gw, "received", "INVITE", 101)
    assert answer.status == 200
    assert "s=caller-reinvite-answer" in answer.body and "a=recvonly" in answer.body
    assert answer.header("Contact"), answer.text

    # UPDATE, INFO (with its body), OPTIONS
    update = only(requests(caller, "received", "UPDATE"), "UPDATE at the caller")
    assert "s=gw-update" in update.body
    update_answer = final(gw, "received", "UPDATE", 102)
    assert update_answer.status == 200 and "s=caller-update-answer" in update_answer.body
    info = only(requests(caller, "received", "INFO"), "INFO at the caller")
    assert info.header("Content-Type") == "application/dtmf-relay"
    assert "Signal=7" in info.body and "Duration=250" in info.body
    assert final(gw, "received", "INFO", 103).status == 200
    assert final(gw, "received", "OPTIONS", 104).status == 200

    # BYE from the callee ends both legs
    assert final(gw, "received", "BYE", 105).status == 200
    records = sipd.cdrs(wait_for=1)
    assert records and records[0]["release_side"] == "callee", records
