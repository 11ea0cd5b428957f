"""Type aliases shared by every package. A leaf: imports nothing from sipedge (like aiohttp's
`typedefs.py`)."""

from __future__ import annotations

Addr = tuple[str, int]
"""A transport address: (host, port). IPv6 hosts are written without brackets."""
