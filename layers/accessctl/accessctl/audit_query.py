"""Queries over the audit table, each answered by one index (no table scans).

Index choice, most selective first: ``subject`` (the table's own key: a request, or a resource a
remediation touched, e.g. ``security-group/sg-…``), ``principal_arn`` (``ByPrincipal``),
``requester`` (``ByRequester``: who asked across sessions and channels, a company identity or a
role ARN; records of schema version 4 on), ``database`` (``ByDatabase``), ``event_type`` (``ByType``), else ``day`` (``ByDay``, one
partition per day of the range). ``event_key`` begins with the record's ISO time, so the time
range is always a key condition (``between``); the other filters are a FilterExpression. Pages
carry an opaque ``next_token`` (base64 JSON of the index position), validated on decode.

"Who had access to database X between T1 and T2" (:func:`access_between`): one ``ByDatabase``
Query for the grant records (``GRANT_ISSUED``, ``GRANT_EXTENDED``, ``GRANT_REVOKED``,
``GRANT_COMPENSATED``, ``BREAK_GLASS_USED``) of X from ``T1 - lookback`` up to T2, folded per
grant into [issued_at, revoked_at or the last expires_at]; a grant is in the answer when that
interval overlaps [T1, T2]. ``lookback`` (default 24 h: twice the 720-minute ceiling of a grant)
bounds how long before T1 a still-live grant can have been issued or last extended.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from boto3.dynamodb.conditions import Attr, ConditionBase, Key
from pydantic import BaseModel, Field, field_validator

from accessctl.audit import days_between, event_from_item, plain
from accessctl.aws import transient_errors_surface
from accessctl.errors import BadRequestError
from accessctl.models import AuditEvent, AuditEventType

DEFAULT_SPAN = timedelta(days=30)
DEFAULT_LOOKBACK = timedelta(hours=24)
_KEY_END = "~"  # sorts after "#<uuid>": "<until>~" bounds every event_key at or before until
GRANT_EVENTS = (
    AuditEventType.GRANT_ISSUED,
    AuditEventType.GRANT_EXTENDED,
    AuditEventType.GRANT_REVOKED,
    AuditEventType.GRANT_COMPENSATED,
    AuditEventType.BREAK_GLASS_USED,
)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _instant(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as error:
        raise BadRequestError(f"not an ISO 8601 instant: {value!r}") from error
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class AuditFilter(BaseModel):
    """What to read. Absent bounds: ``until`` = now, ``since`` = ``until`` - 30 days."""

    since: str | None = None
    until: str | None = None
    subject: str | None = Field(default=None, max_length=512)
    principal_arn: str | None = Field(default=None, max_length=2048)
    requester: str | None = Field(default=None, max_length=2048)
    database: str | None = Field(default=None, max_length=128)
    event_type: AuditEventType | None = None
    outcome: str | None = Field(default=None, max_length=64)
    limit: int = Field(default=100, ge=1, le=1000)

    @field_validator("since", "until")
    @classmethod
    def _normalise(cls, value: str | None) -> str | None:
        return None if value is None else iso(_instant(value))

    def bounds(self, now: datetime | None = None) -> tuple[str, str]:
        until = self.until or iso(now or datetime.now(UTC))
        since = self.since or iso(_instant(until) - DEFAULT_SPAN)
        if since > until:
            raise BadRequestError("since is after until")
        return since, until


class AuditPage(BaseModel):
    events: list[AuditEvent]
    next_token: str | None = None


class AccessInterval(BaseModel):
    grant_id: str
    principal_arn: str | None = None
    database: str
    db_user: str | None = None
    issued_at: str
    expires_at: str | None = None
    revoked_at: str | None = None
    ends_at: str | None = None  # revoked_at, else the last known expiry
    break_glass: bool = False
    # Who approved the grant, then each extension's approvers (from GRANT_ISSUED / GRANT_EXTENDED), each once.
    approved_by: list[str] = Field(default_factory=list)


class AccessAnswer(BaseModel):
    database: str
    since: str
    until: str
    grants: list[AccessInterval]


def _plan(flt: AuditFilter, since: str, until: str) -> tuple[str | None, str, str, list[ConditionBase]]:
    """(index, partition attribute, partition value, remaining filters); ByDay handled by the caller."""
    filters: list[ConditionBase] = []
    chosen: tuple[str | None, str, str] | None = None
    for index, attribute, value in (
        (None, "subject", flt.subject),
        ("ByPrincipal", "principal_arn", flt.principal_arn),
        ("ByRequester", "requester", flt.requester),
        ("ByDatabase", "database", flt.database),
        ("ByType", "event_type", flt.event_type.value if flt.event_type else None),
    ):
        if value is None:
            continue
        if chosen is None:
            chosen = (index, attribute, value)
        else:
            filters.append(Attr(attribute).eq(value))
    if flt.outcome is not None:
        filters.append(Attr("outcome").eq(flt.outcome))
    if chosen is None:
        return "ByDay", "day", "", filters
    return chosen[0], chosen[1], chosen[2], filters


def _partitions(index: str | None, value: str, since: str, until: str, position: dict[str, Any] | None) -> list[str]:
    if index != "ByDay":
        if position is not None and position.get("partition") != value:
            raise BadRequestError("next_token does not belong to this query")
        return [value]
    days = days_between(since, until)
    if position is None:
        return days
    if position.get("partition") not in days:
        raise BadRequestError("next_token does not belong to this query")
    return days[days.index(position["partition"]) :]


def _request(
    index: str | None, attribute: str, partition: str, since: str, until: str, filters: list[ConditionBase]
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "KeyConditionExpression": Key(attribute).eq(partition) & Key("event_key").between(since, until + _KEY_END),
    }
    if index is not None:
        request["IndexName"] = index
    if filters:
        condition = filters[0]
        for extra in filters[1:]:
            condition = condition & extra
        request["FilterExpression"] = condition
    return request


def query(table: Any, flt: AuditFilter, next_token: str | None = None, now: datetime | None = None) -> AuditPage:
    """One page of records matching ``flt``, oldest first."""
    since, until = flt.bounds(now)
    index, attribute, value, filters = _plan(flt, since, until)
    position = decode_token(next_token) if next_token else None
    partitions = _partitions(index, value, since, until, position)
    events: list[AuditEvent] = []
    for number, partition in enumerate(partitions):
        request = _request(index, attribute, partition, since, until, filters)
        if position is not None and position.get("partition") == partition and position.get("key"):
            request["ExclusiveStartKey"] = position["key"]
        while True:
            request["Limit"] = flt.limit - len(events)
            with transient_errors_surface():
                page = table.query(**request)
            events += [event_from_item(item) for item in page.get("Items", [])]
            last = page.get("LastEvaluatedKey")
            if len(events) >= flt.limit:
                if last is not None:
                    return AuditPage(events=events, next_token=encode_token(partition, last))
                later = partitions[number + 1 :]
                return AuditPage(events=events, next_token=encode_token(later[0], None) if later else None)
            if last is None:
                break
            request["ExclusiveStartKey"] = last
    return AuditPage(events=events)


def query_all(table: Any, flt: AuditFilter, now: datetime | None = None) -> list[AuditEvent]:
    events: list[AuditEvent] = []
    token: str | None = None
    while True:
        page = query(table, flt, token, now)
        events += page.events
        if page.next_token is None:
            return events
        token = page.next_token


def access_between(
    table: Any, database: str, since: str, until: str, lookback: timedelta = DEFAULT_LOOKBACK
) -> AccessAnswer:
    """Every grant on ``database`` whose lifetime overlaps [since, until] (see the module docstring)."""
    start, end = _instant(since), _instant(until)
    if start > end:
        raise BadRequestError("from is after to")
    t1, t2 = iso(start), iso(end)
    request: dict[str, Any] = {
        "IndexName": "ByDatabase",
        "KeyConditionExpression": Key("database").eq(database)
        & Key("event_key").between(iso(start - lookback), t2 + _KEY_END),
        "FilterExpression": Attr("event_type").is_in([kind.value for kind in GRANT_EVENTS]),
    }
    grants: dict[str, AccessInterval] = {}
    break_glass: set[str] = set()
    while True:
        with transient_errors_surface():
            page = table.query(**request)
        for item in page.get("Items", []):
            _fold(grants, break_glass, event_from_item(item))
        if "LastEvaluatedKey" not in page:
            break
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    answer = []
    for grant in grants.values():
        grant.break_glass = grant.grant_id in break_glass
        grant.ends_at = grant.revoked_at or grant.expires_at
        if grant.issued_at <= t2 and (grant.ends_at is None or grant.ends_at >= t1):
            answer.append(grant)
    answer.sort(key=lambda grant: (grant.issued_at, grant.grant_id))
    return AccessAnswer(database=database, since=t1, until=t2, grants=answer)


def _fold(grants: dict[str, AccessInterval], break_glass: set[str], event: AuditEvent) -> None:
    details = plain(event.details)
    if event.event_type == AuditEventType.BREAK_GLASS_USED:
        break_glass.add(event.subject)
    elif event.event_type == AuditEventType.GRANT_ISSUED:
        grants[event.subject] = AccessInterval(
            grant_id=event.subject,
            principal_arn=event.principal_arn,
            database=event.database or "",
            db_user=event.db_user,
            issued_at=event.at,
            expires_at=details.get("expires_at"),
            approved_by=_approvers(details),
        )
    elif event.event_type == AuditEventType.GRANT_EXTENDED:
        grant = grants.get(str(details.get("grant_id", event.subject)))
        if grant is not None and details.get("expires_at"):
            grant.expires_at = max(grant.expires_at or "", str(details["expires_at"]))
        if grant is not None:
            grant.approved_by += [name for name in _approvers(details) if name not in grant.approved_by]
    elif event.subject in grants and grants[event.subject].revoked_at is None:
        grants[event.subject].revoked_at = event.at


def _approvers(details: dict[str, Any]) -> list[str]:
    names = details.get("approved_by") or []
    return list(dict.fromkeys(str(name) for name in names)) if isinstance(names, list) else []


def encode_token(partition: str, key: dict[str, Any] | None) -> str:
    document = {"partition": partition, "key": plain(key) if key is not None else None}
    return base64.urlsafe_b64encode(json.dumps(document, sort_keys=True).encode()).decode()


def decode_token(token: str) -> dict[str, Any]:
    try:
        document = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequestError("next_token is not valid") from error
    if not isinstance(document, dict) or not isinstance(document.get("partition"), str):
        raise BadRequestError("next_token is not valid")
    key = document.get("key")
    if key is not None and (
        not isinstance(key, dict) or not key or not all(isinstance(value, str) for value in key.values())
    ):
        raise BadRequestError("next_token is not valid")
    if key is None:
        document.pop("key", None)
    return document
