"""Store fixtures: every store test runs on SQLite and on a real PostgreSQL server.

The server is a throw-away cluster: ``initdb`` in a temporary folder (as the ``postgres`` user
when the tests run as root, which PostgreSQL refuses to be), started on 127.0.0.1 at a free
port, stopped at the end of the session. Where no PostgreSQL binaries exist or the server does
not start, the PostgreSQL half of each test is skipped with the reason (fails instead when
``GOVSSL_REQUIRE_POSTGRES`` is set, as CI sets it).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_USER = "govssl"


def _pg_bin() -> Path | None:
    """The folder of initdb / pg_ctl: $PATH first, then Debian's versioned folders."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    """A running throw-away PostgreSQL cluster on loopback (trust auth, user ``govssl``)."""

    folder: Path
    port: int
    run_as: list[str]
    bin: Path

    def url(self, schema: str = "") -> str:
        """The store URL; with ``schema``, a store of its own in that schema (the tests' unit
        of isolation: a schema is made in milliseconds, a database in about a second)."""
        url = f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/postgres"
        return f"{url}?options=-csearch_path%3D{schema}" if schema else url

    def connect(self, schema: str = ""):
        import psycopg

        options = f"-csearch_path={schema}" if schema else ""
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=PG_USER, dbname="postgres", autocommit=True,
            options=options,
        )

    def create_schema(self) -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        with self.connect() as conn:
            conn.execute(f"CREATE SCHEMA {name}")
        return name

    def drop_schema(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")

    def stop(self) -> None:
        subprocess.run(
            [*self.run_as, str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate",
             "-w", "stop"],
            capture_output=True, check=False,
        )
        shutil.rmtree(self.folder, ignore_errors=True)


def start_postgres(settings: dict[str, str] | None = None) -> PostgresServer:
    """initdb + start a cluster; raises RuntimeError with the reason when that cannot be done."""
    pg_bin = _pg_bin()
    if pg_bin is None:
        raise RuntimeError("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise RuntimeError("psycopg (3) is not installed") from None
    folder = Path(tempfile.mkdtemp(prefix="govssl-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL will not run as root
        runuser = shutil.which("runuser")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            runuser = None
        if runuser is None:
            shutil.rmtree(folder, ignore_errors=True)
            raise RuntimeError("running as root and there is no 'postgres' user to run the server")
        shutil.chown(folder, "postgres", "postgres")
        run_as = [runuser, "-u", "postgres", "--"]
    data = folder / "data"
    port = _free_port()
    options = {"listen_addresses": "127.0.0.1", "port": str(port), "unix_socket_directories": str(folder),
               "max_connections": "100", **(settings or {})}
    server = PostgresServer(folder=folder, port=port, run_as=run_as, bin=pg_bin)
    steps = [
        [*run_as, str(pg_bin / "initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust", "-E", "UTF8",
         "--no-sync"],
        [*run_as, str(pg_bin / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t", "60",
         "-o", " ".join(f"-c {key}={value}" for key, value in options.items()), "start"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            log = (folder / "server.log").read_text() if (folder / "server.log").exists() else ""
            server.stop()
            raise RuntimeError(f"{Path(step[len(run_as)]).name} failed: {done.stderr.strip()} {log[-500:]}")
    deadline = time.monotonic() + 30
    while True:
        try:
            server.connect().close()
            return server
        except Exception as exc:  # noqa: BLE001 - retried until the deadline, then reported
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"the server did not accept connections: {exc}") from None
            time.sleep(0.2)


@pytest.fixture(scope="session")
def postgres_server():
    """The session's PostgreSQL server, or the reason there is none (tests skip with it)."""
    try:
        # fsync off: a crash of this throw-away server is not what the tests are about
        server = start_postgres({"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off"})
    except RuntimeError as exc:
        yield str(exc)
        return
    yield server
    server.stop()


@dataclass
class Backend:
    """One database under test: its URL and plain-driver access for tampering like an attacker."""

    name: str
    url: str
    sqlite_file: Path | None = None
    server: PostgresServer | None = None
    schema: str = ""

    def raw_sql(self, *statements: str) -> None:
        if self.sqlite_file is not None:
            with sqlite3.connect(self.sqlite_file) as conn:
                for statement in statements:
                    conn.execute(statement)
            conn.close()
            return
        with self.server.connect(self.schema) as conn, conn.transaction():
            for statement in statements:
                conn.execute(statement)

    def query(self, statement: str) -> list[tuple]:
        if self.sqlite_file is not None:
            conn = sqlite3.connect(self.sqlite_file)
            try:
                return conn.execute(statement).fetchall()
            finally:
                conn.close()
        with self.server.connect(self.schema) as conn:
            return conn.execute(statement).fetchall()

    def count_rows(self) -> dict[str, int]:
        tables = ["runs", "check_results", "measurements", "rule_outcomes", "artifacts",
                  "attestations", "waivers", "ledger"]
        return {t: self.query(f"SELECT count(*) FROM {t}")[0][0] for t in tables}


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path):
    if request.param == "sqlite":
        db = tmp_path / "audit.db"
        yield Backend("sqlite", f"sqlite:///{db}", sqlite_file=db)
        return
    server = request.getfixturevalue("postgres_server")
    if isinstance(server, str):
        if os.environ.get("GOVSSL_REQUIRE_POSTGRES"):  # CI: a skipped half is a failure
            pytest.fail(f"no PostgreSQL server: {server}")
        pytest.skip(f"no PostgreSQL server: {server}")
    schema = server.create_schema()
    yield Backend("postgresql", server.url(schema), server=server, schema=schema)
    server.drop_schema(schema)
