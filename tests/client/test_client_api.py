"""AccessctlClient against a local stand-in API: signing, bodies, waiting, errors, pagination."""

from __future__ import annotations

import random
from typing import Any

import pytest

from accessctl_client import (
    AccessctlClient,
    ApiError,
    AuthError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    ServerError,
    TransportError,
    ValidationError,
    WaitTimeoutError,
)
from tests.client.accessctl_stub import (
    REGION,
    FakeClock,
    StubApi,
    assert_signed,
    expected_signature,
    grant_record,
    request_view,
)


def test_given_a_submission_when_submitted_then_the_body_is_json_and_sigv4_signed_for_execute_api(api: StubApi) -> None:
    api.on("POST", "/requests", (202, {"request_id": "req-1", "status": "PENDING", "execution_arn": "arn:x"}))

    result = AccessctlClient(api.base_url).submit("orders-demo", "app_rw", 15, "startup of orders-service", "k-1")

    assert (result.request_id, result.status, result.execution_arn) == ("req-1", "PENDING", "arn:x")
    (sent,) = api.requests
    assert (sent.method, sent.path) == ("POST", "/requests")
    assert sent.headers["content-type"] == "application/json"
    assert sent.json == {
        "database": "orders-demo",
        "db_user": "app_rw",
        "duration_minutes": 15,
        "reason": "startup of orders-service",
        "idempotency_key": "k-1",
    }
    assert_signed(sent)
    assert "content-type" in sent.headers["authorization"]  # the body's type is covered by the signature


def test_given_a_signed_request_when_the_body_is_altered_then_the_signature_no_longer_verifies(api: StubApi) -> None:
    # Guards the verification helper itself: it must be able to fail.
    api.on("POST", "/requests", (202, {"request_id": "req-1", "status": "PENDING"}))
    AccessctlClient(api.base_url).submit("orders-demo", "app_rw", 15, "startup")
    (sent,) = api.requests
    sent.body = sent.body.replace(b"15", b"720")

    assert sent.headers["authorization"].split("Signature=")[1] != expected_signature(sent)


def test_given_no_idempotency_key_when_submitted_then_the_body_omits_it(api: StubApi) -> None:
    api.on("POST", "/requests", (202, {"request_id": "req-1", "status": "PENDING"}))

    AccessctlClient(api.base_url).submit("orders-demo", "app_rw", 90, "maintenance")

    assert "idempotency_key" not in api.requests[0].json


def test_given_an_api_url_with_a_stage_when_calling_then_the_stage_prefix_is_kept_and_signed(api: StubApi) -> None:
    api.on("GET", "/v1/requests/req-1", (200, request_view("PENDING")))

    view = AccessctlClient(api.base_url + "/v1/").get_request("req-1")

    assert view.status == "PENDING"
    assert api.requests[0].path == "/v1/requests/req-1"
    assert_signed(api.requests[0])


def test_given_an_id_with_a_slash_when_reading_then_it_stays_a_single_path_segment(api: StubApi) -> None:
    with pytest.raises(NotFoundError):
        AccessctlClient(api.base_url).get_request("../grants")

    assert api.requests[0].target == "/requests/..%2Fgrants"
    assert_signed(api.requests[0])


def test_given_an_active_request_when_read_then_nested_objects_are_typed(api: StubApi) -> None:
    api.on("GET", "/requests/req-1", (200, request_view("ACTIVE", future_field="ignored")))

    view = AccessctlClient(api.base_url).get_request("req-1")

    assert view.granted and view.is_terminal
    assert view.connection is not None and view.connection.port == 5432
    assert view.grant is not None and view.grant.grant_id == "grant-1"
    assert view.decision is not None and view.decision.outcome == "ALLOW"
    assert view.raw["future_field"] == "ignored"


def test_given_filters_and_two_pages_when_listing_grants_then_next_token_is_followed_and_queries_are_signed(
    api: StubApi,
) -> None:
    api.on(
        "GET",
        "/grants",
        (200, {"grants": [grant_record("g-1")], "next_token": "tok/en+1=="}),
        (200, {"grants": [grant_record("g-2")], "next_token": None}),
    )
    principal = "arn:aws:iam::123456789012:role/team a/orders-service"

    grants = AccessctlClient(api.base_url).list_grants(principal=principal, database="orders-demo")

    assert [g.grant_id for g in grants] == ["g-1", "g-2"]
    first, second = api.requests
    assert first.query == {"principal": principal, "database": "orders-demo", "active": "true"}
    assert second.query == {**first.query, "next_token": "tok/en+1=="}
    assert "+" not in second.target.split("?")[1].replace("%2B", "")  # spaces as %20, never "+"
    assert_signed(first)
    assert_signed(second)


def test_given_past_grants_too_when_listing_then_active_false_is_sent_explicitly(api: StubApi) -> None:
    # The API treats an absent "active" as true, so "all grants" must say active=false.
    api.on("GET", "/grants", (200, {"grants": [], "next_token": None}))

    AccessctlClient(api.base_url).list_grants(active=False)

    assert api.requests[0].query == {"active": "false"}


def test_given_a_server_repeating_a_page_token_when_listing_then_it_stops_with_an_error(api: StubApi) -> None:
    api.on("GET", "/grants", (200, {"grants": [grant_record("g-1")], "next_token": "same"}))

    with pytest.raises(TransportError, match="repeated pagination token"):
        AccessctlClient(api.base_url).list_grants()


def test_given_a_grant_when_revoked_then_delete_is_signed_and_the_revoked_grant_returned(api: StubApi) -> None:
    api.on("DELETE", "/grants/g-1", (200, grant_record("g-1", "REVOKED")))

    grant = AccessctlClient(api.base_url).revoke("g-1")

    assert (grant.status, grant.revoke_reason) == ("REVOKED", "EARLY")
    assert api.requests[0].method == "DELETE"
    assert_signed(api.requests[0])


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (404, {"message": "request req-1 not found"}, NotFoundError, "request req-1 not found"),
        (403, {"message": "User: arn:x is not authorized to perform: execute-api:Invoke"}, AuthError, "not authorized"),
        (409, {"message": "grant already revoked"}, ConflictError, "grant already revoked"),
        (
            422,
            {"statusCode": 422, "detail": [{"loc": ["body", "duration_minutes"], "type": "less_than_equal"}]},
            ValidationError,
            "duration_minutes: less_than_equal",
        ),
        (500, "upstream exploded", ServerError, "upstream exploded"),
        (418, {"unexpected": True}, ApiError, "418"),
    ],
)
def test_given_an_error_answer_when_calling_then_the_servers_message_and_status_surface(
    api: StubApi, status: int, body: Any, error: type[ApiError], message: str
) -> None:
    api.on("GET", "/requests/req-1", (status, body))

    with pytest.raises(error) as raised:
        AccessctlClient(api.base_url).get_request("req-1")

    assert raised.value.status == status
    assert message in str(raised.value)


def test_given_a_redirect_when_calling_then_it_is_not_followed(api: StubApi) -> None:
    api.on("GET", "/requests/req-1", (302, {"message": "moved"}))

    with pytest.raises(ApiError) as raised:
        AccessctlClient(api.base_url).get_request("req-1")

    assert raised.value.status == 302
    assert len(api.requests) == 1


def test_given_an_idempotency_key_and_a_transient_failure_when_submitting_then_the_same_body_is_retried(
    api: StubApi, clock: FakeClock
) -> None:
    accepted = {"request_id": "r", "status": "PENDING"}
    api.on("POST", "/requests", (502, {"message": "Internal server error"}), (202, accepted))

    AccessctlClient(api.base_url).submit("orders-demo", "app_rw", 15, "startup", idempotency_key="k-1")

    assert [r.json for r in api.requests] == [api.requests[0].json] * 2
    assert len(clock.sleeps) == 1


def test_given_no_idempotency_key_and_a_transient_failure_when_submitting_then_it_is_not_retried(api: StubApi) -> None:
    api.on("POST", "/requests", (502, {"message": "Internal server error"}))

    with pytest.raises(ServerError, match="Internal server error"):
        AccessctlClient(api.base_url).submit("orders-demo", "app_rw", 15, "startup")

    assert len(api.requests) == 1


def test_given_nothing_listening_when_calling_then_a_retryable_transport_error_is_raised(clock: FakeClock) -> None:
    client = AccessctlClient("http://127.0.0.1:9")  # discard port: connection refused

    with pytest.raises(TransportError, match="cannot reach") as raised:
        client.get_request("req-1")

    assert raised.value.retryable
    assert len(clock.sleeps) == client.attempts - 1


# ---------------------------------------------------------------------- waiting


def test_given_a_request_going_active_when_waiting_then_it_polls_with_growing_backoff_and_stops_at_active(
    api: StubApi, clock: FakeClock
) -> None:
    api.on(
        "GET",
        "/requests/req-1",
        (200, request_view("PENDING")),
        (200, request_view("PENDING")),
        (200, request_view("GRANTING")),
        (200, request_view("PENDING")),
        (200, request_view("ACTIVE")),
    )
    seen: list[str] = []

    view = AccessctlClient(api.base_url).wait("req-1", timeout=300, on_progress=lambda v: seen.append(v.status))

    assert view.status == "ACTIVE"
    assert seen == ["PENDING", "PENDING", "GRANTING", "PENDING", "ACTIVE"]
    assert len(api.requests) == 5
    for request in api.requests:
        assert_signed(request)
    # Equal jitter: attempt n waits between half and all of min(5, 0.5 * 2**n).
    for attempt, delay in enumerate(clock.sleeps):
        nominal = min(5.0, 0.5 * 2**attempt)
        assert nominal / 2 <= delay <= nominal


@pytest.mark.parametrize("status", ["DENIED", "FAILED", "REVOKED", "ACTIVE"])
def test_given_a_request_already_final_when_waiting_then_it_returns_after_one_poll(
    api: StubApi, clock: FakeClock, status: str
) -> None:
    api.on("GET", "/requests/req-1", (200, request_view(status)))

    view = AccessctlClient(api.base_url).wait("req-1")

    assert view.status == status
    assert len(api.requests) == 1
    assert clock.sleeps == []


def test_given_a_request_that_stays_pending_when_waiting_then_it_times_out_with_the_last_view(
    api: StubApi, clock: FakeClock
) -> None:
    api.on("GET", "/requests/req-1", (200, request_view("PENDING")))

    with pytest.raises(WaitTimeoutError) as raised:
        AccessctlClient(api.base_url).wait("req-1", timeout=30)

    assert raised.value.last.status == "PENDING"
    assert "still PENDING" in str(raised.value)
    assert max(clock.sleeps) <= 5.0
    assert sum(clock.sleeps) == pytest.approx(30)  # the last sleep is trimmed to the deadline, then a final poll
    assert len(api.requests) == len(clock.sleeps) + 1


def test_given_transient_errors_while_waiting_when_polling_then_it_keeps_going(api: StubApi) -> None:
    api.on(
        "GET",
        "/requests/req-1",
        (503, {"message": "Service Unavailable"}),
        (429, {"message": "Too Many Requests"}),
        (200, request_view("ACTIVE")),
    )

    assert AccessctlClient(api.base_url).wait("req-1").status == "ACTIVE"


def test_given_a_non_transient_error_while_waiting_when_polling_then_it_raises_at_once(api: StubApi) -> None:
    api.on("GET", "/requests/req-1", (403, {"message": "Forbidden"}))

    with pytest.raises(AuthError, match="Forbidden"):
        AccessctlClient(api.base_url).wait("req-1")

    assert len(api.requests) == 1


def test_given_many_attempts_when_computing_backoff_then_it_stays_within_jitter_bounds_and_the_cap() -> None:
    client = AccessctlClient("http://127.0.0.1:9", rng=random.Random(7))

    delays = [client.backoff_delay(attempt) for attempt in range(40)]

    assert all(0.25 <= d <= 0.5 for d in delays[:1])
    assert all(2.5 <= d <= 5.0 for d in delays[4:])


# ---------------------------------------------------------------------- configuration


def test_given_an_execute_api_url_when_no_region_is_passed_then_the_urls_region_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_REGION", "us-east-1")

    deployed = "https://abc123.execute-api.ap-southeast-2.amazonaws.com/v1"

    assert AccessctlClient(deployed).region == "ap-southeast-2"
    assert AccessctlClient(deployed, region="eu-north-1").region == "eu-north-1"
    assert AccessctlClient("http://127.0.0.1:3000").region == "us-east-1"


def test_given_no_region_anywhere_when_constructing_then_a_configuration_error_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")

    with pytest.raises(ConfigurationError, match="no AWS region"):
        AccessctlClient("http://127.0.0.1:3000")


@pytest.mark.parametrize("url", ["", "ftp://example.com", "127.0.0.1:3000", "http://127.0.0.1:3000/v1?x=1"])
def test_given_a_bad_api_url_when_constructing_then_a_configuration_error_is_raised(url: str) -> None:
    with pytest.raises(ConfigurationError):
        AccessctlClient(url)


def test_given_the_api_url_in_the_environment_when_constructing_then_it_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACCESSCTL_API_URL", "http://127.0.0.1:3000/")

    assert AccessctlClient().api_url == "http://127.0.0.1:3000"
    assert AccessctlClient(region=REGION).region == REGION


def test_given_no_credentials_when_calling_then_a_configuration_error_is_raised_before_sending(
    api: StubApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)

    with pytest.raises(ConfigurationError, match="no AWS credentials"):
        AccessctlClient(api.base_url).get_request("req-1")

    assert api.requests == []
