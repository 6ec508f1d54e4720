"""Live sessions end with the grant: against a real PostgreSQL server with real open sessions."""

from __future__ import annotations

import dataclasses
import json
import socket
import ssl
from datetime import timedelta
from typing import Any

import pg8000.exceptions
import pg8000.native
import pytest
from aws_lambda_powertools.utilities.parameters import SecretsProvider

from accessctl.grants import revoke_grant
from accessctl.models import AccessRequest, AuditEventType, DatabaseTarget, RequestStatus, RevokeReason, utc_now
from accessctl.sessions import (
    CONNECT_TIMEOUT_SECONDS,
    RDS_CA_BUNDLE,
    AdminCredential,
    AdminEndpoint,
    SessionSettings,
    SessionTerminator,
    connect_admin,
    terminate_sessions,
)
from accessctl.store import GrantsStore
from tests.conftest import ACCOUNT_ID, REGION, Estate
from tests.integration.test_grant_lifecycle import after_expiry, granted_request
from tests.sessions.conftest import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    DB_USER,
    OpenSessions,
    PostgresServer,
    TlsEndpoint,
    is_dead,
)
from tests.sessions.tls_front import TLS_REQUIRED

ADMIN = AdminCredential.model_validate({"username": ADMIN_USER, "password": ADMIN_PASSWORD})


def target(engine: str = "postgres") -> DatabaseTarget:
    return DatabaseTarget(
        identifier="orders-prod",
        kind="instance",
        resource_id="db-ABCDEFGHIJKLMNOP",
        engine=engine,
        host="orders-prod.abc123.us-east-1.rds.amazonaws.com",
        port=5432,
        region=REGION,
        account_id=ACCOUNT_ID,
        partition="aws",
        iam_auth_enabled=True,
    )


def closed_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when the probe is: nothing listens there


# ------------------------------------------------------------------ terminate_sessions, directly


def test_given_open_sessions_when_terminated_then_exactly_the_db_users_sessions_end(
    postgres: PostgresServer, open_sessions: OpenSessions
) -> None:
    outcome = terminate_sessions(target(), DB_USER, credentials=ADMIN, plaintext_test_socket=postgres.socket)

    assert outcome.status == "TERMINATED"
    assert outcome.terminated == 3
    assert all(is_dead(connection) for connection in open_sessions.granted)
    assert postgres.session_pids(DB_USER) == set()
    assert not any(is_dead(connection) for connection in open_sessions.others)


def test_given_no_open_session_when_terminated_then_none_is_counted(postgres: PostgresServer) -> None:
    outcome = terminate_sessions(target(), "nobody_here", credentials=ADMIN, plaintext_test_socket=postgres.socket)

    assert (outcome.status, outcome.terminated) == ("TERMINATED", 0)


def test_given_a_wrong_admin_password_when_terminated_then_a_failure_is_returned_not_raised(
    postgres: PostgresServer,
) -> None:
    # The embedded server trusts local connections; an unknown admin user fails the same way.
    unknown = AdminCredential.model_validate({"username": "no_such_admin", "password": "x"})

    outcome = terminate_sessions(target(), DB_USER, credentials=unknown, plaintext_test_socket=postgres.socket)

    assert outcome.status == "FAILED"
    assert outcome.reason is not None and "could not connect as no_such_admin" in outcome.reason


def test_given_an_unsupported_engine_when_terminated_then_it_is_skipped_with_the_reason() -> None:
    outcome = terminate_sessions(target("sqlserver-ee"), DB_USER, credentials=ADMIN)

    assert outcome.status == "SKIPPED"
    assert outcome.reason == "engine sqlserver-ee is not supported"


# ------------------------------------------------------------------ TLS and the plain-socket exception


def test_given_an_rds_endpoint_when_connecting_then_tls_is_verified_and_the_timeout_is_short(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr("pg8000.dbapi.connect", lambda **kwargs: seen.update(kwargs))
    endpoint = AdminEndpoint(
        family="postgresql", host="orders.abc.rds.amazonaws.com", port=5432, dbname=None, username="a", password="p"
    )

    connect_admin(endpoint)

    context = seen["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert seen["timeout"] == CONNECT_TIMEOUT_SECONDS == 5
    assert seen["unix_sock"] is None and seen["host"] == "orders.abc.rds.amazonaws.com"


def test_given_the_plain_test_socket_when_connecting_then_pg8000_is_told_no_tls_rather_than_unverified_tls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # pg8000 takes ssl_context=None as "TLS if the server offers it, certificate unchecked"
    seen: dict[str, Any] = {}
    monkeypatch.setattr("pg8000.dbapi.connect", lambda **kwargs: seen.update(kwargs))
    endpoint = AdminEndpoint(
        family="postgresql",
        host="localhost",
        port=5432,
        dbname=None,
        username="a",
        password="p",
        tls=False,
        unix_socket="/tmp/.s.PGSQL.5432",
    )

    connect_admin(endpoint)

    assert seen["ssl_context"] is False and seen["unix_sock"] == "/tmp/.s.PGSQL.5432"


@pytest.mark.parametrize("host", ["db.example.com", "127.0.0.1", "localhost"])
def test_given_a_tcp_endpoint_when_tls_is_turned_off_then_the_endpoint_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="only allowed over a local Unix socket"):
        AdminEndpoint(family="postgresql", host=host, port=5432, dbname=None, username="a", password="p", tls=False)


# ------------------------------------------------------------------ TLS verified against a real server


def tls_target(endpoint: TlsEndpoint) -> DatabaseTarget:
    """The database as RDS would describe it, its endpoint the TLS endpoint's loopback port."""
    return target().model_copy(update={"host": endpoint.host, "port": endpoint.port})


def test_given_a_server_certificate_from_the_ca_bundle_when_terminated_then_over_verified_tls_the_sessions_end(
    postgres: PostgresServer, postgres_tls: TlsEndpoint, open_sessions: OpenSessions
) -> None:
    # Given an endpoint that takes clients only over TLS (a plain start is refused)
    with pytest.raises(pg8000.exceptions.DatabaseError, match=TLS_REQUIRED):
        pg8000.native.Connection(
            ADMIN_USER, password=ADMIN_PASSWORD, host=postgres_tls.host, port=postgres_tls.port, ssl_context=False
        )

    # When the terminator connects with the CA that signed the endpoint's certificate as its bundle
    outcome = terminate_sessions(tls_target(postgres_tls), DB_USER, credentials=ADMIN, ca_bundle=postgres_tls.ca_bundle)

    # Then the db user's sessions, and only those, ended
    assert (outcome.status, outcome.terminated, outcome.reason) == ("TERMINATED", 3, None)
    assert all(is_dead(connection) for connection in open_sessions.granted)
    assert postgres.session_pids(DB_USER) == set()
    assert not any(is_dead(connection) for connection in open_sessions.others)


@pytest.mark.parametrize("bundle", ["another CA", "the shipped RDS bundle"])
def test_given_a_server_certificate_not_from_the_ca_bundle_when_terminating_then_failed_closed_and_sessions_go_on(
    postgres: PostgresServer, postgres_tls: TlsEndpoint, open_sessions: OpenSessions, bundle: str
) -> None:
    # Given a bundle that did not sign the endpoint's certificate (no bundle given: the RDS bundle)
    ca_bundle = postgres_tls.other_ca_bundle if bundle == "another CA" else None

    # When the terminator connects
    outcome = terminate_sessions(tls_target(postgres_tls), DB_USER, credentials=ADMIN, ca_bundle=ca_bundle)

    # Then it refuses the server, says why, and never falls back to an unverified connection
    assert outcome.status == "FAILED"
    assert "CERTIFICATE_VERIFY_FAILED" in (outcome.reason or "")
    assert not any(is_dead(connection) for connection in open_sessions.granted)
    assert len(postgres.session_pids(DB_USER)) == 3


def test_given_no_bundle_configured_then_the_rds_bundle_shipped_in_the_layer_is_the_one_trusted() -> None:
    assert SessionSettings().session_admin_ca_bundle == str(RDS_CA_BUNDLE)
    assert SessionSettings.model_validate({"session_admin_ca_bundle": ""}).session_admin_ca_bundle == str(RDS_CA_BUNDLE)
    assert RDS_CA_BUNDLE.parent.name == "accessctl" and RDS_CA_BUNDLE.is_file()  # in the layer's package
    context = AdminEndpoint(
        family="postgresql", host="orders.abc.rds.amazonaws.com", port=5432, dbname=None, username="a", password="p"
    ).ssl_context()
    assert context is not None and context.cert_store_stats()["x509_ca"] > 0


# ------------------------------------------------------------------ MySQL / MariaDB: statements (a recording connection)
# A real MariaDB server: test_mysql_sessions.py.


class RecordingMysql:
    """Stands in for a pymysql connection: a processlist, and KILL that may find a thread gone."""

    def __init__(self, ids: list[Any], gone: frozenset[int] = frozenset()) -> None:
        self.ids = ids
        self.gone = gone
        self.privileges = ["PROCESS", "CONNECTION ADMIN"]
        self.executed: list[tuple[str, tuple[Any, ...]]] = []
        self.closed = False

    def cursor(self) -> RecordingMysql:
        return self

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        self.executed.append((sql, params))
        if sql.startswith("KILL") and params[0] in self.gone:
            raise RuntimeError(1094, "Unknown thread id")

    def fetchall(self) -> list[tuple[Any]]:
        if "user_privileges" in self.executed[-1][0]:
            return [(privilege,) for privilege in self.privileges]
        return [(thread_id,) for thread_id in self.ids]

    def close(self) -> None:
        self.closed = True


def test_given_mysql_sessions_when_terminated_then_each_is_killed_by_a_parameterised_statement() -> None:
    fake = RecordingMysql([11, 12, 13], gone=frozenset({12}))

    outcome = terminate_sessions(target("mysql"), DB_USER, credentials=ADMIN, connector=lambda endpoint: fake)

    assert (outcome.status, outcome.terminated) == ("TERMINATED", 2)
    assert fake.executed[1] == (
        "SELECT id FROM information_schema.processlist WHERE user = %s AND id <> CONNECTION_ID()",
        (DB_USER,),
    )
    assert fake.executed[2:] == [("KILL %s", (11,)), ("KILL %s", (12,)), ("KILL %s", (13,))]
    assert fake.closed


def test_given_a_processlist_id_that_is_not_an_integer_when_terminated_then_nothing_is_killed() -> None:
    fake = RecordingMysql(["1; DROP TABLE x"])

    outcome = terminate_sessions(target("mariadb"), DB_USER, credentials=ADMIN, connector=lambda endpoint: fake)

    assert outcome.status == "FAILED"
    assert [sql for sql, _ in fake.executed if sql.startswith("KILL")] == []


# ------------------------------------------------------------------ revocation in the emulated account


@pytest.fixture
def orders(estate: Estate) -> dict[str, Any]:
    estate.role("orders-service", path="/workloads/")
    return estate.postgres("orders-prod")


def admin_secret(estate: Estate, **extra: Any) -> SecretsProvider:
    secrets = estate.session.client("secretsmanager")
    secrets.create_secret(
        Name="accessctl/session-admin/orders-prod",
        SecretString=json.dumps({"username": ADMIN_USER, "password": ADMIN_PASSWORD, **extra}),
    )
    return SecretsProvider(boto3_client=secrets)


def tag(estate: Estate, database: dict[str, Any], **tags: str) -> None:
    estate.session.client("rds").add_tags_to_resource(
        ResourceName=database["DBInstanceArn"], Tags=[{"Key": key, "Value": value} for key, value in tags.items()]
    )


def revoked_details(estate: Estate, request_id: str) -> dict[str, Any]:
    (revoked,) = [e for e in estate.deps.audit.for_subject(request_id) if e.event_type == AuditEventType.GRANT_REVOKED]
    return dict(revoked.details)


def revoke_with(estate: Estate, request_id: str, terminator: SessionTerminator) -> None:
    deps = dataclasses.replace(estate.deps, session_terminator=terminator)
    revoke_grant(request_id, RevokeReason.EXPIRED, "workflow", deps)


def test_given_a_granted_request_with_open_sessions_when_revoked_then_policy_and_sessions_are_gone_and_audited(
    estate: Estate,
    orders: dict[str, Any],
    postgres: PostgresServer,
    open_sessions: OpenSessions,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request_id = granted_request(estate)
    terminator = SessionTerminator(
        rds=estate.deps.rds,
        secrets=admin_secret(estate),
        grants=estate.deps.grants,
        plaintext_test_socket=postgres.socket,
    )
    after_expiry(monkeypatch)

    revoke_with(estate, request_id, terminator)

    assert estate.grant_policies() == []
    assert estate.attached("orders-service") == []
    assert estate.deps.grants.get(request_id).status == RequestStatus.REVOKED
    assert all(is_dead(connection) for connection in open_sessions.granted)
    assert not any(is_dead(connection) for connection in open_sessions.others)
    details = revoked_details(estate, request_id)
    assert details["sessions_terminated"] == 3
    assert details["session_termination"] == {
        "status": "TERMINATED",
        "engine": "postgres",
        "terminated": 3,
        "reason": None,
    }


def test_given_a_database_tagged_not_to_terminate_when_revoked_then_sessions_stay_and_the_reason_is_audited(
    estate: Estate,
    orders: dict[str, Any],
    postgres: PostgresServer,
    open_sessions: OpenSessions,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tag(estate, orders, **{"accessctl:terminate-sessions": "false"})
    request_id = granted_request(estate)
    terminator = SessionTerminator(
        rds=estate.deps.rds, secrets=admin_secret(estate), plaintext_test_socket=postgres.socket
    )
    after_expiry(monkeypatch)

    revoke_with(estate, request_id, terminator)

    assert estate.grant_policies() == []
    assert not any(is_dead(connection) for connection in open_sessions.granted)
    details = revoked_details(estate, request_id)
    assert details["sessions_terminated"] == 0
    assert details["session_termination"]["status"] == "SKIPPED"
    assert details["session_termination"]["reason"] == "disabled by tag accessctl:terminate-sessions=false"


def test_given_a_non_production_database_when_revoked_then_sessions_are_left_by_default(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    tag(estate, orders, environment="staging")
    request_id = granted_request(estate)
    terminator = SessionTerminator(rds=estate.deps.rds, secrets=admin_secret(estate))
    after_expiry(monkeypatch)

    revoke_with(estate, request_id, terminator)

    termination = revoked_details(estate, request_id)["session_termination"]
    assert termination["status"] == "SKIPPED"
    assert termination["reason"].startswith("environment staging (not production)")


def test_given_an_unreachable_admin_endpoint_when_revoked_then_iam_revocation_completes_and_the_failure_is_audited(
    estate: Estate,
    orders: dict[str, Any],
    postgres: PostgresServer,
    open_sessions: OpenSessions,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request_id = granted_request(estate)
    secrets = admin_secret(estate, host="127.0.0.1", port=closed_loopback_port())
    terminator = SessionTerminator(rds=estate.deps.rds, secrets=secrets, grants=estate.deps.grants)
    after_expiry(monkeypatch)

    revoke_with(estate, request_id, terminator)

    assert estate.grant_policies() == []
    assert estate.attached("orders-service") == []
    assert estate.deps.grants.get(request_id).status == RequestStatus.REVOKED
    details = revoked_details(estate, request_id)
    assert details["sessions_terminated"] == 0
    assert details["session_termination"]["status"] == "FAILED"
    assert details["session_termination"]["reason"].startswith(f"could not connect as {ADMIN_USER}")
    assert ADMIN_PASSWORD not in json.dumps(details)


def test_given_no_admin_secret_when_revoked_then_the_failure_names_the_secret_and_iam_revocation_completes(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    request_id = granted_request(estate)
    secrets = SecretsProvider(boto3_client=estate.session.client("secretsmanager"))
    terminator = SessionTerminator(rds=estate.deps.rds, secrets=secrets)
    after_expiry(monkeypatch)

    revoke_with(estate, request_id, terminator)

    assert estate.deps.grants.get(request_id).status == RequestStatus.REVOKED
    termination = revoked_details(estate, request_id)["session_termination"]
    assert termination["status"] == "FAILED"
    assert "accessctl/session-admin/orders-prod" in termination["reason"]


def test_given_a_terminator_that_raises_when_revoked_then_the_revocation_is_still_recorded(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    request_id = granted_request(estate)
    after_expiry(monkeypatch)

    def broken(request: AccessRequest) -> Any:
        raise RuntimeError("boom")

    deps = dataclasses.replace(estate.deps, session_terminator=broken)
    revoke_grant(request_id, RevokeReason.EXPIRED, "workflow", deps)

    assert estate.deps.grants.get(request_id).status == RequestStatus.REVOKED
    assert revoked_details(estate, request_id)["session_termination"]["reason"] == "RuntimeError: boom"


def test_given_no_terminator_when_revoked_then_the_audit_details_are_unchanged(
    estate: Estate, orders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    request_id = granted_request(estate)
    after_expiry(monkeypatch)

    revoke_grant(request_id, RevokeReason.EXPIRED, "workflow", estate.deps)

    assert "session_termination" not in revoked_details(estate, request_id)


# ------------------------------------------------------------------ a db user still granted by another grant


class CountingTable:
    """The grants table, adding up the items each Query reads (what DynamoDB bills and takes time for)."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self.items_read = 0

    def query(self, **kwargs: Any) -> Any:
        page = self._table.query(**kwargs)
        self.items_read += int(page.get("ScannedCount", 0))
        return page

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)


def test_given_another_live_grant_on_the_db_user_when_one_is_revoked_then_its_sessions_are_left_and_why_is_audited(
    estate: Estate,
    orders: dict[str, Any],
    postgres: PostgresServer,
    open_sessions: OpenSessions,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a grant five seconds before its expiry, and the same role asking again (a grant of its
    # own: one that close to expiry is not extended), both for app_rw, with app_rw's sessions open
    first = granted_request(estate)
    monkeypatch.setattr("accessctl.grants.utc_now", lambda: utc_now() + timedelta(minutes=10, seconds=-5))
    second = granted_request(estate, reason="asked again before expiry")
    assert estate.deps.grants.get(second).status == RequestStatus.ACTIVE
    terminator = SessionTerminator(
        rds=estate.deps.rds,
        secrets=admin_secret(estate),
        grants=estate.deps.grants,
        plaintext_test_socket=postgres.socket,
    )
    after_expiry(monkeypatch)

    # When the first grant is revoked at its expiry
    revoke_with(estate, first, terminator)

    # Then the sessions are left (they cannot be told apart from the live grant's), and the audit says why
    assert not any(is_dead(connection) for connection in open_sessions.granted)
    termination = revoked_details(estate, first)["session_termination"]
    assert termination["status"] == "SKIPPED"
    assert f"still granted by {second}" in termination["reason"]
    assert estate.attached("orders-service") == [estate.deps.grants.get(second).grant.policy_arn]  # type: ignore[union-attr]


def test_given_a_long_request_history_on_the_database_when_a_grant_is_revoked_then_the_check_reads_only_live_grants(
    estate: Estate, orders: dict[str, Any], postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a database with a history of 30 grants, each issued and revoked, and one live grant
    for index in range(30):
        past = granted_request(estate, reason=f"earlier run {index}")
        revoke_grant(past, RevokeReason.EARLY, "test", estate.deps)
    live = granted_request(estate, reason="the current run")
    table = CountingTable(estate.session.resource("dynamodb").Table(estate.deps.settings.grants_table))
    terminator = SessionTerminator(
        rds=estate.deps.rds,
        secrets=admin_secret(estate),
        grants=GrantsStore(table),
        plaintext_test_socket=postgres.socket,
    )
    after_expiry(monkeypatch)

    # When the live grant is revoked and its db user's sessions are to be ended
    revoke_with(estate, live, terminator)

    # Then looking for other live grants on the db user read the live grants, not the database's history
    assert revoked_details(estate, live)["session_termination"]["status"] == "TERMINATED"
    assert table.items_read <= 1
