"""What call control reports about carriers: the `CarrierEvents` Protocol and the reasons.

Owns: `CarrierEvents` (implemented by `sipedge.stats.CarrierStats`; `NO_EVENTS` when nothing
listens), the bounded vocabulary of why an attempt or a call did not answer (`attempt_reason`,
`call_reason`) and the small steps `call.py` takes at each event (`invite_sent`,
`progressed`, `attempt_ended`, `call_pdd`), so that the call keeps one line per event.
Must not: send, arm timers, or import `call`/`service` (they import it). Times are the wall
clock of the CDR (`time.time()`), as `AttemptRecord` and `CallRecord` keep them.

Reasons (labels of `sipedge_carrier_switch_reasons`, a fixed set): per routing attempt
`timeout-invite`, `timeout-trying`, `timeout-ringing`, `timeout-session-progress`,
`transport-failure`, `dns-failure` (reported as `attempt_unresolved`), `3xx`, `4xx`, `5xx`,
`6xx`, `media-refused`, `caller-cancelled`, `terminated`; per mapping call the switching stop
reason (`calls.switching.StopReason`'s name, lower case with dashes), `media-refused` or
`terminated`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sipedge.calls.attempt import Attempt
from sipedge.calls.switching import StopReason
from sipedge.store import CallRecord

ANSWERED = "answered"  # the result call.py gives an answered attempt


class CarrierEvents(Protocol):
    """Attempts and calls as the carrier statistics see them (gateway names, reasons, seconds)."""

    def attempt_started(self, gateway: str) -> None:
        """The first INVITE of an attempt went to routing gateway `gateway`."""

    def attempt_ended(self, gateway: str, reason: str | None, pdd: float | None) -> None:
        """The attempt settled: answered (`reason` None) or not; `pdd` None: no 18x/2xx."""

    def attempt_unresolved(self, gateway: str) -> None:
        """The gateway's name did not resolve: an attempt that sent nothing."""

    def call_started(self, mapping: str | None) -> None:
        """A call from mapping gateway `mapping` (None: not from one) was admitted."""

    def call_answered(self, mapping: str | None, pdd: float | None) -> None:
        """The call was answered; `pdd`: its INVITE to the first 18x/2xx relayed back."""

    def call_ended(
        self,
        mapping: str | None,
        gateway: str | None,
        duration: float | None,
        reason: str,
        pdd: float | None,
    ) -> None:
        """The call ended: answered through `gateway` (`duration` in seconds), or not (None,
        `reason` says why)."""


class _NoEvents:
    def attempt_started(self, gateway: str) -> None:
        pass

    def attempt_ended(self, gateway: str, reason: str | None, pdd: float | None) -> None:
        pass

    def attempt_unresolved(self, gateway: str) -> None:
        pass

    def call_started(self, mapping: str | None) -> None:
        pass

    def call_answered(self, mapping: str | None, pdd: float | None) -> None:
        pass

    def call_ended(
        self,
        mapping: str | None,
        gateway: str | None,
        duration: float | None,
        reason: str,
        pdd: float | None,
    ) -> None:
        pass


NO_EVENTS: CarrierEvents = _NoEvents()


def attempt_reason(result: str, status: int | None) -> str | None:
    """The reason label of an attempt's end as call.py records it (`AttemptRecord.result`,
    status); None when it was answered."""
    if result == ANSWERED:
        return None
    if result.startswith("timeout: "):
        return "timeout-" + result.removeprefix("timeout: ").replace(" ", "-")
    if result.startswith("transport"):
        return "transport-failure"
    if result == "cancelled":
        return "caller-cancelled"
    if result == "terminated":
        return "terminated"
    if result.isdigit() and status is not None and 300 <= status <= 699:
        return f"{status // 100}xx"
    return "media-refused"  # a media policy refusal: its reason code is the result


_STOP_REASONS = {r.value: r.name.lower().replace("_", "-") for r in StopReason}


def call_reason(record: CallRecord) -> str:
    """The reason label of an unanswered call: why switching stopped, else why it ended."""
    return stop_reason_label(record.switch_stop_reason, record.final_status)


def stop_reason_label(switch_stop_reason: str, final_status: int) -> str:
    """`call_reason` from a CDR's two columns (the fleet's statistics read them back)."""
    reason = _STOP_REASONS.get(switch_stop_reason)
    if reason is not None:
        return reason
    if final_status == 503:  # ended during setup by shutdown or an operator
        return "terminated"
    return "media-refused"  # the caller's SDP refused before any gateway was tried


def invite_sent(events: CarrierEvents, attempt: Attempt, now: float) -> None:
    """An INVITE of `attempt` left: the first one starts its PDD (a 401/407/422 re-send not)."""
    if attempt.sent_at is None:
        attempt.sent_at = now
        events.attempt_started(attempt.gateway.name)


def progressed(attempt: Attempt, status: int, now: float) -> None:
    """A response of `attempt`: the first 18x/2xx ends its PDD."""
    if 100 < status < 300 and attempt.progress_at is None:
        attempt.progress_at = attempt.record.progress = now


def attempt_ended(events: CarrierEvents, attempt: Attempt, result: str, status: int | None) -> None:
    """The attempt ended with `result` (once; only an attempt whose INVITE left counts)."""
    if attempt.sent_at is None:
        return
    pdd = None if attempt.progress_at is None else attempt.progress_at - attempt.sent_at
    attempt.record.pdd = pdd  # in the CDR too: the fleet's statistics (stats/fleet.py)
    events.attempt_ended(attempt.gateway.name, attempt_reason(result, status), pdd)


def call_pdd(setup_time: float, attempts: Sequence[Attempt]) -> float | None:
    """The caller's PDD: from its INVITE to the first 18x/2xx of any attempt."""
    seen = [a.progress_at for a in attempts if a.progress_at is not None]
    return min(seen) - setup_time if seen else None
