"""SigV4 verification of the local API against the emulator's credentials."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from accessctl_local import LocalStack, sign
from accessctl_local.moto_patches import ResolvedCredentials
from accessctl_local.sigv4 import SignatureError, SignedRequest, verify

TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}
        ],
    }
)


@dataclass
class Caller:
    access_key_id: str
    secret_access_key: str
    session_token: str | None
    arn: str


@pytest.fixture(scope="module")
def workload(stack: LocalStack) -> Caller:
    """Temporary credentials from moto STS AssumeRole, as a workload would hold."""
    stack.client("iam").create_role(RoleName="workload-app", AssumeRolePolicyDocument=TRUST)
    assumed = stack.client("sts").assume_role(
        RoleArn="arn:aws:iam::123456789012:role/workload-app", RoleSessionName="build-42"
    )
    creds = assumed["Credentials"]
    return Caller(
        creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"], assumed["AssumedRoleUser"]["Arn"]
    )


@pytest.fixture(scope="module")
def operator(stack: LocalStack) -> Caller:
    """Long-term access keys of a moto IAM user."""
    iam = stack.client("iam")
    user = iam.create_user(UserName="operator-alice")["User"]
    key = iam.create_access_key(UserName="operator-alice")["AccessKey"]
    return Caller(key["AccessKeyId"], key["SecretAccessKey"], None, user["Arn"])


def _post(
    stack: LocalStack, caller: Caller, body: bytes, sent_body: bytes | None = None, **sign_args: Any
) -> requests.Response:
    url = f"{stack.api_url}/things/abc-1?verbose=1&tag=a&tag=b"
    headers = sign(
        "POST",
        url,
        stack.region,
        sign_args.pop("access_key_id", caller.access_key_id),
        sign_args.pop("secret_access_key", caller.secret_access_key),
        caller.session_token,
        body=body,
        headers={"Content-Type": "application/json"},
        **sign_args,
    )
    return requests.post(url, data=body if sent_body is None else sent_body, headers=headers, timeout=30)


def test_a_correct_signature_from_an_assumed_role_reaches_the_function(stack: LocalStack, workload: Caller) -> None:
    # Given credentials from sts:AssumeRole in the emulator
    # When a signed request is sent to the local API
    response = _post(stack, workload, b'{"want": "access"}')
    # Then the function ran and saw the verified identity
    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["identity"]["userArn"] == "arn:aws:sts::123456789012:assumed-role/workload-app/build-42"
    assert seen["identity"]["userArn"] == workload.arn
    assert seen["identity"]["accessKey"] == workload.access_key_id
    assert seen["identity"]["accountId"] == "123456789012"
    assert seen["identity"]["caller"].endswith(":build-42")
    assert seen["identity"]["sourceIp"] == "127.0.0.1"
    assert seen["body"] == '{"want": "access"}'


def test_a_correct_signature_from_an_iam_user_is_accepted(stack: LocalStack, operator: Caller) -> None:
    # Given an IAM user's access key
    # When it signs a request
    response = _post(stack, operator, b"{}")
    # Then the identity is the user
    assert response.status_code == 200, response.text
    assert response.json()["identity"]["userArn"] == "arn:aws:iam::123456789012:user/operator-alice"


def test_a_tampered_body_is_rejected(stack: LocalStack, workload: Caller) -> None:
    # Given a request signed over one body
    # When another body is sent with that signature
    response = _post(stack, workload, b'{"minutes": 5}', sent_body=b'{"minutes": 720}')
    # Then API Gateway-style 403
    assert response.status_code == 403
    assert "signature" in response.json()["message"]


def test_a_wrong_secret_is_rejected(stack: LocalStack, workload: Caller) -> None:
    response = _post(stack, workload, b"{}", secret_access_key="not-the-secret")
    assert response.status_code == 403
    assert "signature we calculated does not match" in response.json()["message"]


def test_an_unknown_access_key_is_rejected(stack: LocalStack, operator: Caller) -> None:
    response = _post(stack, operator, b"{}", access_key_id="AKIAUNKNOWNKEY000000")
    assert response.status_code == 403
    assert response.json() == {"message": "The security token included in the request is invalid."}


def test_a_missing_signature_is_rejected(stack: LocalStack) -> None:
    # Given no Authorization header at all
    response = requests.post(f"{stack.api_url}/things/abc-1", data=b"{}", timeout=30)
    # Then API Gateway's answer for unsigned requests
    assert response.status_code == 403
    assert response.json() == {"message": "Missing Authentication Token"}


def test_a_stale_date_is_rejected(stack: LocalStack, workload: Caller) -> None:
    # Given a request correctly signed ten minutes ago
    response = _post(stack, workload, b"{}", at=datetime.now(UTC) - timedelta(minutes=10))
    # Then it is outside the five-minute window
    assert response.status_code == 403
    assert response.json()["message"].startswith("Signature expired")


def test_a_signature_a_minute_old_is_still_accepted(stack: LocalStack, workload: Caller) -> None:
    response = _post(stack, workload, b"{}", at=datetime.now(UTC) - timedelta(minutes=1))
    assert response.status_code == 200, response.text


def test_a_forged_identity_header_changes_nothing(stack: LocalStack, workload: Caller) -> None:
    # Given a signed request that also carries headers pretending to be someone else
    url = f"{stack.api_url}/things/x"
    headers = sign(
        "POST", url, stack.region, workload.access_key_id, workload.secret_access_key, workload.session_token
    )
    headers["X-Amzn-User-Arn"] = "arn:aws:iam::123456789012:user/admin"
    # When sent
    response = requests.post(url, headers=headers, timeout=30)
    # Then the identity is still the signer
    assert response.json()["identity"]["userArn"] == workload.arn


# ---------------------------------------------------------------- unit level: verify() without HTTP

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
KNOWN = ResolvedCredentials(
    "AKIDEXAMPLE", SECRET, None, "123456789012", "arn:aws:iam::123456789012:user/u", "AIDAEXAMPLE"
)


def _lookup(key: str, token: str | None) -> ResolvedCredentials | None:
    return KNOWN if key == KNOWN.access_key_id and token is None else None


def _signed(
    method: str = "GET", path: str = "/v1/grants?b=2&a=1", body: bytes = b"", at: datetime | None = None
) -> SignedRequest:
    headers = sign(method, f"http://127.0.0.1:3000{path}", "us-east-1", KNOWN.access_key_id, SECRET, body=body, at=at)
    return SignedRequest(method, path, [("Host", "127.0.0.1:3000"), *headers.items()], body)


@pytest.fixture
def now() -> Iterator[datetime]:
    yield datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_verify_accepts_botocore_signatures_with_query_strings(now: datetime) -> None:
    assert verify(_signed(at=now), "us-east-1", _lookup, now=now) == KNOWN


def test_verify_rejects_another_region_scope(now: datetime) -> None:
    with pytest.raises(SignatureError, match="region"):
        verify(_signed(at=now), "eu-west-1", _lookup, now=now)


def test_verify_rejects_a_changed_path(now: datetime) -> None:
    signed = _signed(at=now)
    moved = SignedRequest(signed.method, "/v1/grants/other?b=2&a=1", signed.headers, signed.body)
    with pytest.raises(SignatureError, match="does not match"):
        verify(moved, "us-east-1", _lookup, now=now)


def test_verify_rejects_a_date_from_the_future(now: datetime) -> None:
    with pytest.raises(SignatureError, match="not yet current"):
        verify(_signed(at=now + timedelta(minutes=6)), "us-east-1", _lookup, now=now)


def test_verify_rejects_a_body_that_differs_from_its_declared_hash(now: datetime) -> None:
    signed = _signed("POST", "/v1/requests", b"{}", at=now)
    forged = SignedRequest(
        "POST", "/v1/requests", [*signed.headers, ("X-Amz-Content-SHA256", "UNSIGNED-PAYLOAD")], b"{}"
    )
    with pytest.raises(SignatureError, match="X-Amz-Content-SHA256"):
        verify(forged, "us-east-1", _lookup, now=now)
