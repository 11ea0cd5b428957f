"""Instructions a fresh interpreter executes, counted by callgrind: the repeatable figure of the
microbenchmarks (tests/bench/sip_parse.py, tests/bench/call_path.py). This machine's `perf`
has no hardware counters, and callgrind's count barely moves with the machine's load.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

_COLLECTED = re.compile(rb"Collected\s*:\s*(\d+)")


def instructions_of(module: str, args: list[str]) -> int:
    """Instructions of `python -m module *args` in a fresh interpreter under callgrind."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    cmd = [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable]
    cmd += ["-m", module, *args]
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict layouts, run after run
    done = subprocess.run(cmd, capture_output=True, env=env, check=True)
    found = _COLLECTED.findall(done.stderr)
    if not found:
        raise RuntimeError(f"no instruction count in callgrind's output:\n{done.stderr[-2000:]!r}")
    return int(found[-1])
