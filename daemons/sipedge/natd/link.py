"""The link between sipedge-sipd and sipedge-natd: a unix stream socket served by sipd.

natd needs two things of sipd: the list of registered devices behind NAT, and the SIP
signaling socket itself, because a keep-alive refreshes a NAT binding only when it travels on
the same flow (our SIP address and port <-> the device's public address and port).

Socket: ``<storage.path>/natd.sock`` (mode 0600: only sipd's user, i.e. natd, may connect).
Protocol: one JSON request line, one JSON answer line.

* ``{"op": "socket"}`` -> ``{"ok": true, "local": [host, port], "locals": [[host, port], ...],
  "pid": sipd's pid}`` with the UDP sockets' file descriptors attached (SCM_RIGHTS), in the
  order of `locals`: the first UDP listener's, then the first one of the other family if sipd
  listens on both (`local` is the first: a natd that knows one socket reads only that one), so
  a device registered over IPv6 is kept alive from the IPv6 listener. natd keeps this
  connection open and idle: when sipd exits or restarts, the connection reaches EOF and natd
  closes its copies of the descriptors at once (so the new sipd can bind the port),
  reconnects and asks again. sipd also retries its bind for a few seconds at start
  (`open_udp_retrying`), which covers the moment between the old sipd's exit and natd's close.
* ``{"op": "devices", "version": N}`` -> ``{"version": M, "devices": [[host, port], ...]}``, or
  ``{"version": M, "unchanged": true}`` when the set has not changed since version N.

sipd never depends on natd: if natd is not running nobody connects, and nothing else changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path

from sipedge.sip.transport.udp import MessageHandler, TransportStats, UdpTransport, open_udp
from sipedge.typedefs import Addr

log = logging.getLogger(__name__)

SOCKET_NAME = "natd.sock"
MAX_REQUEST = 4096


def link_path(storage: Path) -> Path:
    return storage / SOCKET_NAME


def sip_socket_fd(transport: UdpTransport) -> int | None:
    """The descriptor of sipd's UDP socket (uvloop hands out a pseudo-socket, not a
    socket.socket, so `UdpTransport.raw_socket` is None there: ask for its fileno)."""
    sock = transport.raw_socket
    if sock is not None:
        return sock.fileno()
    asyncio_transport = transport._transport
    if asyncio_transport is None:
        return None
    extra = asyncio_transport.get_extra_info("socket")
    fileno = getattr(extra, "fileno", None)
    return int(fileno()) if callable(fileno) else None


class NatLinkServer:
    """sipd's side. `devices()` gives (version, list); `udp_fds()` the descriptors of the UDP
    listeners, the primary first (one per family is handed over)."""

    def __init__(
        self,
        path: Path,
        udp_fds: Callable[[], list[int]],
        devices: Callable[[], tuple[int, list[Addr]]],
    ) -> None:
        self.path = path
        self.udp_fds = udp_fds
        self.devices = devices
        self._server: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._conns: set[socket.socket] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.handovers = 0
        self.fetches = 0

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.path))
        os.chmod(self.path, 0o600)
        server.listen(8)
        server.setblocking(False)
        self._server = server
        self._task = asyncio.create_task(self._accept_loop())

    @property
    def connected(self) -> int:
        return len(self._conns)

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._server is not None
        while True:
            conn, _ = await loop.sock_accept(self._server)
            conn.setblocking(False)
            self._conns.add(conn)
            task = asyncio.create_task(self._serve(conn))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

    async def _serve(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        buf = b""
        try:
            while True:
                data = await loop.sock_recv(conn, MAX_REQUEST)
                if not data:
                    return
                buf += data
                if len(buf) > MAX_REQUEST:
                    return
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    await self._answer(conn, line)
        except (OSError, ValueError) as err:
            log.debug("natd link: %s", err)
        finally:
            self._conns.discard(conn)
            conn.close()

    async def _answer(self, conn: socket.socket, line: bytes) -> None:
        loop = asyncio.get_running_loop()
        request = json.loads(line)
        op = request.get("op") if isinstance(request, dict) else None
        if op == "socket":
            fds, locals_ = one_per_family(self.udp_fds())
            if not fds:
                await loop.sock_sendall(conn, b'{"ok": false}\n')
                return
            handover = {"ok": True, "local": locals_[0], "locals": locals_, "pid": os.getpid()}
            # a short message with two descriptors at most: fits the empty send buffer
            socket.send_fds(conn, [json.dumps(handover).encode() + b"\n"], fds)
            self.handovers += 1
        elif op == "devices":
            version, devices = self.devices()
            self.fetches += 1
            body: dict[str, object]
            if request.get("version") == version:
                body = {"version": version, "unchanged": True}
            else:
                body = {"version": version, "devices": devices}
            await loop.sock_sendall(conn, json.dumps(body).encode() + b"\n")
        else:
            await loop.sock_sendall(conn, b'{"ok": false, "error": "unknown op"}\n')

    async def close(self) -> None:
        """Close the listener and every connection (natd sees EOF and lets the socket go)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for conn in list(self._conns):
            conn.close()
        self._conns.clear()
        for task in list(self._handlers):
            task.cancel()
        if self._server is not None:
            self._server.close()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


async def open_udp_retrying(
    host: str,
    port: int,
    on_message: MessageHandler,
    stats: TransportStats | None = None,
    wait: float = 5.0,
) -> UdpTransport:
    """`open_udp`, retrying EADDRINUSE for up to `wait` seconds: after a restart, natd may hold
    the previous sipd's socket for a moment (until it sees the link's EOF)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        try:
            return await open_udp(host, port, on_message, stats)
        except OSError as err:
            if err.errno != 98 or loop.time() >= deadline:  # EADDRINUSE
                raise
            await asyncio.sleep(0.1)


# -- natd's side (blocking calls, run in a thread by natd) ----------------------------------------


def _read_line(sock: socket.socket, limit: int = 64 * 1024 * 1024) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        data = sock.recv(1 << 20)
        if not data:
            raise ConnectionError("sipd closed the link")
        chunks.append(data)
        size += len(data)
        if data.endswith(b"\n") or b"\n" in data:
            break
        if size > limit:
            raise ConnectionError("answer too long")
    return b"".join(chunks).split(b"\n", 1)[0]


def one_per_family(fds: list[int]) -> tuple[list[int], list[list[object]]]:
    """The first descriptor of each family, in order, and their local [host, port]."""
    chosen: list[int] = []
    locals_: list[list[object]] = []
    families: set[int] = set()
    for fd in fds:
        # a throw-away view of the descriptor, just to read it (closed: detach)
        view = socket.socket(fileno=fd)
        try:
            family, (host, port) = view.family, view.getsockname()[:2]
        finally:
            view.detach()
        if family not in families:
            families.add(family)
            chosen.append(fd)
            locals_.append([host, port])
    return chosen, locals_


def fetch_socket(
    path: Path, timeout: float = 5.0
) -> tuple[socket.socket, list[socket.socket], list[Addr]]:
    """(the open link, our copies of sipd's signaling sockets, their local addresses): one
    socket per family sipd listens on over UDP, the primary first."""
    link = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    link.settimeout(timeout)
    socks: list[socket.socket] = []
    try:
        link.connect(str(path))
        link.sendall(b'{"op": "socket"}\n')
        msg, fds, _, _ = socket.recv_fds(link, 4096, 2)
        # every descriptor received is ours to close, whatever the answer says
        socks = [socket.socket(fileno=fd) for fd in fds]
        if not socks:
            raise ConnectionError(f"sipd handed over no socket: {msg!r}")
        answer = json.loads(msg.split(b"\n", 1)[0])
        raw = answer.get("locals") or [answer["local"]]  # a sipd from before IPv6: one
        if len(raw) != len(socks):
            raise ConnectionError(f"{len(socks)} sockets for {len(raw)} addresses")
        for udp in socks:
            # The descriptor shares sipd's open file: O_NONBLOCK must stay set (sipd's event
            # loop needs it), and we never block on a send anyway.
            udp.setblocking(False)
        return link, socks, [(str(a[0]), int(a[1])) for a in raw]
    except BaseException:
        for udp in socks:
            udp.close()
        link.close()
        raise


def fetch_devices(path: Path, version: int | None, timeout: float = 10.0) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as link:
        link.settimeout(timeout)
        link.connect(str(path))
        link.sendall(json.dumps({"op": "devices", "version": version}).encode() + b"\n")
        answer = json.loads(_read_line(link))
    if not isinstance(answer, dict):
        raise ConnectionError("bad answer")
    return answer
