"""Database credentials from a granted request: the RDS IAM auth token, connection URLs and environment."""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from accessctl_client import AccessctlClient, ConfigurationError, Connection, RequestView
from tests.client.accessctl_stub import ACCESS_KEY, DB_HOST, REGION, SESSION_TOKEN, request_view

TOKEN = "host:5432/?Action=connect&DBUser=app_rw&X-Amz-Signature=abc%2Fdef"


def _client() -> AccessctlClient:
    return AccessctlClient("http://127.0.0.1:9")  # never called: everything here is local


def _connection(engine: str = "postgres", port: int = 5432) -> Connection:
    return Connection(host=DB_HOST, port=port, region=REGION, engine=engine, db_user="app_rw")


def test_given_a_granted_request_when_generating_a_token_then_it_is_presigned_for_its_host_port_and_user() -> None:
    view = RequestView.from_dict(request_view("ACTIVE"))

    token = _client().auth_token(view)

    endpoint, _, query = token.partition("?")
    params = {name: values[0] for name, values in parse_qs(query).items()}
    assert endpoint == f"{DB_HOST}:5432/"
    assert params["Action"] == "connect"
    assert params["DBUser"] == "app_rw"
    assert params["X-Amz-Credential"].startswith(f"{ACCESS_KEY}/")
    assert params["X-Amz-Credential"].endswith(f"/{REGION}/rds-db/aws4_request")
    assert params["X-Amz-Security-Token"] == SESSION_TOKEN
    assert params["X-Amz-Expires"] == "900"


def test_given_a_connection_in_another_region_when_generating_a_token_then_it_is_scoped_to_that_region() -> None:
    token = _client().auth_token(
        Connection(host="db.example", port=3306, region="us-west-2", engine="mysql", db_user="report")
    )

    assert token.startswith("db.example:3306/?")
    assert "%2Fus-west-2%2Frds-db%2Faws4_request" in token
    assert "DBUser=report" in token


@pytest.mark.parametrize("status", ["PENDING", "DENIED", "FAILED", "REVOKED"])
def test_given_a_request_without_connection_details_when_generating_a_token_then_it_is_refused(status: str) -> None:
    with pytest.raises(ConfigurationError, match=f"no connection details \\(status {status}\\)"):
        _client().auth_token(RequestView.from_dict(request_view(status)))


@pytest.mark.parametrize(
    ("engine", "dbname", "expected"),
    [
        ("postgres", None, f"postgresql://app_rw:TOKEN@{DB_HOST}:5432/?sslmode=require"),
        ("aurora-postgresql", "orders", f"postgresql://app_rw:TOKEN@{DB_HOST}:5432/orders?sslmode=require"),
        ("mysql", None, f"mysql://app_rw:TOKEN@{DB_HOST}:5432/?ssl-mode=REQUIRED"),
        ("aurora-mysql", "orders", f"mysql://app_rw:TOKEN@{DB_HOST}:5432/orders?ssl-mode=REQUIRED"),
        ("mariadb", None, f"mysql://app_rw:TOKEN@{DB_HOST}:5432/?ssl-mode=REQUIRED"),
    ],
)
def test_given_an_engine_when_building_a_url_then_scheme_and_tls_option_match_it(
    engine: str, dbname: str | None, expected: str
) -> None:
    url = _client().connection_url(_connection(engine), token=TOKEN, dbname=dbname)

    password = urlsplit(url).password
    assert password is not None and unquote(password) == TOKEN
    assert url.replace(password, "TOKEN") == expected


def test_given_no_token_when_building_a_url_then_a_fresh_one_is_generated_and_encoded() -> None:
    url = _client().connection_url(_connection())

    assert unquote(urlsplit(url).password or "").startswith(f"{DB_HOST}:5432/?Action=connect&DBUser=app_rw")
    assert "&" not in url.split("@")[0]  # the token cannot break out of the password position


def test_given_a_postgres_connection_when_building_env_then_libpq_variables_are_set() -> None:
    env = _client().connection_env(_connection(), token=TOKEN, dbname="orders")

    assert env == {
        "PGHOST": DB_HOST,
        "PGPORT": "5432",
        "PGUSER": "app_rw",
        "PGPASSWORD": TOKEN,
        "PGSSLMODE": "require",
        "PGDATABASE": "orders",
    }


def test_given_an_unsupported_engine_when_building_a_url_then_it_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="unsupported database engine 'sqlserver-ee'"):
        _client().connection_url(_connection("sqlserver-ee"), token=TOKEN)
