"""A small authoritative DNS server for tests: UDP on 127.0.0.1, answers from a dict.

The tests never ask a real DNS server: sipd (``sip.dns_servers``) and the resolver under test
are pointed at this one. It runs its own asyncio loop in a thread, so synchronous tests (SIPp,
a sipd process) and async ones use it alike; it binds port 0 and reports the port it got.

Records, by name (lower case, no final dot)::

    {
        "gw.test": ["A 127.0.0.1"],                      # default TTL (`ttl`)
        "_sip._udp.srv.test": ["60 SRV 10 0 5070 gw.test."],   # a TTL first, then type, rdata
        "naptr.test": ['NAPTR 10 10 "s" "SIP+D2U" "" _sip._udp.srv.test.'],
        "nx.test": NXDOMAIN,                             # the same as leaving it out
        "broken.test": SERVFAIL,
        "silent.test": SILENT,                           # never answered: the client times out
    }

A name that is listed without the asked type gets NOERROR with no answer (NODATA); negative
answers carry an SOA whose minimum is `negative_ttl`. A name that is not listed but has listed
names below it (``srv.test`` for ``_sip._udp.srv.test``) exists, as in real DNS: NODATA.
Every question is appended to `queries` as (name, type), so a test can tell what was asked and
when the cache held. `records` may be changed while the server runs.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

NXDOMAIN = "nxdomain"
SERVFAIL = "servfail"
SILENT = "silent"
ZONE_SOA = "ns.test. hostmaster.test. 1 3600 600 86400 {minimum}"

Records = dict[str, Any]  # name -> list of "[ttl] TYPE rdata" texts, or NXDOMAIN/SERVFAIL/SILENT


class DnsTestServer:
    def __init__(self, records: Records, ttl: int = 60, negative_ttl: int = 5) -> None:
        self.records = {name.rstrip(".").lower(): value for name, value in records.items()}
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.queries: list[tuple[str, str]] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    # -- life -------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        """As ``sip.dns_servers`` takes it."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> DnsTestServer:
        self._thread = threading.Thread(target=self._serve, name="dns-test-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("the test DNS server did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and self._thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> DnsTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        server = self

        class Protocol(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                server._transport = transport  # type: ignore[assignment]

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                reply = server.answer(data)
                if reply is not None and server._transport is not None:
                    server._transport.sendto(reply, addr)

        transport, _ = loop.run_until_complete(
            loop.create_datagram_endpoint(Protocol, local_addr=("127.0.0.1", 0))
        )
        self.port = int(transport.get_extra_info("sockname")[1])
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            transport.close()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    # -- answers ----------------------------------------------------------------------------
    def answer(self, wire: bytes) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None
        if not query.question:
            return None
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, rdtype))
        entry = self.records.get(name)
        if entry is None:  # an empty non-terminal (parent of a listed name) exists: NODATA
            below = any(other.endswith("." + name) for other in list(self.records))
            entry = [] if below else NXDOMAIN
        if entry == SILENT:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if entry == SERVFAIL:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response.to_wire()
        if entry == NXDOMAIN:
            response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(self._soa())
            return response.to_wire()
        ttls: list[int] = []
        texts: list[str] = []
        for line in entry:
            parts = line.split(None, 1)
            ttl = self.ttl
            if parts[0].isdigit():
                ttl = int(parts[0])
                parts = parts[1].split(None, 1)
            if parts[0].upper() == rdtype:
                ttls.append(ttl)
                texts.append(parts[1])
        if texts:
            response.answer.append(
                dns.rrset.from_text_list(question.name, min(ttls), "IN", rdtype, texts)
            )
        else:
            response.authority.append(self._soa())
        return response.to_wire()

    def _soa(self) -> dns.rrset.RRset:
        return dns.rrset.from_text(
            "test.",
            self.negative_ttl,
            "IN",
            "SOA",
            ZONE_SOA.format(minimum=self.negative_ttl),
        )

    def asked(self, name: str, rdtype: str | None = None) -> int:
        """How many questions for `name` (of `rdtype`, or any) came in so far."""
        name = name.rstrip(".").lower()
        return sum(1 for n, t in self.queries if n == name and (rdtype is None or t == rdtype))
