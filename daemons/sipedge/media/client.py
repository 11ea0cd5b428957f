"""Async client for the mediad control API over its unix socket (used by sipd).

async with MediaClient("/run/sipedge-media/mediad.sock") as media:
    r = await media.offer("call-1", "tagA", "198.51.100.7", 4000, signal_address="198.51.100.7")
    # write r.address / r.port into the SDP sent to the callee
    r = await media.answer("call-1", "tagA", "tagB", "203.0.113.10", 5000)
    r = await media.offer("call-2", "tagA", "2001:db8::7", 4000, address_family="IP6")
    # write r.address / r.port into the SDP sent back to the caller
    info = await media.query("call-1")   # info["legs"][1]["rtp-started"]
    await media.touch(["call-1"])        # reset mediad's idle clock (sipd's reconciliation)
    await media.delete("call-1")
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp


class MediaError(Exception):
    """mediad refused a request (`code` e.g. unknown-call, bad-port, ports-exhausted, bad-key)
    or could not be reached (`code` "unreachable")."""

    def __init__(self, code: str, reason: str, status: int = 0) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.status = status


# mediad's error-code when it has no relay address of the family asked for
FAMILY_UNAVAILABLE = "address-family-unavailable"
ADDRESS_FAMILIES = ("IP4", "IP6")


def _family(address_family: str) -> dict[str, str]:
    """The "address-family" key of an offer/answer: absent for IP4 (what mediad assumes, and
    what a mediad from before IPv6 understands), "IP6" otherwise."""
    if address_family not in ADDRESS_FAMILIES:
        raise ValueError(f"address_family {address_family!r}: IP4 or IP6")
    return {} if address_family == "IP4" else {"address-family": address_family}


@dataclass(frozen=True)
class RelayAddress:
    call_id: str
    address: str
    port: int
    rtcp_port: int
    path: str


class MediaClient:
    def __init__(self, socket_path: str | Path, timeout: float = 2.0) -> None:
        self.socket_path = str(socket_path)
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> MediaClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=self.socket_path), timeout=self.timeout
            )
        return self._session

    async def request(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /ng; returns the JSON answer or raises MediaError."""
        try:
            async with self._http().post("http://mediad/ng", json=body) as resp:
                data = await resp.json(content_type=None)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise MediaError("unreachable", f"mediad at {self.socket_path}: {exc}") from None
        if not isinstance(data, dict):
            raise MediaError("bad-answer", f"mediad answered {data!r}", status)
        if data.get("result") == "error" or status >= 400:
            raise MediaError(
                str(data.get("error-code", "error")), str(data.get("error-reason", "")), status
            )
        return data

    @staticmethod
    def _leg(
        address: str,
        port: int,
        encryption: bool,
        mode: int | str | None,
        key: str | None,
        signal_address: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"address": address, "port": port, "encryption": encryption}
        if mode is not None:
            body["encryption-mode"] = mode
        if key is not None:
            body["encryption-key"] = key
        if signal_address is not None:
            body["signal-address"] = signal_address
        return body

    @staticmethod
    def _relay(data: dict[str, Any]) -> RelayAddress:
        return RelayAddress(
            call_id=str(data["call-id"]),
            address=str(data["address"]),
            port=int(data["port"]),
            rtcp_port=int(data["rtcp-port"]),
            path=str(data.get("path", "")),
        )

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
    ) -> RelayAddress:
        """Caller's SDP address/port in; the relay address/port for the callee's SDP out.
        `signal_address`: the source IP of the SIP message that carried this SDP (a latching
        candidate at mediad), sent as "signal-address". `address_family` (IP4 / IP6): the
        family of the relay address to return, that of the party receiving the rewritten
        SDP (rtpengine's "address-family"); sent only when IP6, absent means IP4. mediad
        without an IPv6 relay address answers error-code "address-family-unavailable"."""
        body = {"command": "offer", "call-id": call_id, "from-tag": from_tag}
        body.update(self._leg(address, port, encryption, mode, key, signal_address))
        body.update(_family(address_family))
        return self._relay(await self.request(body))

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
    ) -> RelayAddress:
        """Callee's SDP address/port in; the relay address/port for the caller's SDP out.
        `signal_address` as for `offer`, of the answering party; `address_family` as for
        `offer`: the caller's family."""
        body = {"command": "answer", "call-id": call_id, "from-tag": from_tag, "to-tag": to_tag}
        body.update(self._leg(address, port, encryption, mode, key, signal_address))
        body.update(_family(address_family))
        return self._relay(await self.request(body))

    async def relay_families(self) -> frozenset[str] | None:
        """The relay address families mediad has (`ping`): IP4, and IP6 with
        media.bind_address_v6; None from a mediad that does not say (before IPv6)."""
        data = await self.request({"command": "ping"})
        families = data.get("families")
        if not isinstance(families, list):
            return None
        return frozenset(f for f in families if f in ("IP4", "IP6"))

    async def delete(self, call_id: str) -> dict[str, Any]:
        """Ends the session; returns its final per-leg statistics (as query)."""
        return await self.request({"command": "delete", "call-id": call_id})

    async def query(self, call_id: str) -> dict[str, Any]:
        return await self.request({"command": "query", "call-id": call_id})

    async def list(self) -> list[dict[str, Any]]:
        data = await self.request({"command": "list"})
        return list(data.get("calls", []))

    async def touch(self, call_ids: Sequence[str]) -> dict[str, Any]:
        """Reset mediad's idle clock of each session (at most 65536 ids per request); the
        answer has "touched" (a count) and "unknown" (the ids mediad does not hold)."""
        return await self.request({"command": "touch", "call-ids": list(call_ids)})

    async def rtp_started(self, call_id: str, tag: str | None = None) -> bool:
        """Has RTP arrived from the leg `tag` (default: the callee leg)?"""
        legs = (await self.query(call_id))["legs"]
        for leg in legs if tag is not None else legs[1:]:
            if tag is None or leg["tag"] == tag:
                return bool(leg["rtp-started"])
        return False
