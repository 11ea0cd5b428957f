"""Registrar benchmark: SIPp endpoints -> sipedge-sipd, authenticated REGISTERs per second.

Each SIPp "call" is one full registration: REGISTER -> 401 -> REGISTER with MD5 digest (qop=auth)
-> 200, so one call = one authenticated REGISTER (plus its challenge). --accounts accounts are
configured; --procs SIPp processes run in parallel, each registering one account over and
over with a new Call-ID (SIPp 3.6.1 cannot take digest credentials from a CSV file
or a -key, so each process gets its own rendered scenario). For each rate in --rates it
runs --duration seconds and prints attempted / succeeded / failed, the daemon's CPU use and the
bindings it holds, stopping at the first rate with a failure. Bounded: -m and -timeout on SIPp.

    .venv/bin/python -m tests.bench.register_bench --rates 500,1000,1500,2000 --duration 20
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.bench.sip_cps import cpu_seconds
from tests.conftest import free_port, gateway, make_config, start_sipd

SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register_bench">
  <send retrans="500">
    <![CDATA[

      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:[user]@[remote_ip]>;tag=[pid]T[call_number]
      To: <sip:[user]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:[user]@[local_ip]:[local_port]>
      Expires: 3600
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="401" auth="true"/>
  <send retrans="500">
    <![CDATA[

      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:[user]@[remote_ip]>;tag=[pid]T[call_number]
      To: <sip:[user]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 2 REGISTER
      Contact: <sip:[user]@[local_ip]:[local_port]>
      [authentication username=[user] password=[password]]
      Expires: 3600
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
</scenario>
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rates", default="500,1000,1500,2000,2500")
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--accounts", type=int, default=10000)
    ap.add_argument("--procs", type=int, default=4)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sipedge-regbench-"))
    try:
        accounts = [{"account": f"u{i}", "password": f"pw{i}"} for i in range(args.accounts)]
        config = make_config(
            tmp, free_port(), free_port(), [gateway("gw1", free_port())],
            mapping_addresses=["192.0.2.0/24"], extra={"endpoints": accounts},
        )  # fmt: skip
        for n in range(args.procs):
            text = SCENARIO.replace("[user]", f"u{n}").replace("[password]", f"pw{n}")
            (tmp / f"register_bench{n}.xml").write_text(text)
        sipd = start_sipd(tmp, config)
        print(f"sipd pid {sipd.proc.pid}; {args.accounts} accounts; MD5 digest, qop=auth")
        print(
            f"{'rate/s':>7} {'attempted':>9} {'ok':>7} {'failed':>6} {'REG ok/s':>8} {'cpu %':>6}"
        )
        try:
            for rate in (float(r) for r in args.rates.split(",")):
                calls = int(rate * args.duration)
                cpu0, t0 = cpu_seconds(sipd.proc.pid), time.monotonic()
                procs = []
                for n in range(args.procs):
                    procs.append(subprocess.Popen(
                        ["sipp", sipd.sip_target, "-sf", str(tmp / f"register_bench{n}.xml"),
                         "-i", "127.0.0.1", "-p", str(free_port()),
                         "-r", f"{rate / args.procs:g}", "-m", str(calls // args.procs),
                         "-l", str(max(100, int(rate))), "-nostdin", "-cp", str(free_port()),
                         "-timeout", f"{int(args.duration + 30)}s", "-timeout_error",
                         "-trace_stat", "-stf", str(tmp / f"stat{n}.csv"), "-fd", "1"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    ))  # fmt: skip
                codes = [p.wait(args.duration + 60) for p in procs]
                wall = time.monotonic() - t0
                cpu = cpu_seconds(sipd.proc.pid) - cpu0
                ok = failed = 0
                for n in range(args.procs):
                    lines = (tmp / f"stat{n}.csv").read_text().splitlines()
                    stat = dict(zip(lines[0].split(";"), lines[-1].split(";"), strict=False))
                    ok += int(stat.get("SuccessfulCall(C)", 0))
                    failed += int(stat.get("FailedCall(C)", 0))
                    (tmp / f"stat{n}.csv").unlink()
                print(f"{rate:>7g} {calls:>9} {ok:>7} {failed:>6} {ok / wall:>8.0f} "
                      f"{100 * cpu / wall:>6.0f}")  # fmt: skip
                if failed or any(codes):
                    print("  stopping: failures at this rate")
                    break
            bindings = sipd.metrics().get("sipedge_registrar_bindings", 0)
            print(f"bindings held: {bindings:.0f}")
        finally:
            sipd.stop()
    finally:
        if not os.environ.get("KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
