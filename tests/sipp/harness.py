"""Run SIPp (Debian ``sip-tester``) as a real caller or gateway and read back what it did.

One :class:`Sipp` is one SIPp process. It runs in the foreground of its own process group
(never ``-bg``: we own the process), with ``-nostdin``, a global ``-timeout`` so it always stops
on its own, and its message, error, statistics, screen and ``<log>`` traces written to a
private directory.
:meth:`Sipp.wait` / :meth:`Sipp.stop` return a :class:`SippResult` with the exit code, the output,
the final statistics and every SIP message SIPp sent or received, time-stamped, so tests can
measure retransmission gaps.

Scenario keys
    A scenario (``tests/sipp/scenarios/<name>.xml``) declares the keys it understands, with their
    defaults, in its header comment, one per line: ``@key hold=1000  what it means``. The keys a
    test gives are merged over those defaults and passed to SIPp as ``-key name value``, which
    SIPp substitutes as ``[name]`` inside message text (CDATA) when it builds a message. That is
    not enough: SIPp does not substitute keys in XML attributes (``<pause milliseconds="[hold]"/>``
    is a load error) nor in the status line of a response it sends (``SIP/2.0 [code] ...``: it
    parses the code at load time, "Response codes must be in the range of 100-700"). So the
    harness renders the scenario into its private directory first, replacing ``[name]`` for
    every key everywhere in the file (XML-escaped outside CDATA). Key names may not shadow
    SIPp's own keywords.

Exit codes (``sipp -h``): 0 all calls succeeded, 1 at least one failed, 97 exit on internal
command, 99 normal exit without calls processed, 255 (-1) fatal error (also: the global
``-timeout`` hit, with ``-timeout_error``), 254 (-2) cannot bind.

SIPp 3.6.1 quirks this relies on
    * A scenario SIPp cannot load exits 1, like a failed call: :meth:`Sipp.start` raises
      :class:`SippStartError` when SIPp dies before binding its port.
    * :meth:`Sipp.stop` sends SIGINT: SIPp quits at once, flushes every trace, and exits 0 even
      with a call in progress (``SippResult.stopped`` tells). SIGTERM/SIGKILL only as fallback.
    * Every received copy of a message is logged in the message trace, retransmissions
      included, before SIPp decides it is one (it then re-sends its last message, if any).
    * The trace also holds untimed notes ("Ignoring provisional ... for transaction"): they
      are not messages and are skipped.
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Literal

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
SIPP_BINARY = shutil.which("sipp") or "/usr/bin/sipp"

__all__ = [
    "SCENARIO_DIR",
    "Sipp",
    "SippMessage",
    "SippResult",
    "SippStartError",
    "free_udp_port",
    "run_sipp",
    "scenario_keys",
    "scenario_names",
    "scenario_path",
]

# ------------------------------------------------------------------------------------------------
# SIP messages from the -trace_msg file

_COMPACT = {
    "i": "call-id",
    "f": "from",
    "t": "to",
    "v": "via",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "k": "supported",
    "s": "subject",
    "e": "content-encoding",
    "o": "event",
    "r": "refer-to",
    "b": "referred-by",
    "u": "allow-events",
    "x": "session-expires",
}


def _canonical(name: str) -> str:
    name = name.strip().rstrip(":").strip().lower()
    return _COMPACT.get(name, name)


@dataclass
class SippMessage:
    """One SIP message as SIPp logged it (``-trace_msg``)."""

    direction: Literal["sent", "received"]
    timestamp: float  # epoch seconds, microsecond resolution (SIPp's own clock)
    text: str  # the SIP message as logged: start line, headers, blank line, body
    transport: str = "UDP"

    @property
    def raw(self) -> str:
        return self.text

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    @property
    def is_request(self) -> bool:
        return not self.first_line.startswith("SIP/")

    @property
    def method(self) -> str | None:
        """Request method, or for a response the method of its CSeq."""
        if self.is_request:
            return self.first_line.split(" ", 1)[0]
        cseq = self.header("CSeq")
        return cseq.split()[-1] if cseq and len(cseq.split()) == 2 else None

    @property
    def status(self) -> int | None:
        """Response status code, None for a request."""
        if self.is_request:
            return None
        parts = self.first_line.split()
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None

    @property
    def _head_and_body(self) -> tuple[list[str], str]:
        text = self.text.replace("\r\n", "\n")
        head, _, body = text.partition("\n\n")
        lines: list[str] = []
        for line in head.split("\n")[1:]:
            if line[:1] in (" ", "\t") and lines:  # folded continuation line
                lines[-1] += " " + line.strip()
            elif line.strip():
                lines.append(line)
        return lines, body

    def headers(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive, compact forms understood)."""
        want = _canonical(name)
        values = []
        for line in self._head_and_body[0]:
            hname, sep, value = line.partition(":")
            if sep and _canonical(hname) == want:
                values.append(value.strip())
        return values

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name``, or ``default``."""
        values = self.headers(name)
        return values[0] if values else default

    @property
    def body(self) -> str:
        return self._head_and_body[1]

    @property
    def call_id(self) -> str | None:
        return self.header("Call-ID")

    @property
    def branch(self) -> str | None:
        """The branch parameter of the top Via."""
        via = self.header("Via")
        match = re.search(r";\s*branch=([^;,\s]+)", via or "")
        return match.group(1) if match else None

    def is_(self, what: str | int) -> bool:
        """True if this is request ``what`` (a method) or response ``what`` (a status code)."""
        if isinstance(what, int) or what.isdigit():
            return self.status == int(what)
        return self.is_request and self.method == what.upper()

    def __str__(self) -> str:
        return f"{self.direction} {self.timestamp:.6f} {self.first_line}"


# Each entry starts with a line of dashes, a time stamp on it for messages; SIPp also writes
# untimed entries ("Ignoring provisional UDP message for transaction invite: ...") which are
# not messages on the wire and must not be glued onto the message before them.
_SEPARATOR = re.compile(
    r"^-{20,}(?:[ \t]+(\d{4}-\d{2}-\d{2})[ \t]+(\d{2}:\d{2}:\d{2}(?:\.\d+)?)"
    r"(?::?[ \t]+(\d+\.\d+))?)?[ \t]*\r?$",
    re.MULTILINE,
)
_DIRECTION = re.compile(r"^(\w+) message (sent|received)\b.*$", re.MULTILINE)


def _parse_time(date: str, clock: str, epoch: str | None) -> float:
    if epoch:
        return float(epoch)
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in clock else "%Y-%m-%d %H:%M:%S"
    return datetime.strptime(f"{date} {clock}", fmt).timestamp()  # SIPp logs local time


def parse_message_log(text: str) -> list[SippMessage]:
    """Parse SIPp's ``-trace_msg`` file into messages, in file (= time) order."""
    messages: list[SippMessage] = []
    marks = list(_SEPARATOR.finditer(text))
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        block = text[mark.end() : end]
        head = _DIRECTION.search(block)
        if mark.group(1) is None or head is None or block[: head.start()].strip():
            continue  # some other trace line (e.g. an aborted-call note): not a SIP message
        sip = block[head.end() :].lstrip("\r\n").rstrip()
        if not sip:
            continue
        direction: Literal["sent", "received"] = "sent" if head.group(2) == "sent" else "received"
        messages.append(
            SippMessage(
                direction=direction,
                timestamp=_parse_time(mark.group(1), mark.group(2), mark.group(3)),
                text=sip,
                transport=head.group(1),
            )
        )
    return messages


# ------------------------------------------------------------------------------------------------
# statistics


def parse_stat_csv(text: str) -> dict[str, int]:
    """The last line of a ``-trace_stat`` CSV: every cumulative ``Name(C)`` counter, plus the
    short aliases ``successful``, ``failed``, ``created``, ``retransmissions``, ``unexpected``
    and ``timeouts``."""
    rows = [row for row in csv.reader(io.StringIO(text), delimiter=";") if row]
    if len(rows) < 2:
        return {}
    header, last = rows[0], rows[-1]
    stats: dict[str, int] = {}
    for name, value in zip(header, last, strict=False):
        if name.endswith("(C)"):
            with contextlib.suppress(ValueError):
                stats[name[:-3]] = int(value)
        elif name == "TotalCallCreated":
            with contextlib.suppress(ValueError):
                stats[name] = int(value)
    _add_aliases(stats)
    return stats


def _add_aliases(stats: dict[str, int]) -> None:
    for alias, source in (
        ("successful", "SuccessfulCall"),
        ("failed", "FailedCall"),
        ("created", "TotalCallCreated"),
        ("retransmissions", "Retransmissions"),
        ("unexpected", "FailedUnexpectedMessage"),
        ("timeouts", "FailedTimeoutOnRecv"),
    ):
        if source in stats:
            stats[alias] = stats[source]


_SCREEN_ROW = re.compile(
    r"^\s*(Successful call|Failed call|Total Call created|Retransmissions)\s*\|"
    r"\s*(\d+)\s*\|\s*(\d+)",
    re.MULTILINE,
)


def parse_screen(text: str) -> dict[str, int]:
    """Fallback: the cumulative counters of the last statistics screen SIPp printed."""
    names = {
        "Successful call": "SuccessfulCall",
        "Failed call": "FailedCall",
        "Total Call created": "TotalCallCreated",
        "Retransmissions": "Retransmissions",
    }
    stats: dict[str, int] = {}
    for match in _SCREEN_ROW.finditer(text):
        stats[names[match.group(1)]] = int(match.group(3))  # later screens overwrite earlier
    _add_aliases(stats)
    return stats


class SippStartError(RuntimeError):
    """SIPp died before (or without) binding its port: the result says why."""

    def __init__(self, result: SippResult) -> None:
        super().__init__(f"SIPp failed to start\n{result.describe()}")
        self.result = result


@dataclass
class SippResult:
    """What one SIPp process did."""

    returncode: int
    stdout: str
    stderr: str
    stats: dict[str, int] = field(default_factory=dict)
    messages: list[SippMessage] = field(default_factory=list)
    errors: str = ""  # the -trace_err file: unexpected messages, aborted calls, ...
    logs: str = ""  # the output of the scenario's <log> actions
    command: list[str] = field(default_factory=list)
    timed_out: bool = False  # we had to kill it: it did not stop within wait()'s timeout
    stopped: bool = False  # stop() ended it (not its own -m / -timeout)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def successful(self) -> int:
        return self.stats.get("successful", 0)

    @property
    def failed(self) -> int:
        return self.stats.get("failed", 0)

    def sent(self, what: str | int | None = None) -> list[SippMessage]:
        """Messages SIPp sent: all, or the requests of a method / the responses with a code."""
        return [m for m in self.messages if m.direction == "sent" and (what is None or m.is_(what))]

    def received(self, what: str | int | None = None) -> list[SippMessage]:
        """Messages SIPp received: all, or the requests of a method / responses with a code."""
        return [
            m for m in self.messages if m.direction == "received" and (what is None or m.is_(what))
        ]

    def describe(self, tail: int = 3000) -> str:
        """A summary for assertion messages: command, exit code, errors, end of the output."""
        parts = [
            f"$ {' '.join(self.command)}",
            f"returncode={self.returncode} timed_out={self.timed_out} stats={self.stats}",
        ]
        parts += [f"  {m}" for m in self.messages]
        if self.stderr.strip():
            parts.append("--- stderr\n" + self.stderr[-tail:])
        if self.errors.strip():
            parts.append("--- errors\n" + self.errors[-tail:])
        if self.logs.strip():
            parts.append("--- logs\n" + self.logs[-tail:])
        parts.append("--- stdout (tail)\n" + self.stdout[-tail:])
        return "\n".join(parts)

    def __str__(self) -> str:
        return self.describe()


# ------------------------------------------------------------------------------------------------
# scenarios

_KEY_DECL = re.compile(r"^\s*@key\s+([A-Za-z_][\w-]*)=(\S*)", re.MULTILINE)
_CDATA = re.compile(r"(<!\[CDATA\[.*?\]\]>)", re.DOTALL)
_KEY_NAME = re.compile(r"^[A-Za-z_][\w-]*$")


def scenario_path(scenario: str | Path) -> Path:
    """A bare name is a file in tests/sipp/scenarios (``.xml`` optional); anything else a path."""
    text = str(scenario)
    if isinstance(scenario, Path) or "/" in text:
        path = Path(scenario)
    else:
        path = SCENARIO_DIR / (text if text.endswith(".xml") else f"{text}.xml")
    if not path.is_file():
        raise FileNotFoundError(f"no SIPp scenario {path}")
    return path


def scenario_names() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.xml"))


def scenario_keys(scenario: str | Path) -> dict[str, str]:
    """The keys a scenario declares (``@key name=default`` in its comments), with defaults."""
    text = scenario_path(scenario).read_text(encoding="latin-1")
    return dict(_KEY_DECL.findall(text))


# SIPp's own keywords: a key of that name would shadow them
_RESERVED = {
    "service", "remote_ip", "remote_port", "remote_ip_type", "local_ip", "local_port",
    "local_ip_type", "transport", "branch", "call_id", "call_number", "cseq", "pid", "len",
    "media_ip", "media_ip_type", "media_port", "auto_media_port", "server_ip", "routes",
    "next_url", "peer_tag_param", "last_message", "clock_tick", "sipp_version", "users",
    "userid", "tdmmap", "fill", "timestamp", "authentication", "rtpstream_audio_port",
}  # fmt: skip


def render_scenario(text: str, keys: Mapping[str, str]) -> str:
    """Replace ``[key]`` for every given key: XML-escaped outside CDATA, as-is inside.

    SIPp substitutes ``-key`` values only in message text, and only when the message is
    built: attributes (``milliseconds``, ``timeout``, ``response``...) and the status code
    of a response we send (``SIP/2.0 [code] ...``, which SIPp parses when it loads the
    scenario) need the value in the file itself."""
    if not keys:
        return text
    pattern = re.compile(r"\[(" + "|".join(re.escape(k) for k in keys) + r")\]")

    def escape(value: str) -> str:
        return (
            value.replace("&", "&amp;")
            .replace("<", "&lt;")
            .replace(">", "&gt;")
            .replace('"', "&quot;")
        )

    parts = _CDATA.split(text)
    for i, part in enumerate(parts):
        if i % 2:  # a CDATA section
            parts[i] = pattern.sub(lambda m: keys[m.group(1)], part)
        else:
            parts[i] = pattern.sub(lambda m: escape(keys[m.group(1)]), part)
    return "".join(parts)


# ------------------------------------------------------------------------------------------------
# processes


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port that is free on ``host`` right now (and, where possible, for TCP too)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # `-i ::1`: an IPv6 SIPp
    for _ in range(50):
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        with socket.socket(family, socket.SOCK_STREAM) as t:
            try:
                t.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free UDP port")


_LIVE: weakref.WeakSet[Sipp] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for sipp in list(_LIVE):
        with contextlib.suppress(Exception):
            sipp.stop(grace=0.5)


def _port_bound(pid: int, port: int) -> bool:
    """Has process ``pid`` itself bound ``port`` (in its own network namespace)?"""
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    suffix = f":{port:04X}"
    for table in ("udp", "udp6", "tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[1].endswith(suffix) and fields[9] in inodes:
                return True
    return False


class Sipp:
    """One SIPp process.

    ``scenario`` is a name in tests/sipp/scenarios or a path. ``remote`` (``host:port``) makes it
    a client; without it SIPp waits for calls on ``local:port``. ``calls`` is ``-m``: SIPp exits
    by itself after that many calls. ``keys`` become ``-key k v`` (and attribute substitution,
    see the module doc). ``timeout`` is SIPp's global ``-timeout`` (with ``-timeout_error``): it
    always stops by then. ``netns`` runs it with ``ip netns exec``.
    """

    def __init__(
        self,
        scenario: str | Path,
        *,
        local: str = "127.0.0.1",
        port: int,
        remote: str | None = None,
        calls: int = 1,
        rate: float | None = None,
        rate_period: float | None = None,
        limit: int | None = None,
        rate_increase: float | None = None,
        rate_max: float | None = None,
        extra: Sequence[str] = (),
        keys: Mapping[str, str | int | float] | None = None,
        timeout: float = 60,
        netns: str | None = None,
        trace_msg: bool = True,
        service: str | None = None,
        transport: str = "u1",
        media_port: int | None = None,
        bind_local: bool = True,
        workdir: str | Path | None = None,
        keep_files: bool = False,
        binary: str = SIPP_BINARY,
    ) -> None:
        self.scenario = scenario_path(scenario)
        self.name = self.scenario.stem
        self.local = local
        self.port = port
        self.remote = remote
        self.calls = calls
        self.rate = rate
        self.rate_period = rate_period
        self.limit = limit
        self.rate_increase = rate_increase
        self.rate_max = rate_max
        self.extra = list(extra)
        self.timeout = float(timeout)
        self.netns = netns
        self.trace_msg = trace_msg
        self.service = service
        self.transport = transport
        self.media_port = media_port
        self.bind_local = bind_local
        self.binary = binary
        text = self.scenario.read_text(encoding="latin-1")
        self.keys: dict[str, str] = dict(_KEY_DECL.findall(text))
        for key, value in (keys or {}).items():
            if not _KEY_NAME.match(key) or key in _RESERVED or key.startswith("field"):
                raise ValueError(f"bad SIPp key name {key!r} (must not be a SIPp keyword)")
            if "]]>" in str(value) or "\n" in str(value):
                raise ValueError(f"bad SIPp key value {value!r}")
            self.keys[key] = str(value)
        self._rendered = render_scenario(text, self.keys)
        self._own_workdir = workdir is None
        self._keep = keep_files or bool(os.environ.get("SIPP_KEEP_FILES"))
        self.workdir = (
            Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=f"sipp-{self.name}-"))
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.command: list[str] = []
        self.started_at: float | None = None
        self._result: SippResult | None = None

    # -- files
    def _file(self, what: str) -> Path:
        return self.workdir / f"{self.name}_{self.port}_{what}"

    def build_command(self) -> list[str]:
        scenario_file = self._file("scenario.xml")
        scenario_file.write_text(self._rendered, encoding="latin-1")
        cmd = [self.binary]
        if self.remote:
            cmd.append(self.remote)
        cmd += ["-sf", str(scenario_file), "-i", self.local, "-p", str(self.port)]
        cmd += ["-mi", self.local, "-t", self.transport, "-m", str(self.calls), "-nostdin"]
        if self.bind_local:
            cmd.append("-bind_local")
        if self.media_port is not None:
            cmd += ["-mp", str(self.media_port)]
        if self.service is not None:
            cmd += ["-s", self.service]
        if self.rate is not None:
            cmd += ["-r", f"{self.rate:g}"]
        if self.rate_period is not None:
            cmd += ["-rp", f"{self.rate_period:g}ms"]
        if self.limit is not None:
            cmd += ["-l", str(self.limit)]
        if self.rate_increase is not None:
            cmd += ["-rate_increase", f"{self.rate_increase:g}"]
        if self.rate_max is not None:
            cmd += ["-rate_max", f"{self.rate_max:g}"]
        for key, value in self.keys.items():
            cmd += ["-key", key, value]
        cmd += ["-timeout", f"{round(self.timeout * 1000)}ms", "-timeout_error"]
        # a private remote-control port: concurrent SIPps otherwise all fight over 8888..
        cmd += ["-cp", str(free_udp_port(self.local if self.netns is None else "127.0.0.1"))]
        if self.trace_msg:
            cmd += ["-trace_msg", "-message_file", str(self._file("messages.log"))]
        cmd += ["-trace_err", "-error_file", str(self._file("errors.log"))]
        cmd += ["-trace_stat", "-stf", str(self._file("stat.csv")), "-fd", "1"]
        cmd += ["-trace_screen", "-screen_file", str(self._file("screen.log"))]
        cmd += ["-trace_logs", "-log_file", str(self._file("logs.log"))]
        cmd += self.extra
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        return cmd

    # -- lifecycle
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, ready_timeout: float = 5.0) -> None:
        """Start SIPp in the background and return once its SIP port is bound."""
        if self.proc is not None:
            raise RuntimeError(f"SIPp {self.name} already started")
        self.command = self.build_command()
        with (
            self._file("stdout.txt").open("wb") as out,
            self._file("stderr.txt").open("wb") as err,
        ):
            self.proc = subprocess.Popen(
                self.command,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # its own process group: we can always kill it all
            )
        self.started_at = time.monotonic()
        _LIVE.add(self)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if self.proc.returncode in (0, 1) and self._file("stat.csv").exists():
                    return  # it ran its calls and ended already; wait() collects
                # a fatal error (bad scenario, port in use, ...): a harness or scenario bug.
                # NB SIPp exits 1, not 255, when it cannot load a scenario
                raise SippStartError(self._collect(timed_out=False))
            if _port_bound(self.proc.pid, self.port):
                return
            time.sleep(0.005)
        raise SippStartError(self.stop())

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for SIPp to end by itself (``-m`` calls done or ``-timeout``) and collect.

        If it has not ended within ``timeout`` (default: its own timeout + 15 s), kill it and
        return with ``timed_out`` set."""
        if self._result is not None:
            return self._result
        if self.proc is None:
            raise RuntimeError(f"SIPp {self.name} was never started")
        limit = self.timeout + 15 if timeout is None else timeout
        timed_out = False
        try:
            self.proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            timed_out = True
            self._terminate(grace=2.0)
        return self._collect(timed_out=timed_out)

    def stop(self, grace: float = 3.0) -> SippResult:
        """End SIPp now (SIGINT: it quits at once and flushes its traces; then SIGKILL)."""
        if self._result is not None:
            return self._result
        if self.proc is None:
            raise RuntimeError(f"SIPp {self.name} was never started")
        stopped = self.proc.poll() is None
        self._terminate(grace=grace)
        result = self._collect(timed_out=False)
        result.stopped = stopped
        return result

    def _terminate(self, grace: float) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 1.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def _read(self, what: str) -> str:
        try:
            return self._file(what).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def _collect(self, timed_out: bool) -> SippResult:
        assert self.proc is not None
        _LIVE.discard(self)
        stdout, stderr = self._read("stdout.txt"), self._read("stderr.txt")
        stats = parse_stat_csv(self._read("stat.csv"))
        if not stats:
            stats = parse_screen(self._read("screen.log") or stdout)
        returncode = self.proc.returncode if self.proc.returncode is not None else -1
        self._result = SippResult(
            returncode=returncode,
            stdout=stdout,
            stderr=stderr,
            stats=stats,
            messages=parse_message_log(self._read("messages.log")),
            errors=self._read("errors.log"),
            logs=self._read("logs.log"),
            command=self.command,
            timed_out=timed_out,
        )
        if self._own_workdir and not self._keep:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return self._result

    def __enter__(self) -> Sipp:
        if self.proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "new" if self.proc is None else ("running" if self.running else "ended")
        return f"<Sipp {self.name} {self.local}:{self.port} -> {self.remote or 'uas'} {state}>"


def run_sipp(
    scenario: str | Path, *, wait_timeout: float | None = None, **kw: object
) -> SippResult:
    """Start SIPp and wait for it to end by itself (see :class:`Sipp` for the options)."""
    sipp = Sipp(scenario, **kw)  # type: ignore[arg-type]
    sipp.start()
    try:
        return sipp.wait(wait_timeout)
    finally:
        sipp.stop()
