"""Local stand-in for Lambda's SQS event source mappings (``AWS::Lambda::EventSourceMapping``, what
a SAM ``Events: Type: SQS`` becomes): receive a batch, invoke the function with it, delete what it
handled.

The semantics are Lambda's:

- up to ``BatchSize`` messages per invocation, received with the queue's visibility timeout, in
  the event shape Lambda sends (``Records`` of ``eventSource: aws:sqs``);
- the invocation fails (an error, a timeout): nothing is deleted; the messages come back once their
  visibility timeout passes, and the queue's redrive policy moves them to its dead-letter queue
  after ``maxReceiveCount`` receives (moto does that on receive, as SQS does);
- it succeeds: every message is deleted, except, with ``ReportBatchItemFailures``, those named in
  ``batchItemFailures``. An answer naming a message that was not in the batch, or with no
  ``itemIdentifier``, fails the whole batch, as in Lambda.

A background thread polls every enabled source while the stack runs. It asks the emulator's SQS
backend (in this process) whether a queue holds visible messages before calling ``ReceiveMessage``,
so an idle queue costs no API call and leaves the stack's API call counts alone. ``drain`` polls
synchronously until the queues are empty, for tests and tools that stopped the background thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from .provision import QueueSourceSpec
from .runtime import Invocation, LambdaRuntime

log = logging.getLogger(__name__)


def _lambda_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """SQS's message attributes (``StringValue``, ``DataType``) as Lambda passes them (``stringValue``...)."""
    return {
        name: {key[0].lower() + key[1:]: value for key, value in attribute.items()}
        for name, attribute in attributes.items()
    }


class LocalQueuePoller:
    """Polls the stack's SQS event sources and invokes their functions with Lambda's batch semantics."""

    def __init__(
        self,
        sources: list[QueueSourceSpec],
        runtime: LambdaRuntime,
        sqs: Any,
        region: str,
        account_id: str,
        idle_seconds: float = 0.2,
        has_visible: Callable[[QueueSourceSpec], bool] | None = None,
    ) -> None:
        self.sources = sources
        self.runtime = runtime
        self.sqs = sqs
        self.region = region
        self.account_id = account_id
        self.idle_seconds = idle_seconds
        self._has_visible = has_visible or self._backend_has_visible
        self._urls: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one poll at a time: the thread and drain() do not overlap

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self._thread is None and any(source.enabled for source in self.sources):
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="accessctl-local-queues", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def find(self, name: str) -> QueueSourceSpec:
        """A source by its logical id, or by its function's logical id, name or ARN."""
        for source in self.sources:
            if source.logical_id == name:
                return source
        try:
            function = self.runtime.spec(name).function_name
        except KeyError:
            function = name
        matches = [s for s in self.sources if self.runtime.spec(s.function).function_name == function]
        if len(matches) != 1:
            raise KeyError(f"{name!r} matches {len(matches)} queue sources; name the mapping's logical id")
        return matches[0]

    # -------------------------------------------------------------- polling

    def drain(self, name: str | None = None, max_batches: int = 1000) -> list[Invocation]:
        """Poll (one source, or every enabled one) until no visible message is left; the invocations made."""
        sources = [self.find(name)] if name is not None else [s for s in self.sources if s.enabled]
        invocations: list[Invocation] = []
        for _ in range(max_batches):
            made = [invocation for source in sources if (invocation := self.poll(source)) is not None]
            if not made:
                return invocations
            invocations += made
        raise RuntimeError(f"queues not drained after {max_batches} batches")

    def poll(self, source: QueueSourceSpec) -> Invocation | None:
        """Receive one batch and hand it to the function; None when the queue had no visible message."""
        with self._lock:
            url = self._url(source)
            messages: list[dict[str, Any]] = []
            while len(messages) < source.batch_size:
                answer = self.sqs.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=min(10, source.batch_size - len(messages)),
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                    WaitTimeSeconds=0,
                )
                received = answer.get("Messages", [])
                if not received:
                    break
                messages += received
            if not messages:
                return None
            invocation = self.runtime.invoke(source.function, self._event(source, messages))
            done = self._handled(source, messages, invocation)
            for start in range(0, len(done), 10):
                entries = [
                    {"Id": str(number), "ReceiptHandle": message["ReceiptHandle"]}
                    for number, message in enumerate(done[start : start + 10])
                ]
                self.sqs.delete_message_batch(QueueUrl=url, Entries=entries)
            return invocation

    def _handled(
        self, source: QueueSourceSpec, messages: list[dict[str, Any]], invocation: Invocation
    ) -> list[dict[str, Any]]:
        """The messages to delete after ``invocation``: none if it failed, else all but the failures it reported."""
        if invocation.errored:
            log.warning("%s: batch of %d failed: %s", source.logical_id, len(messages), invocation.payload)
            return []
        if not source.report_batch_item_failures:
            return messages
        payload = invocation.payload
        failures = payload.get("batchItemFailures") if isinstance(payload, dict) else None
        if not failures:
            return messages  # no answer, or an empty list: every message succeeded
        if not isinstance(failures, list):
            log.warning("%s: invalid batchItemFailures %r: the whole batch failed", source.logical_id, failures)
            return []
        ids = {message["MessageId"] for message in messages}
        failed = {failure.get("itemIdentifier") if isinstance(failure, dict) else None for failure in failures}
        if not failed <= ids:
            log.warning("%s: invalid batchItemFailures %r: the whole batch failed", source.logical_id, failures)
            return []
        return [message for message in messages if message["MessageId"] not in failed]

    def _event(self, source: QueueSourceSpec, messages: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "Records": [
                {
                    "messageId": message["MessageId"],
                    "receiptHandle": message["ReceiptHandle"],
                    "body": message["Body"],
                    "attributes": message.get("Attributes", {}),
                    "messageAttributes": _lambda_attributes(message.get("MessageAttributes", {})),
                    "md5OfBody": message["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": source.queue_arn,
                    "awsRegion": self.region,
                }
                for message in messages
            ]
        }

    def _url(self, source: QueueSourceSpec) -> str:
        if source.queue_arn not in self._urls:
            name = source.queue_arn.rsplit(":", 1)[-1]
            owner = source.queue_arn.split(":")[4]
            url = self.sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=owner)["QueueUrl"]
            self._urls[source.queue_arn] = url
        return self._urls[source.queue_arn]

    def _backend_has_visible(self, source: QueueSourceSpec) -> bool:
        from moto.sqs.models import sqs_backends

        _, _, _, region, account, name = source.queue_arn.split(":", 5)
        queue = sqs_backends[account][region].queues.get(name)
        return queue is not None and bool(queue.messages)

    def _loop(self) -> None:
        while not self._stop.is_set():
            busy = False
            for source in self.sources:
                if not source.enabled or self._stop.is_set():
                    continue
                try:
                    if self._has_visible(source):
                        busy = self.poll(source) is not None or busy
                except Exception:
                    log.exception("polling %s failed", source.logical_id)
            if not busy:
                self._stop.wait(self.idle_seconds)
