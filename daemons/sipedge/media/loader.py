"""The XDP loader child: compiles and attaches ebpf/media_relay.c as root while mediad already
relays in userspace, hands the program's maps to mediad and exits.

Why a child: bcc's compile and the verifier take a minute or more on a slow machine (QEMU TCG),
and mediad must be ready at once; after its drop to `run_as` mediad holds CAP_BPF only (no root
to compile, no CAP_NET_ADMIN to attach). mediad starts the child as root in `prepare()`, before
the drop and before any thread, then relays in userspace; when the child reports, mediad puts
its sessions into the maps it received and they move onto the XDP path.

Wire: one SOCK_SEQPACKET message from the child, JSON (`{"ok": true, "mode", "adopted",
"seconds", "maps": [{"name", "percpu", "key", "leaf"}]}` or `{"ok": false, "error"}`), with
the map fds as SCM_RIGHTS in the order of "maps". The program stays attached and the maps
stay pinned (and open in mediad) after the child exits.

Owns: both ends of that link: `spawn`/`Loader` (mediad) and `main` (the child,
`python -m sipedge.media.loader FD ARGS`). Must not: touch sessions or the journal (the daemon
syncs the sessions once the maps arrive), or run in mediad's own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sipedge.media.bpfmap import MapFd, decode
from sipedge.media.xdp import XdpPath, XdpUnavailable

log = logging.getLogger("sipedge.media.loader")

MAX_MESSAGE = 1 << 18  # bytes of the child's report (the type descriptions are a few KiB)
MAX_FDS = 8
PR_SET_PDEATHSIG = 1
# The compile is background work (mediad relays in userspace meanwhile), and at boot it runs
# while mediad, sipd and natd start: at this niceness a start-up gets about nine tenths of a
# contended CPU, so the appliance is healthy sooner and XDP comes a little later.
LOADER_NICE = 10


@dataclass
class LoadResult:
    ok: bool
    error: str = ""
    mode: str = ""  # native / generic
    adopted: bool = False  # the pinned maps of a previous mediad were reused
    seconds: float = 0.0  # the child's compile + attach time
    maps: dict[str, MapFd] = field(default_factory=dict)
    layout: list[dict[str, Any]] = field(default_factory=list)  # the report's "maps"


def _prepare_child() -> None:  # pragma: no cover - runs in the forked child
    """If mediad dies, the loader goes too (no root process left compiling for nobody); and it
    yields the CPU to the daemons starting beside it (`LOADER_NICE`)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    os.nice(LOADER_NICE)


def spawn(interfaces: Sequence[str], mode: str, pin_dir: Path, max_sessions: int) -> Loader:
    """Start the loader child (as root, before any thread: it inherits root)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    args = json.dumps(
        {
            "interfaces": list(interfaces),
            "mode": mode,
            "pin_dir": str(pin_dir),
            "max_sessions": max_sessions,
        }
    )
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sipedge.media.loader", str(theirs.fileno()), args],
            stdin=subprocess.DEVNULL,
            stdout=sys.stderr.fileno(),
            pass_fds=(theirs.fileno(),),
            preexec_fn=_prepare_child,  # single-threaded here (prepare())
        )
    except OSError:
        ours.close()
        raise
    finally:
        theirs.close()
    return Loader(proc, ours)


def parse(data: bytes, fds: list[int]) -> LoadResult:
    """The child's message; the fds are owned by the result (or closed on a refusal)."""
    maps: dict[str, MapFd] = {}
    try:
        msg = json.loads(data)
        if not msg.get("ok"):
            raise ValueError(str(msg.get("error") or "the loader failed"))
        descs = msg["maps"]
        if len(descs) != len(fds):
            raise ValueError(f"{len(fds)} map fds for {len(descs)} maps")
        for desc, fd in zip(descs, fds, strict=True):
            maps[str(desc["name"])] = MapFd(
                fd, decode(desc["key"]), decode(desc["leaf"]), bool(desc["percpu"])
            )
        fds = []
        if set(maps) != {"sessions", "stats", "verdicts"}:
            raise ValueError(f"unexpected maps {sorted(maps)}")
        return LoadResult(
            True, mode=str(msg["mode"]), adopted=bool(msg["adopted"]),
            seconds=float(msg["seconds"]), maps=maps, layout=list(descs),
        )  # fmt: skip
    except (ValueError, LookupError, TypeError, OSError, AttributeError) as exc:
        for fd in fds:
            with contextlib.suppress(OSError):
                socket.close(fd)
        for m in maps.values():
            m.close()
        return LoadResult(False, error=str(exc))


class Loader:
    """mediad's end: the child process and the socket its report arrives on."""

    def __init__(self, proc: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.proc = proc
        self.sock = sock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: Callable[[LoadResult], None] | None = None

    def watch(self, loop: asyncio.AbstractEventLoop, done: Callable[[LoadResult], None]) -> None:
        """Call `done` once, in the loop, when the child reports or exits without a report."""
        self._loop, self._done = loop, done
        self.sock.setblocking(False)
        loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.sock, MAX_MESSAGE, MAX_FDS)
        except BlockingIOError:
            return
        except OSError as exc:
            data, fds = b"", []
            log.warning("reading the XDP loader's report: %s", exc)
        if data:
            result = parse(data, fds)
        else:
            for fd in fds:
                socket.close(fd)
            rc = self._reap(5.0)
            result = LoadResult(False, error=f"the XDP loader exited ({rc}) without a report")
        self._finish(result)

    def _finish(self, result: LoadResult) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
        done, self._done = self._done, None
        if self._loop is not None and self.proc.poll() is None:
            self._loop.call_later(2.0, self._reap, 3.0)  # it exits right after its report
        if done is not None:
            done(result)

    def _reap(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    @property
    def running(self) -> bool:
        return self._done is not None or self.proc.poll() is None

    def stop(self) -> None:
        """mediad stops: end the child if it still compiles (nothing is attached half)."""
        if self._loop is not None and self._done is not None:
            self._loop.remove_reader(self.sock.fileno())
        self._done = None
        with contextlib.suppress(OSError):
            self.sock.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            self._reap(5.0)


# -- the child ----------------------------------------------------------------------------


def _report(sock: socket.socket, msg: dict[str, Any], fds: Sequence[int] = ()) -> None:
    socket.send_fds(sock, [json.dumps(msg).encode()], list(fds))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    sock = socket.socket(fileno=int(argv[0]))
    started = time.monotonic()
    try:
        args = json.loads(argv[1])
        xdp = XdpPath(
            args["interfaces"], args["mode"], Path(args["pin_dir"]), int(args["max_sessions"])
        )
        mode = xdp.load()
    except (XdpUnavailable, ValueError, LookupError, TypeError, OSError) as exc:
        _report(sock, {"ok": False, "error": str(exc)})
        return 1
    try:
        descs, fds = xdp.handover()
        seconds = round(time.monotonic() - started, 3)
        msg = {"ok": True, "mode": mode, "adopted": xdp.adopted, "seconds": seconds}
        _report(sock, {**msg, "maps": descs}, fds)
    except Exception as exc:  # the program is attached: say why mediad will not use it
        log.exception("handing the XDP maps over")
        _report(sock, {"ok": False, "error": f"handing the maps over: {exc}"})
        return 1
    finally:
        xdp.close()  # our handles only: the program stays attached, the maps pinned
    log.info("XDP %s attached in %.1f s; maps handed to mediad", mode, seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
