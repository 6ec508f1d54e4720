"""Turning a granted request's connection details and an IAM auth token into a URL or environment."""

from __future__ import annotations

from urllib.parse import quote

from .errors import ConfigurationError
from .models import Connection

POSTGRES, MYSQL = "postgres", "mysql"


def engine_family(engine: str) -> str:
    """``postgres`` or ``mysql`` for an RDS engine name (``aurora-postgresql``, ``mariadb``, ...)."""
    name = (engine or "").lower()
    if "postgres" in name:
        return POSTGRES
    # "aurora" alone is the original, MySQL 5.6-compatible Aurora engine.
    if name in {"mysql", "mariadb", "aurora", "aurora-mysql"}:
        return MYSQL
    raise ConfigurationError(f"unsupported database engine {engine!r}: expected a PostgreSQL or MySQL family engine")


def connection_url(connection: Connection, token: str, dbname: str | None = None) -> str:
    """A connection URL with TLS required (IAM authentication refuses unencrypted connections).

    The token goes in the password position, percent-encoded: it is a presigned query string full of
    ``&``, ``=`` and ``%``.
    """
    family = engine_family(connection.engine)
    scheme, tls = ("postgresql", "sslmode=require") if family == POSTGRES else ("mysql", "ssl-mode=REQUIRED")
    user = quote(connection.db_user, safe="")
    path = quote(dbname, safe="") if dbname else ""
    return f"{scheme}://{user}:{quote(token, safe='')}@{connection.host}:{int(connection.port)}/{path}?{tls}"


def connection_env(connection: Connection, token: str, dbname: str | None = None) -> dict[str, str]:
    """Environment variables the engine's standard clients read (libpq's ``PG*``; ``MYSQL_*`` for MySQL)."""
    if engine_family(connection.engine) == POSTGRES:
        env = {
            "PGHOST": connection.host,
            "PGPORT": str(int(connection.port)),
            "PGUSER": connection.db_user,
            "PGPASSWORD": token,
            "PGSSLMODE": "require",
        }
        if dbname:
            env["PGDATABASE"] = dbname
        return env
    env = {
        "MYSQL_HOST": connection.host,
        "MYSQL_TCP_PORT": str(int(connection.port)),
        "MYSQL_USER": connection.db_user,
        "MYSQL_PWD": token,
    }
    if dbname:
        env["MYSQL_DATABASE"] = dbname
    return env
