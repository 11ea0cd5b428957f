"""Build step of sipedge's SIP message layer: compiled to C extensions with mypyc (issue 20).

Everything about the project is in pyproject.toml; this file only adds the extensions. The
modules below parse, check and build every SIP message sipd handles. They are plain typed
Python, and run as such when SIPEDGE_PURE=1 is set at build time (then no compiler is
needed); compiled, sipd spends less CPU per call (docs/performance.md, "The message layer
compiled"). The .py files stay the source of truth: mypyc compiles them as they are, and
`make setup` rebuilds when one of them changes (tests/conftest.py refuses to run on a stale
build).

Only modules that never hold a transport address are compiled: mypyc stores a value typed
`tuple[str, int]` (`typedefs.Addr`) as a plain tuple, and would turn a
`sip.transport.destination.Destination` (a tuple subclass that names TCP/TLS and a connection)
into a UDP address on the way through. Nor a module whose tests hand it stand-ins by duck
typing (mypyc checks a class-typed argument at run time).
"""

from __future__ import annotations

import os

from setuptools import setup

COMPILED = (
    "address",
    "errors",
    "headers",
    "identifiers",
    "limits",
    "message",
    "sdp",
    "validation",
)


def compiled_sources() -> list[str]:
    """The message layer's modules, relative to this file."""
    return [f"daemons/sipedge/sip/{name}.py" for name in COMPILED]


def extensions() -> list[object]:
    if os.environ.get("SIPEDGE_PURE") == "1":
        return []
    from mypyc.build import mypycify

    # mypy reads pyproject.toml's [tool.mypy] (strict); a type error stops the build.
    return list(mypycify(compiled_sources(), opt_level="3"))


setup(ext_modules=extensions())
