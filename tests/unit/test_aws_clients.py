"""Shared clients: every new session reads credentials, region and endpoint from the environment,
while botocore's data (endpoint table, service models) is loaded once per process."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from accessctl import aws


@pytest.fixture(autouse=True)
def fresh_clients() -> Iterator[None]:
    aws.client.cache_clear()
    aws.resource.cache_clear()
    yield
    aws.client.cache_clear()
    aws.resource.cache_clear()


def environment(monkeypatch: pytest.MonkeyPatch, region: str, endpoint: str, key: str) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    monkeypatch.setenv("AWS_REGION", region)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-secret")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def test_given_the_environment_changes_between_sessions_then_new_clients_follow_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given clients made under one environment
    environment(monkeypatch, "eu-west-1", "http://127.0.0.1:4001", "KEY-ONE")
    first = aws.client("ec2")
    # When the environment changes and the cache is dropped (as between two emulator instances)
    aws.client.cache_clear()
    environment(monkeypatch, "ap-south-1", "http://127.0.0.1:4002", "KEY-TWO")
    second = aws.client("ec2")

    # Then each client has its own environment's region, endpoint and credentials
    assert (first.meta.region_name, first.meta.endpoint_url) == ("eu-west-1", "http://127.0.0.1:4001")
    assert (second.meta.region_name, second.meta.endpoint_url) == ("ap-south-1", "http://127.0.0.1:4002")
    assert first._request_signer._credentials.access_key == "KEY-ONE"
    assert second._request_signer._credentials.access_key == "KEY-TWO"
    table = aws.resource("dynamodb").Table("anything")
    assert table.meta.client.meta.region_name == "ap-south-1"


def test_given_many_sessions_then_they_share_one_data_loader_with_no_duplicate_search_paths(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    environment(monkeypatch, "us-east-1", "http://127.0.0.1:4001", "KEY")
    sessions = [aws._session() for _ in range(5)]

    loaders = {id(session._session.get_component("data_loader")) for session in sessions}
    assert len(loaders) == 1
    paths = sessions[0]._session.get_component("data_loader").search_paths
    assert len(paths) == len(set(paths))


def test_given_clients_made_on_many_threads_at_once_then_each_service_works(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    environment(monkeypatch, "us-east-1", "http://127.0.0.1:4001", "KEY")
    services = ["ec2", "rds", "iam", "sns", "dynamodb", "sts", "stepfunctions", "sqs"] * 2

    with ThreadPoolExecutor(max_workers=8) as pool:
        made = list(pool.map(lambda name: aws._session().client(name), services))

    assert [c.meta.service_model.service_name for c in made] == services
    assert all(c.meta.region_name == "us-east-1" for c in made)
