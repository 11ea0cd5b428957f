"""Which connection a call to a registered endpoint goes over (registrar.service.flow_of), and
that TCP/TLS bindings get no UDP keep-alives."""

from __future__ import annotations

from sipedge.registrar.rules import BindingTable
from sipedge.registrar.service import NO_CONNECTION, flow_of
from sipedge.sip.transport.destination import Destination
from sipedge.store import Binding
from sipedge.typedefs import Addr


def binding(source: Addr, contact: str = "sip:alice@10.0.0.5:5060", nat: bool = True) -> Binding:
    return Binding("alice", contact, source, nat, 2000.0, "c1", 1, 1000.0)


def test_a_tcp_binding_is_called_over_its_connection_without_fallback() -> None:
    source = Destination("192.0.2.7", 40123, "tcp", 17, fallback=("192.0.2.7", 5060))
    flow = flow_of(binding(source))
    assert flow is not None
    assert (flow.transport, flow.connection, flow.fallback) == ("tcp", 17, None)
    assert tuple(flow) == ("192.0.2.7", 40123)


def test_udp_bindings_have_no_flow() -> None:
    assert flow_of(binding(("192.0.2.7", 5060))) is None
    udp2 = Destination("192.0.2.7", 5060, "udp", listener=1)
    assert flow_of(binding(udp2)) is None


def test_a_restored_stream_binding_has_a_flow_that_no_connection_carries() -> None:
    restored = binding(("192.0.2.7", 40123), "sip:alice@10.0.0.5:5060;transport=TCP")
    flow = flow_of(restored)
    assert flow is not None and (flow.transport, flow.connection) == ("tcp", NO_CONNECTION)
    sips = flow_of(binding(("192.0.2.7", 40123), "sips:alice@10.0.0.5:5061"))
    assert sips is not None and sips.transport == "tls"


def test_stream_bindings_get_no_nat_keepalives() -> None:
    table = BindingTable()
    table.bindings["alice"] = binding(Destination("192.0.2.7", 40123, "tcp", 3))
    table.bindings["bob"] = Binding(
        "bob", "sip:bob@10.0.0.6", ("192.0.2.8", 5060), True, 2000.0, "c2", 1, 1001.0
    )
    assert table.nat_devices(1500.0) == [("192.0.2.8", 5060)]
