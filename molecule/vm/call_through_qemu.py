#!/usr/bin/env python3
"""Place one SIP call through the QEMU appliance's forwarded SIP port (issue 19).

    call_through_qemu.py SIP_PORT [--number 5551000] [--gateway-port 5090] [--timeout 60]

What the call crosses: this host's SIPp caller sends its INVITE to 127.0.0.1:SIP_PORT, which
QEMU's user network forwards to the appliance's 5060, where it arrives from 10.0.2.2 (the host,
as the guest sees it). The seed (make_seed.py) admits 10.0.2.2 as mapping gateway `qemu-host`
and routes every call to routing gateway `seeded-carrier` at 10.0.2.2:5090, which QEMU hands to
this host's 127.0.0.1:5090, where a SIPp gateway answers. The caller holds one second and hangs
up. Both SIPps must end with their one call successful: the appliance relayed the INVITE, the
200, the ACK and the BYE both ways, as its seeded config says.

Both SDPs carry 10.0.2.2 as their connection address, not SIPp's 127.0.0.1: the appliance
refuses loopback in `c=` (media.refused_networks), and 10.0.2.2 is where this host is from the
guest. No RTP flows: QEMU forwards only the SIP, SSH and API ports.

The scenarios are the test suite's (tests/sipp/scenarios/uac_basic.xml, uas_answer.xml), run by
its harness (tests/sipp/harness.py, standard library only). Prints one JSON line; exit 0 when
both calls succeeded, else 1 with both SIPps' traces.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.sipp.harness import SCENARIO_DIR, Sipp, free_udp_port  # noqa: E402

HOST_FROM_GUEST = "10.0.2.2"  # QEMU user networking: the host's loopback, seen from the guest
SDP_CONNECTION = "c=IN IP[media_ip_type] [media_ip]"


def with_connection_address(scenario: str, folder: Path, address: str) -> Path:
    """A copy of a suite scenario whose SDP `c=` line names `address`."""
    text = (SCENARIO_DIR / f"{scenario}.xml").read_text(encoding="latin-1")
    if SDP_CONNECTION not in text:
        raise SystemExit(f"{scenario}.xml has no line {SDP_CONNECTION!r} to rewrite")
    out = folder / f"{scenario}.xml"
    out.write_text(text.replace(SDP_CONNECTION, f"c=IN IP4 {address}"), encoding="latin-1")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sip_port", type=int, help="the host port QEMU forwards to 5060")
    parser.add_argument("--number", default="5551000", help="the dialled number")
    parser.add_argument("--gateway-port", type=int, default=5090)
    parser.add_argument("--timeout", type=float, default=60.0, help="each SIPp's own bound")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sipedge-vm-call-") as tmp:
        folder = Path(tmp)
        gateway = Sipp(
            with_connection_address("uas_answer", folder, HOST_FROM_GUEST),
            port=args.gateway_port,
            calls=1,
            timeout=args.timeout,
        )
        caller = Sipp(
            with_connection_address("uac_basic", folder, HOST_FROM_GUEST),
            port=free_udp_port(),
            remote=f"127.0.0.1:{args.sip_port}",
            service=args.number,
            calls=1,
            timeout=args.timeout,
            keys={"hold": 1000, "caller": "4440001"},
        )
        gateway.start()
        try:
            caller.start()
            called = caller.wait(args.timeout + 10)
            answered = gateway.wait(15)
        finally:
            gateway.stop()
        invites = answered.received("INVITE")
        report = {
            "caller_ok": called.ok,
            "gateway_ok": answered.ok,
            "caller_exit": called.returncode,
            "gateway_exit": answered.returncode,
            "gateway_invite_from": invites[0].header("From") if invites else None,
            "gateway_invite_uri": invites[0].first_line if invites else None,
            # the appliance anchors the media: its relay address, not the caller's 10.0.2.2
            "gateway_sdp_connection": next(
                (ln.strip() for ln in invites[0].body.splitlines() if ln.startswith("c=")), None
            )
            if invites
            else None,
        }
        print(json.dumps(report))
        if called.ok and answered.ok:
            return 0
        print(called.describe(), file=sys.stderr)
        print(answered.describe(), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
