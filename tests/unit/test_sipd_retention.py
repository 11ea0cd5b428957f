"""sipd's CDR retention pass: bounded batches by age and size run by the store's writer,
counted in a metric, with the writer's metrics; and the API policy sipd builds from `api:` and
the token files."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from sipedge.api import CredentialError
from sipedge.config import parse_config
from sipedge.sipd import SipDaemon, access_policy
from sipedge.store import CallRecord, open_cdr_store


def record(n: int, end_time: float) -> CallRecord:
    return CallRecord(
        call_id=f"c{n}@test",
        caller="1001",
        callee="2002" * 20,  # some bulk, so that the size limit is reached sooner
        source="192.0.2.1:5060",
        mapping_gateway="carrier",
        setup_time=end_time - 10,
        end_time=end_time,
        cause="normal clearing",
        final_status=200,
    )


async def test_retention_by_age_and_size(tmp_path: Path) -> None:
    storage = {"path": str(tmp_path), "cdr_retention_days": 1, "cdr_max_mib": 1}
    daemon = SipDaemon(tmp_path / "x.yaml", parse_config({"storage": storage}))
    store = open_cdr_store(tmp_path, durable=False)
    daemon.cdrs = store
    now = time.time()
    for n in range(1500):  # more than one prune batch, all older than a day
        store.write(record(n, now - 2 * 86400))
    for n in range(1500, 11999):
        store.write(record(n, now - 60))
    committed = asyncio.get_running_loop().create_future()
    store.write(record(11999, now - 60), lambda: committed.set_result(None))
    await committed  # the writer commits in order: every record before it is in too
    assert store.written == 12000 and store.queued == 0
    assert store.size_bytes() > 1 << 20
    removed = await daemon.prune_cdrs()
    assert removed >= 1500 and daemon.cdr_pruned == removed
    assert store.size_bytes() <= 1 << 20
    remaining = store.recent(1000)
    assert remaining[0]["call_id"] == "c11999@test"  # the newest stay, the oldest went
    assert await daemon.prune_cdrs() == 0
    collected = daemon.metrics_registry.collect()
    metrics = {m.name: m.samples[0].value for m in collected if m.samples}
    assert metrics["sipedge_cdr_pruned"] == removed
    assert 0 < metrics["sipedge_cdr_db_bytes"] <= 1 << 20
    assert metrics["sipedge_cdrs_written"] == 12000 and metrics["sipedge_cdr_queued"] == 0
    assert 0 < metrics["sipedge_cdr_batches"] < 12000  # group commit
    assert metrics["sipedge_cdr_sync_writes"] == metrics["sipedge_cdr_write_failures"] == 0
    assert metrics["sipedge_cdr_durable"] == 1.0  # the config's (this store was opened plain)
    store.close()


async def test_retention_off(tmp_path: Path) -> None:
    storage = {"path": str(tmp_path), "cdr_retention_days": "Off", "cdr_max_mib": "Off"}
    daemon = SipDaemon(tmp_path / "x.yaml", parse_config({"storage": storage}))
    daemon.cdrs = open_cdr_store(tmp_path)
    daemon.cdrs.write(record(1, 0.0))
    assert await daemon.prune_cdrs() == 0
    daemon.cdrs.close()


def test_access_policy_from_files(tmp_path: Path) -> None:
    admin, read = tmp_path / "admin.token", tmp_path / "read.token"
    admin.write_text("A" * 64 + "\n")
    read.write_text("B" * 64 + "\n")
    api = {
        "listen": "0.0.0.0:8080",
        "token_file": str(admin),
        "read_token_file": str(read),
        "hosts": ["edge1.example.net"],
    }
    policy = access_policy(parse_config({"api": api}).api)
    assert policy.admin_tokens == ("A" * 64,) and policy.read_tokens == ("B" * 64,)
    assert "edge1.example.net" in policy.hosts and "0.0.0.0" not in policy.hosts
    assert access_policy(parse_config({}).api).open
    read.write_text("A" * 64)
    with pytest.raises(CredentialError, match=r"api\.read_token_file"):
        access_policy(parse_config({"api": api}).api)
