"""The appliance around the daemons: the A/B image updater and the systemd helpers.

* `update.py`: sipedge-update (console script, `update:main`), run as root on the appliance:
  verifies a signed root image and writes it to the inactive slot, adds its systemd-boot entry
  with boot counting; its parts: `signing.py` (Ed25519 manifests, baked keys, version order),
  `slots.py` (the target partition from the running root's own disk), `artifact.py` (the
  image's bytes: exact length, zstd, hashing), `rootfs.py` (files in the new root without
  following links), `health.py` (boot-check: holds boot-complete.target back until sipd's and
  mediad's /healthz answer; it reads the config file itself and talks HTTP only);
* `systemd.py`: `notify`, sd_notify(3) without libsystemd (READY=1, STOPPING=1);
* `privileges.py`: dropping root for a daemon that must start as root (mediad loading XDP):
  setresuid/setresgid, capability sets through libc's capset, no_new_privs, and a check of
  every thread's /proc status afterwards; checks of directories root reads from.

Public names: `notify`. The updater is a command, not a library: import `update` by its path.

Dependency direction: the daemons (sipd, media/, natd/) import `notify` (mediad also
`privileges`); appliance/ imports
nothing from the SIP daemons or any other package of sipedge.
"""

from __future__ import annotations

from sipedge.appliance.systemd import notify

__all__ = ["notify"]
