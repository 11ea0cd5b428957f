"""The SIP stack: the message grammar, transactions, dialogs, digest auth and the SDP body.

What lives here, by module:

* `message`: the RFC 3261 message grammar. `Request` / `Response`, `parse_message`,
  `make_response` and fresh branch / tag / Call-ID values. It re-exports what its helper
  modules own, so the rest of sipedge imports all of it from `sipedge.sip.message`:
  `headers` (header names, `Headers`), `address` (`Via`, `NameAddr`, `SipUri` and their
  parsers), `identifiers` (fresh branch / tag / Call-ID values) and `errors` (`ParseError`).
* `transaction`: the client and server transactions of RFC 3261 chapter 17, driven by a
  `Scheduler` so a fake clock can run them in tests; the gate every request passes.
  `timers`: the `Scheduler` Protocol and the retransmission schedule; `cohort`: the timers a
  finished transaction waits out (D, J, K, M), one event-loop timer per 0.1 s cohort.
* `validation`: `check_request`, what a request must satisfy beyond framing (RFC 4475), and
  the `Refusal` it gets otherwise; `limits`: `SipLimits` (SS_SIP_MAX_*, built by sipd);
  `gate`: `Gate`, the stateless refusals and the drops, counted and logged rate-limited.
* `dialog`: one side of a B2BUA call, a dialog as in RFC 3261 chapter 12.
* `digest`: HTTP Digest authentication (RFC 7616, RFC 8760), server and client side.
* `sdp`: the SDP body (RFC 4566 / 3264), as far as media anchoring needs it.
* `transport`: one module per transport; the only code here that touches a socket.

The rule: nothing in sip/ imports from sipedge outside sip/, but the leaves `sipedge.typedefs`
(shared type aliases) and `sipedge.ratelog`. Calls, the registrar, uplinks and the daemons
build on the SIP stack, never the reverse.
"""
