"""Whether an attempt's final failure is answered by sending its INVITE once more.

Two final responses ask for a second INVITE in the same attempt (same Call-ID and tags, CSeq
+ 1, a new branch: `sip.dialog.resend_request`), each at most once per attempt:

* 422 Session Interval Too Small (RFC 4028 section 7.1): again with the gateway's Min-SE as
  Session-Expires and Min-SE (`session_timer.retry_after_422`);
* 401/407 from a gateway with credentials (RFC 3261 22.2): again with Authorization or
  Proxy-Authorization (`carrier_auth`, which also notes the challenge in the attempt record).

Owns: `retry_headers`, the decision and the headers the second INVITE sets.
Must not: send, or end the attempt: `calls.call` does either with the answer.
"""

from __future__ import annotations

from sipedge.calls.attempt import Attempt, CallStats
from sipedge.calls.carrier_auth import CHALLENGES, Answer, on_challenge
from sipedge.calls.session_timer import TimerSettings, retry_after_422
from sipedge.sip.message import Response

Header = tuple[str, str]


def retry_headers(
    attempt: Attempt, response: Response, settings: TimerSettings, stats: CallStats
) -> tuple[Header, ...] | None:
    """The headers to set on the attempt's INVITE sent once more, or None: the response is
    the attempt's failure. Marks the attempt (and counts a challenge) when it answers."""
    if response.status == 422 and not attempt.retried_422:
        interval = retry_after_422(settings, response.headers.get("Min-SE"))
        if interval is None:
            return None
        attempt.retried_422 = True
        return (("Session-Expires", str(interval)), ("Min-SE", str(interval)))
    if response.status in CHALLENGES:
        decision = on_challenge(
            attempt.record, attempt.gateway.credentials, attempt.invite, response
        )
        stats.count_challenge(decision.result)
        if isinstance(decision, Answer):
            return ((decision.header, decision.value),)
    return None
