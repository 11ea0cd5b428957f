"""The media relay (sipedge-mediad), and sipd's client of it.

The daemon anchors the RTP and RTCP of a call, modelled on rtpengine:

* `api.py`: the control API, modelled on rtpengine's ng protocol (JSON commands offer, answer,
  delete, query, list over HTTP on a unix socket), with `MediaControl`, the Protocol of what it
  needs of the daemon;
* `daemon.py`: lifecycle (root work, the privilege drop, then the relay), the ng commands,
  idle expiry (console script `sipedge-mediad`, `daemon:main`); `settings.py`: its settings
  and flags;
* `xdp.py`: the XDP fast path; compiles and attaches `ebpf/media_relay.c` and is the only
  module that knows the BPF map layout (the other side of it is the C program);
  `kernel.py`: keeps that table in step with the sessions, `--cleanup`;
* `relay.py`: the userspace relay, for what XDP passes up or cannot do (AES128, no XDP);
* `session.py`: sessions, legs and the source rule (pure state), `request.py`: the fields of
  an ng request and `ControlError`, `ports.py`: random relay port
  pairs, `crypto.py`: the RTP payload transforms of SS_RTPENCRYPTIONMODE (pure);
* `report.py`: a leg as query/delete answer it; `journal.py`: the session journal;
  `expiry.py`: which sessions are idle (pure);
  `tally.py`: counter totals that only grow (pure).

`client.py` is sipd's side of the control link. Public names: `MediaClient`, `MediaError`,
`RelayAddress` (from client.py), imported at first use: the XDP loader child imports this
package too (`python -m sipedge.media.loader`), and the client's aiohttp would cost it seconds of
a boot under emulation for nothing.

Dependency direction: sipd and calls/ import the client only; nothing in media/ imports sipd,
calls/ or sip/, and the client imports nothing else of sipedge. Inside media/, daemon.py
imports the others; nothing imports daemon.py; session.py imports only ports, crypto and
request.
media/ uses `appliance.privileges` for the privilege drop and private directories.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sipedge.media.client import MediaClient, MediaError, RelayAddress

__all__ = ["MediaClient", "MediaError", "RelayAddress"]


def __getattr__(name: str) -> Any:  # PEP 562: the client's names, imported when first asked
    if name in __all__:
        from sipedge.media import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
