"""tests.bench.cdr_insert measures what it says: every CDR lands, each commit writes to the WAL,
and time-ordered keys write fewer pages than random ones (the figure moves with the input)."""

from __future__ import annotations

from tests.bench.cdr_insert import KEYS, run


def test_the_bench_counts_the_pages_each_kind_of_key_writes() -> None:
    rows, per_transaction = 2000, 10
    frames = {}
    for name, key in KEYS.items():
        cpu, frames[name] = run(
            key, prefill=500, rows=rows, per_transaction=per_transaction, durable=False
        )  # raises if a CDR is missing
        assert cpu > 0
        assert frames[name] * rows >= rows / per_transaction  # a frame per commit at least
    assert frames["time-ordered (v7)"] < 0.7 * frames["random (v4)"]
