"""A throwaway PostgreSQL 15 cluster for the test session, from the Debian binaries.

pytest-postgresql's executor runs initdb as the current user, and initdb refuses root (CI
runs as root), so the cluster is started here as the `postgres` user via runuser when
needed; pytest-postgresql's DatabaseJanitor then creates and drops the test databases.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pytest_postgresql.janitor import DatabaseJanitor


def find_pg_bindir() -> Path | None:
    candidates = [os.environ.get("PG_BINDIR", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    which = shutil.which("pg_ctl")
    if which:
        candidates.append(str(Path(which).resolve().parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    bindir: Path
    datadir: Path
    port: int
    as_postgres: bool
    user: str = "postgres"
    host: str = "127.0.0.1"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)

    def init(self) -> None:
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        )
        with open(self.datadir / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.datadir}'\n"
                # Test speed over durability: a crashed test cluster is simply thrown away.
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 300\nshared_buffers = 128MB\n"
                # A failed test must fail, not hang: a transaction it left open is ended, and
                # a statement waiting on its locks (the next test's TRUNCATE) gives up.
                "lock_timeout = '30s'\nidle_in_transaction_session_timeout = '60s'\n"
            )

    def start(self) -> None:
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-w",
            "-t",
            "60",
            "-l",
            str(self.datadir / "server.log"),
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-m",
            mode,
            "-w",
            "stop",
            check=False,
        )

    def url(self, dbname: str, driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://{self.user}@{self.host}:{self.port}/{dbname}"

    def janitor(self, dbname: str) -> DatabaseJanitor:
        return DatabaseJanitor(
            user=self.user, host=self.host, port=self.port, dbname=dbname, password=None
        )


def start_postgres() -> PostgresServer:
    bindir = find_pg_bindir()
    if bindir is None:
        raise RuntimeError(
            "PostgreSQL binaries not found: apt-get install postgresql (see .ci/run)"
        )
    as_postgres = os.geteuid() == 0
    datadir = Path(tempfile.mkdtemp(prefix="bridge-pg-")) / "data"
    datadir.parent.chmod(0o755)
    if as_postgres:
        datadir.mkdir()
        shutil.chown(datadir, "postgres", "postgres")
        datadir.chmod(0o700)
    server = PostgresServer(
        bindir=bindir, datadir=datadir, port=free_port(), as_postgres=as_postgres
    )
    server.init()
    server.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex((server.host, server.port)) == 0:
                return server
        time.sleep(0.1)
    raise RuntimeError("test PostgreSQL did not start")


def destroy(server: PostgresServer) -> None:
    server.stop("immediate")
    shutil.rmtree(server.datadir.parent, ignore_errors=True)
