"""The accessctl CLI against a local stand-in API: outputs and exit codes."""

from __future__ import annotations

import json
import shlex
import sys
from urllib.parse import unquote, urlsplit

import pytest

from accessctl_client.cli import main
from tests.client.accessctl_stub import DB_HOST, FakeClock, StubApi, assert_signed, grant_record, request_view

SUBMITTED = (202, {"request_id": "req-1", "status": "PENDING", "execution_arn": "arn:aws:states:x"})
REQUEST = ["request", "--database", "orders-demo", "--db-user", "app_rw", "--duration", "1h30m", "--reason", "startup"]


@pytest.fixture
def cli_api(api: StubApi, monkeypatch: pytest.MonkeyPatch) -> StubApi:
    monkeypatch.setenv("ACCESSCTL_API_URL", api.base_url)
    return api


def _is_token_for_db(token: str) -> bool:
    return token.startswith(f"{DB_HOST}:5432/?") and "Action=connect" in token and "DBUser=app_rw" in token


def test_given_a_request_without_wait_when_run_then_it_prints_the_id_and_exits_0(
    cli_api: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_api.on("POST", "/requests", SUBMITTED)

    code = main([*REQUEST, "--idempotency-key", "boot:orders-service-1"])

    assert code == 0
    assert capsys.readouterr().out.strip() == "req-1 PENDING"
    (sent,) = cli_api.requests
    assert sent.json == {
        "database": "orders-demo",
        "db_user": "app_rw",
        "duration_minutes": 90,
        "reason": "startup",
        "idempotency_key": "boot:orders-service-1",
    }
    assert_signed(sent)


def test_given_a_granted_request_when_waiting_for_a_token_then_only_the_token_is_printed_and_exit_is_0(
    cli_api: StubApi, capsys: pytest.CaptureFixture[str], clock: FakeClock
) -> None:
    cli_api.on("POST", "/requests", SUBMITTED)
    cli_api.on("GET", "/requests/req-1", (200, request_view("PENDING")), (200, request_view("ACTIVE")))

    code = main([*REQUEST, "--wait", "--print", "token"])

    captured = capsys.readouterr()
    assert code == 0
    assert _is_token_for_db(captured.out.strip())
    assert captured.out.count("\n") == 1
    assert captured.err == ""  # stderr is not a terminal here: no progress chatter
    assert len(clock.sleeps) == 1


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        ("DENIED", 2, "DENIED: no rule allows app_rw on orders-demo"),
        ("FAILED", 3, "FAILED: could not attach the grant policy"),
        ("REVOKED", 3, "REVOKED: EARLY"),
    ],
)
def test_given_a_final_outcome_other_than_granted_when_waiting_then_the_exit_code_tells_which(
    cli_api: StubApi, capsys: pytest.CaptureFixture[str], status: str, code: int, message: str
) -> None:
    cli_api.on("POST", "/requests", SUBMITTED)
    cli_api.on("GET", "/requests/req-1", (200, request_view(status)))

    assert main([*REQUEST, "--wait", "--print", "env"]) == code

    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err


def test_given_a_request_that_never_finishes_when_waiting_then_it_times_out_with_exit_4(
    cli_api: StubApi, capsys: pytest.CaptureFixture[str], clock: FakeClock
) -> None:
    cli_api.on("GET", "/requests/req-1", (200, request_view("PENDING")))

    code = main(["wait", "req-1", "--timeout", "12"])

    assert code == 4
    assert "timed out after 12s" in capsys.readouterr().err
    assert sum(clock.sleeps) == pytest.approx(12)


def test_given_json_output_when_a_request_is_denied_then_the_view_is_printed_and_exit_is_2(
    cli_api: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_api.on("GET", "/requests/req-1", (200, request_view("DENIED")))

    assert main(["--json", "wait", "req-1"]) == 2

    assert json.loads(capsys.readouterr().out)["decision"]["outcome"] == "DENY"


def test_given_print_url_and_a_dbname_when_granted_then_a_postgres_url_with_the_encoded_token_is_printed(
    cli_api: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_api.on("GET", "/requests/req-1", (200, request_view("ACTIVE")))

    assert main(["wait", "req-1", "--print", "url", "--dbname", "orders"]) == 0

    url = capsys.readouterr().out.strip()
    parts = urlsplit(url)
    assert (parts.scheme, parts.username, parts.hostname, parts.port) == ("postgresql", "app_rw", DB_HOST, 5432)
    assert (parts.path, parts.query) == ("/orders", "sslmode=require")
    assert _is_token_for_db(unquote(parts.password or ""))


def test_given_print_env_when_granted_then_shell_safe_exports_of_libpq_variables_are_printed(
    cli_api: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_api.on("GET", "/requests/req-1", (200, request_view("ACTIVE")))

    assert main(["token", "req-1", "--print", "env"]) == 0

    lines = capsys.readouterr().out.strip().splitlines()
    words = [shlex.split(line) for line in lines]  # what `eval` would see
    assert all(len(w) == 2 and w[0] == "export" for w in words)
    env = dict(w[1].split("=", 1) for w in words)
    assert env["PGHOST"] == DB_HOST
    assert (env["PGPORT"], env["PGUSER"], env["PGSSLMODE"]) == ("5432", "app_rw", "require")
    assert _is_token_for_db(env["PGPASSWORD"])


def test_given_print_json_when_granted_then_a_connection_bundle_is_printed(
    cli_api: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_api.on("GET", "/requests/req-1", (200, request_view("ACTIVE")))

    assert main(["wait", "req-1", "--print", "json"]) == 0

    bundle = json.loads(capsys.readouterr().out)
    assert (bundle["host"], bundle["port"], bundle["db_user"], bundle["grant_id"]) == (
        DB_HOST,
        5432,
        "app_rw",
        "grant-1",
    )
    assert _is_token_for_db(bundle["token"])
    assert bundle["url"].startswith("postgresql://app_rw:")


@pytest.mark.parametrize(("status", "code"), [("PENDING", 1), ("GRANTING", 1), ("DENIED", 2), ("REVOKED", 3)])
def test_given_a_request_not_granted_when_asking_for_a_token_then_no_token_is_printed(
    cli_api: StubApi, capsys: pytest.CaptureFixture[str], status: str, code: int
) -> None:
    cli_api.on("GET", "/requests/req-1", (200, request_view(status)))

    assert main(["token", "req-1"]) == code

    assert capsys.readouterr().out == ""


def test_given_a_request_when_showing_status_then_human_and_json_forms_are_printed(
    cli_api: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_api.on("GET", "/requests/req-1", (200, request_view("ACTIVE")))

    assert main(["status", "req-1"]) == 0
    human = capsys.readouterr().out
    assert main(["status", "req-1", "--json"]) == 0
    raw = json.loads(capsys.readouterr().out)

    assert "req-1  ACTIVE" in human
    assert f"{DB_HOST}:5432" in human
    assert raw == request_view("ACTIVE")


def test_given_several_pages_of_grants_when_listing_then_all_are_printed(
    cli_api: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_api.on(
        "GET",
        "/grants",
        (200, {"grants": [grant_record("g-1")], "next_token": "p2"}),
        (200, {"grants": [grant_record("g-2")], "next_token": None}),
    )

    assert main(["grants", "--database", "orders-demo", "--json"]) == 0

    listed = json.loads(capsys.readouterr().out)
    assert [g["grant_id"] for g in listed["grants"]] == ["g-1", "g-2"]
    assert [r.query.get("next_token") for r in cli_api.requests] == [None, "p2"]
    assert all(r.query["active"] == "true" and r.query["database"] == "orders-demo" for r in cli_api.requests)


def test_given_all_when_listing_grants_then_active_false_is_sent_and_a_table_is_printed(
    cli_api: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_api.on("GET", "/grants", (200, {"grants": [grant_record("g-1", "REVOKED")], "next_token": None}))

    assert main(["grants", "--all", "--principal", "arn:aws:iam::123456789012:role/orders-service"]) == 0

    out = capsys.readouterr().out
    assert out.startswith("GRANT_ID") and "g-1" in out and "REVOKED" in out
    assert cli_api.requests[0].query == {
        "principal": "arn:aws:iam::123456789012:role/orders-service",
        "active": "false",
    }


def test_given_a_grant_when_revoking_then_delete_is_sent_and_the_outcome_printed(
    cli_api: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_api.on("DELETE", "/grants/g-1", (200, grant_record("g-1", "REVOKED")))

    assert main(["revoke", "g-1"]) == 0

    assert "grant g-1 REVOKED" in capsys.readouterr().out
    assert cli_api.requests[0].method == "DELETE"


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ((404, {"message": "grant g-9 not found"}), "grant g-9 not found (HTTP 404)"),
        ((403, {"message": "Missing Authentication Token"}), "Missing Authentication Token (HTTP 403)"),
        (
            (422, {"statusCode": 422, "detail": [{"loc": ["path", "grant_id"], "type": "string_pattern_mismatch"}]}),
            "invalid request: path.grant_id: string_pattern_mismatch (HTTP 422)",
        ),
    ],
)
def test_given_an_api_error_when_running_then_the_servers_message_is_shown_and_exit_is_1(
    cli_api: StubApi, capsys: pytest.CaptureFixture[str], answer: tuple[int, object], message: str
) -> None:
    cli_api.on("DELETE", "/grants/g-9", answer)

    assert main(["revoke", "g-9"]) == 1

    assert capsys.readouterr().err.strip() == f"accessctl: error: {message}"


@pytest.mark.parametrize(
    "argv",
    [
        [*REQUEST[:6], "--duration", "15s", "--reason", "x"],
        ["request", "--db-user", "app_rw", "--duration", "15m", "--reason", "x"],
        ["wait", "req-1", "--timeout", "0"],
        ["token", "req-1", "--print", "password"],
        ["grants", "--active", "--all"],
        ["frobnicate"],
        [],
    ],
)
def test_given_a_usage_error_when_parsing_then_exit_is_1_not_argparses_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)

    assert exited.value.code == 1
    assert "error:" in capsys.readouterr().err


def test_given_no_api_url_when_running_then_it_says_how_to_set_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "req-1"]) == 1

    assert "ACCESSCTL_API_URL" in capsys.readouterr().err


def test_given_global_options_after_the_command_when_running_then_they_apply(
    api: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.on("GET", "/requests/req-1", (200, request_view("PENDING")))

    assert main(["status", "req-1", "--api-url", api.base_url, "--region", "us-east-2", "--json"]) == 0

    assert json.loads(capsys.readouterr().out)["status"] == "PENDING"
    assert_signed(api.requests[0], region="us-east-2")


def test_given_stderr_is_a_terminal_when_waiting_then_status_changes_are_reported_there(
    cli_api: StubApi, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cli_api.on(
        "GET",
        "/requests/req-1",
        (200, request_view("PENDING")),
        (200, request_view("PENDING")),
        (200, request_view("DENIED")),
    )
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)

    assert main(["wait", "req-1"]) == 2

    progress = [line for line in capsys.readouterr().err.splitlines() if line.startswith("accessctl: request req-1: ")]
    assert [line.split(": ")[2].split(" ")[0] for line in progress] == ["PENDING", "DENIED"]
