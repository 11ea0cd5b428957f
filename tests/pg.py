"""A throw-away PostgreSQL cluster for tests: Debian's `postgresql` binaries (initdb, pg_ctl)
on a temp directory, a free port on 127.0.0.1, its unix socket in that directory.

PostgreSQL refuses to run as root: as root (CI) the cluster belongs to the `postgres` user
(the package creates it) and every server command runs as that user; otherwise as ourselves.
Clients authenticate with a password over TCP (scram-sha-256, like a real deployment with
storage.password_file); the socket trusts its own user (the tests' checks through psql).

`PgCluster(listen=..., netns=..., clients=...)` runs the server inside a network namespace the
test made, listening on that namespace's addresses and accepting password logins from the
`clients` network (tests/integration/test_fleet.py: edges in other namespaces share it); the
checks still reach it over its unix socket, which no namespace hides.

`PgCluster.unavailable()` says why there is none (tests skip with that reason).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sipedge.store import PostgresSettings
from tests.conftest import free_port

USER = "sipedge"
PASSWORD = "test-only-password"


def _bin_dir() -> Path | None:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parts)
    return versions[-1].parent if versions else None


class PgCluster:
    def __init__(
        self,
        listen: str = "127.0.0.1",
        netns: str | None = None,
        clients: str | None = None,
        fsync: bool = False,
    ) -> None:
        """`fsync` off (the tests' default: nothing here must survive a crash); the CPS
        benchmark turns it on, as a real server has it."""
        bin_dir = _bin_dir()
        assert bin_dir is not None, PgCluster.unavailable()
        self.bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="sipedge-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = free_port(socket.SOCK_STREAM)
        self.run_as: str | None = None
        self.netns = netns
        self.listen = listen
        if os.geteuid() == 0:
            self.run_as = "postgres"
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.superuser = self.run_as or pwd.getpwuid(os.geteuid()).pw_name
        self._server(
            "initdb", "-D", str(self.data), "-U", self.superuser, "-E", "UTF8", "--no-sync",
            "--auth-local=trust", "--auth-host=scram-sha-256",
        )  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '{listen}'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.dir}'\nfsync = {'on' if fsync else 'off'}\n"
                "max_connections = 60\n"
            )
        if clients is not None:
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {clients} scram-sha-256\n")
        self.password_file = self.dir / "password"
        self.password_file.write_text(PASSWORD + "\n")
        self.start()
        self.psql(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")

    @staticmethod
    def unavailable() -> str | None:
        if _bin_dir() is None:
            return "no PostgreSQL server binaries (apt-get install postgresql: .ci/setup)"
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return "running as root without a postgres user to run the server as"
        return None

    def _server(self, tool: str, *args: str, timeout: float = 60) -> str:
        cmd = [str(self.bin / tool), *args]
        user = self.run_as
        if self.netns is not None:  # the server (pg_ctl start) lives in the namespace
            cmd = ["ip", "netns", "exec", self.netns, *self._as_owner(), *cmd]
            user = None
        result = subprocess.run(
            cmd, user=user, capture_output=True, text=True, timeout=timeout, cwd=self.dir
        )
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stderr}{self.tail()}")
        return result.stdout

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\nserver log:\n" + self.log.read_text()[-3000:]
        return ""

    def start(self) -> None:
        self._server("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30", "start")

    def stop(self) -> None:
        self._server("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")

    def stop_command(self, pause: float) -> list[str]:
        """A shell command (for a subprocess) that stops the server, waits, starts it again."""
        ctl = f"{self.bin / 'pg_ctl'} -D {self.data}"
        script = (
            f"{ctl} -m fast -w -t 30 stop && sleep {pause} && {ctl} -l {self.log} -w -t 30 start"
        )
        netns = ["ip", "netns", "exec", self.netns] if self.netns else []
        return [*netns, *self._as_owner(), "sh", "-c", script]

    def _as_owner(self) -> list[str]:
        return ["runuser", "-u", self.run_as, "--"] if self.run_as else []

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run `sql` as the superuser over the socket; the rows, '|'-separated."""
        return self._server(
            "psql", "-h", str(self.dir), "-p", str(self.port), "-U", self.superuser,
            "-d", database, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql,
        ).strip()  # fmt: skip

    def new_database(self, name: str) -> None:
        self.psql(f"CREATE DATABASE {name} OWNER {USER}")

    def dsn(self, database: str, host: str = "127.0.0.1") -> str:
        return f"postgresql://{USER}@{host}:{self.port}/{database}"

    def settings(self, database: str, node: str = "edge-a", pool_size: int = 4) -> PostgresSettings:
        dsn = self.dsn(database, self.listen.split(",")[0])
        return PostgresSettings(dsn, self.password_file, pool_size, node)

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def throwaway_cluster() -> Iterator[PgCluster]:
    """The body of a module-scoped `cluster` fixture: skips (saying why) without a server."""
    reason = PgCluster.unavailable()
    if reason is not None:
        print(f"skipped: {reason}")
        pytest.skip(reason)
    pg = PgCluster()
    try:
        yield pg
    finally:
        pg.destroy()


def fresh_database(cluster: PgCluster) -> str:
    """A new database of the `sipedge` role, for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    cluster.new_database(name)
    return name


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
