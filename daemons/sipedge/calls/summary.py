"""What the management API shows of a call in progress: `call_summary` and `media_path`.

Owns: the JSON shape of `/api/calls` (and so of the operator console's live calls).
Must not: change a call, talk to mediad, or import calls/service.py (which lists the calls).
"""

from __future__ import annotations

from sipedge.calls.call import Call
from sipedge.calls.media_session import CALLEE, CALLER
from sipedge.sip.message import hostport


def call_summary(call: Call) -> dict[str, object]:
    current = call.current
    return {
        "call_id": call.id,
        "state": call.state.value,
        "caller": call.caller_number,
        "callee": call.callee_number,
        "source": hostport(call.source[0], call.source[1]),
        "mapping_gateway": call.mapping_gateway,
        "setup_time": call.record.setup_time,
        "answer_time": call.record.answer_time,
        "attempts": len(call.attempts),
        "current_attempt": None
        if current is None
        else {
            "index": current.index,
            "gateway": current.gateway.name,
            "gateway_address": hostport(current.gateway.address, current.gateway.port),
            "phase": current.tracker.phase.value,
            "sdp_seen": current.tracker.sdp_seen,
            "rtp_started": current.tracker.rtp_started,
        },
        "media": media_path(call),
    }


def media_path(call: Call) -> dict[str, object]:
    """Where the current attempt's media flows: through mediad (the relay addresses each side
    sends to, which legs are encrypted) or, with no relay session, straight between them."""
    current = call.current
    session = call.media.sessions.get(current.index) if current is not None else None
    if session is None or not session.streams:
        return {"relayed": False}

    def sends_to(leg: str) -> list[str]:
        return [hostport(e.address, e.port) for _, e in sorted(session.relay_for[leg].items())]

    return {
        "relayed": True,
        "caller_sends_to": sends_to(CALLER),
        "callee_sends_to": sends_to(CALLEE),
        "encrypted": [leg for leg, c in sorted(session.crypto.items()) if c.encrypted],
        "on_hold": session.on_hold,
    }
