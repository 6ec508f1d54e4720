"""Ending a db user's open sessions when its grant is revoked (docs/sessions.md).

An RDS IAM token only authenticates new connections: a session opened under a grant survives
the grant's policy. At revocation, for PostgreSQL and MySQL/MariaDB engines, the revoke step
connects with a dedicated admin credential (Secrets Manager) and ends the db user's sessions.

Nothing here raises to the caller: every outcome, including a failure, is a
:class:`SessionTermination` that the revocation records in its audit details.
"""

from __future__ import annotations

import contextlib
import os
import re
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from accessctl.aws import call
from accessctl.models import DB_USER_PATTERN, AccessRequest, DatabaseTarget, RequestStatus, to_iso, utc_now
from accessctl.signals.database import DEFAULT_ENVIRONMENT, ENVIRONMENT_TAG, database_arn

TERMINATE_TAG = "accessctl:terminate-sessions"
DEFAULT_SECRET_PREFIX = "accessctl/session-admin/"
CONNECT_TIMEOUT_SECONDS = 5
# The Amazon RDS certificate authorities (AWS's global-bundle.pem), shipped in the layer beside this
# module (`make rds-ca`, docs/sessions.md): what every admin connection's server certificate must chain to.
RDS_CA_BUNDLE = Path(__file__).with_name("rds-ca.pem")
# pg_terminate_backend(pid, timeout) (PostgreSQL 14+) waits for the backend to exit: the count
# is then of sessions confirmed ended, not of signals sent.
POSTGRES_WAIT_MILLISECONDS = 5000

EngineFamily = Literal["postgresql", "mysql"]
_ENGINE_FAMILIES: dict[str, EngineFamily] = {
    "postgres": "postgresql",
    "aurora-postgresql": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "aurora-mysql": "mysql",
    "aurora": "mysql",  # Aurora MySQL 5.6's engine name
}


class SessionTermination(BaseModel):
    """What happened to the db user's sessions: recorded in the GRANT_REVOKED audit details."""

    status: Literal["TERMINATED", "SKIPPED", "FAILED"]
    engine: str
    terminated: int = 0
    reason: str | None = None  # why it was skipped, or why it failed

    @classmethod
    def skipped(cls, engine: str, reason: str) -> SessionTermination:
        return cls(status="SKIPPED", engine=engine, reason=reason)

    @classmethod
    def failed(cls, engine: str, reason: str) -> SessionTermination:
        return cls(status="FAILED", engine=engine, reason=reason)


class AdminCredential(BaseModel):
    """The secret's JSON: a database login allowed to end other users' sessions."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    username: str = Field(min_length=1)
    password: SecretStr
    host: str | None = None  # default: the database's endpoint as RDS described it
    port: int | None = Field(default=None, ge=1, le=65535)
    dbname: str | None = None


class AdminEndpoint(BaseModel):
    """Where and how to connect. TLS always, verified against ``ca_bundle``; plain only over a local
    Unix socket that a test's own server listens on (:func:`terminate_sessions`' ``plaintext_test_socket``)."""

    model_config = ConfigDict(frozen=True)

    family: EngineFamily
    host: str
    port: int
    dbname: str | None
    username: str
    password: SecretStr
    tls: bool = True
    unix_socket: str | None = None
    ca_bundle: str = str(RDS_CA_BUNDLE)  # PEM file with the certificate authorities the server's certificate chains to
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS

    @model_validator(mode="after")
    def _plain_only_over_a_local_socket(self) -> AdminEndpoint:
        if not self.tls and self.unix_socket is None:
            raise ValueError("a connection without TLS is only allowed over a local Unix socket (a test's own server)")
        return self

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        # Only the bundle is trusted, never the system's store; a missing file fails the connection.
        context = ssl.create_default_context(cafile=self.ca_bundle)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context  # verifies the certificate chain and the host name


def engine_family(engine: str) -> EngineFamily | None:
    return _ENGINE_FAMILIES.get(engine.lower())


# ------------------------------------------------------------------ connecting and terminating


def connect_admin(endpoint: AdminEndpoint) -> Any:
    """A DB-API connection as the admin user (drivers imported here: only revocation needs them)."""
    password = endpoint.password.get_secret_value()
    if endpoint.family == "postgresql":
        import pg8000.dbapi  # type: ignore[import-untyped]

        return pg8000.dbapi.connect(
            user=endpoint.username,
            password=password,
            host=endpoint.host,
            port=endpoint.port,
            database=endpoint.dbname or "postgres",
            unix_sock=endpoint.unix_socket,
            # False, not None, for the plain test socket: pg8000 takes None as "TLS if offered, unverified".
            ssl_context=endpoint.ssl_context() or False,
            timeout=endpoint.connect_timeout,
            application_name="accessctl-revoke",
        )
    import pymysql  # type: ignore[import-untyped]

    return pymysql.connect(
        user=endpoint.username,
        password=password,
        host=endpoint.host,
        port=endpoint.port,
        database=endpoint.dbname,
        unix_socket=endpoint.unix_socket,
        ssl=endpoint.ssl_context(),
        connect_timeout=endpoint.connect_timeout,
        read_timeout=30,
        write_timeout=30,
        autocommit=True,
    )


Connector = Callable[[AdminEndpoint], Any]

_PG_VERSION = "SELECT current_setting('server_version_num')::int"
_PG_TERMINATE = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s AND pid <> pg_backend_pid()"
_PG_TERMINATE_AND_WAIT = (
    "SELECT pg_terminate_backend(pid, %s) FROM pg_stat_activity WHERE usename = %s AND pid <> pg_backend_pid()"
)
_MYSQL_SESSIONS = "SELECT id FROM information_schema.processlist WHERE user = %s AND id <> CONNECTION_ID()"
_MYSQL_UNKNOWN_THREAD = 1094
# Without PROCESS (or SUPER) the processlist shows a user only its own threads: an empty list
# would then be recorded as "0 sessions ended" while the db user's sessions carry on.
# USER_PRIVILEGES lists global privileges per grantee ('user'@'host'); CURRENT_USER() is user@host.
_MYSQL_OWN_PRIVILEGES = (
    "SELECT privilege_type FROM information_schema.user_privileges WHERE grantee = "
    "CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')"
)
_MYSQL_SEE_ALL_SESSIONS = frozenset({"PROCESS", "SUPER"})


def terminate_sessions(
    target: DatabaseTarget,
    db_user: str,
    *,
    credentials: AdminCredential,
    connector: Connector = connect_admin,
    plaintext_test_socket: str | None = None,
    ca_bundle: str | None = None,
) -> SessionTermination:
    """End every session of ``db_user`` on ``target``; never raises.

    Over TLS, with the server's certificate and host name verified against ``ca_bundle`` (default:
    the RDS bundle shipped in the layer). ``plaintext_test_socket`` is the one way around that: it
    connects over that local Unix socket without TLS, for a server a test started itself. Nothing in
    the deployment sets it (no setting or environment variable reaches it).
    """
    family = engine_family(target.engine)
    if family is None:
        return SessionTermination.skipped(target.engine, f"engine {target.engine or 'unknown'} is not supported")
    if not re.fullmatch(DB_USER_PATTERN, db_user):
        return SessionTermination.failed(target.engine, "db user is not a plain identifier")
    host = credentials.host or target.host
    port = credentials.port or target.port or (5432 if family == "postgresql" else 3306)
    if not host and plaintext_test_socket is None:
        return SessionTermination.failed(target.engine, "no endpoint: RDS described none and the secret names none")
    try:
        endpoint = AdminEndpoint(
            family=family,
            host=host or "localhost",
            port=port,
            dbname=credentials.dbname,
            username=credentials.username,
            password=credentials.password,
            tls=plaintext_test_socket is None,
            unix_socket=plaintext_test_socket,
            ca_bundle=ca_bundle or str(RDS_CA_BUNDLE),
        )
        connection = connector(endpoint)
    except Exception as error:  # reported, never raised: the IAM revocation must not wait on this
        return SessionTermination.failed(
            target.engine, f"could not connect as {credentials.username}: {_describe(error)}"
        )
    try:
        ended = _terminate_postgres(connection, db_user) if family == "postgresql" else _kill_mysql(connection, db_user)
    except Exception as error:
        return SessionTermination.failed(target.engine, f"terminating sessions failed: {_describe(error)}")
    finally:
        with contextlib.suppress(Exception):  # the outcome is already decided; a failed close changes nothing
            connection.close()
    return SessionTermination(status="TERMINATED", engine=target.engine, terminated=ended)


def _terminate_postgres(connection: Any, db_user: str) -> int:
    cursor = connection.cursor()
    cursor.execute(_PG_VERSION)
    (version,) = cursor.fetchone()
    if int(version) >= 140000:
        cursor.execute(_PG_TERMINATE_AND_WAIT, (POSTGRES_WAIT_MILLISECONDS, db_user))
    else:
        cursor.execute(_PG_TERMINATE, (db_user,))
    ended = sum(1 for (done,) in cursor.fetchall() if done is True)
    connection.commit()
    return ended


def _kill_mysql(connection: Any, db_user: str) -> int:
    cursor = connection.cursor()
    cursor.execute(_MYSQL_OWN_PRIVILEGES)
    if not {str(row[0]).upper() for row in cursor.fetchall()} & _MYSQL_SEE_ALL_SESSIONS:
        raise PermissionError(
            "the admin user lacks the PROCESS privilege (granted directly, not through a role): "
            "other users' sessions are invisible to it"
        )
    cursor.execute(_MYSQL_SESSIONS, (db_user,))
    ids = [row[0] for row in cursor.fetchall()]
    ended = 0
    for thread_id in ids:
        if not isinstance(thread_id, int) or isinstance(thread_id, bool) or thread_id <= 0:
            raise ValueError(f"unexpected process id {thread_id!r}")
        try:
            cursor.execute("KILL %s", (thread_id,))
        except Exception as error:
            if _mysql_error_number(error) == _MYSQL_UNKNOWN_THREAD:
                continue  # ended on its own in between
            raise
        ended += 1
    return ended


def _mysql_error_number(error: Exception) -> int | None:
    args = getattr(error, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:500]


# ------------------------------------------------------------------ the revocation hook


class SessionSettings(BaseModel):
    """Environment: TERMINATE_SESSIONS, SESSION_ADMIN_SECRET_PREFIX, SESSION_ADMIN_CA_BUNDLE."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    terminate_sessions: bool = True
    session_admin_secret_prefix: str = DEFAULT_SECRET_PREFIX
    session_admin_ca_bundle: str = str(RDS_CA_BUNDLE)

    @field_validator("session_admin_ca_bundle", mode="before")
    @classmethod
    def _empty_is_the_shipped_bundle(cls, value: str | None) -> str:
        return value or str(RDS_CA_BUNDLE)

    @classmethod
    def from_environment(cls) -> SessionSettings:
        return cls.model_validate({name.lower(): value for name, value in os.environ.items()})


class SessionTerminator:
    """``deps.session_terminator``: decides whether to end a revoked request's sessions, then does.

    Per database (RDS tags): ``accessctl:terminate-sessions`` = true/false; absent, sessions are
    ended when the ``environment`` tag is ``production`` (or absent: untagged is production).
    The admin secret is named ``<prefix><database identifier>``.
    """

    def __init__(
        self,
        *,
        rds: Any,
        secrets: Any = None,
        settings: SessionSettings | None = None,
        grants: Any = None,
        connector: Connector = connect_admin,
        plaintext_test_socket: str | None = None,
    ) -> None:
        self._rds = rds
        self._secrets = secrets  # a Powertools SecretsProvider (or anything with .get(name, transform=...))
        self._settings = settings or SessionSettings()
        self._grants = grants  # a GrantsStore: other live grants of the same db user are left alone
        self._connector = connector
        self._plaintext_test_socket = plaintext_test_socket  # tests only: see terminate_sessions

    def __call__(self, request: AccessRequest) -> SessionTermination:
        target = request.decision.target if request.decision else None
        if target is None:
            return SessionTermination.skipped("unknown", "the request has no recorded database target")
        if engine_family(target.engine) is None:
            return SessionTermination.skipped(target.engine, f"engine {target.engine or 'unknown'} is not supported")
        try:
            enabled, why = self._enabled(target)
        except Exception as error:
            return SessionTermination.failed(target.engine, f"could not read the database's tags: {_describe(error)}")
        if not enabled:
            return SessionTermination.skipped(target.engine, why)
        try:
            others = self._other_live_grants(request)
        except Exception as error:
            return SessionTermination.failed(target.engine, f"could not list other grants: {_describe(error)}")
        if others:
            return SessionTermination.skipped(
                target.engine,
                f"db user {request.db_user} is still granted by {', '.join(sorted(others)[:5])}; "
                "its sessions cannot be told apart",
            )
        secret_name = f"{self._settings.session_admin_secret_prefix}{target.identifier}"
        try:
            credentials = AdminCredential.model_validate(self._secret_provider().get(secret_name, transform="json"))
        except ValidationError as error:
            fields = ", ".join(".".join(str(part) for part in problem["loc"]) for problem in error.errors())
            return SessionTermination.failed(target.engine, f"secret {secret_name} is malformed (fields: {fields})")
        except Exception as error:
            return SessionTermination.failed(target.engine, f"could not read secret {secret_name}: {_describe(error)}")
        return terminate_sessions(
            target,
            request.db_user,
            credentials=credentials,
            connector=self._connector,
            plaintext_test_socket=self._plaintext_test_socket,
            ca_bundle=self._settings.session_admin_ca_bundle,
        )

    def _secret_provider(self) -> Any:
        if self._secrets is None:  # built on first use: only a revocation reads the admin secret
            from aws_lambda_powertools.utilities.parameters import SecretsProvider

            self._secrets = SecretsProvider()
        return self._secrets

    def _enabled(self, target: DatabaseTarget) -> tuple[bool, str]:
        listed = call(self._rds.list_tags_for_resource, ResourceName=database_arn(target))
        tags = {tag["Key"]: tag["Value"] for tag in listed.get("TagList", [])}
        explicit = tags.get(TERMINATE_TAG)
        if explicit is not None:
            value = explicit.strip().lower()
            if value in ("true", "false"):
                return value == "true", f"disabled by tag {TERMINATE_TAG}={value}"
            # An unreadable tag falls back to the environment default, and says so.
        environment = tags.get(ENVIRONMENT_TAG) or DEFAULT_ENVIRONMENT
        if environment == DEFAULT_ENVIRONMENT:
            return True, ""
        return False, f"environment {environment} (not production) and no {TERMINATE_TAG}=true tag"

    def _other_live_grants(self, request: AccessRequest) -> list[str]:
        if self._grants is None:
            return []
        # The live grants (expiry index), not the database's request history (ByDatabase): this runs
        # for every revocation, the sweeper's included, and its cost must not grow with the history.
        live = self._grants.live_grants_on(request.database, request.db_user, after=to_iso(utc_now()))
        return [
            other.request_id
            for other in live
            if other.request_id != request.request_id
            and other.status == RequestStatus.ACTIVE
            and other.grant is not None
            and other.grant.revoked_at is None
        ]


def default_session_terminator(rds: Any, grants: Any) -> SessionTerminator | None:
    """The deployed hook, unless TERMINATE_SESSIONS=false."""
    settings = SessionSettings.from_environment()
    if not settings.terminate_sessions:
        return None
    return SessionTerminator(rds=rds, settings=settings, grants=grants)


__all__ = [
    "RDS_CA_BUNDLE",
    "AdminCredential",
    "AdminEndpoint",
    "SessionSettings",
    "SessionTermination",
    "SessionTerminator",
    "connect_admin",
    "default_session_terminator",
    "terminate_sessions",
]
