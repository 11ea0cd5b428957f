"""The long fuzz run (`make fuzz`): at least 1,000,000 datagrams into a whole in-process sipd.

    .venv/bin/python -m tests.fuzz.long_run --inputs 1000000 [--seed N] [--findings DIR]

Hypothesis draws grammar-built messages (tests/fuzz/grammar.py), each followed by byte-level
mutants of itself, and all go through `Stack.feed` (tests/fuzz/harness.py); the clock is run
past every timer after each example (`Stack.settle`). An input that breaks an invariant is a
finding: it is written to DIR (one file per finding, the datagrams of its example) and the run
goes on. Prints inputs/s as it goes and the count of findings at the end; exits 1 if any.
Every finding becomes a regression test (tests/fuzz/test_regressions.py).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import time
import warnings
from pathlib import Path

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tests.fuzz.grammar import SOURCES, messages, mutants
from tests.fuzz.harness import Finding, Stack

MUTANTS = 99  # per grammar-built message: 100 inputs per example


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--findings", type=Path, default=Path("fuzz-findings"))
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)  # the rate-limited refusal lines: counted, not shown
    warnings.simplefilter("ignore")
    stack = Stack()
    findings: dict[str, str] = {}
    start = time.monotonic()
    last_report = start
    examples = max(1, args.inputs // (MUTANTS + 1))

    fed = [0]  # inputs of the stacks replaced after a finding

    def stack_inputs() -> int:
        return fed[0] + stack.inputs

    @seed(args.seed)
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(messages(), st.sampled_from(SOURCES), st.integers(0, 2**32))
    def run(data: bytes, source: tuple[str, int], seed: int) -> None:
        nonlocal stack, last_report
        batch = [data, *mutants(data, seed, MUTANTS)]
        try:
            for d in batch:
                stack.feed(d, source)
            stack.settle()
        except Finding as err:
            key = hashlib.sha256(data).hexdigest()[:16]
            if key not in findings:
                findings[key] = str(err)
                args.findings.mkdir(parents=True, exist_ok=True)
                (args.findings / f"{key}.txt").write_text(f"{err}\n{batch!r}\n")
                print(f"FINDING {key}: {str(err)[:300]}", flush=True)
            fed[0] += stack.inputs
            stack = Stack()  # start clean after a broken invariant
        now = time.monotonic()
        if now - last_report >= 10:
            last_report = now
            rate = stack_inputs() / (now - start)
            print(f"{stack_inputs():>10} inputs  {rate:8.0f} inputs/s", flush=True)

    run()
    total = stack_inputs()
    elapsed = time.monotonic() - start
    print(
        f"done: {total} inputs in {elapsed:.0f} s ({total / elapsed:.0f} inputs/s), "
        f"{len(findings)} findings"
    )
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
