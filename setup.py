"""Build step of sipedge's SIP stack: its hot modules compiled to C extensions by mypyc (issue 20).

Everything about the project is in pyproject.toml; this file only adds the extensions. The
modules below parse, check and build every SIP message sipd handles (sip/), match them to
transactions and dialogs, run the B2BUA's calls and their media policy (calls/), screen their
sources (guard/), draw their identifiers (entropy) and count them per gateway (stats/). They
are plain typed Python, and run as such when SIPEDGE_PURE=1 is set at build time (then no
compiler is needed); compiled, sipd spends less CPU per call (docs/performance.md, "The message
layer compiled", "Transactions and call control compiled" and "The call itself compiled"). The
.py files stay the source of truth: mypyc compiles them as they are, against the types of every
module they import, so `make setup` rebuilds when any module of the package changes
(tests/conftest.py refuses to run on a compiled module older than its source).

Transport addresses: mypyc stores a value typed `tuple[str, int]` unboxed and boxes it again as
a plain tuple, which would turn a `sip.transport.destination.Destination` (a tuple subclass
that names TCP/TLS and a connection) into a UDP address on the way through. So the build makes
`typedefs.Addr` `Any` (`--always-true=MYPYC`): compiled, an address stays the object it was;
mypy's own strict run checks the tuple type (tests/unit/test_transaction.py's
`test_a_destination_keeps_its_transport_through_the_layer` fails on a build without it). A
compiled class takes no weak reference: a `Call`'s helpers (`refresh.LegTimers`,
`media_link.CallMedia`) hold it until its end and let go of it there, and the `Forwarder` is
handed it with each request (tests/unit/test_call_garbage.py finds no cycle left). A compiled
function checks the classes of what it is given and a compiled object's methods cannot be
replaced: `calls/media_service` (its tests replace `holding_off` on an instance) and
`calls/carrier_events` (its tests hand it stand-in attempts) stay Python, as do the transports
(sockets; `intake`'s tests replace its functions, which compiled calls would not see) and
everything off the per-call path.
"""

from __future__ import annotations

import os

from setuptools import setup

COMPILED = (
    "sip/address",
    "sip/errors",
    "sip/headers",
    "sip/identifiers",
    "sip/limits",
    "sip/message",
    "sip/sdp",
    "sip/validation",
    "sip/transaction",
    "sip/dialog",
    "sip/timers",
    "calls/service",
    "calls/identity",
    "calls/session_timer",
    "calls/refresh",
    "calls/switching",
    "calls/media_link",
    "calls/attempt",
    "calls/in_dialog",
    "calls/call",
    "calls/media_session",
    "calls/media_policy",
    "calls/media_queue",
    "calls/media_families",
    "calls/capacity",
    "calls/linger",
    "guard/service",
    "guard/rules",
    "guard/tables",
    "entropy",
    "stats/windows",
    "stats/carriers",
)


def compiled_sources() -> list[str]:
    """The compiled modules' sources, relative to this file."""
    return [f"daemons/sipedge/{name}.py" for name in COMPILED]


def extensions() -> list[object]:
    if os.environ.get("SIPEDGE_PURE") == "1":
        return []
    from mypyc.build import mypycify

    # mypy reads pyproject.toml's [tool.mypy] (strict); a type error stops the build. With
    # `Addr` as Any (see above) it would also flag what the tuple type justifies: mypy's own
    # run checks those, with the tuple. Third-party packages are left out (Any to the
    # compiler) so that every build sees the same: pip builds the wheel in an environment
    # of its own, without sipedge's dependencies, and none of their types is compiled.
    options = [
        "--always-true=MYPYC",
        "--no-site-packages",
        "--ignore-missing-imports",
        "--allow-subclassing-any",
        "--no-warn-unused-ignores",
        "--no-warn-return-any",
    ]
    return list(mypycify([*options, *compiled_sources()], opt_level="3"))


setup(ext_modules=extensions())
