"""TransactWriteItems with the undo log (moto_patches): all or nothing, as moto's own and as AWS.

Each scenario runs in a fresh in-process emulator, once with the undo log and once with moto's own
``transact_write_items`` (whole-table copies), and the two must agree on everything a client sees:
the error, its cancellation reasons, and every item of every table afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from accessctl_local import moto_patches

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
CHAIN = "chain"  # hash + range key, like the audit table
HEADS = "heads"  # hash key only, like the index tables


@pytest.fixture(autouse=True)
def _aws_environment(aws_environment: None) -> Iterator[None]:
    yield
    moto_patches.install_transaction_undo_log()  # whatever a test did, leave it as the suite expects


def _given_two_tables(dynamodb: Any, *, stream: bool = False) -> None:
    streams = {"StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}} if stream else {}
    dynamodb.create_table(
        TableName=CHAIN,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        **streams,
    )
    dynamodb.create_table(
        TableName=HEADS,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        **streams,
    )
    dynamodb.put_item(TableName=CHAIN, Item={"pk": {"S": "audit"}, "sk": {"N": "1"}, "body": {"S": "first"}})
    dynamodb.put_item(TableName=CHAIN, Item={"pk": {"S": "audit"}, "sk": {"N": "2"}, "body": {"S": "second"}})
    dynamodb.put_item(TableName=HEADS, Item={"id": {"S": "head"}, "seq": {"N": "2"}, "tags": {"SS": ["a"]}})
    dynamodb.put_item(TableName=HEADS, Item={"id": {"S": "old"}, "note": {"S": "to delete"}})


def _everything(dynamodb: Any) -> dict[str, list[dict[str, Any]]]:
    return {
        table: sorted(dynamodb.scan(TableName=table, ConsistentRead=True)["Items"], key=repr)
        for table in (CHAIN, HEADS)
    }


def _put_new() -> dict[str, Any]:
    return {"Put": {"TableName": CHAIN, "Item": {"pk": {"S": "audit"}, "sk": {"N": "3"}, "body": {"S": "third"}}}}


def _update_head() -> dict[str, Any]:
    return {
        "Update": {
            "TableName": HEADS,
            "Key": {"id": {"S": "head"}},
            "UpdateExpression": "SET seq = :next ADD tags :more REMOVE gone",
            "ConditionExpression": "seq = :seen",
            "ExpressionAttributeValues": {":next": {"N": "3"}, ":seen": {"N": "2"}, ":more": {"SS": ["b"]}},
        }
    }


def _delete(table: str, key: dict[str, Any], condition: str | None = None) -> dict[str, Any]:
    delete: dict[str, Any] = {"TableName": table, "Key": key}
    if condition:
        delete["ConditionExpression"] = condition
    return {"Delete": delete}


def _overwrite_first() -> dict[str, Any]:
    return {"Put": {"TableName": CHAIN, "Item": {"pk": {"S": "audit"}, "sk": {"N": "1"}, "body": {"S": "rewritten"}}}}


def _run(actions: list[dict[str, Any]], *, undo_log: bool, stream: bool = False) -> dict[str, Any]:
    """Given the two tables, when the transaction runs: what a client sees afterwards."""
    if undo_log:
        moto_patches.install_transaction_undo_log()
    else:
        moto_patches.uninstall_transaction_undo_log()
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        _given_two_tables(dynamodb, stream=stream)
        before = _everything(dynamodb)
        seen: dict[str, Any] = {"before": before}
        try:
            dynamodb.transact_write_items(TransactItems=actions)
            seen["error"] = None
        except ClientError as error:
            seen["error"] = error.response["Error"]["Code"]
            seen["reasons"] = error.response.get("CancellationReasons")
        seen["after"] = _everything(dynamodb)
        if stream:
            seen["stream"] = _stream_events(dynamodb)
        return seen


def _stream_events(dynamodb: Any) -> dict[str, list[str]]:
    # Read from moto's own state: its DynamoDB Streams API does not answer under this botocore.
    from moto.dynamodb.models import dynamodb_backends

    tables = dynamodb_backends[ACCOUNT_ID][REGION].tables
    return {
        table: [record.record["eventName"] for record in tables[table].stream_shard.items] for table in (CHAIN, HEADS)
    }


FAILING_THIRD = [
    _put_new(),  # a new item in one table
    _update_head(),  # an existing item of the other table, changed in place
    _delete(CHAIN, {"pk": {"S": "audit"}, "sk": {"N": "2"}}, "attribute_not_exists(body)"),  # fails
    _delete(HEADS, {"id": {"S": "old"}}),  # after the failure: moto still applies it, then undoes it
    _overwrite_first(),
]


def test_a_failed_condition_leaves_every_item_of_both_tables_as_it_was() -> None:
    # When the third action's condition fails
    seen = _run(FAILING_THIRD, undo_log=True)
    # Then the transaction is cancelled, with the failing action named
    assert seen["error"] == "TransactionCanceledException"
    assert [reason["Code"] for reason in seen["reasons"]] == ["None", "None", "ConditionalCheckFailed", "None", "None"]
    # And the new item is gone, the updated and the deleted ones are back as they were
    assert seen["after"] == seen["before"]


def test_the_undo_log_cancels_exactly_as_moto_does() -> None:
    # Given the same failing transaction with moto's own rollback
    ours, moto_own = _run(FAILING_THIRD, undo_log=True), _run(FAILING_THIRD, undo_log=False)
    # Then the client sees the same error, reasons and tables
    assert ours == moto_own


def test_the_item_a_failed_condition_saw_is_returned_as_moto_returns_it() -> None:
    # Given a condition failure that asks for the item it saw
    failing = _delete(CHAIN, {"pk": {"S": "audit"}, "sk": {"N": "2"}}, "attribute_not_exists(body)")
    failing["Delete"]["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    actions = [_put_new(), _update_head(), failing]
    # When it runs with the undo log and with moto's own rollback
    ours, moto_own = _run(actions, undo_log=True), _run(actions, undo_log=False)
    # Then both return the item in the reason, and nothing changed
    assert ours["reasons"][2]["Item"]["body"] == {"S": "second"}
    assert ours == moto_own
    assert ours["after"] == ours["before"]


def test_an_error_raised_mid_transaction_undoes_the_earlier_actions() -> None:
    # Given a transaction whose third action names an item the first already changed
    actions = [_put_new(), _update_head(), _delete(CHAIN, {"pk": {"S": "audit"}, "sk": {"N": "3"}})]
    # When it runs
    ours, moto_own = _run(actions, undo_log=True), _run(actions, undo_log=False)
    # Then it is refused as a whole, and the first two actions left nothing behind
    assert ours["error"] == "ValidationException"
    assert ours["after"] == ours["before"]
    assert ours == moto_own


def test_a_cancelled_transaction_leaves_no_stream_records() -> None:
    # Given tables with streams
    ours = _run(FAILING_THIRD, undo_log=True, stream=True)
    # Then only the setup's writes are in the streams, as with moto's own rollback
    assert ours["stream"] == {CHAIN: ["INSERT", "INSERT"], HEADS: ["INSERT", "INSERT"]}
    assert ours == _run(FAILING_THIRD, undo_log=False, stream=True)


def test_a_successful_transaction_applies_every_action() -> None:
    # When every condition holds
    actions = [
        _put_new(),
        _update_head(),
        _delete(HEADS, {"id": {"S": "old"}}, "attribute_exists(note)"),
        _overwrite_first(),
        {
            "ConditionCheck": {
                "TableName": CHAIN,
                "Key": {"pk": {"S": "audit"}, "sk": {"N": "2"}},
                "ConditionExpression": "attribute_exists(body)",
            }
        },
    ]
    seen = _run(actions, undo_log=True)
    # Then all of them are applied
    assert seen["error"] is None
    chain = {item["sk"]["N"]: item["body"]["S"] for item in seen["after"][CHAIN]}
    assert chain == {"1": "rewritten", "2": "second", "3": "third"}
    heads = {item["id"]["S"]: item for item in seen["after"][HEADS]}
    assert set(heads) == {"head"}
    assert heads["head"]["seq"] == {"N": "3"}
    assert sorted(heads["head"]["tags"]["SS"]) == ["a", "b"]
    assert seen == _run(actions, undo_log=False)


def test_a_transaction_is_undone_when_a_table_is_named_by_its_arn() -> None:
    # Given a transaction naming a table by its ARN (moto's own rollback misses that table)
    arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{HEADS}"
    update = _update_head()
    update["Update"]["TableName"] = arn
    actions = [update, _delete(CHAIN, {"pk": {"S": "audit"}, "sk": {"N": "2"}}, "attribute_not_exists(body)")]
    # When the second action fails
    seen = _run(actions, undo_log=True)
    # Then the update through the ARN is undone too
    assert seen["error"] == "TransactionCanceledException"
    assert seen["after"] == seen["before"]
