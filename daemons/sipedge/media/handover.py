"""The move onto the XDP path at start: mediad relays in userspace at once while the loader
child compiles and attaches the program, then every live session moves into the maps it hands
over (packets of a session go to the userspace sockets until its entries are written, and to
XDP from then on, so none is lost).

`begin` (as root, in `prepare()`): the quick checks (interfaces, root, kernel headers, bcc),
then the loader child. `take` (in the event loop, when the child reports): the maps, the kernel
table, every session synced and stale entries pruned.

Owns: which checks run before READY and how a report becomes a `KernelTable`. Must not: decide
what a failure means for the daemon (media.fast_path auto stays in userspace, the strict
values stop mediad: daemon.py), or compile anything itself (loader.py's child does).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from sipedge.media.kernel import KernelTable
from sipedge.media.loader import Loader, LoadResult, spawn
from sipedge.media.session import Session
from sipedge.media.settings import MediaSettings
from sipedge.media.tally import XdpTally
from sipedge.media.xdp import XdpPath, XdpUnavailable

log = logging.getLogger("sipedge.media")

LOADING = "XDP loading"  # path_reason while the loader runs


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
    except XdpUnavailable as exc:
        if fp != "auto":
            raise
        log.warning("XDP fast path unavailable, relaying in userspace: %s", exc)
        return None, None, str(exc)
    return xdp, spawn(xdp.interfaces, mode, xdp.pin_dir, xdp.max_sessions), LOADING


def take(
    xdp: XdpPath,
    result: LoadResult,
    sessions: Iterable[Session],
    bind: str,
    bind6: str | None,
    tally: XdpTally,
    clock: Callable[[], float],
) -> KernelTable:
    """The kernel table over the maps the loader handed over, with every session in it;
    raises XdpUnavailable (with the loader's reason) when there is none."""
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
    return kernel
