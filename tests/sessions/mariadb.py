"""A throwaway MariaDB server for the session tests: Debian's ``mariadb-server-core`` binaries
(installed by ``make test-servers``), its own data directory, socket and loopback port in a
temporary directory, TLS with a CA made for the run. Never the system service.

The db users look as much like RDS IAM-auth users as a server without Amazon's authentication
plugin allows: ``'app_rw'@'%'``, ``REQUIRE SSL`` (RDS refuses IAM tokens over plain connections),
with a password standing in for the token (RDS: ``IDENTIFIED VIA AWSAuthenticationPlugin USING 'RDS'``).
The admin holds exactly the privileges docs/sessions.md asks for: ``PROCESS, CONNECTION ADMIN``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql

from tests.sessions.tls import free_loopback_port, write_tls_files

SERVER_BINARY = "mariadbd"
INSTALL_DB_BINARY = "mariadb-install-db"
SEARCH_PATH = f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/local/sbin"
START_TIMEOUT_SECONDS = 60

FIXTURE_ROOT = "fixture_root"
FIXTURE_ROOT_PASSWORD = "fixture-root-password"
SESSION_ADMIN = "accessctl_session_admin"
SESSION_ADMIN_PASSWORD = "admin-test-password"
TOKEN_STAND_IN = "iam-token-stand-in"
# Admins short of one privilege each: what a wrong setup on RDS looks like.
ADMIN_WITHOUT_PROCESS = "admin_without_process"
ADMIN_WITHOUT_CONNECTION_ADMIN = "admin_without_connection_admin"


def server_binaries() -> tuple[str, str] | None:
    server = shutil.which(SERVER_BINARY, path=SEARCH_PATH)
    install_db = shutil.which(INSTALL_DB_BINARY, path=SEARCH_PATH)
    return (server, install_db) if server and install_db else None


@dataclass
class MariaDBServer:
    """The running server: a loopback port with TLS, a Unix socket, and the CA that signed its certificate."""

    host: str
    port: int
    socket: str
    ca_bundle: str
    version: str

    def connect(self, user: str, password: str = TOKEN_STAND_IN) -> Any:
        """A session as ``user`` over TLS on the loopback port, as a workload reaches RDS."""
        return pymysql.connect(
            host=self.host, port=self.port, user=user, password=password, ssl={"ca": self.ca_bundle}, autocommit=True
        )

    def superuser(self) -> Any:
        return pymysql.connect(
            unix_socket=self.socket, user=FIXTURE_ROOT, password=FIXTURE_ROOT_PASSWORD, autocommit=True
        )

    def session_ids(self, user: str) -> set[int]:
        with contextlib.closing(self.superuser()) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT id FROM information_schema.processlist WHERE user = %s", (user,))
            return {int(row[0]) for row in cursor.fetchall()}

    def kill_all(self, *users: str) -> None:
        with contextlib.closing(self.superuser()) as connection, connection.cursor() as cursor:
            for user in users:
                cursor.execute("SELECT id FROM information_schema.processlist WHERE user = %s", (user,))
                for (thread_id,) in cursor.fetchall():
                    with contextlib.suppress(pymysql.err.OperationalError):  # ended meanwhile
                        cursor.execute("KILL %s", (thread_id,))


def setup_sql(db_users: tuple[str, ...]) -> str:
    statements = [
        f"CREATE USER '{FIXTURE_ROOT}'@'localhost' IDENTIFIED BY '{FIXTURE_ROOT_PASSWORD}'",
        f"GRANT ALL PRIVILEGES ON *.* TO '{FIXTURE_ROOT}'@'localhost' WITH GRANT OPTION",
        f"CREATE USER '{SESSION_ADMIN}'@'%' IDENTIFIED BY '{SESSION_ADMIN_PASSWORD}'",
        f"GRANT PROCESS, CONNECTION ADMIN ON *.* TO '{SESSION_ADMIN}'@'%'",
        f"CREATE USER '{ADMIN_WITHOUT_PROCESS}'@'%' IDENTIFIED BY '{SESSION_ADMIN_PASSWORD}'",
        f"GRANT CONNECTION ADMIN ON *.* TO '{ADMIN_WITHOUT_PROCESS}'@'%'",
        f"CREATE USER '{ADMIN_WITHOUT_CONNECTION_ADMIN}'@'%' IDENTIFIED BY '{SESSION_ADMIN_PASSWORD}'",
        f"GRANT PROCESS ON *.* TO '{ADMIN_WITHOUT_CONNECTION_ADMIN}'@'%'",
        "CREATE DATABASE orders",
    ]
    for user in db_users:
        statements += [
            f"CREATE USER '{user}'@'%' IDENTIFIED BY '{TOKEN_STAND_IN}' REQUIRE SSL",
            f"GRANT SELECT ON orders.* TO '{user}'@'%'",
        ]
    return "".join(f"{statement};\n" for statement in statements)


@contextlib.contextmanager
def running_mariadb(workdir: Path, db_users: tuple[str, ...]) -> Iterator[MariaDBServer]:
    """Initialise a data directory in ``workdir``, start the server on it, stop it on exit."""
    binaries = server_binaries()
    if binaries is None:
        raise FileNotFoundError(f"{SERVER_BINARY} / {INSTALL_DB_BINARY} not found (make test-servers installs them)")
    server_binary, install_db = binaries
    datadir, socket_path, error_log = workdir / "data", workdir / "mysqld.sock", workdir / "error.log"
    # mariadbd refuses to run as root unless told to; as another user it runs as that user.
    as_user = ["--user=root"] if os.geteuid() == 0 else []
    small = ["--innodb-buffer-pool-size=16M", "--innodb-log-file-size=4M", "--skip-name-resolve"]
    subprocess.run(
        [install_db, "--no-defaults", f"--datadir={datadir}", *as_user, "--skip-test-db", *small],
        check=True,
        capture_output=True,
        timeout=START_TIMEOUT_SECONDS,
    )
    init_file = workdir / "init.sql"
    init_file.write_text(setup_sql(db_users), encoding="utf-8")
    ca, cert, key = write_tls_files(workdir)
    port = free_loopback_port()
    process = subprocess.Popen(
        [
            server_binary,
            "--no-defaults",
            f"--datadir={datadir}",
            f"--socket={socket_path}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={workdir / 'mysqld.pid'}",
            f"--log-error={error_log}",
            f"--init-file={init_file}",
            f"--ssl-ca={ca}",
            f"--ssl-cert={cert}",
            f"--ssl-key={key}",
            *as_user,
            *small,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        server = MariaDBServer(host="127.0.0.1", port=port, socket=str(socket_path), ca_bundle=str(ca), version="")
        server.version = _await_ready(server, process, error_log)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _await_ready(server: MariaDBServer, process: subprocess.Popen[bytes], error_log: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"mariadbd exited with {process.returncode}: {_tail(error_log)}")
        try:
            with contextlib.closing(server.superuser()) as connection, connection.cursor() as cursor:
                cursor.execute("SELECT VERSION()")
                return str(cursor.fetchone()[0])
        except pymysql.err.OperationalError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"mariadbd did not accept connections: {_tail(error_log)}") from None
            time.sleep(0.05)


def _tail(path: Path) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-10:])
    except OSError:
        return "(no error log)"
