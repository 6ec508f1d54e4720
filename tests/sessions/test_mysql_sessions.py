"""Live sessions end with the grant: against a real MariaDB server with real TLS sessions.

The server (tests/sessions/mariadb.py) has db users shaped like RDS IAM-auth users and an admin
with exactly ``PROCESS, CONNECTION ADMIN``. Sessions are opened over TLS on a loopback port.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parameters import SecretsProvider

from accessctl.grants import revoke_grant
from accessctl.models import AuditEventType, DatabaseTarget, RequestStatus, RevokeReason
from accessctl.sessions import AdminCredential, SessionSettings, SessionTerminator, terminate_sessions
from tests.conftest import ACCOUNT_ID, REGION, Estate
from tests.integration.test_grant_lifecycle import after_expiry, granted_request
from tests.sessions.conftest import DB_USER, OTHER_USER, OpenSessions, mysql_is_alive
from tests.sessions.mariadb import (
    ADMIN_WITHOUT_CONNECTION_ADMIN,
    ADMIN_WITHOUT_PROCESS,
    SESSION_ADMIN,
    SESSION_ADMIN_PASSWORD,
    MariaDBServer,
)

pytestmark = [pytest.mark.integration]


def admin(server: MariaDBServer | None = None, username: str = SESSION_ADMIN) -> AdminCredential:
    """The secret's content; with ``server``, it names the server's loopback address (TLS verified there)."""
    where = {"host": server.host, "port": server.port} if server else {}
    return AdminCredential.model_validate({"username": username, "password": SESSION_ADMIN_PASSWORD, **where})


def target(engine: str = "mariadb") -> DatabaseTarget:
    return DatabaseTarget(
        identifier="orders-prod",
        kind="instance",
        resource_id="db-ABCDEFGHIJKLMNOP",
        engine=engine,
        host="orders-prod.abc123.us-east-1.rds.amazonaws.com",
        port=3306,
        region=REGION,
        account_id=ACCOUNT_ID,
        partition="aws",
        iam_auth_enabled=True,
    )


# ------------------------------------------------------------------ terminate_sessions, directly


def test_given_open_sessions_when_terminated_over_verified_tls_then_exactly_the_db_users_sessions_end(
    mariadb: MariaDBServer, mysql_sessions: OpenSessions
) -> None:
    outcome = terminate_sessions(target(), DB_USER, credentials=admin(mariadb), ca_bundle=mariadb.ca_bundle)

    assert (outcome.status, outcome.terminated, outcome.reason) == ("TERMINATED", 3, None)
    assert not any(mysql_is_alive(connection) for connection in mysql_sessions.granted)
    assert mariadb.session_ids(DB_USER) == set()
    assert all(mysql_is_alive(connection) for connection in mysql_sessions.others)
    assert len(mariadb.session_ids(OTHER_USER)) == 1


@pytest.mark.parametrize("engine", ["mysql", "mariadb", "aurora-mysql"])
def test_given_a_mysql_family_engine_when_terminated_over_the_local_socket_then_the_sessions_end(
    mariadb: MariaDBServer, mysql_sessions: OpenSessions, engine: str
) -> None:
    outcome = terminate_sessions(target(engine), DB_USER, credentials=admin(), plaintext_test_socket=mariadb.socket)

    assert (outcome.status, outcome.engine, outcome.terminated) == ("TERMINATED", engine, 3)
    assert mariadb.session_ids(DB_USER) == set()
    assert all(mysql_is_alive(connection) for connection in mysql_sessions.others)


def test_given_no_open_session_when_terminated_then_none_is_counted(mariadb: MariaDBServer) -> None:
    outcome = terminate_sessions(target(), "nobody_here", credentials=admin(), plaintext_test_socket=mariadb.socket)

    assert (outcome.status, outcome.terminated) == ("TERMINATED", 0)


def test_given_the_server_certificate_is_not_trusted_when_terminating_then_failed_and_sessions_untouched(
    mariadb: MariaDBServer, mysql_sessions: OpenSessions
) -> None:
    # No CA bundle: the test CA is not in the public trust store, as the RDS CAs are not.
    outcome = terminate_sessions(target(), DB_USER, credentials=admin(mariadb))

    assert outcome.status == "FAILED"
    assert outcome.reason is not None and "CERTIFICATE_VERIFY_FAILED" in outcome.reason
    assert all(mysql_is_alive(connection) for connection in mysql_sessions.granted)


@pytest.mark.parametrize(
    ("username", "expected"),
    [
        (ADMIN_WITHOUT_PROCESS, "lacks the PROCESS privilege"),
        (ADMIN_WITHOUT_CONNECTION_ADMIN, "You are not owner of thread"),
    ],
    ids=["no PROCESS: other sessions invisible", "no CONNECTION ADMIN: KILL refused"],
)
def test_given_an_admin_short_of_a_privilege_when_terminating_then_failed_with_the_reason_not_zero_ended(
    mariadb: MariaDBServer, mysql_sessions: OpenSessions, username: str, expected: str
) -> None:
    outcome = terminate_sessions(
        target(), DB_USER, credentials=admin(username=username), plaintext_test_socket=mariadb.socket
    )

    assert outcome.status == "FAILED"
    assert outcome.reason is not None and expected in outcome.reason
    assert all(mysql_is_alive(connection) for connection in mysql_sessions.granted)
    assert len(mariadb.session_ids(DB_USER)) == 3


# ------------------------------------------------------------------ revocation in the emulated account


@pytest.fixture
def orders_mariadb(estate: Estate) -> dict[str, Any]:
    estate.role("orders-service", path="/workloads/")
    rds = estate.session.client("rds")
    return dict(
        rds.create_db_instance(
            DBInstanceIdentifier="orders-prod",
            DBInstanceClass="db.t4g.micro",
            Engine="mariadb",
            EngineVersion="10.11.9",  # moto knows no default for mariadb
            MasterUsername="admin",
            MasterUserPassword="not-used-in-tests",
            AllocatedStorage=20,
            EnableIAMDatabaseAuthentication=True,
        )["DBInstance"]
    )


def admin_secret(estate: Estate, server: MariaDBServer) -> SecretsProvider:
    """The secret a deployment holds, naming the server's address (the RDS endpoint stands in for it)."""
    secrets = estate.session.client("secretsmanager")
    secrets.create_secret(
        Name="accessctl/session-admin/orders-prod",
        SecretString=json.dumps(
            {"username": SESSION_ADMIN, "password": SESSION_ADMIN_PASSWORD, "host": server.host, "port": server.port}
        ),
    )
    return SecretsProvider(boto3_client=secrets)


def test_given_a_granted_request_on_mariadb_with_open_sessions_when_revoked_then_policy_and_sessions_are_gone(
    estate: Estate,
    orders_mariadb: dict[str, Any],
    mariadb: MariaDBServer,
    mysql_sessions: OpenSessions,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a grant on a MariaDB database, three open sessions of its db user and one of another user
    request_id = granted_request(estate)
    request = estate.deps.grants.get(request_id)
    assert request.decision is not None and request.decision.target is not None
    assert request.decision.target.engine == "mariadb"
    terminator = SessionTerminator(
        rds=estate.deps.rds,
        secrets=admin_secret(estate, mariadb),
        settings=SessionSettings(session_admin_ca_bundle=mariadb.ca_bundle),  # as SESSION_ADMIN_CA_BUNDLE sets it
        grants=estate.deps.grants,
    )
    after_expiry(monkeypatch)

    # When the workflow revokes it at expiry
    revoke_grant(
        request_id, RevokeReason.EXPIRED, "workflow", dataclasses.replace(estate.deps, session_terminator=terminator)
    )

    # Then the policy is gone, exactly the db user's sessions ended, and the count is audited
    assert estate.grant_policies() == []
    assert estate.attached("orders-service") == []
    assert estate.deps.grants.get(request_id).status == RequestStatus.REVOKED
    assert not any(mysql_is_alive(connection) for connection in mysql_sessions.granted)
    assert mariadb.session_ids(DB_USER) == set()
    assert all(mysql_is_alive(connection) for connection in mysql_sessions.others)
    (revoked,) = [e for e in estate.deps.audit.for_subject(request_id) if e.event_type == AuditEventType.GRANT_REVOKED]
    assert revoked.details["sessions_terminated"] == 3
    assert revoked.details["session_termination"] == {
        "status": "TERMINATED",
        "engine": "mariadb",
        "terminated": 3,
        "reason": None,
    }
    assert SESSION_ADMIN_PASSWORD not in json.dumps(dict(revoked.details))
