"""sipd imports aiohttp without parsing the system's CA store (sipedge/sipd/preload.py), and
leaves the environment as it found it, so that its own TLS contexts still see the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # Debian's ca-certificates
PROBE = """
import json, os, ssl
import sipedge.sipd
from aiohttp import connector
print(json.dumps({
    "aiohttp": connector._SSL_CONTEXT_VERIFIED.cert_store_stats()["x509_ca"],
    "ours": ssl.create_default_context().cert_store_stats()["x509_ca"],
    "env": {k: os.environ.get(k) for k in ("SSL_CERT_FILE", "SSL_CERT_DIR")},
}))
"""


def _probe(**env: str) -> dict[str, object]:
    base = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env={**base, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    out: dict[str, object] = json.loads(done.stdout)
    return out


@pytest.mark.skipif(not os.path.isfile(BUNDLE), reason=f"no system CA bundle ({BUNDLE})")
def test_aiohttp_gets_an_empty_store_and_the_environment_is_put_back() -> None:
    plain = _probe()
    assert plain["aiohttp"] == 0
    assert isinstance(plain["ours"], int) and plain["ours"] > 0  # the store, as it is
    assert plain["env"] == {"SSL_CERT_FILE": None, "SSL_CERT_DIR": None}
    chosen = _probe(SSL_CERT_FILE=BUNDLE, SSL_CERT_DIR="/etc/ssl/certs")
    assert chosen["aiohttp"] == 0 and chosen["ours"] == plain["ours"]
    assert chosen["env"] == {"SSL_CERT_FILE": BUNDLE, "SSL_CERT_DIR": "/etc/ssl/certs"}
