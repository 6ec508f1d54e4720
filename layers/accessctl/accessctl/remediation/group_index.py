"""Which databases use a security group: an index kept in DynamoDB, so that an event about a group
does not have to list every database in the region (RDS cannot be asked "who uses this group").

Layout (table ``REMEDIATION_INDEX_TABLE``, key ``bucket`` + ``entry``, TTL on ``expires_at``):

* ``entry = "full"``: written whenever the whole database list was read (the scan, or an event that
  had to list): for the groups hashed to that bucket, ``{group: ["instance/db-1", ...]}``. Every
  bucket is rewritten each time, so a group no database uses any more drops out.
* ``entry = "<group>#<kind>/<identifier>"``: written by a database event (create, modify, restore)
  for each group of the database it read, before the groups are judged. A full write never
  overwrites these; they expire.

Every database is indexed, protected or not: protection is decided on the database as it is read
when the index is used (its tags may have changed). The index only ever narrows which databases
are read; the reader checks them and falls back to listing when the index is missing, expired,
names nothing for the group, or names databases that no longer use it (see ``EstateReader``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from accessctl.aws import call, transient_errors_surface

BUCKETS = 16
FULL = "full"
_BATCH = 25  # BatchWriteItem's limit


def bucket_of(group_id: str) -> str:
    return f"b{int(hashlib.sha256(group_id.encode()).hexdigest()[:8], 16) % BUCKETS:02d}"


class GroupIndex:
    """The index on the low-level DynamoDB client (no resource model at cold start)."""

    def __init__(
        self, dynamodb: Any, table_name: str, max_age_seconds: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._dynamodb = dynamodb
        self._table = table_name
        self._max_age = max_age_seconds
        self._clock = clock

    def lookup(self, group_id: str) -> set[str] | None:
        """``kind/identifier`` of every database the index says uses the group; None when it cannot say
        (no full write in that bucket younger than the maximum age, or nothing recorded for the group)."""
        now = self._clock()
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "#b = :b",
            "ExpressionAttributeNames": {"#b": "bucket"},
            "ExpressionAttributeValues": {":b": {"S": bucket_of(group_id)}},
            "ConsistentRead": True,
        }
        with transient_errors_surface():
            while True:
                page = self._dynamodb.query(**kwargs)
                items.extend(page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        live = [item for item in items if float(item.get("expires_at", {}).get("N", "0")) > now]
        full = next((item for item in live if item["entry"]["S"] == FULL), None)
        if full is None:
            return None
        databases = set(json.loads(full["groups"]["S"]).get(group_id, []))
        prefix = f"{group_id}#"
        databases.update(item["entry"]["S"][len(prefix) :] for item in live if item["entry"]["S"].startswith(prefix))
        return databases or None

    def replace_all(self, uses: Iterable[tuple[str, str]]) -> None:
        """Rewrite every bucket's full entry from (group, "kind/identifier") pairs of the whole list."""
        buckets: dict[str, dict[str, list[str]]] = {f"b{n:02d}": {} for n in range(BUCKETS)}
        for group_id, database in uses:
            buckets[bucket_of(group_id)].setdefault(group_id, []).append(database)
        expires = str(int(self._clock() + self._max_age))
        self._put(
            {
                "bucket": {"S": bucket},
                "entry": {"S": FULL},
                "groups": {"S": json.dumps(groups, separators=(",", ":"), sort_keys=True)},
                "expires_at": {"N": expires},
            }
            for bucket, groups in buckets.items()
        )

    def add(self, uses: Iterable[tuple[str, str]]) -> None:
        """Record that these databases use these groups (a database event, before its groups are judged)."""
        expires = str(int(self._clock() + self._max_age))
        self._put(
            {
                "bucket": {"S": bucket_of(group_id)},
                "entry": {"S": f"{group_id}#{database}"},
                "expires_at": {"N": expires},
            }
            for group_id, database in sorted(set(uses))
        )

    def _put(self, items: Iterable[dict[str, Any]]) -> None:
        requests = [{"PutRequest": {"Item": item}} for item in items]
        for start in range(0, len(requests), _BATCH):
            pending = {self._table: requests[start : start + _BATCH]}
            for attempt in range(5):
                answer = call(self._dynamodb.batch_write_item, RequestItems=pending)
                pending = answer.get("UnprocessedItems") or {}
                if not pending:
                    break
                time.sleep(0.05 * 2**attempt)
            if pending:
                raise RuntimeError(f"group index: {len(pending[self._table])} entries left unwritten")
