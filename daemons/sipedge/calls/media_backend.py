"""What calls/ uses of sipedge-mediad's client: the `MediaBackend` Protocol.

`sipedge.media.client.MediaClient` implements it over mediad's unix socket; unit tests put an
in-memory fake behind it. Split from media_link.py (which drives it) to keep that module short.

Owns: `MediaBackend`. Must not: hold state or import another module of calls/.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from sipedge.media.client import RelayAddress

__all__ = ["MediaBackend"]


class MediaBackend(Protocol):
    """What we use of `sipedge.media.client.MediaClient` (a fake in unit tests)."""

    async def offer(
        self,
        call_id: str,
        from_tag: str,
        address: str,
        port: int,
        encryption: bool = False,
        mode: int | str | None = None,
        key: str | None = None,
        signal_address: str | None = None,
        *,
        address_family: str = "IP4",
    ) -> RelayAddress: ...

    async def answer(
        self,
        call_id: str,
        from_tag: str,
        to_tag: str,
        address: str,
        port: int,
        encryption: bool = False,
        mode: int | str | None = None,
        key: str | None = None,
        signal_address: str | None = None,
        *,
        address_family: str = "IP4",
    ) -> RelayAddress: ...

    async def relay_families(self) -> frozenset[str] | None: ...

    async def delete(self, call_id: str) -> dict[str, Any]: ...

    async def query(self, call_id: str) -> dict[str, Any]: ...

    async def list(self) -> list[dict[str, Any]]: ...

    async def touch(self, call_ids: Sequence[str]) -> dict[str, Any]: ...

    async def close(self) -> None: ...
