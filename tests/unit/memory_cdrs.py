"""A CDR store in memory for in-process call tests: keeps the records, commits at once."""

from __future__ import annotations

from typing import Any

from sipedge.store import CallRecord, OnCommitted


class MemoryCdrs:
    """`sipedge.store.CdrStore.write` without a disk: the commit callback (a BYE's 200)
    runs at once, as a store would run it after its batch committed."""

    def __init__(self, records: list[Any] | None = None) -> None:
        self.records: list[CallRecord] = records if records is not None else []

    def write(self, record: CallRecord, on_committed: OnCommitted | None = None) -> None:
        self.records.append(record)
        if on_committed is not None:
            on_committed()
