"""Finished calls' CDRs survive sipd being killed (SIGKILL) right after the last BYE's 200, in
the durable mode (`storage.cdr_durable`, the default: synchronous=FULL)."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

from sipedge.store import open_cdr_store
from tests.conftest import free_port, gateway, make_config, start_sipd
from tests.sipp.harness import Sipp

CALLS = 12


@pytest.mark.sipp
def test_sigkill_after_the_last_bye_keeps_every_finished_call(tmp_path: Path) -> None:
    gw_port = free_port()
    config = make_config(
        tmp_path, free_port(), free_port(socket.SOCK_STREAM), [gateway("gw1", gw_port)]
    )
    sipd = start_sipd(tmp_path, config)
    try:
        metrics = sipd.metrics()
        assert metrics["sipedge_cdr_durable"] == 1.0
        assert metrics["sipedge_cdr_pruned_total"] == 0.0
        with Sipp("uas_answer", port=gw_port, calls=CALLS, timeout=40):
            caller = Sipp(
                "uac_basic",
                port=free_port(),
                remote=sipd.sip_target,
                calls=CALLS,
                rate=20,
                timeout=40,
                service="1000",
                keys={"hold": "200"},
            )
            caller.start()
            result = caller.wait(45)  # SIPp exits once it has the 200 of its last BYE
            sipd.proc.send_signal(signal.SIGKILL)  # at once: no shutdown, no flush
            sipd.proc.wait(10)
    finally:
        sipd.stop()
    assert sipd.proc.returncode == -signal.SIGKILL
    assert result.returncode == 0 and result.successful == CALLS, result.describe()
    finished = {m.call_id for m in result.sent("INVITE")}
    bye_ok = [m for m in result.received(200) if m.method == "BYE"]
    assert len(finished) == CALLS and len({m.call_id for m in bye_ok}) == CALLS
    store = open_cdr_store(Path(config["storage"]["path"]))  # what sipd reopens after a crash
    try:
        records = store.recent(1000)
    finally:
        store.close()
    by_call = {r["call_id"]: r for r in records}
    assert set(by_call) == finished, sipd.log()
    assert all(r["cause"] == "normal clearing" for r in records)
    assert all(r["answer_time"] is not None for r in records)
