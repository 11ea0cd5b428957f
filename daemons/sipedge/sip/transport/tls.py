"""TLS for SIP (RFC 3261 26.3.1, RFC 5630): the server and client contexts sipd uses.

Servers (`tls://` listeners): TLS 1.2 or newer, OpenSSL's default ciphers, the certificate
chain and key of the listener (or of `sip:`); with `verify_client`, a client certificate that
chains to `ca` is required (mutual TLS with gateways that present one).
Clients (routing gateways with `transport: tls`): TLS 1.2 or newer, and one of three ways to
trust the gateway, per gateway:

* `ca` (and the name to expect, `server_name`, else the gateway's address): the certificate
  must chain to that CA bundle and carry that name (DNS or IP subject alternative name);
* `fingerprint` alone (`sha256:...`): the chain and name are not checked, the certificate must
  be exactly the pinned one (self-signed carrier certificates);
* neither: the system's CA store and the name, as a browser would.

`ca` and `fingerprint` together check both. An optional client certificate (`cert`, `key`)
is offered to gateways that ask for one.

Owns: `ServerTls`, `ClientTls`, `server_context`, `client_context`, `pin_matches`,
`fingerprint`, `TlsError` (its text names the config key, so sipd can say which one).
Must not: import config/ (sipd converts), open connections, or keep anything but what the
contexts hold.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ClientTls",
    "ServerTls",
    "TlsError",
    "client_context",
    "fingerprint",
    "pin_matches",
    "server_context",
]


class TlsError(Exception):
    """A certificate, key or CA file that cannot be used; the text names the config key."""


@dataclass(frozen=True)
class ServerTls:
    cert: Path
    key: Path
    ca: Path | None = None  # CA bundle for client certificates
    verify_client: bool = False  # require a client certificate that chains to `ca`


@dataclass(frozen=True)
class ClientTls:
    ca: Path | None = None  # None: the system's CA store (unless pinned only)
    server_name: str | None = None  # expected in the certificate (None: the address)
    fingerprint: bytes | None = None  # SHA-256 of the DER certificate (alone: pin only)
    cert: Path | None = None  # our client certificate (mutual TLS)
    key: Path | None = None

    @property
    def pinned_only(self) -> bool:
        return self.fingerprint is not None and self.ca is None


def _load_chain(context: ssl.SSLContext, cert: Path, key: Path, where: str) -> None:
    try:
        context.load_cert_chain(cert, key)
    except OSError as err:
        raise TlsError(
            f"{where}: cannot read {err.filename or cert}: {err.strerror or err}"
        ) from err
    except ssl.SSLError as err:
        raise TlsError(
            f"{where}: {cert} and {key} are not a PEM certificate chain and its private key "
            f"({err.reason or err})"
        ) from err


def _load_ca(context: ssl.SSLContext, ca: Path, where: str) -> None:
    try:
        context.load_verify_locations(cafile=ca)
    except OSError as err:
        raise TlsError(f"{where}: cannot read {ca}: {err.strerror or err}") from err
    except ssl.SSLError as err:
        raise TlsError(f"{where}: {ca} is not a PEM CA bundle ({err.reason or err})") from err


def server_context(settings: ServerTls, where: str) -> ssl.SSLContext:
    """A listener's context; `where` names its config key in errors (sip.tls_cert, ...)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, settings.cert, settings.key, where)
    if settings.verify_client:
        if settings.ca is None:
            raise TlsError(f"{where}: tls_verify_client needs a tls_ca")
        _load_ca(context, settings.ca, where)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(settings: ClientTls, where: str) -> ssl.SSLContext:
    """A context to reach one gateway; the pin (if any) is checked after the handshake."""
    if settings.ca is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # chain and name; this bundle only
        _load_ca(context, settings.ca, where)
    else:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)  # the system's store
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.pinned_only:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the certificate is compared with the pin instead
    if settings.cert is not None and settings.key is not None:
        _load_chain(context, settings.cert, settings.key, where)
    return context


def fingerprint(der: bytes) -> str:
    """`sha256:` and the hex digest of a DER certificate, as tls_fingerprint is written."""
    return "sha256:" + hashlib.sha256(der).hexdigest()


def pin_matches(der: bytes | None, pin: bytes) -> bool:
    """True when the peer's DER certificate hashes (SHA-256) to `pin`."""
    return der is not None and hmac.compare_digest(hashlib.sha256(der).digest(), pin)
