"""The audit table as :class:`accessctl.audit.AuditLog` uses it, on the low-level DynamoDB client:
no boto3 resource model to load at cold start.

Every record goes through the hash chain (:class:`accessctl.audit.AuditChain`), batched or not:
a user expects every record in the chain. Within ``batched()`` (a scheduled scan), records are
collected and written 50 records (and their 50 chain links) per TransactWriteItems, instead of one
transaction each: each full 50 as soon as it is collected, by one writer thread (so the writes
overlap the scan's fixes, in the order the records came), and the rest when the block ends.

Records whose append fails (a chunk of a batch, or one record written at once) are sent to the audit
outbox (:mod:`accessctl.audit_outbox`), which appends them later: what they record has been done
already. Only records that cannot be sent there either are lost, and reported as such.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from accessctl.audit import RECORDS_PER_TRANSACTION, AuditChain
from accessctl.audit_outbox import AuditOutbox


class AuditNotWritten(RuntimeError):
    """Audit records neither written nor deferred to the outbox: ``lost`` of them."""

    def __init__(self, message: str, lost: int) -> None:
        super().__init__(message)
        self.lost = lost


class AuditBatchError(AuditNotWritten):
    pass


class _Batch:
    """Records collected in a ``batched()`` block, written in chunks by one writer, one chunk after
    the other (the chain's heads carry over from one to the next)."""

    def __init__(self, chain: AuditChain, chunk: int, outbox: AuditOutbox | None = None) -> None:
        self._chain = chain
        self._chunk = chunk
        self._outbox = outbox
        self._pending: list[dict[str, Any]] = []
        self._heads: dict[str, tuple[int, str]] = {}  # touched by the writer only
        self._writer: ThreadPoolExecutor | None = None
        self._failures: list[tuple[int, Exception]] = []
        self._records = 0

    def add(self, items: list[dict[str, Any]]) -> None:
        """Called under the table's lock: chunks are handed to the writer in arrival order."""
        self._pending.extend(items)
        self._records += len(items)
        while len(self._pending) >= self._chunk:
            chunk, self._pending = self._pending[: self._chunk], self._pending[self._chunk :]
            if self._writer is None:
                self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-batch")
            self._writer.submit(self._write, chunk)

    def close(self) -> None:
        """Write the rest, wait for the writer; raise if some records were neither written nor deferred."""
        rest, self._pending = self._pending, []
        if self._writer is not None:
            if rest:
                self._writer.submit(self._write, rest)
            self._writer.shutdown(wait=True)
        elif rest:
            self._write(rest)
        if not self._failures:
            return
        lost = sum(count for count, _ in self._failures)
        first = self._failures[0][1]
        raise AuditBatchError(f"{lost} of {self._records} records not written: {first}", lost) from first

    def _write(self, records: list[dict[str, Any]]) -> None:
        try:
            self._chain.append(records, self._heads)
        except Exception as error:  # deferred or noted; the later chunks are still written
            self._heads.clear()  # read the heads again: a failed chunk may have left them unknown
            if self._outbox is None:
                self._failures.append((len(records), error))
                return
            try:
                self._outbox.defer(records, error)
            except Exception as unsent:
                self._failures.append((getattr(unsent, "unsent", len(records)), unsent))


class AuditTable:
    def __init__(
        self, dynamodb: Any, table_name: str, max_attempts: int = 25, *, outbox: AuditOutbox | None = None
    ) -> None:
        self._chain = AuditChain(dynamodb, table_name, max_attempts=max_attempts)
        self._outbox = outbox
        self._batch: _Batch | None = None
        self._lock = threading.Lock()

    def append_chained(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Write now (chained), or collect while a batch is open (then nothing is returned yet).

        Records that cannot be written now go to the outbox (nothing is returned for them); raises
        :class:`AuditNotWritten` if that fails too.
        """
        with self._lock:
            if self._batch is not None:
                self._batch.add(items)
                return []
        try:
            return self._chain.append(items)
        except Exception as error:
            if self._outbox is None:
                raise
            try:
                self._outbox.defer(items, error)
            except Exception as unsent:
                lost = getattr(unsent, "unsent", len(items))
                raise AuditNotWritten(f"{lost} records not written ({error}) nor deferred ({unsent})", lost) from error
            return []

    def put_item(self, *, Item: dict[str, Any], ConditionExpression: Any = None) -> None:
        self.append_chained([Item])

    @contextmanager
    def batched(self) -> Iterator[None]:
        """Collect records and write them 50 at a time, the rest when the block ends (raises
        AuditBatchError, once all were tried, if some were neither written nor deferred)."""
        batch = _Batch(self._chain, RECORDS_PER_TRANSACTION, self._outbox)
        with self._lock:
            self._batch = batch
        try:
            yield
        finally:
            with self._lock:
                self._batch = None
            batch.close()
