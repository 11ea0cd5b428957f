"""sipedge-mediad: RTP relay sessions over an XDP fast path with a userspace fallback.

Owns: the daemon's settings, its lifecycle (control socket, XDP load and detach, restart with
the sessions of the previous mediad), the ng commands, and keeping the kernel table in step
with the sessions. `MediaDaemon` implements `api.MediaControl` for the control API.
Must not: be imported by the other modules of media/ (they call back through Protocols and
callbacks), or import the SIP side (sipd, calls/, sip/).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiohttp import web

from sipedge.media.api import MediaCounters, UserspaceCounters, XdpCounters, build_app
from sipedge.media.crypto import MODE_NAMES, Mode, check_key, parse_mode, rc4_backend
from sipedge.media.ports import PortAllocator
from sipedge.media.relay import Relay
from sipedge.media.session import ControlError, Leg, Route, Session, SessionTable
from sipedge.media.xdp import DEFAULT_PIN_DIR, Entry, XdpPath, XdpUnavailable

log = logging.getLogger("sipedge.media")

FAST_PATHS = ("auto", "xdp", "xdp-native", "xdp-generic", "userspace")


@dataclass(frozen=True)
class MediaSettings:
    control_socket: Path
    port_range: tuple[int, int] = (20000, 29999)
    fast_path: str = "auto"
    interfaces: tuple[str, ...] = ()
    behind_nat: bool = True
    mode: Mode = Mode.NONE
    key: bytes = b""
    bind_address: str = "0.0.0.0"
    advertise_address: str | None = None
    pin_dir: Path = DEFAULT_PIN_DIR
    state_path: Path | None = None
    http_listen: str | None = None  # optional host:port serving the same API (metrics scrape)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.fast_path not in FAST_PATHS:
            raise ValueError(f"media.fast_path must be one of {', '.join(FAST_PATHS)}")
        if self.mode != Mode.NONE:
            check_key(self.mode, self.key)

    @classmethod
    def from_config(cls, config: Any) -> MediaSettings:
        media = config.media
        params = config.parameters
        storage = getattr(getattr(config, "storage", None), "path", None)
        mode = parse_mode(getattr(params, "rtpencryptionmode", 0))
        key = str(getattr(params, "rtpencryptionkey", "") or "").encode()
        return cls(
            control_socket=Path(media.control_socket),
            port_range=(int(media.port_range[0]), int(media.port_range[1])),
            fast_path=str(media.fast_path),
            interfaces=tuple(media.interfaces),
            behind_nat=bool(getattr(params, "media_proxy_behind_nat", True)),
            mode=mode,
            key=key,
            state_path=Path(storage) / "mediad-sessions.json" if storage else None,
        )


def interface_address(interfaces: tuple[str, ...]) -> str:
    """First IPv4 address of the first media interface (127.0.0.1 when there is none)."""
    try:
        from pyroute2 import IPRoute
    except ImportError:  # pragma: no cover
        return "127.0.0.1"
    with IPRoute() as ipr:
        for dev in interfaces:
            idx = ipr.link_lookup(ifname=dev)
            if not idx:
                continue
            for msg in ipr.get_addr(family=socket.AF_INET, index=idx[0]):
                addr = msg.get_attr("IFA_ADDRESS")
                if addr:
                    return str(addr)
    return "127.0.0.1"


class MediaDaemon:
    def __init__(self, settings: MediaSettings) -> None:
        self.settings = settings
        self.path = "userspace"  # or xdp-native / xdp-generic
        self.path_reason = ""
        self.xdp: XdpPath | None = None
        self.relay: Relay | None = None
        self.table = SessionTable(
            PortAllocator(*settings.port_range),
            settings.mode,
            settings.key,
            latching=settings.behind_nat,
        )
        self.address = settings.advertise_address or "127.0.0.1"
        self.started = time.time()
        self.requests: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self._runners: list[web.AppRunner] = []
        self._stop = asyncio.Event()

    # -- lifecycle -----------------------------------------------------------------------

    def _load_xdp(self) -> None:
        fp = self.settings.fast_path
        if fp == "userspace":
            self.path_reason = "media.fast_path is userspace"
            return
        mode = {"xdp-native": "native", "xdp-generic": "generic"}.get(fp, "auto")
        xdp = XdpPath(self.settings.interfaces, mode, self.settings.pin_dir)
        try:
            attached = xdp.load()
        except XdpUnavailable as exc:
            if fp != "auto":
                raise
            self.path_reason = str(exc)
            log.warning("XDP fast path unavailable, relaying in userspace: %s", exc)
            return
        self.xdp = xdp
        self.path = f"xdp-{attached}"
        self.path_reason = f"attached {attached} on {','.join(self.settings.interfaces)}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.settings.advertise_address is None:
            if self.settings.bind_address != "0.0.0.0":
                self.address = self.settings.bind_address
            else:  # pyroute2's sync API runs its own loop: keep it off ours
                self.address = await asyncio.to_thread(interface_address, self.settings.interfaces)
        self.relay = Relay(loop, self.settings.bind_address, self.table, self._on_latch)
        self.table.probe = self.relay.open_pair
        self._load_xdp()
        self._readopt()
        app = build_app(self)
        sock_path = self.settings.control_socket
        sock_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            sock_path.unlink()
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.UnixSite(runner, str(sock_path)).start()
        os.chmod(sock_path, 0o660)
        if self.settings.http_listen:
            host, _, port = self.settings.http_listen.rpartition(":")
            await web.TCPSite(runner, host or "127.0.0.1", int(port)).start()
        self._runners.append(runner)
        if rc4_backend() != "openssl-libcrypto":
            log.warning(
                "userspace RC4: libcrypto's RC4 not found, using %s (pure Python is ~65 µs "
                "per packet)",
                rc4_backend(),
            )
        log.info(
            "mediad ready: path %s (%s), control %s, ports %d-%d, %d sessions re-adopted",
            self.path,
            self.path_reason,
            sock_path,
            *self.settings.port_range,
            len(self.table),
        )
        from sipedge.appliance import notify

        notify("READY=1")

    async def stop(self) -> None:
        from sipedge.appliance import notify

        notify("STOPPING=1")
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        with contextlib.suppress(FileNotFoundError):
            self.settings.control_socket.unlink()
        if self.relay is not None:
            self.relay.close()
        if self.xdp is not None:
            if len(self.table) == 0:
                log.info("no calls: detaching XDP and removing pinned maps")
                self.xdp.detach()
            else:
                log.info("%d calls live: XDP stays attached for the next mediad", len(self.table))
                self.xdp.close()
        self._save()

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

    # -- persistence ---------------------------------------------------------------------

    def _save(self) -> None:
        path = self.settings.state_path
        if path is None:
            return
        if len(self.table) == 0:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"sessions": [s.to_dict() for s in self.table]}))
        tmp.replace(path)

    def _readopt(self) -> None:
        """Take back the sessions of the previous mediad (state file + pinned maps)."""
        path = self.settings.state_path
        saved: list[dict[str, Any]] = []
        if path is not None and path.exists():
            try:
                saved = list(json.loads(path.read_text()).get("sessions", []))
            except (ValueError, OSError, AttributeError) as exc:
                log.warning("ignoring unreadable %s: %s", path, exc)
        assert self.relay is not None
        for data in saved:
            try:
                session = Session.from_dict(data)
                self.table.adopt(session)
            except (KeyError, ValueError, TypeError) as exc:
                log.warning("cannot re-adopt a saved session: %s", exc)
                continue
            for leg in session.legs:
                if not self.relay.open_pair(leg.port):
                    log.warning("call %s: port %d busy after restart", session.call_id, leg.port)
            self.sync(session)
        if self.xdp is not None:
            live: set[int] = set()
            for session in self.table:
                for leg in session.legs:
                    live.update((leg.port, leg.rtcp_port))
            for addr, port in list(self.xdp.keys()) + list(self.xdp.stat_keys()):
                if port not in live:
                    self.xdp.remove(addr, port)
        if saved:
            log.info("re-adopted %d of %d saved sessions", len(self.table), len(saved))

    # -- kernel table --------------------------------------------------------------------

    def _entry(self, route: Route) -> Entry:
        dest = route.destination or ("0.0.0.0", 0)
        dec, enc = route.transforms
        return Entry(
            dst_addr=dest[0],
            dst_port=dest[1],
            src_port=route.out_port,
            latch=self.table.latching and route.latch_pending,
            rtcp=route.rtcp,
            in_mode=int(dec.mode) if dec else 0,
            in_key=dec.key if dec else b"",
            out_mode=int(enc.mode) if enc else 0,
            out_key=enc.key if enc else b"",
        )

    def session_path(self, session: Session) -> str:
        if self.xdp is None or session.needs_userspace:
            return "userspace"
        return self.path

    def sync(self, session: Session) -> None:
        """Write the session's four directions into the kernel table (or take them out)."""
        if self.xdp is None:
            return
        addr = self.settings.bind_address
        for src in session.legs:
            dst = session.other(src)
            for rtcp in (False, True):
                route = Route(session, src, dst, rtcp)
                if session.needs_userspace:
                    self.xdp.remove(addr, route.in_port)
                else:
                    self.xdp.put(addr, route.in_port, self._entry(route))

    def _on_latch(self, route: Route) -> None:
        log.info(
            "call %s leg %s latched %s to %s",
            route.session.call_id,
            route.src_leg.tag or "(callee)",
            "RTCP" if route.rtcp else "RTP",
            route.src_leg.rtcp_remote if route.rtcp else route.src_leg.remote,
        )
        self.sync(route.session)
        self._save()

    # -- commands ------------------------------------------------------------------------

    def _relay_reply(self, session: Session, leg: Leg) -> dict[str, Any]:
        return {
            "result": "ok",
            "call-id": session.call_id,
            "address": self.address,
            "port": leg.port,
            "rtcp-port": leg.rtcp_port,
            "path": self.session_path(session),
        }

    def command(self, req: dict[str, Any]) -> dict[str, Any]:
        cmd = req.get("command")
        if not isinstance(cmd, str):
            raise ControlError("bad-request", "'command' is required (offer/answer/delete/...)")
        self.requests[cmd] = self.requests.get(cmd, 0) + 1
        if cmd == "offer":
            session, leg = self.table.offer(req)
            self.sync(session)
            self._save()
            return self._relay_reply(session, leg)
        if cmd == "answer":
            session, leg = self.table.answer(req)
            self.sync(session)
            self._save()
            return self._relay_reply(session, leg)
        if cmd == "delete":
            call_id = req.get("call-id")
            if not isinstance(call_id, str):
                raise ControlError("bad-request", "'call-id' is required")
            session = self.table.get(call_id)
            final = self.describe(session)
            self.table.delete(call_id)
            assert self.relay is not None
            for leg in session.legs:
                self.relay.close_pair(leg.port)
                if self.xdp is not None:
                    self.xdp.remove(self.settings.bind_address, leg.port)
                    self.xdp.remove(self.settings.bind_address, leg.rtcp_port)
            self._save()
            return final
        if cmd == "query":
            call_id = req.get("call-id")
            if not isinstance(call_id, str):
                raise ControlError("bad-request", "'call-id' is required")
            return self.describe(self.table.get(call_id))
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
        if cmd == "ping":
            return {"result": "pong"}
        raise ControlError(
            "unknown-command",
            f"unknown command {cmd!r} (offer, answer, delete, query, list, ping)",
        )

    def leg_info(self, session: Session, leg: Leg) -> dict[str, Any]:
        rtp_x = rtcp_x = None
        if self.xdp is not None and not session.needs_userspace:
            rtp_x = self.xdp.stats(self.settings.bind_address, leg.port)
            rtcp_x = self.xdp.stats(self.settings.bind_address, leg.rtcp_port)
        packets = leg.rtp.packets + (rtp_x.packets if rtp_x else 0)
        last = max(leg.rtp.last_seen, rtp_x.last_seen if rtp_x else 0.0)
        return {
            "tag": leg.tag,
            "local-port": leg.port,
            "local-rtcp-port": leg.rtcp_port,
            "remote-address": leg.remote[0] if leg.remote else None,
            "remote-port": leg.remote[1] if leg.remote else None,
            "latched": leg.latched,
            "encryption": MODE_NAMES[leg.transform.mode],
            "packets": packets,
            "bytes": leg.rtp.bytes + (rtp_x.bytes if rtp_x else 0),
            "last-packet": last or None,
            "rtp-started": packets > 0,
            "packets-xdp": rtp_x.packets if rtp_x else 0,
            "packets-userspace": leg.rtp.packets,
            "rtcp-packets": leg.rtcp.packets + (rtcp_x.packets if rtcp_x else 0),
            "rtcp-bytes": leg.rtcp.bytes + (rtcp_x.bytes if rtcp_x else 0),
        }

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
        userspace: UserspaceCounters | None = None
        xdp: XdpCounters | None = None
        if self.relay is not None:
            relay = self.relay
            userspace = UserspaceCounters(relay.packets_in, relay.packets_out, relay.dropped)
        if self.xdp is not None:
            packets = bytes_ = 0
            for session in self.table:
                if session.needs_userspace:
                    continue
                for leg in session.legs:
                    for port in (leg.port, leg.rtcp_port):
                        st = self.xdp.stats(self.settings.bind_address, port)
                        packets += st.packets
                        bytes_ += st.bytes
            xdp = XdpCounters(packets, bytes_)
        return MediaCounters(
            sessions=len(self.table),
            ports_in_use=2 * len(self.table.ports.in_use),
            ports_capacity=self.table.ports.capacity,
            path=self.path,
            userspace=userspace,
            xdp=xdp,
            requests=dict(self.requests),
            errors=dict(self.errors),
        )

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "daemon": "sipedge-mediad",
            "path": self.path,
            "path_reason": self.path_reason,
            "sessions": len(self.table),
            "ports_in_use": 2 * len(self.table.ports.in_use),
            "uptime": round(time.time() - self.started, 3),
            "xdp_verdicts": self.xdp.verdicts() if self.xdp is not None else None,
            "rc4_userspace": rc4_backend(),
        }


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sipedge-mediad", description=__doc__)
    p.add_argument("--config", type=Path, help="sipedge YAML config (media: section)")
    p.add_argument("--control-socket", type=Path, help="override media.control_socket")
    p.add_argument("--port-range", help="override media.port_range, LOW-HIGH")
    p.add_argument("--fast-path", choices=FAST_PATHS, help="override media.fast_path")
    p.add_argument("--interface", action="append", help="override media.interfaces")
    p.add_argument("--api", dest="http_listen", help="also serve the API on host:port")
    p.add_argument("--bind", dest="bind_address", help="local address of relay ports")
    p.add_argument("--advertise", dest="advertise_address", help="address returned for SDP")
    p.add_argument("--pin-dir", type=Path, help=f"bpffs folder for maps ({DEFAULT_PIN_DIR})")
    p.add_argument("--state", dest="state_path", type=Path, help="session state file")
    p.add_argument("--encryption-mode", help="override SS_RTPENCRYPTIONMODE (0-3)")
    p.add_argument("--encryption-key", help="override SS_RTPENCRYPTIONKEY")
    p.add_argument("--behind-nat", choices=("On", "Off"), help="SS_MEDIA_PROXY_BEHIND_NAT")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> MediaSettings:
    if args.config is not None:
        from sipedge.config import load_config  # type: ignore[import-not-found,unused-ignore]

        settings = MediaSettings.from_config(load_config(args.config))
    else:
        if args.control_socket is None:
            raise SystemExit("sipedge-mediad: give --config PATH (or --control-socket)")
        settings = MediaSettings(control_socket=args.control_socket)
    changes: dict[str, Any] = {}
    for name in ("control_socket", "fast_path", "http_listen", "bind_address", "pin_dir"):
        value = getattr(args, name)
        if value is not None:
            changes[name] = value
    if args.advertise_address is not None:
        changes["advertise_address"] = args.advertise_address
    if args.state_path is not None:
        changes["state_path"] = args.state_path
    if args.port_range:
        low, _, high = args.port_range.partition("-")
        changes["port_range"] = (int(low), int(high))
    if args.interface:
        changes["interfaces"] = tuple(args.interface)
    if args.encryption_mode is not None:
        changes["mode"] = parse_mode(args.encryption_mode)
    if args.encryption_key is not None:
        changes["key"] = args.encryption_key.encode()
    if args.behind_nat is not None:
        changes["behind_nat"] = args.behind_nat == "On"
    if "state_path" not in changes and settings.state_path is None:
        changes["state_path"] = settings.control_socket.with_suffix(".sessions.json")
    return replace(settings, **changes)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
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
    daemon = MediaDaemon(settings)
    try:
        try:
            import uvloop
        except ImportError:  # pragma: no cover
            asyncio.run(daemon.run())
        else:
            uvloop.run(daemon.run())
    except XdpUnavailable as exc:
        print(f"sipedge-mediad: media.fast_path {settings.fast_path}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
