"""``accessctl audit ...`` against the client's stand-in API: paging, JSON lines, verify exit codes."""

from __future__ import annotations

import json

import pytest

from accessctl_client.cli import main
from tests.client.accessctl_stub import StubApi, assert_signed

pytestmark = pytest.mark.usefixtures("aws_env", "clock")


@pytest.fixture
def cli_api(api: StubApi, monkeypatch: pytest.MonkeyPatch) -> StubApi:
    monkeypatch.setenv("ACCESSCTL_API_URL", api.base_url)
    return api


def _event(n: int) -> dict[str, object]:
    return {"at": f"2026-12-01T00:00:0{n}.000000Z", "event_type": "BREAK_GLASS_USED", "subject": f"g{n}"}


def test_given_two_pages_when_exporting_jsonl_then_every_record_once_per_line(
    cli_api: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_api.on(
        "GET",
        "/audit",
        (200, {"events": [_event(1), _event(2)], "next_token": "t1"}),
        (200, {"events": [_event(3)], "next_token": None}),
    )

    code = main(["audit", "query", "--type", "BREAK_GLASS_USED", "--since", "2026-12-01T00:00:00Z", "--jsonl"])

    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [json.loads(line)["subject"] for line in lines] == ["g1", "g2", "g3"]
    first, second = cli_api.requests
    assert first.query["type"] == "BREAK_GLASS_USED" and "next_token" not in first.query
    assert second.query["next_token"] == "t1"
    assert_signed(first)


def test_given_a_requester_when_querying_then_it_is_sent_as_the_requester_filter_on_every_page(
    cli_api: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_api.on(
        "GET",
        "/audit",
        (200, {"events": [_event(1)], "next_token": "t1"}),
        (200, {"events": [_event(2)], "next_token": None}),
    )

    code = main(["audit", "query", "--requester", "dana@example.com", "--since", "2026-11-01T00:00:00Z", "--json"])

    assert code == 0
    assert [event["subject"] for event in json.loads(capsys.readouterr().out)["events"]] == ["g1", "g2"]
    first, second = cli_api.requests
    assert first.query["requester"] == second.query["requester"] == "dana@example.com"
    assert "principal" not in first.query and second.query["next_token"] == "t1"


def test_given_a_broken_chain_when_verifying_then_it_says_where_and_exits_1(
    cli_api: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    found = {"stream": "2026-12-01#3", "sequence": 7, "kind": "missing", "detail": "record 7 is missing (deleted)"}
    cli_api.on("GET", "/audit/verify", (200, {"ok": False, "records": 6, "streams": 1, "first_break": found}))

    code = main(["audit", "verify", "--since", "2026-12-01T00:00:00Z"])

    assert code == 1
    assert "2026-12-01#3 #7 (missing)" in capsys.readouterr().out


def test_given_access_when_asked_then_grants_are_listed(cli_api: StubApi, capsys: pytest.CaptureFixture[str]) -> None:
    grant = {"grant_id": "g1", "principal_arn": "arn:p", "db_user": "app", "issued_at": "T1", "ends_at": "T2"}
    cli_api.on("GET", "/audit/access", (200, {"database": "orders", "since": "a", "until": "b", "grants": [grant]}))

    code = main(["audit", "access", "--database", "orders", "--from", "2026-12-01T00:00:00Z", "--to", "2026-12-02"])

    assert code == 0 and "g1  arn:p  app  T1 -> T2" in capsys.readouterr().out
    assert cli_api.requests[0].query == {"database": "orders", "from": "2026-12-01T00:00:00Z", "to": "2026-12-02"}


def test_given_anchored_when_verifying_then_the_api_is_asked_to_compare_the_manifests(
    cli_api: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    report = {"ok": True, "records": 6, "streams": 2, "expired": 1, "anchored_days": ["2026-12-01"]}
    cli_api.on("GET", "/audit/verify", (200, report))

    code = main(["audit", "verify", "--since", "2026-12-01T00:00:00Z", "--anchored"])

    assert code == 0
    (request,) = cli_api.requests
    assert request.query["anchored"] == "true"
    out = capsys.readouterr().out
    assert "1 left by retention" in out and "1 days match their export manifest" in out


def test_given_async_when_verifying_then_it_starts_polls_and_reports(
    cli_api: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_api.on("POST", "/audit/verifications", (202, {"verification_id": "v1", "status": "RUNNING"}))
    found = {"stream": "2026-11-02#1", "sequence": 3, "kind": "missing", "detail": "record 3 is missing (deleted)"}
    cli_api.on(
        "GET",
        "/audit/verifications/v1",
        (200, {"verification_id": "v1", "status": "RUNNING"}),
        (200, {"verification_id": "v1", "status": "DONE", "report": {"ok": False, "first_break": found}}),
    )

    code = main(["audit", "verify", "--since", "2026-11-01T00:00:00Z", "--async"])

    assert code == 1
    assert "2026-11-02#1 #3 (missing)" in capsys.readouterr().out
    start = cli_api.requests[0]
    assert json.loads(start.body)["since"] == "2026-11-01T00:00:00Z"


def test_given_approved_grants_when_asked_who_had_access_then_the_approvers_are_named(
    cli_api: StubApi, capsys: pytest.CaptureFixture[str]
) -> None:
    approved = {"grant_id": "g1", "issued_at": "T1", "ends_at": "T2", "approved_by": ["bob", "carol"]}
    unapproved = {"grant_id": "g2", "issued_at": "T3", "ends_at": "T4", "approved_by": []}
    answer = {"database": "orders", "since": "a", "until": "b", "grants": [approved, unapproved]}
    cli_api.on("GET", "/audit/access", (200, answer))

    code = main(["audit", "access", "--database", "orders", "--from", "2026-12-01T00:00:00Z", "--to", "2026-12-02"])

    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0].endswith("approved by: bob, carol") and lines[1].endswith("approved by: -")
