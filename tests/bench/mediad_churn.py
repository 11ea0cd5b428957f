"""mediad memory across many call set-ups: does a finished call leave anything behind?

    .venv/bin/python -m tests.bench.mediad_churn [--calls 100000] [--every 10000]

Starts sipedge-mediad on loopback (userspace relay, its own port range and journal) and drives
`--calls` call set-ups through its control socket exactly as sipd does: offer (caller), answer
(callee), then delete, over one keep-alive HTTP connection, with up to `--live` calls up at once
(the oldest is deleted when a new one would exceed it). Every `--every` calls it prints mediad's
resident memory (VmRSS from /proc), the journal's size on disk, the calls per second and the
sessions mediad holds. A flat RSS column after warm-up is the goal; a column that grows with the
count is a leak. Bounded in count (`--calls`) and in time (`--max-seconds`).

Before trusting it, `--leak-check` keeps every session (no delete, ports permitting): RSS then
has to grow, which shows the measurement sees memory at all.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

from tests.media.netns import Mediad, UnixHTTP


class Control(UnixHTTP):
    """One keep-alive HTTP/1.1 connection to mediad's unix socket."""

    def ng(self, body: dict[str, Any]) -> dict[str, Any]:
        self.request("POST", "/ng", json.dumps(body), {"Content-Type": "application/json"})
        resp = self.getresponse()
        data: dict[str, Any] = json.loads(resp.read())
        if resp.status != 200:
            raise RuntimeError(f"mediad answered {resp.status}: {data}")
        return data


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def run(calls: int, every: int, live: int, max_seconds: float, leak_check: bool) -> None:
    work = Path(tempfile.mkdtemp(prefix="sipedge-churn-"))
    journal = work / "sessions.journal"
    low = 46000
    high = low + 4 * live + 3  # two pairs per call
    m = Mediad(
        work / "mediad.sock",
        ["--fast-path", "userspace", "--interface", "lo", "--bind", "127.0.0.1",
         "--port-range", f"{low}-{high}", "--state", str(journal)],
        work / "mediad.log",
    ).start()  # fmt: skip
    assert m.proc is not None
    pid = m.proc.pid
    ctl = Control(work / "mediad.sock")
    up: deque[str] = deque()
    started = last = time.monotonic()
    print(f"mediad pid {pid}, ports {low}-{high}, up to {live} calls at once, journal {journal}")
    print(f"{'calls':>8} {'RSS MiB':>8} {'journal KiB':>12} {'calls/s':>8} {'sessions':>9}")
    print(f"{0:>8} {rss_kib(pid) / 1024:>8.1f} {0:>12} {'-':>8} {0:>9}")
    try:
        for n in range(1, calls + 1):
            if time.monotonic() - started > max_seconds:
                print(f"stopped at {max_seconds:.0f} s (--max-seconds)")
                break
            call_id = f"churn-{n}"
            if len(up) >= live:
                if leak_check:
                    print("leak check: the port range is full")
                    break
                ctl.ng({"command": "delete", "call-id": up.popleft()})
            port = 30000 + 2 * (n % 1000)
            ctl.ng(
                {
                    "command": "offer",
                    "call-id": call_id,
                    "from-tag": "caller",
                    "address": "127.0.0.1",
                    "port": port,
                    "signal-address": "127.0.0.1",
                }
            )
            ctl.ng({"command": "answer", "call-id": call_id, "from-tag": "caller",
                    "to-tag": "callee", "address": "127.0.0.1", "port": port + 1000,
                    "signal-address": "127.0.0.1"})  # fmt: skip
            up.append(call_id)
            if n % every == 0:
                now = time.monotonic()
                rate = every / (now - last)
                last = now
                sessions = len(ctl.ng({"command": "list"})["calls"])
                size = journal.stat().st_size // 1024 if journal.exists() else 0
                print(f"{n:>8} {rss_kib(pid) / 1024:>8.1f} {size:>12} {rate:>8.0f} {sessions:>9}")
        while up and not leak_check:
            ctl.ng({"command": "delete", "call-id": up.popleft()})
        time.sleep(0.5)
        print(f"after the calls ended: RSS {rss_kib(pid) / 1024:.1f} MiB, "
              f"{len(ctl.ng({'command': 'list'})['calls'])} sessions")  # fmt: skip
    finally:
        ctl.close()
        m.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--every", type=int, default=10_000)
    parser.add_argument("--live", type=int, default=200, help="calls up at once")
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument("--leak-check", action="store_true")
    args = parser.parse_args()
    run(args.calls, args.every, args.live, args.max_seconds, args.leak_check)


if __name__ == "__main__":
    main()
