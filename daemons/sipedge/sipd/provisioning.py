"""What the first-boot seed left for `/healthz`.

`sipedge-provision` (sipedge.appliance.provision) applies a NoCloud/ConfigDrive/fw_cfg seed
before the daemons start and writes its verdict to `<storage.path>/provision.json`. A refused
seed leaves the previous config running and the appliance reachable; the operator learns why
from the journal and from `/healthz`, which reads this file at start and at every reload.

Owns: reading that verdict, bounded and tolerant of any content. Must not: apply seeds, or turn
a refused seed into an unhealthy daemon (the boot check would then roll a good slot back).
"""

from __future__ import annotations

import json
from pathlib import Path

STATUS_FILE = "provision.json"
MAX_BYTES = 64 * 1024  # the file is a few hundred bytes; anything larger is not ours
MAX_REASON = 2000  # characters of the reason kept for /healthz


def provisioning_error(state_dir: Path) -> str | None:
    """The reason the last seed was refused, or None (no seed, or applied)."""
    try:
        with (state_dir / STATUS_FILE).open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError:
        return None  # no seed was ever applied here
    if len(raw) > MAX_BYTES:
        return f"{STATUS_FILE} is larger than {MAX_BYTES} bytes"
    try:
        verdict = json.loads(raw)
    except (ValueError, RecursionError):
        return f"{STATUS_FILE} is not JSON"
    if not isinstance(verdict, dict):
        return f"{STATUS_FILE} is not a JSON object"
    error = verdict.get("error")
    if not error:
        return None
    return str(error)[:MAX_REASON]
