"""Safety for answered calls whose endpoints never hang up: the RTP timeout and the maximum
call duration.

RTP timeout (`SS_RTP_TIMEOUT`): the call is ended (BYE to both sides, CDR cause "RTP timeout")
when no RTP has reached the relay in either direction, on any stream, for that many seconds.
The clock starts at the answer and restarts at every new SDP (a re-INVITE to a new address,
say); it does not run while either side has put the call on hold (a=sendonly/recvonly/inactive
or c=0.0.0.0), and it never fires when mediad cannot be asked (a relay problem is not the
endpoints' silence). One-way audio (a muted phone with VAD) is not silence.

Maximum duration (`SS_MAX_CALL_DURATION`): the call is ended that many seconds after the
answer, CDR cause "max call duration".

Owns: the silence and duration checks (pure: `rtp_idle`, `last_packet`, `check_interval`) and
`CallWatchdog`, the timer and polling task of one answered call.
Must not: end a call itself or import `media_link`: it asks and reports through `WatchedMedia`,
which `media_link.CallMedia` implements. Driven by: `media_link`, from the answer on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, Protocol

from sipedge.calls.media_session import Session, WatchSettings

RTP_TIMEOUT = "RTP timeout"
MAX_DURATION = "max call duration"


def check_interval(timeout: float) -> float:
    """How often to ask mediad: a quarter of the timeout, between 0.2 and 5 s."""
    return min(5.0, max(0.2, timeout / 4))


def rtp_idle(now: float, last_packet: float | None, since: float, timeout: float) -> bool:
    """True when neither direction has carried RTP for `timeout` seconds, counting from the
    later of the last packet and `since` (the answer, or the last SDP change)."""
    last = max(last_packet or 0.0, since)
    return now - last >= timeout


def last_packet(legs: list[dict[str, Any]]) -> float | None:
    times = [float(leg["last-packet"]) for leg in legs if leg.get("last-packet")]
    return max(times) if times else None


class WatchedMedia(Protocol):
    """What the watchdog uses of one call's media (`media_link.CallMedia` implements it)."""

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...

    async def query(self, session: Session) -> list[dict[str, Any]] | None: ...

    def end_call(self, cause: str) -> None: ...


class CallWatchdog:
    def __init__(self, media: WatchedMedia, session: Session | None, settings: WatchSettings):
        self.media = media
        self.session = session
        self.settings = settings
        self.started = time.time()
        self._task: asyncio.Task[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.settings.max_call_duration is not None:
            self._timer = loop.call_later(
                self.settings.max_call_duration, self.media.end_call, MAX_DURATION
            )
        if self.settings.rtp_timeout is not None and self.session is not None:
            self._task = self.media.spawn(self._watch_rtp(self.settings.rtp_timeout))

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._task = None

    async def _watch_rtp(self, timeout: float) -> None:
        session = self.session
        assert session is not None
        interval = check_interval(timeout)
        while not session.deleted:
            await asyncio.sleep(interval)
            if session.deleted:
                return
            if session.on_hold:
                continue
            legs = await self.media.query(session)
            if legs is None or session.on_hold or session.deleted:
                continue
            since = max(self.started, session.sdp_changed)
            if rtp_idle(time.time(), last_packet(legs), since, timeout):
                self.media.end_call(RTP_TIMEOUT)
                return
