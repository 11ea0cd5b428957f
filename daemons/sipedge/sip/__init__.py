"""SIP protocol stack: messages, transport, transactions (RFC 3261)."""
