"""SIPp (sip-tester) harness: run real SIPp callers and gateways around sipedge in tests."""
