"""The move onto the XDP path at start: mediad relays in userspace at once while the loader
child compiles and attaches the program, then every live session moves into the maps it hands
over (packets of a session go to the userspace sockets until its entries are written, and to
XDP from then on, so none is lost).

`begin` (as root, in `prepare()`): the quick checks (interfaces, root, kernel headers, bcc),
then the loader child. `take` (in the event loop, when the child reports): the maps, the kernel
table, every session synced and stale entries pruned; `save_layout` then writes the maps' types
to the state folder. At a restart the previous program is still attached and relays with the
pinned maps: `reopen` (as root, before the drop) opens them with the saved types, so mediad
keeps them in step from its first moment (a call ended meanwhile leaves no entry behind).

Owns: which checks run before READY and how a report becomes a `KernelTable`. Must not: decide
what a failure means for the daemon (media.fast_path auto stays in userspace, the strict
values stop mediad: daemon.py), or compile anything itself (loader.py's child does).
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sipedge.media.bpfmap import MapFd, decode, open_pinned
from sipedge.media.kernel import KernelTable
from sipedge.media.loader import Loader, LoadResult, spawn
from sipedge.media.session import Session
from sipedge.media.settings import MediaSettings
from sipedge.media.tally import XdpTally
from sipedge.media.xdp import XdpPath, XdpUnavailable

log = logging.getLogger("sipedge.media")

LOADING = "XDP loading"  # path_reason while the loader runs
LAYOUT = "xdp-maps.json"  # in the state folder: the pinned maps' types, for `reopen`
PINNED = ("sessions", "stats")
MAX_LAYOUT = 1 << 18


def begin(settings: MediaSettings) -> tuple[XdpPath | None, Loader | None, str]:
    """(xdp, loader, path_reason); raises XdpUnavailable when a strict media.fast_path
    cannot load (auto: no loader, the reason says why)."""
    fp = settings.fast_path
    if fp == "userspace":
        return None, None, "media.fast_path is userspace"
    mode = {"xdp-native": "native", "xdp-generic": "generic"}.get(fp, "auto")
    xdp = XdpPath(settings.interfaces, mode, settings.pin_dir, max_sessions=settings.port_count)
    try:
        xdp.precheck()
        loader = spawn(xdp.interfaces, mode, xdp.pin_dir, xdp.max_sessions)
    except OSError as exc:  # the child could not start (no fork, no memory)
        if fp != "auto":
            raise XdpUnavailable(f"the XDP loader did not start: {exc}") from None
        log.warning("the XDP loader did not start, relaying in userspace: %s", exc)
        return None, None, f"the XDP loader did not start: {exc}"
    except XdpUnavailable as exc:
        if fp != "auto":
            raise
        log.warning("XDP fast path unavailable, relaying in userspace: %s", exc)
        return None, None, str(exc)
    return xdp, loader, LOADING


def take(
    xdp: XdpPath,
    result: LoadResult,
    sessions: Iterable[Session],
    bind: str,
    bind6: str | None,
    tally: XdpTally,
    clock: Callable[[], float],
    state_dir: Path,
) -> KernelTable:
    """The kernel table over the maps the loader handed over, with every session in it (the
    layout saved for the next start); raises XdpUnavailable (with the loader's reason) when
    there is none."""
    if not result.ok:
        raise XdpUnavailable(result.error)
    live = list(sessions)
    try:
        xdp.adopt_maps(result.mode, result.adopted, result.maps)
        kernel = KernelTable(xdp, bind, tally, clock, bind6)
        for session in live:
            kernel.sync(session)
        kernel.prune(live)
    except (OSError, ValueError, RuntimeError) as exc:
        xdp.close()
        raise XdpUnavailable(f"taking the XDP maps: {exc}") from None
    save_layout(state_dir, result)
    log.info(
        "XDP %s attached on %s (compiled in %.1f s): %d sessions moved onto it",
        result.mode, ",".join(xdp.interfaces), result.seconds, len(live),
    )  # fmt: skip
    return kernel


def save_layout(state_dir: Path, result: LoadResult) -> None:
    """Remember the pinned maps' types and the program's mode for the next mediad's `reopen`
    (written by mediad as run_as into its private state folder)."""
    pinned = [d for d in result.layout if d.get("name") in PINNED]
    data = json.dumps({"version": 1, "mode": result.mode, "maps": pinned})
    tmp = state_dir / (LAYOUT + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(data)
        os.replace(tmp, state_dir / LAYOUT)
    except OSError as exc:
        log.warning("cannot save the XDP map layout (a restart re-syncs later): %s", exc)


def _read_regular(path: Path) -> bytes:
    """At most MAX_LAYOUT bytes of a regular file, read as root from run_as's folder: no
    link followed, no FIFO waited on."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path} is not a regular file")
        return os.read(fd, MAX_LAYOUT)
    finally:
        os.close(fd)


def reopen(
    xdp: XdpPath,
    state_dir: Path,
    bind: str,
    bind6: str | None,
    tally: XdpTally,
    clock: Callable[[], float],
) -> KernelTable | None:
    """As root, at a restart: the maps the previous mediad left pinned (its program still
    relays with them) when the saved layout and the maps agree, as a kernel table, so that
    what changes while the new program compiles (ends, answers, latching) reaches the kernel
    at once; None otherwise (the sessions reach the kernel at the hand-over)."""
    if not all((xdp.pin_dir / name).exists() for name in PINNED):
        return None
    maps: dict[str, Any] = {}
    try:
        saved = json.loads(_read_regular(state_dir / LAYOUT))
        if saved.get("version") != 1 or saved.get("mode") not in ("native", "generic"):
            raise ValueError(f"unknown layout {saved.get('version')!r}")
        for d in saved["maps"]:
            name = d["name"]
            if name not in PINNED or name in maps:
                raise ValueError(f"unexpected map {name!r}")
            fd = open_pinned(str(xdp.pin_dir / name))
            maps[name] = MapFd(fd, decode(d["key"]), decode(d["leaf"]), name == "stats")
            maps[name].check(xdp.max_sessions)
        xdp.adopt_maps(
            saved["mode"],
            True,
            {"sessions": maps["sessions"], "stats": maps["stats"], "verdicts": None},
        )
    except FileNotFoundError:
        return None
    except (ValueError, LookupError, TypeError, AttributeError, OSError, XdpUnavailable) as exc:
        for m in maps.values():
            m.close()
        log.info("the previous XDP maps are not re-used until the new program loads: %s", exc)
        return None
    log.info("re-using the previous XDP program's maps (%s) while the new one loads", saved["mode"])
    return KernelTable(xdp, bind, tally, clock, bind6)
