"""The local API Gateway: routes from the template, proxy events, Lambda-shaped answers."""

from __future__ import annotations

import json

import pytest
import requests

from accessctl_local import LocalStack, sign


@pytest.fixture(scope="module")
def keys(stack: LocalStack) -> dict[str, str]:
    iam = stack.client("iam")
    iam.create_user(UserName="api-tester")
    key = iam.create_access_key(UserName="api-tester")["AccessKey"]
    return {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}


def _signed(stack: LocalStack, keys: dict[str, str], method: str, path: str, body: bytes = b"") -> requests.Response:
    url = stack.api_url + path
    headers = sign(method, url, stack.region, keys["access_key_id"], keys["secret_access_key"], body=body)
    return requests.request(method, url, data=body, headers=headers, timeout=30)


def test_routes_come_from_the_templates_api_events(stack: LocalStack) -> None:
    assert stack.api is not None
    assert {(r.method, r.resource, r.iam_auth) for r in stack.api.routes} == {
        ("POST", "/things/{thing_id}", True),
        ("GET", "/things", True),
    }


def test_the_proxy_event_carries_path_query_and_body(stack: LocalStack, keys: dict[str, str]) -> None:
    # When a signed request with path parameter, repeated query parameter and body is sent
    response = _signed(stack, keys, "POST", "/things/thing%201?tag=a&tag=b&empty=", b'{"n": 1}')
    # Then the function saw API Gateway's REST proxy event
    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["resource"] == "/things/{thing_id}"
    assert seen["path"] == "/things/thing%201"
    assert seen["pathParameters"] == {"thing_id": "thing 1"}
    assert seen["query"] == {"tag": "b", "empty": ""}
    assert seen["body"] == '{"n": 1}'
    assert seen["function"] == stack.resources["ApiFunction"]
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["x-amzn-RequestId"]


def test_a_route_without_parameters_has_null_path_parameters(stack: LocalStack, keys: dict[str, str]) -> None:
    seen = _signed(stack, keys, "GET", "/things").json()
    assert seen["pathParameters"] is None and seen["query"] is None and seen["body"] is None


def test_unknown_paths_and_methods_get_api_gateways_403(stack: LocalStack, keys: dict[str, str]) -> None:
    for method, path in [("GET", "/nothing"), ("DELETE", "/things"), ("GET", "/things/a/b")]:
        response = _signed(stack, keys, method, path)
        assert response.status_code == 403
        assert response.json() == {"message": "Missing Authentication Token"}


def test_a_wrong_stage_is_not_served(stack: LocalStack, keys: dict[str, str]) -> None:
    url = stack.api_url.replace("/v1", "/v2") + "/things"
    headers = sign("GET", url, stack.region, keys["access_key_id"], keys["secret_access_key"])
    assert requests.get(url, headers=headers, timeout=30).status_code == 403


def test_a_function_error_is_a_502(stack: LocalStack, keys: dict[str, str]) -> None:
    # Given the API function fails on its next invocation
    stack.inject_failure("ApiFunction", RuntimeError("kaput"))
    # When called
    response = _signed(stack, keys, "GET", "/things")
    # Then API Gateway's answer for a failed Lambda integration
    assert response.status_code == 502
    assert response.json() == {"message": "Internal server error"}


def test_the_full_event_shape(stack: LocalStack, keys: dict[str, str]) -> None:
    # Given a hook that records the event the function receives
    events: list[dict[str, object]] = []
    stack.inject_failure("ApiFunction", before=lambda event, context: events.append(event))
    # When called
    _signed(stack, keys, "GET", "/things?x=1")
    # Then every REST v1 proxy field is there
    event = events[0]
    for field in (
        "resource", "path", "httpMethod", "headers", "multiValueHeaders", "queryStringParameters",
        "multiValueQueryStringParameters", "pathParameters", "body", "isBase64Encoded", "requestContext",
    ):  # fmt: skip
        assert field in event
    context = event["requestContext"]
    assert isinstance(context, dict)
    assert context["resourcePath"] == "/things" and context["path"] == "/v1/things" and context["stage"] == "v1"
    assert context["httpMethod"] == "GET" and context["accountId"] == "123456789012" and context["requestId"]
    assert context["identity"]["userArn"] == "arn:aws:iam::123456789012:user/api-tester"
    assert context["identity"]["user"] == context["identity"]["caller"]
    assert json.dumps(event)  # serialisable, as API Gateway's is
