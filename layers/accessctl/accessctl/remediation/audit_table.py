"""The audit table as :class:`accessctl.audit.AuditLog` uses it, on the low-level DynamoDB client:
no boto3 resource model to load at cold start.

Every record goes through the hash chain (:class:`accessctl.audit.AuditChain`), batched or not:
a user expects every record in the chain. Within ``batched()`` (a scheduled scan), records are
collected and, when the block ends, chained per stream and written with TransactWriteItems, 50
records (and their 50 chain links) per call, instead of one transaction each.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from accessctl.audit import AuditChain, AuditChainError


class AuditBatchError(RuntimeError):
    pass


class AuditTable:
    def __init__(self, dynamodb: Any, table_name: str, max_attempts: int = 25) -> None:
        self._chain = AuditChain(dynamodb, table_name, max_attempts=max_attempts)
        self._buffer: list[dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def append_chained(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Write now (chained), or collect while a batch is open (then nothing is returned yet)."""
        with self._lock:
            if self._buffer is not None:
                self._buffer.extend(items)
                return []
        return self._chain.append(items)

    def put_item(self, *, Item: dict[str, Any], ConditionExpression: Any = None) -> None:
        self.append_chained([Item])

    @contextmanager
    def batched(self) -> Iterator[None]:
        """Collect records; chain and write them when the block ends (raises AuditBatchError if some could not be)."""
        with self._lock:
            self._buffer = []
        try:
            yield
        finally:
            with self._lock:
                records, self._buffer = self._buffer or [], None
            if records:
                try:
                    self._chain.append(records)
                except AuditChainError as error:
                    raise AuditBatchError(str(error)) from error
