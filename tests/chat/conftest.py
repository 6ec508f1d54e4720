"""Records for chat tests: a Slack request waiting for approval, its approval, a fake Slack."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from accessctl.chat.slack import SlackApi
from accessctl.models import (
    AccessRequest,
    Approval,
    Decision,
    Grant,
    Outcome,
    Requester,
    RequestOrigin,
    RequestStatus,
    SlackOrigin,
)
from accessctl_local import FakeSlack

TOKEN = "xoxb-test-token"
TEAM = "T0TEST001"
REQUESTER_SLACK_ID = "U0ALICE01"
REQUEST_ID = "0f8e2c1a-3b4d-4e5f-8a9b-0c1d2e3f4a5b"

SIGNALS: dict[str, dict[str, Any]] = {
    "source_ip": {"value": "203.0.113.7", "source": "slack (no client IP)"},
    "mfa": {"value": True, "source": "slack workspace (two-factor enforced)"},
    "mfa_age_seconds": {"missing": "no verified ID token: MFA age unknown"},
    "groups": {"value": ["dba", "oncall"], "source": "people directory"},
    "device": {"missing": "no device posture: device unknown"},
}


def slack_request(**changes: Any) -> AccessRequest:
    """A request made from Slack by alice, decided NEEDS_APPROVAL by rule dba-prod."""
    record: dict[str, Any] = {
        "request_id": REQUEST_ID,
        "status": RequestStatus.NEEDS_APPROVAL,
        "principal_arn": "arn:aws:iam::123456789012:role/people/alice",
        "role_name": "alice",
        "role_arn": "arn:aws:iam::123456789012:role/people/alice",
        "account_id": "123456789012",
        "database": "orders-prod",
        "db_user": "app_ro",
        "requested_minutes": 30,
        "reason": "investigating INC-1234",
        "requested_at": "2026-12-03T15:00:00Z",
        "origin": RequestOrigin.SLACK,
        "requester": Requester(
            identity="alice@example.com",
            groups=["dba", "oncall"],
            source="people directory",
            slack=SlackOrigin(team_id=TEAM, user_id=REQUESTER_SLACK_ID, channel_id="C0REQUEST"),
        ),
        "decision": Decision(
            outcome=Outcome.NEEDS_APPROVAL,
            reason="rule dba-prod needs 1 approval from db-owners",
            rule_id="dba-prod",
            granted_minutes=30,
            decided_at="2026-12-03T15:00:01Z",
            approver_group="db-owners",
            approvals_required=1,
            signals=SIGNALS,
        ),
    }
    record.update(changes)
    return AccessRequest.model_validate(record)


def granted(request: AccessRequest, **grant: Any) -> AccessRequest:
    values: dict[str, Any] = {
        "grant_id": request.request_id,
        "policy_name": "accessctl-grant",
        "policy_arn": "arn:aws:iam::123456789012:policy/accessctl/grants/accessctl-grant",
        "role_name": request.role_name,
        "resource_arn": "arn:aws:rds-db:us-east-1:123456789012:dbuser:db-ABC/app_ro",
        "issued_at": "2026-12-03T15:05:00Z",
        "expires_at": "2026-12-03T15:35:00Z",
        **grant,
    }
    return request.model_copy(update={"status": RequestStatus.ACTIVE, "grant": Grant.model_validate(values)})


def pending_approval(**changes: Any) -> Approval:
    record: dict[str, Any] = {
        "request_id": REQUEST_ID,
        "approver_group": "db-owners",
        "approvals_required": 1,
        "requester": "alice@example.com",
        "requested_at": "2026-12-03T15:00:01Z",
        "deadline": "2026-12-03T16:00:01Z",
    }
    record.update(changes)
    return Approval.model_validate(record)


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack(token=TOKEN, team_id=TEAM) as slack:
        slack.add_user(REQUESTER_SLACK_ID, email="alice@example.com")
        yield slack


@pytest.fixture
def slack_api(fake_slack: FakeSlack) -> SlackApi:
    return SlackApi(TOKEN, base_url=fake_slack.api_url)
