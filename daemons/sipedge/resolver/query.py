"""The resolver's dnspython half: one query to the DNS servers, its answer as `targets.Answer`.

Imported by `client.DnsResolver` at its first query, so that a sipd whose gateways are all
addresses never imports dnspython (half a second of a start under emulation) nor reads
``/etc/resolv.conf``.

Owns: `DnsQuerier` (the dnspython asyncio resolver, built from the settings when the first
query needs it) and the conversion of dnspython's records and errors into `Answer`.
Must not: cache, decide the RFC 3263 steps (`targets.py`), or count queries (client.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.rdatatype
import dns.resolver
from dns.rdtypes.ANY.SOA import SOA
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA
from dns.rdtypes.IN.NAPTR import NAPTR
from dns.rdtypes.IN.SRV import SRV

from sipedge.resolver.targets import (
    ERROR,
    NXDOMAIN,
    SERVFAIL,
    TIMEOUT,
    Answer,
    NaptrRecord,
    Query,
    SrvRecord,
)
from sipedge.typedefs import Addr

log = logging.getLogger(__name__)


class DnsQuerier:
    """dnspython's asyncio resolver with sipd's settings: the given servers (else the system's,
    read at the first query), one timeout for a query across all servers, no search list."""

    def __init__(self, servers: tuple[Addr, ...], timeout: float) -> None:
        self.servers = servers
        self.timeout = timeout
        self._resolver: dns.asyncresolver.Resolver | None = None

    def _built(self) -> dns.asyncresolver.Resolver:
        if self._resolver is None:
            resolver = dns.asyncresolver.Resolver(configure=not self.servers)
            if self.servers:
                resolver.nameservers = [host for host, _ in self.servers]
                resolver.nameserver_ports = {host: port for host, port in self.servers}
            resolver.timeout = self.timeout
            resolver.lifetime = self.timeout
            resolver.search = []
            self._resolver = resolver
        return self._resolver

    async def ask(self, query: Query) -> Answer:
        """The records of one name and type, or the error label; never raises a DNS error."""
        try:
            resolver = self._built()
        except dns.exception.DNSException as err:  # no /etc/resolv.conf and no dns_servers
            log.warning("no DNS server to ask: %s", err)
            return Answer(error=SERVFAIL)
        try:
            answer = await resolver.resolve(
                dns.name.from_text(query.name),
                query.rdtype,
                raise_on_no_answer=False,
                search=False,
            )
        except dns.resolver.NXDOMAIN as err:
            return Answer(ttl=_nxdomain_ttl(err), error=NXDOMAIN)
        except dns.exception.Timeout:
            return Answer(error=TIMEOUT)
        except dns.resolver.NoNameservers:
            return Answer(error=SERVFAIL)
        except dns.exception.DNSException as err:
            log.info("DNS %s %s: %s", query.rdtype, query.name, err)
            return Answer(error=ERROR)
        if answer.rrset is None:
            return Answer(ttl=_soa_ttl(answer.response))
        return Answer(tuple(_records(answer.rrset)), float(answer.rrset.ttl))


def _records(rrset: Iterable[object]) -> Iterator[str | SrvRecord | NaptrRecord]:
    for rdata in rrset:
        if isinstance(rdata, A | AAAA):
            yield str(rdata.address)
        elif isinstance(rdata, SRV):
            yield SrvRecord(rdata.priority, rdata.weight, rdata.port, _name(rdata.target))
        elif isinstance(rdata, NAPTR):
            yield NaptrRecord(
                rdata.order,
                rdata.preference,
                _text(rdata.flags),
                _text(rdata.service),
                _name(rdata.replacement),
            )


def _name(name: object) -> str:
    if not isinstance(name, dns.name.Name) or name == dns.name.root:
        return "."
    return str(name.to_text(omit_final_dot=True)).lower()


def _text(value: object) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)


def _soa_ttl(response: dns.message.Message | None) -> float:
    """RFC 2308: a negative answer lives for the smaller of the SOA's TTL and its minimum."""
    if response is None:
        return 0.0
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA:
            for soa in rrset:
                if isinstance(soa, SOA):
                    return float(min(rrset.ttl, soa.minimum))
    return 0.0


def _nxdomain_ttl(err: dns.resolver.NXDOMAIN) -> float:
    try:
        responses = err.responses()  # type: ignore[no-untyped-call]
    except Exception:
        return 0.0
    for response in responses.values():
        if isinstance(response, dns.message.Message):
            return _soa_ttl(response)
    return 0.0
