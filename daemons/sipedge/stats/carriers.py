"""Carrier statistics: attempts, answers, ASR, ACD, PDD, switch reasons and current calls of
each routing and mapping gateway over the windows of `windows.WINDOWS` (docs/monitoring.md).

Owns: `CarrierStats`, which implements `sipedge.calls.carrier_events.CarrierEvents` (the
calls code reports each attempt and call to it), its JSON snapshot (`/api/gateways/stats`), its
per-bucket `series` (the operator console's charts) and its Prometheus families
(`sipedge_carrier_*`).
Must not: import calls/ or config/ (it sees gateways as names and events as plain values), read
the wall clock (its injected `clock` is monotonic), or keep anything per call: a gateway holds
a fixed ring of buckets per window and one gauge, whatever the traffic.

What counts where:

* routing gateway: an attempt counts when it settles (answered, failed, timed out, cancelled,
  or its name did not resolve), so answers never outnumber attempts in a window; PDD is the
  attempt's INVITE to its first 18x/2xx; current calls are its attempts in progress plus its
  answered calls not yet ended.
* mapping gateway: a call counts when it settles (answered, or ended unanswered with the
  reason switching stopped); PDD is the caller's INVITE to the first 18x/2xx relayed back;
  current calls are its calls from INVITE to end.
* ACD, both kinds: the durations of answered calls, counted when they end.

Labels are bounded: only the gateways of the config (`configure`, again on each reload) are
tracked; events for other names (a registered endpoint, a gateway a reload removed) are
dropped. A gateway that a reload removes loses its statistics; one that stays keeps them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily

from sipedge.stats.windows import WINDOWS, Totals, Window

ROUTING = "routing"
MAPPING = "mapping"
DNS_FAILURE = "dns-failure"
_NAMES = {spec.name: i for i, spec in enumerate(WINDOWS)}


class GatewayStats:
    """One gateway: its windows and its current calls."""

    __slots__ = ("current", "windows")

    def __init__(self) -> None:
        self.current = 0
        self.windows = tuple(Window(spec) for spec in WINDOWS)

    def settle(self, now: float, reason: str | None, pdd: float | None) -> None:
        """One attempt (or call) settled: answered when `reason` is None."""
        for window in self.windows:
            window.settle(now, reason, pdd)

    def duration(self, now: float, seconds: float) -> None:
        for window in self.windows:
            window.duration(now, seconds)

    def add_current(self, delta: int) -> None:
        # a call that began before a reload re-added this gateway may end after it: never < 0
        self.current = max(0, self.current + delta)

    def totals(self, now: float) -> dict[str, Totals]:
        return {w.spec.name: w.totals(now) for w in self.windows}


class CarrierStats:
    """The statistics of every configured routing and mapping gateway."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.gateways: dict[str, dict[str, GatewayStats]] = {ROUTING: {}, MAPPING: {}}

    def configure(self, routing: Iterable[str], mapping: Iterable[str]) -> None:
        """Track exactly these gateways: new ones start empty, removed ones are forgotten."""
        for kind, names in ((ROUTING, routing), (MAPPING, mapping)):
            old = self.gateways[kind]
            self.gateways[kind] = {name: old.get(name) or GatewayStats() for name in names}

    def _get(self, kind: str, name: str | None) -> GatewayStats | None:
        return self.gateways[kind].get(name) if name is not None else None

    # -- sipedge.calls.carrier_events.CarrierEvents --------------------------------------------
    def attempt_started(self, gateway: str) -> None:
        gw = self._get(ROUTING, gateway)
        if gw is not None:
            gw.add_current(1)

    def attempt_ended(self, gateway: str, reason: str | None, pdd: float | None) -> None:
        gw = self._get(ROUTING, gateway)
        if gw is not None:
            gw.settle(self.clock(), reason, pdd)
            if reason is not None:  # an answered attempt stays current until the call ends
                gw.add_current(-1)

    def attempt_unresolved(self, gateway: str) -> None:
        gw = self._get(ROUTING, gateway)
        if gw is not None:
            gw.settle(self.clock(), DNS_FAILURE, None)

    def call_started(self, mapping: str | None) -> None:
        gw = self._get(MAPPING, mapping)
        if gw is not None:
            gw.add_current(1)

    def call_answered(self, mapping: str | None, pdd: float | None) -> None:
        gw = self._get(MAPPING, mapping)
        if gw is not None:
            gw.settle(self.clock(), None, pdd)

    def call_ended(
        self,
        mapping: str | None,
        gateway: str | None,
        duration: float | None,
        reason: str,
        pdd: float | None,
    ) -> None:
        now = self.clock()
        source = self._get(MAPPING, mapping)
        if duration is None:  # unanswered: the call settles now
            if source is not None:
                source.settle(now, reason, pdd)
                source.add_current(-1)
            return
        for gw in (source, self._get(ROUTING, gateway)):
            if gw is not None:
                gw.duration(now, duration)
                gw.add_current(-1)

    # -- views --------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, object]:
        """The body of `/api/gateways/stats`."""
        now = self.clock()
        out: dict[str, object] = {
            "windows": {spec.name: spec.seconds for spec in WINDOWS},
        }
        for kind, gateways in self.gateways.items():
            out[f"{kind}_gateways"] = {
                name: {
                    "current_calls": gw.current,
                    "windows": {w: t.as_dict() for w, t in gw.totals(now).items()},
                }
                for name, gw in sorted(gateways.items())
            }
        return out

    def current_calls(self) -> dict[str, dict[str, int]]:
        """Calls in progress per gateway, by kind (what this edge publishes to its fleet)."""
        return {
            kind: {name: gw.current for name, gw in gateways.items()}
            for kind, gateways in self.gateways.items()
        }

    def series(self, window: str) -> dict[str, object]:
        """Per gateway, the `window`'s buckets oldest first as [attempts, answered] (the
        console's charts); `bucket_seconds` is their width. KeyError: no such window."""
        index = _NAMES[window]
        now = self.clock()
        out: dict[str, object] = {"window": window, "bucket_seconds": WINDOWS[index].width}
        for kind, gateways in self.gateways.items():
            out[f"{kind}_gateways"] = {
                name: [list(pair) for pair in gw.windows[index].series(now)]
                for name, gw in sorted(gateways.items())
            }
        return out

    def metrics(self) -> Iterator[GaugeMetricFamily]:
        """Gauges per gateway (labels kind, gateway) and window; a ratio without data (no
        attempt in the window) has no sample rather than a made-up 0."""
        now = self.clock()
        labels = ["kind", "gateway", "window"]

        def gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"sipedge_carrier_{name}", doc, labels=[*labels, *extra])

        attempts = gauge("attempts", "Settled attempts (routing) or calls (mapping) in the window")
        answered = gauge("answered", "Answered attempts or calls in the window")
        asr = gauge("asr", "Answer-seizure ratio (answered / attempts, 0-1) in the window")
        acd = gauge("acd_seconds", "Average duration of the answered calls ended in the window")
        pdd = gauge("pdd_seconds", "Average post-dial delay (INVITE to first 18x/2xx)")
        reasons = gauge(
            "switch_reasons", "Attempts or calls that did not answer, by reason", ("reason",)
        )
        current = GaugeMetricFamily(
            "sipedge_carrier_current_calls",
            "Calls in progress through the gateway (attempts in progress and answered calls)",
            labels=["kind", "gateway"],
        )
        for kind, gateways in self.gateways.items():
            for name, gw in sorted(gateways.items()):
                current.add_metric([kind, name], gw.current)
                for window, t in gw.totals(now).items():
                    key = [kind, name, window]
                    attempts.add_metric(key, t.attempts)
                    answered.add_metric(key, t.answered)
                    for family, value in ((asr, t.asr), (acd, t.acd), (pdd, t.pdd)):
                        if value is not None:
                            family.add_metric(key, value)
                    for reason, n in sorted(t.reasons.items()):
                        reasons.add_metric([*key, reason], n)
        yield from (attempts, answered, asr, acd, pdd, reasons, current)
