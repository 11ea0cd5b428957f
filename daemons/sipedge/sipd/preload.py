"""aiohttp imported without the system's CA store, first thing in sipd.

Importing aiohttp builds two client TLS contexts from the system's CA store (aiohttp 3.14,
`connector.py`): the whole Debian bundle parsed twice, a second of every sipd start under
emulation (40 ms natively). sipd never makes an HTTPS request through aiohttp (its only client
is the link to mediad, HTTP on a unix socket), so here they are built from an empty store:
OpenSSL's default paths point at nothing for the import only, and are put back at once. A
future HTTPS client in sipd would fail to verify its peer (closed, not open), and must bring
its own context. sipd's SIP over TLS builds its contexts itself, after this, from the store as
it is (`sip.transport.tls`, `StreamTransport.default_client`). mediad and natd get the same
from their units' environment (they verify no TLS peer at all).

Owns: that import. Must not: be imported after anything that imports aiohttp (it would change
nothing), or leave the environment changed.
"""

from __future__ import annotations

import os

_EMPTY = {"SSL_CERT_FILE": os.devnull, "SSL_CERT_DIR": "/nonexistent"}


def _import_aiohttp_without_ca_store() -> None:
    saved = {name: os.environ.get(name) for name in _EMPTY}
    os.environ.update(_EMPTY)
    try:
        import aiohttp  # noqa: F401
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


_import_aiohttp_without_ca_store()
