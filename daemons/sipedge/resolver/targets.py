"""Where a SIP gateway given by host name is, per RFC 3263 (UDP, TCP, TLS): the pure half.

Owns: the RFC 3263 lookup as a step machine (`Lookup`: answers in, the next `Query` or the
`Resolution` out), RFC 2782 ordering of SRV targets by priority and weight (`srv_order`), the
NAPTR selection (`naptr_services`), the records it works on (`Query`, `Answer`, `SrvRecord`,
`NaptrRecord`, `Entry`), the result (`Resolution`, with its TTL) and what a caller gets
(`Targets`: the addresses in the order to try them, or the failure to put in a CDR).
Must not: send a query, read a file or the clock, draw random numbers of its own (a `rand`
is passed in), or import anything of sipedge but `typedefs`. Driven by: `resolver/client.py`.

The steps (RFC 3263 4.1 and 4.2). The transport is the gateway's, configured (we do not
pick it from NAPTR): it chooses the NAPTR service, the SRV name and the default port.

| transport | NAPTR service | SRV name | default port |
|---|---|---|---|
| udp | ``SIP+D2U`` | ``_sip._udp.<name>`` | 5060 |
| tcp | ``SIP+D2T`` | ``_sip._tcp.<name>`` | 5060 |
| tls | ``SIPS+D2T`` | ``_sips._tcp.<name>`` | 5061 |

* an IP literal is its own target; a name in the hosts file (`hosts.py`) gives its addresses
  at once, no DNS query (the hosts file has no SRV: port as given, else the default port);
* a port given with the name: A only (RFC 3263 4.2: no NAPTR, no SRV);
* no port: NAPTR of the name, keeping the services of the transport with flag ``s`` in (order,
  preference) order; no NAPTR (or none for the transport): the SRV name above; each SRV name in
  turn until one has records; then A of every SRV target (at most `MAX_SRV_TARGETS`, a target
  in the hosts file without a query); no SRV at all: A of the name, the default port;
* with `ipv6` (sipd has an IPv6 listener, docs/ipv6.md): A, then AAAA of every name whose
  addresses are wanted; its IPv4 addresses come first, then its IPv6 ones (existing IPv4
  interconnects are tried as before; IPv6 is the next target to fail over to). Without it:
  AAAA is asked only when A has no record, so that the failure can say the name is IPv6-only.

Failures end the lookup at once, except where another name is left to try: NXDOMAIN of the
name itself (nothing below it exists either, RFC 8020), a timeout or SERVFAIL (the next query
would wait as long again). Their text goes into the CDR as ``dns-failure: <name>: <error>``.

TTLs: a positive result lives for the smallest TTL of the records it used (at most `MAX_TTL`),
a negative one briefly: NXDOMAIN and "no answer" for the SOA's negative TTL, at most
`NEGATIVE_TTL`; a timeout or SERVFAIL for `FAILURE_TTL`, so that a silent server does not hold
up every call for its full timeout, and is asked again soon.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sipedge.typedefs import Addr

__all__ = [
    "DEFAULT_PORT",
    "FAILURE_TTL",
    "MAX_SRV_TARGETS",
    "MAX_TTL",
    "NEGATIVE_TTL",
    "SERVICES",
    "Answer",
    "Entry",
    "Lookup",
    "NaptrRecord",
    "Query",
    "Resolution",
    "SrvRecord",
    "Targets",
    "default_port",
    "failure_label",
    "is_literal",
    "literal",
    "naptr_services",
    "srv_order",
]

DEFAULT_PORT = 5060
# per transport: the NAPTR service, the SRV prefix and the default port (RFC 3263 4.1, 4.2)
SERVICES = {
    "udp": ("SIP+D2U", "_sip._udp", 5060),
    "tcp": ("SIP+D2T", "_sip._tcp", 5060),
    "tls": ("SIPS+D2T", "_sips._tcp", 5061),
}
MAX_TTL = 3600.0  # a positive answer is asked again after an hour at most
NEGATIVE_TTL = 30.0  # NXDOMAIN / no answer: at most this long (RFC 2308 SOA minimum below it)
FAILURE_TTL = 5.0  # timeout / SERVFAIL: asked again after this long
MAX_SRV_TARGETS = 8  # SRV targets whose addresses are looked up, in priority order

# The errors a lookup ends with (the CDR's text) and their metric labels: a closed set.
NXDOMAIN = "NXDOMAIN"
NO_ANSWER = "no answer"
TIMEOUT = "timeout"
SERVFAIL = "SERVFAIL"
NO_SERVICE = "no SIP service (SRV target '.')"
NO_SRV_ADDRESS = "no address for the SRV targets"
IPV6_ONLY = "no IPv4 address (AAAA only, and sipd has no IPv6 listener)"
ERROR = "error"
_LABELS = {
    NXDOMAIN: "nxdomain",
    NO_ANSWER: "no_answer",
    TIMEOUT: "timeout",
    SERVFAIL: "servfail",
    NO_SERVICE: "no_service",
    NO_SRV_ADDRESS: "no_srv_address",
    IPV6_ONLY: "ipv6_only",
}


def failure_label(error: str) -> str:
    """The metric label of a lookup's error (anything unforeseen is "error")."""
    return _LABELS.get(error, "error")


def is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Query:
    """One DNS question: an absolute name without its final dot, and A/AAAA/SRV/NAPTR."""

    name: str
    rdtype: str


@dataclass(frozen=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str  # lower case, no final dot; "." is "no service here"


@dataclass(frozen=True)
class NaptrRecord:
    order: int
    preference: int
    flags: str
    service: str
    replacement: str  # lower case, no final dot


@dataclass(frozen=True)
class Answer:
    """What the server said: records (addresses as text for A/AAAA), or none and why.

    ``error`` None with no records is "no answer" (NODATA). ``ttl``: the records' TTL, or for a
    negative answer the SOA's negative TTL (0 when unknown)."""

    records: tuple[str | SrvRecord | NaptrRecord, ...] = ()
    ttl: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class Entry:
    """Addresses reached on one port, ranked as an SRV record (an A-only result is one entry
    of priority 0, weight 0)."""

    priority: int
    weight: int
    port: int
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class Targets:
    """What a caller of the resolver gets: addresses in the order to try them, or the error."""

    name: str
    addresses: tuple[Addr, ...] = ()
    error: str | None = None

    @property
    def failure(self) -> str:
        """The CDR text of a failed lookup: ``dns-failure: <name>: <error>``."""
        return f"dns-failure: {self.name}: {self.error or NO_ANSWER}"


@dataclass(frozen=True)
class Resolution:
    """The result of a lookup, as cached: entries (empty on failure), the error, the TTL."""

    name: str
    entries: tuple[Entry, ...] = ()
    error: str | None = None
    ttl: float = 0.0
    source: str = "dns"  # "literal", "hosts" or "dns"

    @property
    def addresses(self) -> frozenset[str]:
        return frozenset(host for entry in self.entries for host in entry.hosts)

    def ordered(self, rand: Callable[[], float]) -> Targets:
        """The targets in the order to try them: SRV priority, weights drawn anew each time
        (RFC 2782), then each target's addresses (in the order dnspython hands them over)."""
        seen: set[Addr] = set()
        out: list[Addr] = []
        for entry in srv_order(self.entries, rand):
            for host in entry.hosts:
                if (host, entry.port) not in seen:
                    seen.add((host, entry.port))
                    out.append((host, entry.port))
        return Targets(self.name, tuple(out), None if out else (self.error or NO_ANSWER))


def srv_order(entries: Sequence[Entry], rand: Callable[[], float]) -> list[Entry]:
    """RFC 2782 order: lowest priority first; within a priority, repeatedly draw an integer in
    [0, sum of the weights left] and take the first entry whose running sum reaches it (weight
    0 entries listed first, so they have a small chance only). ``rand`` returns [0, 1)."""
    out: list[Entry] = []
    for priority in sorted({e.priority for e in entries}):
        group = sorted((e for e in entries if e.priority == priority), key=lambda e: e.weight != 0)
        while group:
            total = sum(e.weight for e in group)
            pick = min(int(rand() * (total + 1)), total)
            running = 0
            for i, entry in enumerate(group):
                running += entry.weight
                if running >= pick:
                    out.append(group.pop(i))
                    break
    return out


def default_port(transport: str) -> int:
    """The port of a name without SRV records (and without a port): 5061 for TLS, else 5060."""
    return SERVICES.get(transport, SERVICES["udp"])[2]


def naptr_services(records: Sequence[NaptrRecord], transport: str = "udp") -> list[str]:
    """The SRV names of the NAPTR records for SIP over `transport` (service ``SIP+D2U``,
    ``SIP+D2T`` or ``SIPS+D2T``, flag ``s``), in (order, preference) order (RFC 3263 4.1)."""
    service = SERVICES[transport][0]
    wanted = [
        r
        for r in records
        if r.service.upper() == service and r.flags.lower() == "s" and r.replacement
    ]
    wanted.sort(key=lambda r: (r.order, r.preference))
    names: list[str] = []
    for r in wanted:
        if r.replacement not in names:
            names.append(r.replacement)
    return names


def _negative_ttl(answer: Answer) -> float:
    if answer.error in (None, NXDOMAIN):
        return min(answer.ttl, NEGATIVE_TTL) if answer.ttl > 0 else NEGATIVE_TTL
    return FAILURE_TTL


@dataclass
class Lookup:
    """One RFC 3263 lookup of `name`: `start()`, then `on_answer()` per query until a
    `Resolution` comes out. ``port`` None: no port was given (NAPTR and SRV apply);
    ``transport`` picks the NAPTR service, the SRV name and the default port (`SERVICES`)."""

    name: str
    port: int | None
    hosts: Callable[[str], tuple[str, ...] | None] = lambda name: None  # the hosts file
    transport: str = "udp"
    ipv6: bool = False  # AAAA wanted too (see the module docstring)
    _phase: str = "start"
    _v4: tuple[str, ...] = ()  # the A records of the name asked for AAAA now
    _ttl: float = MAX_TTL
    _srv_names: list[str] = field(default_factory=list)
    _srv: list[SrvRecord] = field(default_factory=list)
    _pending: list[str] = field(default_factory=list)  # SRV targets still to look up
    _found: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.name = self.name.rstrip(".").lower()

    def start(self) -> Query | Resolution:
        if self.port is not None:
            return self._ask("a", Query(self.name, "A"))
        return self._ask("naptr", Query(self.name, "NAPTR"))

    def on_answer(self, query: Query, answer: Answer) -> Query | Resolution:
        phase = self._phase
        if answer.records:
            self._ttl = min(self._ttl, max(answer.ttl, 0.0))
        if phase == "naptr":
            if answer.error is not None:
                return self._fail(answer)
            naptr = [r for r in answer.records if isinstance(r, NaptrRecord)]
            found = naptr_services(naptr, self.transport)
            self._srv_names = found or [f"{SERVICES[self.transport][1]}.{self.name}"]
            return self._next_srv_name()
        if phase == "srv":
            return self._on_srv(answer)
        hosts = tuple(r for r in answer.records if isinstance(r, str))
        if phase in ("srv-a", "srv-aaaa"):
            if self.ipv6 and phase == "srv-a" and answer.error in (None, NO_ANSWER):
                self._v4 = hosts
                return self._ask("srv-aaaa", Query(query.name, "AAAA"))
            hosts = (self._v4 + hosts) if phase == "srv-aaaa" else hosts
            self._v4 = ()
            if hosts:
                self._found[query.name] = hosts
            return self._next_srv_target()
        if phase == "a":
            if self.ipv6 and answer.error is None:
                self._v4 = hosts
                return self._ask("aaaa", Query(self.name, "AAAA"))
            if hosts:
                port = default_port(self.transport) if self.port is None else self.port
                return self._done((Entry(0, 0, port, hosts),))
            if answer.error is not None:
                return self._fail(answer)
            return self._ask("aaaa", Query(self.name, "AAAA"))
        if self.ipv6:  # phase "aaaa": the A records first, then these
            both = self._v4 + hosts
            if both:
                port = DEFAULT_PORT if self.port is None else self.port
                return self._done((Entry(0, 0, port, both),))
            return self._fail(Answer(ttl=answer.ttl, error=answer.error or NO_ANSWER))
        # phase "aaaa": an IPv6-only name is a failure, but says so
        if answer.records:
            return self._fail(Answer(error=IPV6_ONLY), FAILURE_TTL)
        return self._fail(Answer(ttl=answer.ttl, error=answer.error or NO_ANSWER))

    # -- steps ------------------------------------------------------------------------------
    def _ask(self, phase: str, query: Query) -> Query:
        self._phase = phase
        return query

    def _next_srv_name(self) -> Query | Resolution:
        if self._srv_names:
            return self._ask("srv", Query(self._srv_names.pop(0), "SRV"))
        return self._a_of_name()

    def _a_of_name(self) -> Query | Resolution:
        known = self.hosts(self.name)
        if known:
            return self._done((Entry(0, 0, default_port(self.transport), known),))
        return self._ask("a", Query(self.name, "A"))

    def _on_srv(self, answer: Answer) -> Query | Resolution:
        if answer.error not in (None, NXDOMAIN):
            return self._fail(answer)
        records = [r for r in answer.records if isinstance(r, SrvRecord)]
        if not records:
            return self._next_srv_name()  # this SRV name has none: the next, or A
        self._srv = [r for r in records if r.target not in (".", "")]
        if not self._srv:
            return self._fail(Answer(ttl=answer.ttl, error=NO_SERVICE), NEGATIVE_TTL)
        ranked = sorted(self._srv, key=lambda r: (r.priority, -r.weight))
        for r in ranked:
            if r.target in self._pending or r.target in self._found:
                continue
            if len(self._pending) + len(self._found) >= MAX_SRV_TARGETS:
                break
            known = self.hosts(r.target)
            if known:
                self._found[r.target] = known
            else:
                self._pending.append(r.target)
        return self._next_srv_target()

    def _next_srv_target(self) -> Query | Resolution:
        if self._pending:
            return self._ask("srv-a", Query(self._pending.pop(0), "A"))
        entries = tuple(
            Entry(r.priority, r.weight, r.port, self._found[r.target])
            for r in self._srv
            if r.target in self._found
        )
        if not entries:
            return self._fail(Answer(error=NO_SRV_ADDRESS), FAILURE_TTL)
        return self._done(entries)

    def _done(self, entries: tuple[Entry, ...]) -> Resolution:
        self._phase = "done"
        return Resolution(self.name, entries, None, self._ttl)

    def _fail(self, answer: Answer, ttl: float | None = None) -> Resolution:
        self._phase = "done"
        error = answer.error or NO_ANSWER
        return Resolution(self.name, (), error, _negative_ttl(answer) if ttl is None else ttl)


def literal(host: str, port: int | None, transport: str = "udp") -> Resolution | None:
    """An IP address is its own target (None: `host` is a name)."""
    if not is_literal(host):
        return None
    entry = Entry(0, 0, default_port(transport) if port is None else port, (host,))
    return Resolution(host, (entry,), None, MAX_TTL, "literal")
