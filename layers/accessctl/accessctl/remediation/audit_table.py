"""The audit table as :class:`accessctl.audit.AuditLog` uses it (``put_item``), on the low-level
DynamoDB client: no boto3 resource model to load at cold start.

Within ``batched()`` (a scheduled scan), records are collected and written with BatchWriteItem,
25 per call, instead of one PutItem each. The records are the same ones ``AuditLog.append``
builds; only the put's absence condition is not sent in a batch (each key carries a fresh uuid4,
so a batch put never overwrites a record; the log stays append-only).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from boto3.dynamodb.types import TypeSerializer

from accessctl.aws import call

_BATCH = 25
_SERIALIZER = TypeSerializer()


class AuditBatchError(RuntimeError):
    pass


class AuditTable:
    def __init__(self, dynamodb: Any, table_name: str, max_attempts: int = 5) -> None:
        self._dynamodb = dynamodb
        self._table_name = table_name
        self._max_attempts = max_attempts
        self._buffer: list[dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def put_item(self, *, Item: dict[str, Any], ConditionExpression: Any = None) -> None:
        record = {key: _SERIALIZER.serialize(value) for key, value in Item.items()}
        with self._lock:
            if self._buffer is not None:
                self._buffer.append(record)
                return
        call(
            self._dynamodb.put_item,
            TableName=self._table_name,
            Item=record,
            ConditionExpression="attribute_not_exists(event_key)",
        )

    @contextmanager
    def batched(self) -> Iterator[None]:
        """Collect records; write them in batches when the block ends (raises AuditBatchError if some could not be)."""
        with self._lock:
            self._buffer = []
        try:
            yield
        finally:
            with self._lock:
                records, self._buffer = self._buffer or [], None
            self._write(records)

    def _write(self, records: list[dict[str, Any]]) -> None:
        lost = 0
        for start in range(0, len(records), _BATCH):
            pending = [{"PutRequest": {"Item": item}} for item in records[start : start + _BATCH]]
            for attempt in range(self._max_attempts):
                answer = call(self._dynamodb.batch_write_item, RequestItems={self._table_name: pending})
                pending = answer.get("UnprocessedItems", {}).get(self._table_name, [])
                if not pending:
                    break
                time.sleep(min(2.0, 0.05 * 2**attempt))
            lost += len(pending)
        if lost:
            raise AuditBatchError(f"{lost} audit record(s) could not be written after {self._max_attempts} attempts")
