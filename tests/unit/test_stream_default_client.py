"""The stream transport's context for TLS destinations without a peer entry (the system's CA
store): built at the first such connection, not when sipd starts, and then kept."""

from __future__ import annotations

import ssl

from sipedge.sip.transport import StreamTransport


def test_the_system_store_is_read_at_first_use_and_kept() -> None:
    streams = StreamTransport(lambda *_: None)
    assert streams._default_client is None  # nothing parsed at start
    context = streams.default_client
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert streams.default_client is context
