"""Statistics kept in memory over sliding windows (docs/monitoring.md).

Public names: `CarrierStats` (carriers.py: per routing and mapping gateway ASR, ACD, PDD,
switch reasons and current calls; implements `sipedge.calls.carrier_events.CarrierEvents`),
`WINDOWS`, `Window`, `Totals` (windows.py: the bounded rings of time buckets).

Dependency direction: a leaf. stats/ imports nothing from sipedge; calls/ reports to it through
its own `CarrierEvents` Protocol, sipd wires the two and the API reads it through `Managed`.
"""

from sipedge.stats.carriers import MAPPING, ROUTING, CarrierStats
from sipedge.stats.windows import WINDOWS, Totals, Window, WindowSpec

__all__ = ["MAPPING", "ROUTING", "WINDOWS", "CarrierStats", "Totals", "Window", "WindowSpec"]
