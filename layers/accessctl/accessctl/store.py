"""DynamoDB access to the grants table: requests and their grants.

One item per request; the grant id is the request id. The sparse ``active_shard`` attribute is
set while a grant's policy may exist (from just before it is created until IAM confirms it is
gone), so the ``ActiveByExpiry`` index answers "active and expired before T" with a Query.

Besides requests, one *grant slot* item per role, database and database user (key
``slot#<role ARN>#<database>#<db user>``) names the request whose grant new requests for the same
access extend. Claiming it is a conditional write, so two requests issued at the same moment
cannot both make a policy. Slot items carry none of the indexes' keys: no index and no request
listing sees them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.conditions import Attr, ConditionBase, Key
from botocore.exceptions import ClientError

from accessctl.aws import error_code, transient_errors_surface
from accessctl.errors import BadRequestError, ConflictError, NotFoundError, TransientError
from accessctl.models import AccessRequest, Decision, Grant, RequestStatus

ACTIVE_SHARD = "ACTIVE"
SLOT_PREFIX = "slot#"
EXPIRY_INDEX = "ActiveByExpiry"
ROLE_INDEX = "ByRole"
DATABASE_INDEX = "ByDatabase"
# What a request can be when its grant step failed and is compensated (FAILED: a compensation run again).
COMPENSABLE = (
    RequestStatus.PENDING,
    RequestStatus.APPROVED,
    RequestStatus.GRANTING,
    RequestStatus.ACTIVE,
    RequestStatus.FAILED,
)


def update_expression(
    values: dict[str, Any], *, remove: tuple[str, ...] = (), append: dict[str, Any] | None = None
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """``SET``/``REMOVE`` expression, names and values for an update that may carry a boto3 condition.

    "#u"/":u" placeholders: boto3's condition builder uses "#n"/":v" for its own, and a clash
    silently overwrites a value. A dotted name ("grant.expires_at") is a path into a map: one
    placeholder per part. ``append`` values are appended to lists (created when missing).
    """
    names: dict[str, str] = {}
    placeholders: dict[str, Any] = {}
    assignments = []
    for index, (name, value) in enumerate({**values, **(append or {})}.items()):
        path = ".".join(f"#u{index}p{part}" for part in range(len(name.split("."))))
        names.update({f"#u{index}p{part}": piece for part, piece in enumerate(name.split("."))})
        if append and name in append and index >= len(values):
            placeholders[f":u{index}"] = [value]
            placeholders[":empty"] = []
            assignments.append(f"{path} = list_append(if_not_exists({path}, :empty), :u{index})")
        else:
            placeholders[f":u{index}"] = value
            assignments.append(f"{path} = :u{index}")
    expression = "SET " + ", ".join(assignments)
    if remove:
        names.update({f"#r{index}": name for index, name in enumerate(remove)})
        expression += " REMOVE " + ", ".join(f"#r{index}" for index in range(len(remove)))
    return expression, names, placeholders


def grant_slot_key(role_arn: str, database: str, db_user: str) -> str:
    return f"{SLOT_PREFIX}{role_arn}#{database}#{db_user}"


@dataclass(frozen=True)
class GrantSlot:
    holder: str  # the request whose grant serves this role on this database user
    claimed_at: str


class GrantsStore:
    """Requests and grants. Every write is conditional on the state it expects."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def create(self, request: AccessRequest) -> None:
        item = _to_item(request)
        try:
            with transient_errors_surface():
                self._table.put_item(Item=item, ConditionExpression=Attr("request_id").not_exists())
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                raise ConflictError(f"request {request.request_id} already exists") from error
            raise

    def get(self, request_id: str) -> AccessRequest:
        with transient_errors_surface():
            item = self._table.get_item(Key={"request_id": request_id}, ConsistentRead=True).get("Item")
        if item is None:
            raise NotFoundError(f"request {request_id} not found")
        return _from_item(item)

    def set_execution(self, request_id: str, execution_arn: str) -> None:
        self._update(request_id, {"execution_arn": execution_arn})

    def record_decision(self, request_id: str, decision: Decision) -> None:
        self._update(request_id, {"decision": decision.model_dump(mode="json")})

    def record_granting(self, request_id: str, grant: Grant) -> None:
        """Before any IAM change: from here on the sweeper can find this grant by its expiry."""
        self._update(
            request_id,
            {
                "status": RequestStatus.GRANTING.value,
                "grant": grant.model_dump(mode="json"),
                "active_shard": ACTIVE_SHARD,
                "expires_at": grant.expires_at,
            },
            expected_status=(RequestStatus.PENDING, RequestStatus.APPROVED, RequestStatus.GRANTING),
        )

    def record_active(self, request_id: str) -> None:
        self._update(request_id, {"status": RequestStatus.ACTIVE.value}, expected_status=(RequestStatus.GRANTING,))

    def record_extension(self, request_id: str, expires_at: str, extended_by: str, *, not_before: str) -> None:
        """Move a live grant's expiry later (before IAM is changed: the index never under-states it).

        Only while the grant is ACTIVE and its recorded expiry is still after ``not_before``
        (checked at the write): a grant whose revocation may have begun is not extended
        (ConflictError).
        """
        self._update(
            request_id,
            {"expires_at": expires_at, "grant.expires_at": expires_at},
            append={"grant.extended_by": extended_by},
            expected_status=(RequestStatus.ACTIVE,),
            condition=Attr("expires_at").gt(not_before),
        )

    def record_extended(self, request_id: str, grant: Grant, extends: str) -> None:
        """This request was served by extending ``extends``'s grant; it holds no policy of its own."""
        self._update(
            request_id,
            {"status": RequestStatus.EXTENDED.value, "grant": grant.model_dump(mode="json"), "extends": extends},
            expected_status=(RequestStatus.PENDING, RequestStatus.APPROVED),
        )

    def active_grants_for(self, role_arn: str, database: str, db_user: str) -> list[AccessRequest]:
        """The role's live grants on this database user (one Query on the role index)."""
        condition = Attr("status").eq(RequestStatus.ACTIVE.value) & Attr("database").eq(database)
        query: dict[str, Any] = {
            "IndexName": ROLE_INDEX,
            "KeyConditionExpression": Key("role_arn").eq(role_arn),
            "FilterExpression": condition & Attr("db_user").eq(db_user),
        }
        return [_from_item(item) for page in self._pages(query) for item in page.get("Items", [])]

    def claim_slot(self, key: str, request_id: str, *, now: str, replacing: str | None = None) -> GrantSlot | None:
        """Make ``request_id`` the slot's holder: when the slot is free, already its own, or held by
        ``replacing``. ``None`` when claimed; else the slot as another request holds it."""
        condition = Attr("request_id").not_exists() | Attr("holder").eq(request_id)
        if replacing is not None:
            condition = condition | Attr("holder").eq(replacing)
        try:
            with transient_errors_surface():
                self._table.put_item(
                    Item={"request_id": key, "holder": request_id, "claimed_at": now}, ConditionExpression=condition
                )
            return None
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise
        with transient_errors_surface():
            item = self._table.get_item(Key={"request_id": key}, ConsistentRead=True).get("Item")
        if item is None:  # slots are never deleted; a write racing this read is taken on the next attempt
            raise TransientError(f"grant slot {key} changed while it was claimed; retrying")
        return GrantSlot(holder=str(item["holder"]), claimed_at=str(item["claimed_at"]))

    def record_revoked(self, request: AccessRequest, grant: Grant, *, final_status: RequestStatus) -> None:
        """IAM has confirmed the policy is gone: leave the expiry index.

        Conditional on the grant not being recorded as revoked yet (live, or FAILED with a
        compensation that did not finish): when two revokers race (the workflow at expiry and the
        sweeper, or an early revoke), the first to record it keeps its reason and its audit record;
        the other gets ConflictError.
        """
        self._update(
            request.request_id,
            {"status": final_status.value, "grant": grant.model_dump(mode="json")},
            remove=("active_shard",),
            expected_status=(RequestStatus.GRANTING, RequestStatus.ACTIVE, RequestStatus.FAILED),
        )

    def record_compensated(self, request_id: str, grant: Grant | None, failure: str | None) -> None:
        """A failed grant whose policy IAM has confirmed gone: FAILED, why, and out of the expiry index.

        One write, so no reader sees the request FAILED without its reason. Conditional: a request
        another revoker has already recorded as revoked (or that never reached the grant step) is
        not rewritten (ConflictError).
        """
        values: dict[str, Any] = {"status": RequestStatus.FAILED.value}
        if grant is not None:
            values["grant"] = grant.model_dump(mode="json")
        if failure is not None:
            values["failure"] = failure
        self._update(request_id, values, remove=("active_shard",), expected_status=COMPENSABLE)

    def record_approved(self, request_id: str) -> bool:
        """The request's approval arrived: APPROVED, only while it waits for it (or already is).

        Conditional, so a decision delivered again (a retried click, the workflow's timeout step)
        never moves a request that is already being granted, granted or over back to APPROVED.
        False: the request had moved on.
        """
        try:
            self._update(
                request_id,
                {"status": RequestStatus.APPROVED.value},
                expected_status=(RequestStatus.NEEDS_APPROVAL, RequestStatus.APPROVED),
            )
        except ConflictError:
            return False
        return True

    def record_status(self, request_id: str, status: RequestStatus, failure: str | None = None) -> None:
        values: dict[str, Any] = {"status": status.value}
        if failure is not None:
            values["failure"] = failure
        self._update(request_id, values)

    def expired_active(self, now: str, page_size: int = 100) -> Iterator[AccessRequest]:
        """Grants whose policy may still exist and whose expiry is at or before ``now`` (pages).

        At or before: the policy's condition is ``DateLessThan expires_at``, so a grant is dead
        from the instant it names (timestamps are whole seconds).
        """
        query: dict[str, Any] = {
            "IndexName": EXPIRY_INDEX,
            "KeyConditionExpression": Key("active_shard").eq(ACTIVE_SHARD) & Key("expires_at").lte(now),
            "Limit": page_size,
        }
        for page in self._pages(query):
            for item in page.get("Items", []):
                yield _from_item(item)

    def count_active(self) -> int:
        """How many grants are indexed as live (granting, active, or past expiry and not yet revoked)."""
        query: dict[str, Any] = {
            "IndexName": EXPIRY_INDEX,
            "KeyConditionExpression": Key("active_shard").eq(ACTIVE_SHARD),
            "Select": "COUNT",
        }
        return sum(int(page.get("Count", 0)) for page in self._pages(query))

    def live_grants_on(self, database: str, db_user: str, after: str) -> list[AccessRequest]:
        """Grants whose policy may exist on ``database`` as ``db_user`` and that expire after ``after``.

        A Query on the expiry index (live grants only, by expiry): what it reads follows the live
        grants, never the database's request history.
        """
        query: dict[str, Any] = {
            "IndexName": EXPIRY_INDEX,
            "KeyConditionExpression": Key("active_shard").eq(ACTIVE_SHARD) & Key("expires_at").gt(after),
            "FilterExpression": Attr("database").eq(database) & Attr("db_user").eq(db_user),
        }
        return [_from_item(item) for page in self._pages(query) for item in page.get("Items", [])]

    def _pages(self, query: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every page of a Query, read one after the other as the caller consumes them."""
        query = dict(query)
        while True:
            with transient_errors_surface():
                page = self._table.query(**query)
            yield page
            if "LastEvaluatedKey" not in page:
                return
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def list_requests(
        self,
        *,
        role_arn: str | None = None,
        database: str | None = None,
        active_only: bool = False,
        limit: int = 50,
        next_token: str | None = None,
    ) -> tuple[list[AccessRequest], str | None]:
        """A page of requests, newest first, by role or by database (or active ones by expiry)."""
        query: dict[str, Any] = {"Limit": limit}
        filters: list[ConditionBase] = []
        if role_arn is not None:
            query.update(IndexName=ROLE_INDEX, KeyConditionExpression=Key("role_arn").eq(role_arn))
            query["ScanIndexForward"] = False
            if database is not None:
                filters.append(Attr("database").eq(database))
        elif database is not None:
            query.update(IndexName=DATABASE_INDEX, KeyConditionExpression=Key("database").eq(database))
            query["ScanIndexForward"] = False
        else:
            query.update(IndexName=EXPIRY_INDEX, KeyConditionExpression=Key("active_shard").eq(ACTIVE_SHARD))
        if active_only:
            filters.append(Attr("status").eq(RequestStatus.ACTIVE.value))
        else:
            filters.append(Attr("grant").exists())
        condition = filters[0]
        for extra in filters[1:]:
            condition = condition & extra
        query["FilterExpression"] = condition
        if next_token:
            query["ExclusiveStartKey"] = _decode_token(next_token)
        with transient_errors_surface():
            page = self._table.query(**query)
        items = [_from_item(item) for item in page.get("Items", [])]
        token = _encode_token(page["LastEvaluatedKey"]) if "LastEvaluatedKey" in page else None
        return items, token

    def _update(
        self,
        request_id: str,
        values: dict[str, Any],
        *,
        remove: tuple[str, ...] = (),
        append: dict[str, Any] | None = None,
        expected_status: tuple[RequestStatus, ...] = (),
        condition: ConditionBase | None = None,
    ) -> None:
        expression, names, placeholders = update_expression(values, remove=remove, append=append)
        expected: ConditionBase = Attr("request_id").exists()
        if expected_status:
            expected = expected & Attr("status").is_in([status.value for status in expected_status])
        if condition is not None:
            expected = expected & condition
        try:
            with transient_errors_surface():
                self._table.update_item(
                    Key={"request_id": request_id},
                    UpdateExpression=expression,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=placeholders,
                    ConditionExpression=expected,
                )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                raise ConflictError(
                    f"request {request_id} is missing or not in state {'/'.join(expected_status) or 'any'}"
                    + (" (or no longer as expected)" if condition is not None else "")
                ) from error
            raise


def _to_item(request: AccessRequest) -> dict[str, Any]:
    item = drop_none(request.model_dump(mode="json"))
    if request.grant is not None and request.status in (RequestStatus.GRANTING, RequestStatus.ACTIVE):
        item["active_shard"] = ACTIVE_SHARD
        item["expires_at"] = request.grant.expires_at
    return item


def _from_item(item: dict[str, Any]) -> AccessRequest:
    return AccessRequest.model_validate(_plain(item))


def _plain(value: Any) -> Any:
    """DynamoDB gives numbers as Decimal; the models want ints."""
    if isinstance(value, dict):
        return {key: _plain(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_plain(inner) for inner in value]
    if type(value).__name__ == "Decimal":
        return int(value) if value == int(value) else float(value)
    return value


def drop_none(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if value is not None}


def _encode_token(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(_plain(key), sort_keys=True).encode()).decode()


def _decode_token(token: str) -> dict[str, Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError as error:
        raise BadRequestError("next_token is not valid") from error
    if not isinstance(key, dict) or not all(isinstance(value, str) for value in key.values()):
        raise BadRequestError("next_token is not valid")
    return key
