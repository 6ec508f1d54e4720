"""Validation at the edge: what POST /requests accepts and refuses."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from accessctl.models import AccessRequestSubmission

VALID = {"database": "orders-prod", "db_user": "app_rw", "duration_minutes": 15, "reason": "startup of orders"}


def test_given_a_valid_body_when_parsed_then_values_are_kept() -> None:
    submission = AccessRequestSubmission.model_validate(VALID)
    assert (submission.database, submission.db_user, submission.duration_minutes) == ("orders-prod", "app_rw", 15)


BAD_BODIES: dict[str, dict[str, Any]] = {
    "wildcard db user": {"db_user": "*"},
    "dotdot db user": {"db_user": ".."},
    "path in db user": {"db_user": "app/../admin"},
    "wildcard database": {"database": "orders-*"},
    "arn as database": {"database": "arn:aws:rds:us-east-1:210987654321:db:orders"},
    "database with trailing hyphen": {"database": "orders-"},
    "zero minutes": {"duration_minutes": 0},
    "more than 12 hours": {"duration_minutes": 721},
    "minutes as text": {"duration_minutes": "lots"},
    "empty reason": {"reason": "  "},
    "control characters in reason": {"reason": "ok\x00then"},
    "forged principal": {"principal_arn": "arn:aws:iam::123456789012:role/admin"},
    "forged role": {"role_arn": "arn:aws:iam::210987654321:role/other-account"},
    "forged source ip": {"source_ip": "10.0.0.1"},
    "forged mfa": {"mfa": True},
    "bad idempotency key": {"idempotency_key": "has spaces"},
}


@pytest.mark.parametrize("change", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_given_a_bad_body_when_parsed_then_it_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        AccessRequestSubmission.model_validate({**VALID, **change})


@pytest.mark.parametrize("missing", ["database", "db_user", "duration_minutes", "reason"])
def test_given_a_body_without_a_required_field_when_parsed_then_it_is_refused(missing: str) -> None:
    body = {key: value for key, value in VALID.items() if key != missing}
    with pytest.raises(ValidationError):
        AccessRequestSubmission.model_validate(body)
