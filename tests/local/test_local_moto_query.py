"""Query with the partition read (moto_patches): the same answers as moto's own whole-table query.

Each query runs against the same items twice, in a fresh in-process emulator, with the patch and
with moto's own ``Table.query``: items, counts and the key to go on from must agree, page by page.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from accessctl_local import moto_patches

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def _aws_environment(aws_environment: None) -> Iterator[None]:
    yield
    moto_patches.install_partition_query()  # whatever a test did, leave it as the suite expects


def _given_tables(dynamodb: Any) -> None:
    dynamodb.create_table(
        TableName="chain",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "subject", "AttributeType": "S"},
            {"AttributeName": "event_key", "AttributeType": "S"},
            {"AttributeName": "stream", "AttributeType": "S"},
            {"AttributeName": "sequence", "AttributeType": "N"},
        ],
        KeySchema=[{"AttributeName": "subject", "KeyType": "HASH"}, {"AttributeName": "event_key", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "ByStream",
                "KeySchema": [
                    {"AttributeName": "stream", "KeyType": "HASH"},
                    {"AttributeName": "sequence", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    dynamodb.create_table(
        TableName="heads",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    )
    for subject in ("a", "b", "c"):
        for n in range(25):
            item = {
                "subject": {"S": subject},
                "event_key": {"S": f"{n:04d}"},
                "stream": {"S": f"s{n % 2}"},
                "sequence": {"N": str(n)},
                "body": {"S": "x" * (n * 10)},
                "kind": {"S": "even" if n % 2 == 0 else "odd"},
            }
            dynamodb.put_item(TableName="chain", Item=item)
    for name in ("one", "two"):
        dynamodb.put_item(TableName="heads", Item={"id": {"S": name}, "n": {"N": "1"}})


QUERIES: list[dict[str, Any]] = [
    {"TableName": "chain", "KeyConditionExpression": "subject = :s", "ExpressionAttributeValues": {":s": {"S": "b"}}},
    {
        "TableName": "chain",
        "KeyConditionExpression": "subject = :s",
        "ExpressionAttributeValues": {":s": {"S": "b"}},
        "ScanIndexForward": False,
        "Limit": 1,
        "ConsistentRead": True,
    },
    {
        "TableName": "chain",
        "KeyConditionExpression": "subject = :s AND event_key BETWEEN :low AND :high",
        "ExpressionAttributeValues": {":s": {"S": "c"}, ":low": {"S": "0003"}, ":high": {"S": "0017"}},
        "Limit": 4,
    },
    {
        "TableName": "chain",
        "KeyConditionExpression": "subject = :s AND begins_with(event_key, :p)",
        "FilterExpression": "kind = :k",
        "ExpressionAttributeValues": {":s": {"S": "a"}, ":p": {"S": "001"}, ":k": {"S": "odd"}},
        "ProjectionExpression": "event_key, kind",
    },
    {"TableName": "chain", "KeyConditionExpression": "subject = :s", "ExpressionAttributeValues": {":s": {"S": "z"}}},
    {
        "TableName": "chain",
        "IndexName": "ByStream",
        "KeyConditionExpression": "stream = :s AND #q > :n",
        "ExpressionAttributeNames": {"#q": "sequence"},
        "ExpressionAttributeValues": {":s": {"S": "s1"}, ":n": {"N": "5"}},
        "Limit": 7,
    },
    {"TableName": "heads", "KeyConditionExpression": "id = :i", "ExpressionAttributeValues": {":i": {"S": "two"}}},
    {"TableName": "heads", "KeyConditionExpression": "id = :i", "ExpressionAttributeValues": {":i": {"S": "none"}}},
]


def _pages(*, patched: bool, query: dict[str, Any]) -> list[dict[str, Any]]:
    if patched:
        moto_patches.install_partition_query()
    else:
        moto_patches.uninstall_partition_query()
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        _given_tables(dynamodb)
        pages, request = [], dict(query)
        while True:
            page = dynamodb.query(**request)
            pages.append({key: page.get(key) for key in ("Items", "Count", "ScannedCount", "LastEvaluatedKey")})
            if "LastEvaluatedKey" not in page:
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        # a query of a missing partition leaves the table as it was
        pages.append({"scanned": dynamodb.scan(TableName=query["TableName"])["Count"]})
        return pages


@pytest.mark.parametrize("query", QUERIES, ids=[f"query-{n}" for n in range(len(QUERIES))])
def test_given_the_same_items_when_queried_then_the_partition_read_answers_as_moto_does(query: dict[str, Any]) -> None:
    assert _pages(patched=True, query=query) == _pages(patched=False, query=query)


def test_given_the_patch_when_a_partition_is_queried_then_the_whole_table_is_not_listed() -> None:
    from moto.dynamodb.models.table import Table

    moto_patches.install_partition_query()
    listed: list[int] = []
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        _given_tables(dynamodb)
        original = Table.all_items

        def counting(self: Table) -> Any:
            items = original(self)
            listed.append(len(items))
            return items

        Table.all_items = counting  # type: ignore[method-assign]
        try:
            answer = dynamodb.query(**QUERIES[0])
        finally:
            Table.all_items = original  # type: ignore[method-assign]

    assert answer["Count"] == 25
    assert listed == [25]  # the one partition, not the table's 75 items
