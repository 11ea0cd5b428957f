"""sipedge-mediad: RTP relay sessions over an XDP fast path with a userspace fallback.

Owns: the daemon's lifecycle (as root: private directories, starting the XDP loader child, the
metrics listener, then the drop to `run_as` with CAP_BPF or nothing; then the journal, the
control socket, idle expiry, READY at once in userspace, and the hand-over of every session to
the XDP path when the loader reports), the ng commands, and keeping the kernel table and the
journal in step with the sessions. `MediaDaemon` implements `api.MediaControl` for the API.
Must not: be imported by the other modules of media/ (they call back through Protocols and
callbacks), or import the SIP side (sipd, calls/, sip/).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from sipedge.appliance.privileges import (
    CAP_BPF,
    PrivilegeError,
    User,
    bind_unix,
    drop_privileges,
    hand_file_to,
    lookup_user,
    private_dir,
)
from sipedge.media import handover
from sipedge.media.api import (
    MediaCounters,
    UserspaceCounters,
    XdpCounters,
    build_app,
    build_metrics_app,
)
from sipedge.media.crypto import rc4_backend
from sipedge.media.expiry import IdleSweeper
from sipedge.media.journal import Journal, JournalError
from sipedge.media.kernel import KernelTable, cleanup
from sipedge.media.loader import Loader, LoadResult
from sipedge.media.ports import PortAllocator
from sipedge.media.relay import Relay
from sipedge.media.report import leg_info
from sipedge.media.session import (
    FOREIGN,
    NO_SESSION,
    UNLEARNED,
    ControlError,
    Leg,
    Route,
    Session,
    SessionTable,
    address_family,
    call_ids,
    normal_ip,
)
from sipedge.media.settings import (
    MediaSettings,
    interface_address,
    parse_args,
    settings_from_args,
    split_listen,
)
from sipedge.media.tally import Totals, XdpTally
from sipedge.media.xdp import XdpPath, XdpUnavailable

log = logging.getLogger("sipedge.media")

SWEEP_INTERVAL = 1.0  # seconds between idle-expiry runs (each looks at a bounded batch)
XDP_REFRESH = 10.0  # seconds a session's XDP counters may be old before a sweep re-reads them


class MediaDaemon:
    def __init__(self, settings: MediaSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.path = "userspace"  # or xdp-native / xdp-generic
        self.path_reason = ""
        self.xdp: XdpPath | None = None
        self.kernel: KernelTable | None = None  # the XDP table, once XDP is loaded
        self.relay: Relay | None = None
        self.loader: Loader | None = None  # the XDP loader child, while it runs
        self.xdp_ready: float | None = None  # seconds from start to the hand-over to XDP
        self.table = SessionTable(
            PortAllocator(*settings.port_range),
            settings.mode,
            settings.key,
            latching=settings.behind_nat,
            max_sessions=settings.max_sessions,
            clock=clock,
        )
        self.sweeper: IdleSweeper[Session] = IdleSweeper(settings.idle_timeout)
        self.journal: Journal | None = None
        self.totals = Totals()
        self.tally = XdpTally()
        self.bind = settings.bind_address or ""
        self.address = settings.advertise_address or settings.bind_address or "127.0.0.1"
        v6 = settings.bind_address_v6
        self.bind6 = normal_ip(v6) if v6 else None  # None: no IPv6 relay
        self.address6 = settings.advertise_address_v6 or self.bind6
        self.user: User | None = None  # run_as, once dropped to
        self.owners: set[int] = {0, os.geteuid()}
        self.started = time.time()
        self.requests: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self._prepared = False
        self.failed = ""  # why mediad stops on its own (XDP demanded but not loaded)
        self._metrics_sock: socket.socket | None = None
        self._token = ""
        self._runners: list[web.AppRunner] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()

    # -- lifecycle -----------------------------------------------------------------------

    def _on_loaded(self, result: LoadResult) -> None:
        """The loader reported: every session moves onto XDP, or mediad stays in userspace
        (media.fast_path auto) or stops (xdp-native/xdp-generic demand XDP)."""
        self.loader = None
        assert self.xdp is not None
        args = (self.bind, self.bind6, self.tally, self.clock, self.settings.state_path.parent)
        try:
            self.kernel = handover.take(self.xdp, result, self.table, *args)
        except XdpUnavailable as exc:
            if self.settings.fast_path == "auto" and self.xdp.loaded:
                self.path_reason = f"previous XDP program (a new one did not load: {exc})"
                log.warning("new XDP program not loaded, the previous one relays on: %s", exc)
                return
            self.xdp = self.kernel = None
            self.path = "userspace"
            self.path_reason = f"XDP unavailable: {exc}"
            if self.settings.fast_path != "auto":
                log.error("media.fast_path %s: %s: stopping", self.settings.fast_path, exc)
                self.failed = str(exc)
                self.request_stop()
            else:
                log.warning("XDP fast path unavailable, relaying in userspace: %s", exc)
            return
        self.xdp_ready = round(time.time() - self.started, 3)
        self.path = f"xdp-{result.mode}"
        self.path_reason = f"attached {result.mode} on {','.join(self.xdp.interfaces)}"

    def prepare(self) -> None:
        """What needs root (before any thread or event loop): resolve addresses, make the
        private directories, read the token, start the XDP loader child (and re-open a previous
        mediad's pinned maps), bind the metrics listener, then drop to `run_as`.
        Raises PrivilegeError, JournalError, XdpUnavailable, OSError, ValueError."""
        if self._prepared:
            return
        s = self.settings
        if not self.bind:
            self.bind = interface_address(s.interfaces)
        self.address = s.advertise_address or self.bind
        user: User | None = None
        if s.run_as:
            run_as = lookup_user(s.run_as)
            self.owners.add(run_as.uid)
            if os.geteuid() == 0:
                user = run_as
            elif run_as.uid != os.geteuid():
                log.warning("run_as %s ignored: not started as root", s.run_as)
        chown = (user.uid, user.gid) if user else None
        private_dir(s.state_path.parent, self.owners, chown_to=chown)
        private_dir(s.control_socket.parent, self.owners, chown_to=chown, mode=0o755)
        if user is not None:
            hand_file_to(s.state_path, user.uid, user.gid)
        if s.metrics_token_file is not None:
            self._token = s.metrics_token_file.read_text().strip()
            if not self._token:
                raise ValueError(f"media.metrics_token_file {s.metrics_token_file} is empty")
        self.xdp, self.loader, self.path_reason = handover.begin(s)
        if self.xdp is not None:  # a restart: the previous program relays on meanwhile
            args = (self.bind, self.bind6, self.tally, self.clock)
            self.kernel = handover.reopen(self.xdp, s.state_path.parent, *args)
            if self.kernel is not None:
                self.path = f"xdp-{self.xdp.attached_mode}"
                self.path_reason = "previous XDP program (the new one is loading)"
        if s.metrics_listen:
            host, port = split_listen(s.metrics_listen)
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
            sock.setblocking(False)
            self._metrics_sock = sock
        if user is not None:
            keep = (CAP_BPF,) if self.loader is not None else ()
            drop_privileges(user, keep)
            self.user = user
            log.info(
                "running as %s (uid %d) with %s",
                user.name,
                user.uid,
                "CAP_BPF only" if keep else "no capability",
            )
        self._prepared = True

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.prepare()
        self.relay = Relay(loop, self.bind, self.table, self._on_latch, self.bind6)
        self.table.probe = self.relay.open_pair
        self._readopt()
        if self.loader is not None:
            self.loader.watch(loop, self._on_loaded)
        runner = web.AppRunner(build_app(self), access_log=None)
        await runner.setup()
        self._runners.append(runner)
        await web.SockSite(runner, bind_unix(self.settings.control_socket, 0o660)).start()
        if self.settings.http_listen:
            host, port = split_listen(self.settings.http_listen)
            await web.TCPSite(runner, host, port).start()
        if self._metrics_sock is not None:
            metrics = web.AppRunner(build_metrics_app(self, self._token), access_log=None)
            await metrics.setup()
            self._runners.append(metrics)
            await web.SockSite(metrics, self._metrics_sock).start()
        self._tasks.append(asyncio.create_task(self._sweep_loop()))
        if rc4_backend() != "openssl-libcrypto":
            log.warning("userspace RC4: no libcrypto RC4, using %s (slower)", rc4_backend())
        log.info(
            "mediad ready: path %s (%s), bind %s %s, advertise %s %s, control %s, ports %d-%d, "
            "%d sessions re-adopted",
            self.path,
            self.path_reason,
            self.bind,
            self.bind6 or "(no IPv6)",
            self.address,
            self.address6 or "",
            self.settings.control_socket,
            *self.settings.port_range,
            len(self.table),
        )
        from sipedge.appliance import notify

        notify("READY=1")

    async def stop(self) -> None:
        from sipedge.appliance import notify

        notify("STOPPING=1")
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        with contextlib.suppress(FileNotFoundError):
            self.settings.control_socket.unlink()
        if self.loader is not None:
            self.loader.stop()
            self.loader = None
        if self.relay is not None:
            self.relay.close()
        if self.xdp is not None and self.xdp.loaded:
            if len(self.table) == 0 and self.user is None:
                log.info("no calls: detaching XDP and removing pinned maps")
                self.xdp.detach()
            else:
                why = f"{len(self.table)} calls live" if len(self.table) else "not root"
                log.info("%s: XDP stays attached (mediad --cleanup detaches it)", why)
                self.xdp.close()
        if self.journal is not None:
            self._compact()
            self.journal.close()
            self.journal = None

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            await self._stop.wait()
        finally:
            await self.stop()
        if self.failed:
            raise XdpUnavailable(self.failed)

    # -- journal -------------------------------------------------------------------------

    def _totals(self) -> dict[str, Any]:
        self.totals.dropped = dict(self.table.drops)
        return self.totals.to_dict()

    def _compact(self) -> None:
        assert self.journal is not None
        self.journal.compact((s.to_dict() for s in self.table), self._totals())

    def _journal_put(self, session: Session) -> None:
        if self.journal is not None:
            self.journal.put(session.to_dict())
            if self.journal.needs_compaction(len(self.table)):
                self._compact()

    def _journal_end(self, call_id: str) -> None:
        if self.journal is not None:
            self.journal.delete(call_id)
            self.journal.totals(self._totals())
            if self.journal.needs_compaction(len(self.table)):
                self._compact()

    def _readopt(self) -> None:
        """Take back the sessions of the previous mediad (journal + pinned maps)."""
        self.journal = Journal(self.settings.state_path, self.owners)
        replayed = self.journal.open()
        self.totals = Totals.from_dict(replayed.totals)
        self.table.drops.update(self.totals.dropped)
        assert self.relay is not None
        adopted = 0
        for data in replayed.sessions.values():
            try:
                session = Session.from_dict(data)
                self.table.adopt(session)
            except (KeyError, ValueError, TypeError, IndexError) as exc:
                log.warning("cannot re-adopt a saved session: %s", exc)
                continue
            adopted += 1
            self.sweeper.add(session.call_id, session)
            for leg in session.legs:
                if not self.relay.open_pair(leg.port):
                    log.warning("call %s: port %d busy after restart", session.call_id, leg.port)
            self.sync(session)
        if self.kernel is not None:
            self.kernel.prune(list(self.table))
        if replayed.sessions:
            log.info("re-adopted %d of %d saved sessions", adopted, len(replayed.sessions))
        self._compact()

    # -- kernel table --------------------------------------------------------------------

    def session_path(self, session: Session) -> str:
        if self.xdp is None or session.needs_userspace:
            return "userspace"
        return self.path

    def sync(self, session: Session) -> None:
        if self.kernel is not None:
            self.kernel.sync(session)

    def _refresh_xdp(self, session: Session) -> float:
        if self.kernel is None or session.needs_userspace:
            return 0.0
        return self.kernel.refresh(session)

    def _on_latch(self, route: Route) -> None:
        log.info(
            "call %s leg %s latched %s to %s",
            route.session.call_id,
            route.src_leg.tag or "(callee)",
            "RTCP" if route.rtcp else "RTP",
            route.peer,
        )
        self.sync(route.session)
        self._journal_put(route.session)

    # -- idle expiry ---------------------------------------------------------------------

    def activity(self, session: Session) -> float:
        """Last packet (userspace or XDP) or command naming the session (clock time)."""
        last = max(session.touched, session.last_packet())
        if self.kernel is not None and not session.needs_userspace:
            now = self.clock()
            snap = self.tally.get(session.call_id)
            if (
                snap is None
                or now - snap.read_at >= XDP_REFRESH
                or now - max(last, snap.last_seen) >= self.settings.idle_timeout
            ):
                last = max(last, self._refresh_xdp(session))
            else:
                last = max(last, snap.last_seen)
        return last

    def sweep(self) -> list[str]:
        """One bounded expiry run; returns the call ids it deleted."""
        idle = self.sweeper.due(self.table.sessions, self.activity, self.clock())
        for call_id in idle:
            log.info(
                "call %s: no packet and no command for %.0f s, expiring its relay session",
                call_id,
                self.settings.idle_timeout,
            )
            self._end(call_id)
            self.totals.expired += 1
        if idle and self.journal is not None:
            self.journal.totals(self._totals())
        return idle

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            try:
                self.sweep()
            except Exception:  # pragma: no cover - keep expiring whatever went wrong once
                log.exception("idle expiry run failed")

    # -- commands ------------------------------------------------------------------------

    def _relay_reply(self, session: Session, leg: Leg) -> dict[str, Any]:
        return {
            "result": "ok",
            "call-id": session.call_id,
            "address": self.address6 if leg.af == 6 else self.address,
            "port": leg.port,
            "rtcp-port": leg.rtcp_port,
            "path": self.session_path(session),
        }

    def _end(self, call_id: str) -> Session:
        """Delete a session: sockets, kernel entries (counters retired), journal."""
        session = self.table.get(call_id)
        self._refresh_xdp(session)
        self.table.delete(call_id)
        assert self.relay is not None
        for leg in session.legs:
            self.relay.close_pair(leg.port)
        if self.kernel is not None:
            self.kernel.remove(session)
        self.tally.retire(call_id, self.totals)
        self._journal_end(call_id)
        return session

    def _session(self, req: dict[str, Any]) -> Session:
        if not isinstance(req.get("call-id"), str):
            raise ControlError("bad-request", "'call-id' is required")
        return self.table.get(req["call-id"])

    def command(self, req: dict[str, Any]) -> dict[str, Any]:
        cmd = req.get("command")
        if not isinstance(cmd, str):
            raise ControlError("bad-request", "'command' is required (offer/answer/delete/...)")
        self.requests[cmd] = self.requests.get(cmd, 0) + 1
        if cmd in ("offer", "answer"):
            if address_family(req) == 6 and self.address6 is None:
                raise ControlError(
                    "address-family-unavailable",
                    "IPv6 relay address asked, but media.bind_address_v6 is not set",
                    409,
                )
            known = len(self.table)
            session, leg = (self.table.offer if cmd == "offer" else self.table.answer)(req)
            if len(self.table) > known:
                self.sweeper.add(session.call_id, session)
            self.sync(session)
            self._journal_put(session)
            return self._relay_reply(session, leg)
        if cmd == "delete":
            session = self._session(req)
            final = self.describe(session)
            self._end(session.call_id)
            return final
        if cmd == "query":
            session = self._session(req)
            self.table.touch([session.call_id])
            return self.describe(session)
        if cmd == "touch":
            touched, unknown = self.table.touch(call_ids(req))
            return {"result": "ok", "touched": touched, "unknown": unknown}
        if cmd == "list":
            calls = [
                {
                    "call-id": s.call_id,
                    "created": s.created,
                    "answered": s.answered,
                    "path": self.session_path(s),
                    "ports": list(s.ports),
                }
                for s in self.table
            ]
            return {"result": "ok", "count": len(calls), "calls": calls}
        if cmd == "ping":  # with the relay families: sipd refuses a caller of another at once
            return {"result": "pong", "families": ["IP4", "IP6"] if self.address6 else ["IP4"]}
        raise ControlError(
            "unknown-command",
            f"unknown command {cmd!r} (offer, answer, delete, query, list, touch, ping)",
        )

    def leg_info(self, session: Session, leg: Leg) -> dict[str, Any]:
        rtp_x = rtcp_x = None
        if self.kernel is not None and not session.needs_userspace:
            rtp_x, rtcp_x = self.kernel.leg_stats(leg)
        return leg_info(leg, rtp_x, rtcp_x)

    def describe(self, session: Session) -> dict[str, Any]:
        return {
            "result": "ok",
            "call-id": session.call_id,
            "created": session.created,
            "answered": session.answered,
            "path": self.session_path(session),
            "legs": [self.leg_info(session, leg) for leg in session.legs],
        }

    # -- api.MediaControl ----------------------------------------------------------------

    def refused(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1

    def counters(self) -> MediaCounters:
        """Cheap: XDP numbers are the retired totals plus the tally the sweeps keep."""
        userspace: UserspaceCounters | None = None
        if self.relay is not None:
            relay = self.relay
            userspace = UserspaceCounters(
                relay.packets_in, relay.packets_out, relay.dropped, relay.cross_family
            )
        live_packets, live_bytes, live_dropped = self.tally.live
        drops = self.table.drops
        return MediaCounters(
            sessions=len(self.table),
            ports_in_use=2 * self.table.ports.used,
            ports_capacity=self.table.ports.capacity,
            path=self.path,
            userspace=userspace,
            xdp=XdpCounters(
                self.totals.xdp_packets + live_packets, self.totals.xdp_bytes + live_bytes
            ),
            requests=dict(self.requests),
            errors=dict(self.errors),
            dropped={
                FOREIGN: drops[FOREIGN] + self.totals.xdp_dropped + live_dropped,
                UNLEARNED: drops[UNLEARNED],
                NO_SESSION: drops[NO_SESSION],
            },
            expired=self.totals.expired,
            xdp_ready_seconds=self.xdp_ready,
            xdp_loading=self.loader is not None,
        )

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "daemon": "sipedge-mediad",
            "path": self.path,
            "path_reason": self.path_reason,
            "sessions": len(self.table),
            "max_sessions": self.table.max_sessions,
            "ports_in_use": 2 * self.table.ports.used,
            "uptime": round(time.time() - self.started, 3),
            "xdp_loader": "loading" if self.loader is not None else None,
            "xdp_ready_seconds": self.xdp_ready,
            "xdp_verdicts": self.kernel.xdp.verdicts() if self.kernel is not None else None,
            "rc4_userspace": rc4_backend(),
            "user": self.user.name if self.user else None,
        }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, __doc__)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = settings_from_args(args)
    except (ValueError, OSError) as exc:
        print(f"sipedge-mediad: {exc}", file=sys.stderr)
        return 2
    if args.cleanup:
        return cleanup(settings)
    daemon = MediaDaemon(settings)
    try:
        daemon.prepare()  # root work and the privilege drop, before any thread or loop
        try:
            import uvloop
        except ImportError:  # pragma: no cover
            asyncio.run(daemon.run())
        else:
            uvloop.run(daemon.run())
    except XdpUnavailable as exc:
        print(f"sipedge-mediad: media.fast_path {settings.fast_path}: {exc}", file=sys.stderr)
        return 1
    except (PrivilegeError, JournalError, ValueError, OSError) as exc:
        print(f"sipedge-mediad: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
