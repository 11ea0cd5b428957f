"""Outbound registration state machine (pure) and the driver's requests on a fake clock."""

from __future__ import annotations

from collections.abc import Callable

from sipedge.config import Parameters, Registration
from sipedge.resolver import Targets
from sipedge.sip.digest import parse_auth_header
from sipedge.sip.message import Headers, Request, Response
from sipedge.uplinks import (
    OutboundRegistration,
    RegistrationMachine,
    RegistrationStats,
    RegState,
    ResponseInfo,
    Send,
    asked_expires,
    response_info,
)

CH = {"realm": "carrier", "nonce": "abc", "qop": "auth"}


def machine(**kw: object) -> RegistrationMachine:
    args: dict[str, object] = {"asked": 3600, "auto": True, "retry_delay": 60, "realm": None}
    args.update(kw)
    return RegistrationMachine(**args)  # type: ignore[arg-type]


def test_asked_expires() -> None:
    assert asked_expires(None, None) == (3600, True)
    assert asked_expires(None, 600) == (600, False)
    assert asked_expires(120, 600) == (120, False)


def test_grant_and_refresh_at_half() -> None:
    m = machine()
    assert m.start().send == Send(3600)
    step = m.on_response(ResponseInfo(200, granted=1800))
    assert m.state is RegState.REGISTERED and step.wait == 900 and step.send is None
    assert m.on_timer().send == Send(3600)  # the refresh asks the same again


def test_one_challenge_answered_second_is_a_failure() -> None:
    m = machine()
    m.start()
    step = m.on_response(ResponseInfo(401, challenge=CH))
    assert step.send == Send(3600, CH, False)
    step = m.on_response(ResponseInfo(401, challenge=CH))
    assert m.state is RegState.FAILED and step.wait == 60 and step.send is None
    # after the delay: a fresh start, credentials answered again
    assert m.on_timer().send == Send(3600)
    assert m.on_response(ResponseInfo(407, challenge=CH)).send == Send(3600, CH, True)
    assert m.on_response(ResponseInfo(200)).wait == 1800  # no grant given: the asked value


def test_stale_second_challenge_is_answered_once() -> None:
    m = machine()
    m.start()
    m.on_response(ResponseInfo(401, challenge=CH))
    assert m.on_response(ResponseInfo(401, challenge=CH, stale=True)).send is not None
    m.on_response(ResponseInfo(401, challenge=CH, stale=True))
    assert m.state is RegState.FAILED


def test_423_retries_at_once_with_min_expires() -> None:
    m = machine(asked=60, auto=False)
    m.start()
    assert m.on_response(ResponseInfo(423, min_expires=300)).send == Send(300)
    assert m.on_response(ResponseInfo(200, granted=300)).wait == 150
    m2 = machine(asked=60)
    m2.start()
    m2.on_response(ResponseInfo(423))  # no Min-Expires
    assert m2.state is RegState.FAILED


def test_every_failure_waits_exactly_the_retry_delay_forever() -> None:
    m = machine(retry_delay=45)
    for status in (403, 500, 503, 404, 486, 600):
        m.start()
        assert m.on_response(ResponseInfo(status)).wait == 45
    m.start()
    assert m.on_timeout().wait == 45
    assert m.failures == 7


def test_realm_mismatch_is_a_failure() -> None:
    m = machine(realm="other")
    m.start()
    m.on_response(ResponseInfo(401, challenge=CH))
    assert m.state is RegState.FAILED


def test_unregister_answers_one_challenge() -> None:
    m = machine()
    m.start()
    m.on_response(ResponseInfo(200, granted=600))
    assert m.unregister().send == Send(0)
    assert m.on_response(ResponseInfo(401, challenge=CH)).send == Send(0, CH, False)
    m.on_response(ResponseInfo(200))
    assert m.state is RegState.UNREGISTERED


def test_response_info_reads_our_contact_grant() -> None:
    h = Headers()
    h.add("Contact", "<sip:other@1.2.3.4>;expires=10")
    h.add("Contact", "<sip:u@10.0.0.1:5060;line=ab>;expires=120")
    h.add("Expires", "999")
    info = response_info(Response(200, "OK", h), "sip:u@10.0.0.1:5060;line=ab")
    assert info.granted == 120
    h2 = Headers()
    h2.add("Expires", "77")
    assert response_info(Response(200, "OK", h2), "sip:u@x").granted == 77


class FakeLayer:
    def __init__(self) -> None:
        self.sent: list[Request] = []
        self.scheduler = self
        self.timers: list[tuple[float, Callable[[], object]]] = []

    def call_later(self, delay: float, cb: Callable[[], object]) -> object:
        self.timers.append((delay, cb))
        return self

    def cancel(self) -> None:
        pass

    def start_client(self, request: Request, dest: object, on_r: object, on_t: object) -> object:
        self.sent.append(request)
        self.on_response = on_r
        return self

    def stop_retransmitting(self) -> None:
        pass


def test_driver_builds_register_with_privacy_and_credentials() -> None:
    layer = FakeLayer()
    entry = Registration("c1", "127.0.0.1", 5080, "u1", "pw", None, None)
    params = Parameters(sip_user_agent_privacy="Id")
    reg = OutboundRegistration(
        entry,
        params,
        layer,
        lambda d: "127.0.0.9",
        5060,
        RegistrationStats(),  # type: ignore[arg-type]
    )
    reg.start()
    first = layer.sent[0]
    assert first.uri == "sip:127.0.0.1:5080"
    assert first.headers.get("Expires") == "3600" and first.headers.get("Privacy") == "id"
    assert first.headers.get("Contact") == f"<sip:u1@127.0.0.9:5060;line={reg.line}>"
    h = Headers()
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        h.add(name, first.headers.get(name) or "")
    h.add("WWW-Authenticate", 'Digest realm="carrier", nonce="n1", qop="auth", algorithm=MD5')
    layer.on_response(reg.tx, Response(401, "Unauthorized", h))  # type: ignore[operator]
    second = layer.sent[1]
    _, p = parse_auth_header(second.headers.get("Authorization") or "")
    assert p["username"] == "u1" and p["uri"] == "sip:127.0.0.1:5080" and p["nc"] == "00000001"
    assert second.headers.get("Call-ID") == first.headers.get("Call-ID")
    assert second.cseq[0] == first.cseq[0] + 1


class NamedLayer(FakeLayer):
    def __init__(self) -> None:
        super().__init__()
        self.destinations: list[object] = []

    def start_client(self, request: Request, dest: object, on_r: object, on_t: object) -> object:
        self.destinations.append(dest)
        return super().start_client(request, dest, on_r, on_t)


class NameTable:
    """A resolver answering from a dict at once (the real one: tests/unit/test_resolver_*)."""

    def __init__(self, answers: dict[str, Targets]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, int | None]] = []

    def resolve(self, host: str, port: int | None, done: Callable[[Targets], None]) -> None:
        self.asked.append((host, port))
        done(self.answers[host])


def named(entry: Registration, names: NameTable, layer: NamedLayer) -> OutboundRegistration:
    return OutboundRegistration(
        entry,
        Parameters(sip_user_agent_retry_delay=30),
        layer,  # type: ignore[arg-type]
        lambda d: "127.0.0.9",
        5060,
        RegistrationStats(),
        names,
    )


def test_a_proxy_name_is_resolved_for_every_register_and_a_timeout_moves_on() -> None:
    a, b = ("192.0.2.1", 5070), ("192.0.2.2", 5071)
    names = NameTable({"reg.test": Targets("reg.test", (a, b))})
    layer = NamedLayer()
    entry = Registration("c1", "reg.test", 5060, "u1", "pw", None, None, port_given=False)
    reg = named(entry, names, layer)
    reg.start()
    assert names.asked == [("reg.test", None)]  # no port given: NAPTR/SRV apply
    assert layer.destinations == [a] and layer.sent[0].uri == "sip:reg.test"
    assert layer.sent[0].headers.get("To") == "<sip:u1@reg.test>"
    reg._on_tx_timeout(reg.tx)  # type: ignore[arg-type]
    assert reg.machine.state is RegState.FAILED
    layer.timers[-1][1]()  # the retry delay is over: the next address
    assert layer.destinations == [a, b]
    assert reg.summary()["contact"] == f"sip:u1@127.0.0.9:5060;line={reg.line}"


def test_a_proxy_name_that_does_not_resolve_is_a_failure_retried_later() -> None:
    names = NameTable({"nx.test": Targets("nx.test", (), "NXDOMAIN")})
    layer = NamedLayer()
    reg = named(Registration("c1", "nx.test", 5080, "u1", "pw", None, None), names, layer)
    reg.start()
    assert names.asked == [("nx.test", 5080)] and layer.sent == []
    assert reg.machine.state is RegState.FAILED
    assert reg.machine.last_failure == "dns-failure: nx.test: NXDOMAIN"
    assert layer.timers[-1][0] == 30  # SS_SIP_USER_AGENT_RETRY_DELAY
    assert reg.stats.failures == 1
