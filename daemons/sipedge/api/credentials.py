"""The secrets sipd reads from disk: the API's token files and TLS certificate and key, and
the routing gateways' digest password files (`auth_password_file`).

Owns: `load_token` (a token file, stripped, checked), `load_password` (a password file,
stripped), `tls_context` (a server SSLContext,
TLS 1.2 minimum, the certificate chain loaded) and `reload_tls` (re-reads the chain into a
running context, only once the new files have loaded cleanly), and `CredentialError`, whose
message names the config key (sipd logs it and exits 2).
Must not: decide who may do what (that is `api/auth.py`), import config/, or log a token or
a password.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path

_TOKEN_RE = re.compile(r"^[\x21-\x7e]+$")


class CredentialError(Exception):
    """A token file or the TLS certificate/key could not be used; the text names the key."""


def _read_secret(path: Path, key: str, what: str) -> str:
    """The text of `path`, surrounding whitespace and the final newline stripped, not empty."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise CredentialError(f"{key}: cannot read {path}: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise CredentialError(f"{key}: {path} is not UTF-8 text") from err
    if not text:
        raise CredentialError(f"{key}: {path} is empty (expected {what})")
    return text


def load_password(path: Path, key: str) -> str:
    """The password in `path` (a routing gateway's auth_password_file), stripped."""
    return _read_secret(path, key, "a password")


def load_token(path: Path, key: str) -> str:
    """The token in `path` (surrounding whitespace and the final newline stripped)."""
    text = _read_secret(path, key, "a token")
    if not _TOKEN_RE.match(text):
        raise CredentialError(
            f"{key}: {path} holds more than one printable ASCII word (expected one token)"
        )
    return text


def _load_chain(context: ssl.SSLContext, cert: Path, key: Path) -> None:
    try:
        context.load_cert_chain(cert, key)
    except OSError as err:  # missing or unreadable file
        raise CredentialError(
            f"api.tls_cert/api.tls_key: cannot read {err.filename or cert}: {err.strerror or err}"
        ) from err
    except ssl.SSLError as err:  # not PEM, or the key does not match the certificate
        raise CredentialError(
            f"api.tls_cert/api.tls_key: {cert} and {key} are not a PEM certificate chain and "
            f"its private key ({err.reason or err})"
        ) from err


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context: TLS 1.2 or newer, the library's default ciphers, no client certs."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, cert, key)
    return context


def reload_tls(context: ssl.SSLContext, cert: Path, key: Path) -> None:
    """Load the files again into the running context (new connections get them); the files
    are tried on a scratch context first, so a bad pair leaves the running one as it was."""
    tls_context(cert, key)
    _load_chain(context, cert, key)
