"""Shared clients: every new session reads credentials, region and endpoint from the environment,
while botocore's data (endpoint table, service models) is loaded once per process."""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import botocore.loaders
import pytest

from accessctl import aws
from tests.support.botocore_models import without_documentation


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


# ------------------------------------------------------------------ the lean loader of botocore's data


def lean_model(model: Any) -> Any:
    """A model as the lean loader gives it: no documentation, except the (empty) one botocore requires."""
    lean = without_documentation(model)
    for parameter in lean.get("clientContextParams", {}).values():
        parameter["documentation"] = ""
    return lean


@pytest.mark.parametrize(
    "text",
    [
        '{"documentation":"first","a":1}',
        '{"a":1, "documentation" : "last"}',
        '{"documentation":"only"}',
        '{\n  "a":{"documentation":"nested, with \\"quotes\\", \\\\ and \\u00e9 \\\\"},\n  "b":[{"documentation":"x"}]\n}',
        '{"members":{"documentation":{"shape":"String"}},"documentation":"a member named so is kept"}',
        '{"pattern":"^[a-z]{1,}$","doc":"\\"documentation\\":\\"not a member\\"","documentation":"<p>é</p>"}',
        '["documentation", {"documentation":""}]',
    ],
)
def test_given_json_text_then_the_lean_parse_is_the_parse_without_string_documentation_members(text: str) -> None:
    assert aws.lean_json(text.encode()) == without_documentation(json.loads(text))


@pytest.mark.parametrize(
    "name",
    ["endpoints", "partitions", "sdk-default-configuration", "ec2", "rds", "dynamodb", "sns", "iam", "sts", "s3"],
)
def test_given_botocores_own_data_then_the_lean_loader_reads_it_as_botocore_does_less_documentation(
    name: str,
) -> None:
    # The pinned botocore's files, as its loader finds them (the newest API version of a service).
    stock = botocore.loaders.Loader()
    lean = botocore.loaders.Loader(file_loader=aws.LeanJSONFileLoader())
    if name in ("endpoints", "partitions", "sdk-default-configuration"):
        expected, loaded = stock.load_data(name), lean.load_data(name)
    else:
        expected = stock.load_service_model(name, "service-2")
        loaded = lean.load_service_model(name, "service-2")
        assert lean.load_service_model(name, "paginators-1") == stock.load_service_model(name, "paginators-1")
        assert lean.load_service_model(name, "endpoint-rule-set-1") == without_documentation(
            stock.load_service_model(name, "endpoint-rule-set-1")
        )
    assert loaded == lean_model(expected)
    assert type(loaded) is dict


def test_given_a_shared_client_then_it_is_built_from_lean_models_and_its_operations_still_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    environment(monkeypatch, "us-east-1", "http://127.0.0.1:4001", "KEY")
    ec2 = aws.client("ec2")

    model = ec2.meta.service_model
    assert model.operation_model("RevokeSecurityGroupIngress").documentation == ""
    assert "IpPermissions" in model.operation_model("RevokeSecurityGroupIngress").input_shape.members
    assert ec2.can_paginate("describe_security_groups")
    # The request is built from the lean model exactly as from botocore's own.
    stock = boto3.session.Session(region_name="us-east-1").client(
        "ec2", endpoint_url="http://127.0.0.1:4001", aws_access_key_id="KEY", aws_secret_access_key="x"
    )
    params = {"GroupId": "sg-1", "IpPermissions": [{"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432}]}
    operation = "RevokeSecurityGroupIngress"
    built = ec2._serializer.serialize_to_request(params, model.operation_model(operation))
    expected = stock._serializer.serialize_to_request(params, stock.meta.service_model.operation_model(operation))
    assert built["body"] == expected["body"]
    assert gc.get_freeze_count() > 0  # the client and its model are out of the collector's generations


# ------------------------------------------------------------------ clients of named operations only

REVOKE = "RevokeSecurityGroupIngress"


def test_given_operations_then_the_client_has_just_them_and_builds_their_requests_as_a_whole_client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    environment(monkeypatch, "us-east-1", "http://127.0.0.1:4001", "KEY")
    monkeypatch.setattr(aws, "_OPERATIONS_MODELS", {})
    monkeypatch.setattr(aws, "SERVICE_MODELS_DIR", tmp_path)  # none shipped: made from the whole model
    whole = aws.client("ec2")  # the whole model is in the shared loader's cache now
    named = aws.client("ec2", frozenset({"DescribeSecurityGroups", REVOKE}))

    assert sorted(named.meta.service_model.operation_names) == ["DescribeSecurityGroups", REVOKE]
    assert not hasattr(named, "describe_instances")
    assert hasattr(whole, "describe_instances")
    assert named.can_paginate("describe_security_groups")
    params = {"GroupId": "sg-1", "IpPermissions": [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]}
    built = [
        client._serializer.serialize_to_request(params, client.meta.service_model.operation_model(REVOKE))["body"]
        for client in (named, whole)
    ]
    assert built[0] == built[1]
    # Making the named client dropped the whole model from the loader's cache (the whole client holds its own).
    description = whole.meta.service_model._service_description
    cached = [value for value in aws._data_loader()._cache.values() if isinstance(value, (dict, tuple))]
    assert not any(value is description or (isinstance(value, tuple) and description in value) for value in cached)
    assert len(whole.meta.service_model.operation_names) > 500


def test_given_operations_then_the_model_keeps_every_shape_they_reach_and_their_errors() -> None:
    whole = botocore.loaders.Loader(file_loader=aws.LeanJSONFileLoader()).load_service_model("rds", "service-2")
    named = aws.operations_only(whole, frozenset({"DescribeDBInstances", "ModifyDBInstance"}))

    assert set(named["operations"]) == {"DescribeDBInstances", "ModifyDBInstance"}
    assert "DBInstanceNotFoundFault" in named["shapes"]  # an error of ModifyDBInstance
    assert "Endpoint" in named["shapes"]  # DBInstance.Endpoint, two levels down
    for shape in named["shapes"].values():
        references = [shape.get("member"), shape.get("key"), shape.get("value"), *shape.get("members", {}).values()]
        assert all(reference["shape"] in named["shapes"] for reference in references if reference)
    assert named["metadata"] == whole["metadata"]
    assert len(named["shapes"]) < len(whole["shapes"]) / 4


def test_given_an_operation_the_service_lacks_then_no_client_is_made() -> None:
    whole = botocore.loaders.Loader(file_loader=aws.LeanJSONFileLoader()).load_service_model("sns", "service-2")
    with pytest.raises(ValueError, match="DescribeSecurityGroups"):
        aws.operations_only(whole, frozenset({"Publish", "DescribeSecurityGroups"}))


def test_given_the_remediators_operation_lists_then_each_names_operations_of_its_service() -> None:
    from accessctl.remediation import engine

    loader = botocore.loaders.Loader(file_loader=aws.LeanJSONFileLoader())
    for service, operations in (
        ("ec2", engine.EC2_OPERATIONS),
        ("rds", engine.RDS_OPERATIONS),
        ("dynamodb", engine.DYNAMODB_OPERATIONS),
        ("sns", engine.SNS_OPERATIONS),
    ):
        assert set(aws.operations_only(loader.load_service_model(service, "service-2"), operations)["operations"]) >= (
            operations
        )


def test_given_a_service_with_client_context_parameters_then_its_lean_client_still_reads_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    environment(monkeypatch, "us-east-1", "http://127.0.0.1:4001", "KEY")
    s3 = aws.client("s3")

    names = [parameter.name for parameter in s3.meta.service_model.client_context_parameters]
    assert "ForcePathStyle" in names
    assert all(parameter.documentation == "" for parameter in s3.meta.service_model.client_context_parameters)


# ------------------------------------------------------------------ the layer's shipped reduced models

EC2_NAMED = frozenset({"DescribeSecurityGroups", REVOKE})


@pytest.fixture
def marked_shipped_ec2_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """The layer's models folder holds the EC2 model of ``EC2_NAMED`` as shipped, with its full name marked."""
    from accessctl.remediation.engine import EC2_OPERATIONS

    assert EC2_NAMED == EC2_OPERATIONS  # the remediator's set: the layer ships its model
    environment(monkeypatch, "us-east-1", "http://127.0.0.1:4001", "KEY")
    monkeypatch.setattr(aws, "_OPERATIONS_MODELS", {})
    document = json.loads(aws.shipped_model_path("ec2", EC2_NAMED).read_text(encoding="utf-8"))
    document["model"]["metadata"]["serviceFullName"] = "EC2 as shipped"
    monkeypatch.setattr(aws, "SERVICE_MODELS_DIR", tmp_path)
    return document


def ship(document: dict[str, Any]) -> None:
    aws.shipped_model_path("ec2", EC2_NAMED).write_text(json.dumps(document), encoding="utf-8")


def test_given_a_shipped_model_of_the_running_botocore_then_the_client_is_made_from_it(
    marked_shipped_ec2_model: dict[str, Any],
) -> None:
    ship(marked_shipped_ec2_model)

    ec2 = aws.client("ec2", EC2_NAMED)

    assert ec2.meta.service_model.metadata["serviceFullName"] == "EC2 as shipped"
    assert sorted(ec2.meta.service_model.operation_names) == sorted(EC2_NAMED)
    # The request is built as a client of the whole service builds it.
    whole = boto3.session.Session(region_name="us-east-1").client(
        "ec2", endpoint_url="http://127.0.0.1:4001", aws_access_key_id="KEY", aws_secret_access_key="x"
    )
    params = {"GroupId": "sg-1", "IpPermissions": [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]}
    built = [
        made._serializer.serialize_to_request(params, made.meta.service_model.operation_model(REVOKE))["body"]
        for made in (ec2, whole)
    ]
    assert built[0] == built[1]


def other_botocore(document: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    document["botocore"] = "1.0.0"


def other_api_version(document: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    document["api_version"] = "2015-10-01"


def a_model_on_another_data_path(document: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # AWS_DATA_PATH (or ~/.aws/models) with extras for the same service and version: botocore merges them.
    extra = tmp_path / "data" / "ec2" / document["api_version"]
    extra.mkdir(parents=True)
    merge = {"version": 1.0, "merge": {"metadata": {"serviceAbbreviation": "EC2 with extras"}}}
    (extra / "service-2.sdk-extras.json").write_text(json.dumps(merge), encoding="utf-8")
    monkeypatch.setattr(aws._data_loader(), "_search_paths", [*aws._data_loader().search_paths, str(tmp_path / "data")])
    monkeypatch.setattr(aws._data_loader(), "_cache", {})


@pytest.mark.parametrize("difference", [other_botocore, other_api_version, a_model_on_another_data_path])
def test_given_a_shipped_model_not_made_from_what_botocore_would_load_then_the_client_is_made_from_the_whole_model(
    marked_shipped_ec2_model: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    difference: Callable[[dict[str, Any], pytest.MonkeyPatch, Path], None],
) -> None:
    # Given a shipped model that is not the one botocore would give here
    difference(marked_shipped_ec2_model, monkeypatch, tmp_path)
    ship(marked_shipped_ec2_model)

    # When the client of those operations is made
    ec2 = aws.client("ec2", EC2_NAMED)

    # Then it comes from botocore's model as loaded here, still with just those operations
    model = ec2.meta.service_model
    assert model.metadata["serviceFullName"] == "Amazon Elastic Compute Cloud"
    assert sorted(model.operation_names) == sorted(EC2_NAMED)
    if difference is a_model_on_another_data_path:
        assert model.metadata["serviceAbbreviation"] == "EC2 with extras"


def test_given_no_shipped_model_for_an_operation_set_then_the_client_is_made_from_the_whole_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    environment(monkeypatch, "us-east-1", "http://127.0.0.1:4001", "KEY")
    monkeypatch.setattr(aws, "_OPERATIONS_MODELS", {})
    operations = frozenset({"DescribeSecurityGroups"})
    assert not aws.shipped_model_path("ec2", operations).exists()

    ec2 = aws.client("ec2", operations)

    assert ec2.meta.service_model.operation_names == ["DescribeSecurityGroups"]
