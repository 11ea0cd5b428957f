"""mediad's settings: from the config's `media:` section and the command line.

Owns: `MediaSettings`, the flags of `sipedge-mediad`, and the checks that refuse a setting
before anything starts (a metrics listener off loopback without a token). Must not: start
anything, or import the config package at module level (only `settings_from_args` loads a
config file, lazily).
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sipedge.media.crypto import Mode, check_key, parse_mode
from sipedge.media.xdp import DEFAULT_PIN_DIR

FAST_PATHS = ("auto", "xdp", "xdp-native", "xdp-generic", "userspace")
DEFAULT_STATE = Path("/var/lib/sipedge-mediad/sessions.journal")
DEFAULT_IDLE = 120.0  # (SS_MEDIA_RTP_TIMEOUT default 60) + 60


def split_listen(value: str) -> tuple[str, int]:
    """ "host:port" or "[v6]:port" -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"media.metrics_listen {value!r} is not host:port")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ipv6_relay_problem(value: str) -> str | None:
    """Why `value` cannot be an IPv6 relay address (bind or advertise), or None."""
    try:
        addr = ipaddress.IPv6Address(value)
    except ValueError:
        return "not an IPv6 address"
    if addr.is_unspecified or addr.is_multicast or addr.is_link_local:
        return "one unicast address, not ::, multicast or link-local (fe80::/10)"
    if addr.ipv4_mapped is not None:
        return "an IPv6 address, not IPv4-mapped (::ffff:0:0/96)"
    return None


@dataclass(frozen=True)
class MediaSettings:
    control_socket: Path
    port_range: tuple[int, int] = (20000, 29999)
    fast_path: str = "auto"
    interfaces: tuple[str, ...] = ()
    behind_nat: bool = True
    mode: Mode = Mode.NONE
    key: bytes = b""
    bind_address: str | None = None  # None: first IPv4 of interfaces[0], 127.0.0.1 if none
    advertise_address: str | None = None  # None: the bind address
    bind_address_v6: str | None = None  # None: no IPv6 relay (IP6 offers are refused)
    advertise_address_v6: str | None = None  # None: bind_address_v6
    pin_dir: Path = DEFAULT_PIN_DIR
    state_path: Path = DEFAULT_STATE
    http_listen: str | None = None  # optional host:port serving the whole API (tests, bench)
    max_sessions: int | None = None  # None: port pairs // 2
    idle_timeout: float = DEFAULT_IDLE
    metrics_listen: str | None = None  # host:port serving only /metrics and /healthz
    metrics_token_file: Path | None = None
    run_as: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.fast_path not in FAST_PATHS:
            raise ValueError(f"media.fast_path must be one of {', '.join(FAST_PATHS)}")
        if self.mode != Mode.NONE:
            check_key(self.mode, self.key)
        for name in ("bind_address", "advertise_address"):
            value = getattr(self, name)
            if value is not None and ipaddress.ip_address(value).version != 4:
                raise ValueError(f"media.{name} must be IPv4, got {value}")
        if self.bind_address == "0.0.0.0":
            raise ValueError("media.bind_address must be one local address, not 0.0.0.0")
        for name in ("bind_address_v6", "advertise_address_v6"):
            value = getattr(self, name)
            if value is not None:
                problem = ipv6_relay_problem(value)
                if problem:
                    raise ValueError(f"media.{name} {value!r}: {problem}")
        if self.advertise_address_v6 is not None and self.bind_address_v6 is None:
            raise ValueError("media.advertise_address_v6 needs media.bind_address_v6")
        if self.max_sessions is not None and self.max_sessions < 1:
            raise ValueError("media.max_sessions must be at least 1")
        if not self.idle_timeout > 0:
            raise ValueError("media.idle_timeout must be positive")
        if self.metrics_listen is not None:
            host, _port = split_listen(self.metrics_listen)
            if not is_loopback(host) and self.metrics_token_file is None:
                raise ValueError(
                    f"media.metrics_listen {self.metrics_listen} is not loopback: "
                    "set media.metrics_token_file (a bearer token) or listen on loopback"
                )

    @property
    def port_count(self) -> int:
        """Ports in port_range (every one can be a key of the kernel table)."""
        return self.port_range[1] - self.port_range[0] + 1

    @classmethod
    def from_config(cls, config: Any) -> MediaSettings:
        media = config.media
        params = config.parameters
        mode = parse_mode(getattr(params, "rtpencryptionmode", 0))
        key = str(getattr(params, "rtpencryptionkey", "") or "").encode()
        rtp_timeout = getattr(params, "media_rtp_timeout", None)
        idle = getattr(media, "idle_timeout", None)
        if not isinstance(idle, int | float):
            idle = float(rtp_timeout or 60) + 60
        token = getattr(media, "metrics_token_file", None)
        return cls(
            control_socket=Path(media.control_socket),
            port_range=(int(media.port_range[0]), int(media.port_range[1])),
            fast_path=str(media.fast_path),
            interfaces=tuple(media.interfaces),
            behind_nat=bool(getattr(params, "media_proxy_behind_nat", True)),
            mode=mode,
            key=key,
            bind_address=getattr(media, "bind_address", None),
            advertise_address=getattr(media, "advertise_address", None),
            bind_address_v6=getattr(media, "bind_address_v6", None),
            advertise_address_v6=getattr(media, "advertise_address_v6", None),
            state_path=Path(getattr(media, "state_path", DEFAULT_STATE)),
            max_sessions=getattr(media, "max_sessions", None),
            idle_timeout=float(idle),
            metrics_listen=getattr(media, "metrics_listen", None),
            metrics_token_file=Path(token) if token else None,
            run_as=getattr(media, "run_as", None),
        )


def interface_address(interfaces: tuple[str, ...]) -> str:
    """First IPv4 address of the first media interface (127.0.0.1 when there is none)."""
    try:
        from pyroute2 import IPRoute
    except ImportError:  # pragma: no cover
        return "127.0.0.1"
    with IPRoute() as ipr:
        for dev in interfaces[:1]:
            idx = ipr.link_lookup(ifname=dev)
            if not idx:
                continue
            for msg in ipr.get_addr(family=socket.AF_INET, index=idx[0]):
                addr = msg.get_attr("IFA_ADDRESS")
                if addr:
                    return str(addr)
    return "127.0.0.1"


def parse_args(argv: list[str] | None, doc: str | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sipedge-mediad", description=doc)
    p.add_argument("--config", type=Path, help="sipedge YAML config (media: section)")
    p.add_argument("--control-socket", type=Path, help="override media.control_socket")
    p.add_argument("--port-range", help="override media.port_range, LOW-HIGH")
    p.add_argument("--fast-path", choices=FAST_PATHS, help="override media.fast_path")
    p.add_argument("--interface", action="append", help="override media.interfaces")
    p.add_argument("--api", dest="http_listen", help="also serve the whole API on host:port")
    p.add_argument("--bind", dest="bind_address", help="override media.bind_address")
    p.add_argument("--advertise", dest="advertise_address", help="media.advertise_address")
    p.add_argument("--bind6", dest="bind_address_v6", help="override media.bind_address_v6")
    p.add_argument("--advertise6", dest="advertise_address_v6", help="media.advertise_address_v6")
    p.add_argument("--pin-dir", type=Path, help=f"bpffs folder for maps ({DEFAULT_PIN_DIR})")
    p.add_argument("--state", dest="state_path", type=Path, help="session journal")
    p.add_argument("--idle-timeout", type=float, help="override media.idle_timeout (seconds)")
    p.add_argument("--max-sessions", type=int, help="override media.max_sessions")
    p.add_argument("--metrics-listen", help="serve /metrics and /healthz on HOST:PORT")
    p.add_argument("--metrics-token-file", type=Path, help="bearer token for --metrics-listen")
    p.add_argument("--run-as", help="user to drop to after loading XDP (started as root)")
    p.add_argument(
        "--cleanup",
        action="store_true",
        help="as root after mediad stopped: detach XDP and remove the pins if no call is live",
    )
    p.add_argument("--encryption-mode", help="override SS_RTPENCRYPTIONMODE (0-3)")
    p.add_argument("--encryption-key", help="override SS_RTPENCRYPTIONKEY")
    p.add_argument("--behind-nat", choices=("On", "Off"), help="SS_MEDIA_PROXY_BEHIND_NAT")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


OVERRIDES = (
    "control_socket",
    "fast_path",
    "http_listen",
    "bind_address",
    "advertise_address",
    "bind_address_v6",
    "advertise_address_v6",
    "pin_dir",
    "state_path",
    "idle_timeout",
    "max_sessions",
    "metrics_listen",
    "metrics_token_file",
    "run_as",
)


def settings_from_args(args: argparse.Namespace) -> MediaSettings:
    if args.config is not None:
        from sipedge.config import load_config  # type: ignore[import-not-found,unused-ignore]

        settings = MediaSettings.from_config(load_config(args.config))
        explicit_state = True
    else:
        if args.control_socket is None:
            raise SystemExit("sipedge-mediad: give --config PATH (or --control-socket)")
        settings = MediaSettings(control_socket=args.control_socket)
        explicit_state = False
    changes: dict[str, Any] = {}
    for name in OVERRIDES:
        value = getattr(args, name)
        if value is not None:
            changes[name] = value
    if args.port_range:
        low, _, high = args.port_range.partition("-")
        changes["port_range"] = (int(low), int(high))
    if args.interface:
        changes["interfaces"] = tuple(args.interface)
    if args.encryption_mode is not None:
        changes["mode"] = parse_mode(args.encryption_mode)
    if args.encryption_key is not None:
        changes["key"] = args.encryption_key.encode()
    if args.behind_nat is not None:
        changes["behind_nat"] = args.behind_nat == "On"
    if "state_path" not in changes and not explicit_state:
        sock = Path(changes.get("control_socket", settings.control_socket))
        changes["state_path"] = sock.with_name(sock.stem + ".journal")
    return replace(settings, **changes)
