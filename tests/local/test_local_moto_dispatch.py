"""The per-request cost patches (moto_patches): the lean dispatch, the linear item size and the
request meter give the answers moto's own code gives.

The dispatch's two shortcuts are compared with moto's functions over every response class of the
services the stack uses; items are built with and without the patch in a fresh in-process emulator,
and must be stored, or refused, alike.
"""

from __future__ import annotations

import importlib
import inspect
import time
from collections.abc import Iterator
from typing import Any

import boto3
import moto.backends
import moto.core.responses
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core.responses import BaseResponse
from moto.core.utils import method_names_from_class

from accessctl_local import LocalStack, moto_patches

REGION = "us-east-1"
SERVICES = ["ec2", "rds", "dynamodb", "sns", "sqs", "iam", "sts", "s3", "awslambda", "stepfunctions", "events"]
NOT_METHODS = ["", "no_such_action", "__init__", "__class__", "__dict__", "service_name", "default_region", "dispatch"]


@pytest.fixture(autouse=True)
def _aws_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield
    moto_patches.install_lean_dispatch()  # whatever a test did, leave it as the suite expects
    moto_patches.install_linear_item_size()


def _response_classes() -> list[type[BaseResponse]]:
    classes: list[type[BaseResponse]] = []
    for service in SERVICES:
        module = importlib.import_module(f"moto.{service}.responses")
        classes += [
            cls
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, BaseResponse) and cls.__module__.startswith("moto.")
        ]
    return sorted(set(classes), key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


@pytest.mark.parametrize("cls", _response_classes(), ids=lambda cls: f"{cls.__module__}.{cls.__name__}")
def test_an_action_is_found_on_a_response_class_exactly_when_moto_lists_it(cls: type[BaseResponse]) -> None:
    # Given moto's own list of the class's methods
    listed = method_names_from_class(cls)
    # When each attribute name of the class (and some that are not methods) is tested alone
    names = moto_patches.FunctionNames(cls)
    candidates = sorted(set(dir(cls)) | set(NOT_METHODS))
    # Then the answer is moto's for every name, and the whole list is moto's
    assert [name for name in candidates if name in names] == [name for name in candidates if name in listed]
    assert list(names) == listed
    assert any(name in names for name in listed)  # the class has actions: the test compares something


def test_the_lean_dispatch_lists_the_moto_modules_moto_lists() -> None:
    # Given moto's own listing of its package
    moto_patches.uninstall_lean_dispatch()
    listed = list(moto.backends.list_of_moto_modules())
    # When the patch is installed
    moto_patches.install_lean_dispatch()
    # Then the same modules are listed, each time, and the call's dispatch goes through the patch
    assert list(moto.backends.list_of_moto_modules()) == listed
    assert list(moto.backends.list_of_moto_modules()) == listed
    assert "ec2" in moto.backends.list_of_moto_modules()
    assert moto.core.responses.method_names_from_class is moto_patches.FunctionNames


def _attributes(total_bytes: int, count: int) -> dict[str, Any]:
    """``count`` string attributes (names a00, a01, ...) whose names and values add up to ``total_bytes``."""
    each = total_bytes // count
    attributes = {f"a{n:02d}": {"S": "x" * (each - 3)} for n in range(count)}
    attributes["a00"] = {"S": "x" * (total_bytes - each * (count - 1) - 3)}
    return attributes


def _put(attributes: dict[str, Any], *, linear: bool, transaction: bool) -> dict[str, Any]:
    """Given an empty table, when an item with the key ``id`` (2 + 4 bytes) and these attributes is put."""
    if linear:
        moto_patches.install_linear_item_size()
    else:
        moto_patches.uninstall_linear_item_size()
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(
            TableName="items",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        )
        item = {"id": {"S": "item"}, **attributes}
        seen: dict[str, Any] = {}
        try:
            if transaction:
                dynamodb.transact_write_items(TransactItems=[{"Put": {"TableName": "items", "Item": item}}])
            else:
                dynamodb.put_item(TableName="items", Item=item)
            seen["error"] = None
        except ClientError as error:
            seen["error"] = (error.response["Error"]["Code"], error.response["Error"]["Message"])
        seen["stored"] = dynamodb.scan(TableName="items")["Items"]
        return seen


LIMIT = 405_000  # moto's limit, key included


@pytest.mark.parametrize("transaction", [False, True], ids=["PutItem", "TransactWriteItems"])
@pytest.mark.parametrize(
    ("total", "count"),
    [(LIMIT - 6, 40), (LIMIT - 5, 40), (LIMIT - 6, 1), (LIMIT - 5, 1), (1000, 25)],
    ids=["at the limit, 40 attributes", "a byte over, 40 attributes", "at the limit, one", "a byte over, one", "small"],
)
def test_an_item_is_stored_or_refused_for_its_size_as_moto_does(total: int, count: int, transaction: bool) -> None:
    # Given an item of this size; when it is put with the running total and with moto's own check
    attributes = _attributes(total, count)
    linear = _put(attributes, linear=True, transaction=transaction)
    moto_own = _put(attributes, linear=False, transaction=transaction)
    # Then both store it, or both refuse it with the same error and store nothing
    assert linear == moto_own
    assert (linear["error"] is None) == (total + 6 <= LIMIT)
    assert len(linear["stored"]) == (1 if total + 6 <= LIMIT else 0)


def test_an_item_with_nested_maps_is_stored_as_moto_stores_it() -> None:
    # Given an item of nested maps, lists and sets (sizes walked recursively)
    attributes = {
        "details": {"M": {"before": {"L": [{"S": "tcp 5432 0.0.0.0/0"}, {"N": "5432"}]}, "flags": {"SS": ["a", "b"]}}},
        "count": {"N": "12"},
        "ok": {"BOOL": True},
    }
    # When it is put with and without the patch; then it is stored alike
    assert _put(attributes, linear=True, transaction=False) == _put(attributes, linear=False, transaction=False)


def _once_recorded(meter: moto_patches.RequestCpuMeter, expected: dict[tuple[str, str], int]) -> dict[Any, Any]:
    """The meter's counts once these requests are in: a server thread records after its last byte is sent."""
    deadline = time.monotonic() + 5
    while True:
        counted = meter.snapshot()
        if all(counted.get(key, (0, 0.0))[0] >= n for key, n in expected.items()) or time.monotonic() > deadline:
            return counted
        time.sleep(0.01)


def test_the_request_meter_counts_each_request_under_its_action(stack: LocalStack) -> None:
    # Given the meter, reset
    meter = moto_patches.install_request_meter()
    try:
        meter.reset()
        # When three calls are made
        ec2 = stack.client("ec2")
        ec2.describe_security_groups()
        ec2.describe_security_groups()
        stack.client("sns").list_topics()
        # Then each is counted under its service and action, with the server thread's CPU time
        counted = _once_recorded(meter, {("ec2", "DescribeSecurityGroups"): 2, ("sns", "ListTopics"): 1})
        assert counted[("ec2", "DescribeSecurityGroups")][0] == 2
        assert counted[("sns", "ListTopics")][0] == 1
        assert counted[("ec2", "DescribeSecurityGroups")][1] > 0
        # And a reset forgets them
        meter.reset()
        assert ("ec2", "DescribeSecurityGroups") not in meter.snapshot()
    finally:
        moto_patches.uninstall_request_meter()
