"""`make run`: the appliance on a demo config, with SIPp answering as its routing gateways.

Starts sipedge-sipd (and sipedge-mediad when the config's fast path can run here) on the given
config, plus one SIPp UAS per routing gateway, and stays in the foreground until Ctrl-C. It
refuses any config whose peers are not on loopback: the demo must never send traffic elsewhere.
A tls:// listener's certificate that does not exist yet is made here: self-signed, for
127.0.0.1 and localhost, valid 30 days (a demo convenience, never an appliance's).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from sipedge.config import ConfigError, load_config
from sipedge.gcwatch.heap import ALLOCATOR_ENV


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def _self_signed(cert: Path, key: Path) -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sipedge demo")])
    now = datetime.datetime.now(datetime.UTC)
    sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(private, hashes.SHA256())
    )
    cert.parent.mkdir(parents=True, exist_ok=True)
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key.chmod(0o600)
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sipedge.demo", description=__doc__)
    parser.add_argument("--config", required=True, type=Path)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as err:
        sys.exit(f"invalid config {args.config}:\n{err}")
    outside = [gw.name for gw in config.routing_gateways if not _loopback(gw.address)]
    outside += [r.name for r in config.registrations if not _loopback(r.proxy)]
    if outside:
        sys.exit(f"refusing to run the demo: peers not on loopback: {', '.join(outside)}")
    loopback = ipaddress.ip_address("127.0.0.1")
    if any(loopback in net for net in config.media.refused_networks):
        sys.exit(
            "refusing to run the demo: media.refused_networks covers 127.0.0.1, where every "
            "demo peer's media is (each call would get 488 media-address-refused)"
        )
    config.storage.path.mkdir(parents=True, exist_ok=True)
    if any(a.transport == "tls" for a in config.sip.listen):
        cert, key = config.sip.tls_cert, config.sip.tls_key
        if cert is not None and key is not None and not cert.exists():
            _self_signed(cert, key)
            print(f"demo: made a self-signed certificate for the TLS listener: {cert}")

    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    bindir = Path(sys.executable).parent

    def spawn(
        name: str, cmd: list[str], log: Path | None = None, env: dict[str, str] | None = None
    ) -> None:
        print(f"demo: starting {name}: {' '.join(cmd)}", flush=True)
        out = log.open("wb") if log is not None else None  # SIPp's screen would drown the logs
        full_env = {**os.environ, **env} if env is not None else None
        procs.append(
            (name, subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, env=full_env))
        )

    sipp = shutil.which("sipp")
    for gw in config.routing_gateways:
        if sipp is None:
            print("demo: sipp not found, no demo gateways (apt install sip-tester)")
            break
        spawn(
            f"gateway {gw.name}",
            [
                sipp,
                "-sn",
                "uas",
                "-i",
                gw.address,
                "-p",
                str(gw.port),
                "-nostdin",
                "-trace_err",
                "-error_file",
                f"{config.storage.path}/sipp-{gw.name}.err",
            ],
            log=config.storage.path / f"sipp-{gw.name}.screen",
        )
    sipd = [str(bindir / "sipedge-sipd"), "--config", str(args.config)]
    spawn("sipedge-sipd", sipd, env=ALLOCATOR_ENV)  # as its systemd unit starts it
    if (bindir / "sipedge-mediad").exists():
        spawn("sipedge-mediad", [str(bindir / "sipedge-mediad"), "--config", str(args.config)])

    listen = config.sip.listen[0]
    number = next((r.prefix for r in config.routes if r.prefix), "") + "1000"
    print(
        "\ndemo: up. Place a test call with SIPp:\n"
        f"  sipp -sn uac -s {number} -m 1 {listen.host}:{listen.port}\n"
        f"  sipp -sn uac -s {number} -m 1 -t t1 {listen.host}:{listen.port}   (over TCP)\n"
        f"  curl -s http://{config.api.host}:{config.api.port}/api/cdrs\n"
        "Ctrl-C stops everything.\n",
        flush=True,
    )
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping:
            for name, proc in procs:
                if proc.poll() is not None and name.startswith("sipedge"):
                    print(f"demo: {name} exited with {proc.returncode}", flush=True)
                    stopping = True
            time.sleep(0.2)
    finally:
        for _, proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 5
        for _, proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
