"""Type aliases shared by every package. A leaf: imports nothing from sipedge (like aiohttp's
`typedefs.py`)."""

from __future__ import annotations

from typing import Any

MYPYC = False
"""Only mypyc's build sees this true (setup.py: `--always-true=MYPYC`); see `Addr`."""

if not MYPYC:
    Addr = tuple[str, int]
    """A transport address: (host, port). IPv6 hosts are written without brackets."""
else:
    # mypyc stores a `tuple[str, int]` unboxed, as two fields, and boxes it again as a plain
    # tuple: a `sip.transport.destination.Destination` (a tuple subclass naming TCP/TLS and a
    # connection) would reach the socket as a UDP address. Compiled, an address stays the
    # object it was; mypy's own run (strict, never compiled) checks the tuple type above.
    Addr = Any  # type: ignore[misc]
