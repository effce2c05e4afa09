"""SQS event source mappings, locally: poll a queue, invoke a handler, delete what succeeded.

What Lambda's SQS poller does, kept here:

- ``ReceiveMessage`` with ``MaxNumberOfMessages = BatchSize``, a 1 s long poll, all system and
  message attributes; up to ``MaximumBatchingWindowInSeconds`` spent filling the batch, but
  never more than half the queue's visibility timeout: the messages already received must
  still be hidden when the function gets them, with time left to run (AWS asks for a
  visibility timeout of at least 6 times the function timeout). A message that comes back
  while the batch fills (its visibility ended) is in the batch once, with its newest receipt
  handle; the poller never extends a visibility timeout, as Lambda's does not.
- The event is Lambda's: ``{"Records": [...]}`` with ``messageId``, ``receiptHandle``, ``body``,
  ``attributes``, ``messageAttributes`` (``stringValue``/``binaryValue``/``stringListValues``/
  ``binaryListValues``/``dataType``), ``md5OfBody``, ``eventSource``, ``eventSourceARN``,
  ``awsRegion``.
- Partial batch response (``ReportBatchItemFailures``): every record not named in
  ``batchItemFailures`` is deleted; the named ones stay and come back after their visibility
  timeout (which the handler may change). A handler that raises, or a malformed response,
  fails the whole batch: nothing is deleted.
- Redrive to the dead-letter queue is SQS's (here moto's) own: the receive after the
  ``maxReceiveCount``-th moves the message instead of delivering it.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueOutputTypeDef, MessageTypeDef

__all__ = ["PollOutcome", "SqsPoller", "failed_message_ids", "sqs_event_record"]

logger = logging.getLogger(__name__)

SqsInvoker = Callable[[dict[str, Any]], Any]
"""``invoke(event) -> answer``: calls the consumer function's handler."""


def _lambda_attribute(value: MessageAttributeValueOutputTypeDef) -> dict[str, Any]:
    """An SQS message attribute in the Lambda event's spelling (binary values base64)."""
    shaped: dict[str, Any] = {
        "stringListValues": list(value.get("StringListValues", [])),
        "binaryListValues": [
            base64.b64encode(item).decode("ascii") for item in value.get("BinaryListValues", [])
        ],
        "dataType": value["DataType"],
    }
    if "StringValue" in value:
        shaped["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        shaped["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
    return shaped


def sqs_event_record(message: MessageTypeDef, *, queue_arn: str, region: str) -> dict[str, Any]:
    """One ``Records`` item of a Lambda SQS event, from a ``ReceiveMessage`` message.

    ``attributes`` holds the system attributes as received (``ApproximateReceiveCount``,
    ``SentTimestamp``, ``SenderId``, ``ApproximateFirstReceiveTimestamp`` and, when present,
    ``MessageGroupId`` etc.), all strings.
    """
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: _lambda_attribute(value)
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def failed_message_ids(answer: Any, message_ids: Iterable[str]) -> set[str] | None:
    """The ids a partial batch response reports failed, by Lambda's rules.

    ``None``, ``""``, a dict without ``batchItemFailures`` or with an empty/null list: all
    succeeded (empty set). Returns ``None`` (the whole batch failed) for anything Lambda treats
    as a complete failure: a non-object answer, an item without a non-empty string
    ``itemIdentifier``, or an ``itemIdentifier`` that is not a message of the batch.
    """
    if answer is None or answer == "":
        return set()
    if not isinstance(answer, dict):
        return None
    failures = answer.get("batchItemFailures")
    if not failures:
        return set()
    if not isinstance(failures, list):
        return None
    batch = set(message_ids)
    failed: set[str] = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or not identifier or identifier not in batch:
            return None
        failed.add(identifier)
    return failed


@dataclass(frozen=True)
class PollOutcome:
    """What one :meth:`SqsPoller.poll_once` did: message ids received, deleted, left for
    redelivery; ``error`` holds the handler's exception text when it raised."""

    received: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    retained: list[str] = field(default_factory=list)
    error: str | None = None


class SqsPoller:
    """Lambda's SQS event source mapping for one queue and one function.

    Args:
        sqs: an SQS client for the queue's endpoint.
        queue_url, queue_arn: the queue (the ARN goes into ``eventSourceARN``).
        invoke: calls the function's handler with an event; its answer is the response.
        batch_size: ``BatchSize`` (1-10 here, as one ``ReceiveMessage`` returns at most 10).
        batching_window_seconds: ``MaximumBatchingWindowInSeconds``: how long to keep filling
            a partial batch before invoking.
        report_batch_item_failures: ``FunctionResponseTypes`` has ``ReportBatchItemFailures``;
            without it the answer is ignored and a handler that returns deletes the batch.
        region: ``awsRegion`` of the records.
        wait_time_seconds: the long-poll wait of each ``ReceiveMessage`` (0-20).
        name: for logs and the thread name.
    """

    def __init__(
        self,
        *,
        sqs: SQSClient,
        queue_url: str,
        queue_arn: str,
        invoke: SqsInvoker,
        batch_size: int = 10,
        batching_window_seconds: float = 0,
        report_batch_item_failures: bool = True,
        region: str = "us-east-1",
        wait_time_seconds: int = 1,
        name: str = "sqs-poller",
    ) -> None:
        if not 1 <= batch_size <= 10:
            raise ValueError(f"batch_size {batch_size}: the local poller supports 1-10")
        self.sqs = sqs
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.invoke = invoke
        self.batch_size = batch_size
        self.batching_window_seconds = batching_window_seconds
        self.report_batch_item_failures = report_batch_item_failures
        self.region = region
        self.wait_time_seconds = wait_time_seconds
        self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._leaving: threading.Thread | None = None  # stopped in its long poll, not waited for
        self._state = threading.Lock()  # orders "stopping" against "handing a batch over"
        self._handling = False  # a batch is with the function (or being deleted)
        self._visibility_timeout: int | None = None

    def _receive(self, count: int, wait_seconds: int) -> list[MessageTypeDef]:
        answer = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(answer.get("Messages", []))

    def visibility_timeout(self) -> int:
        """The queue's ``VisibilityTimeout`` in seconds (read once, then cached)."""
        if self._visibility_timeout is None:
            attributes = self.sqs.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=["VisibilityTimeout"]
            )["Attributes"]
            self._visibility_timeout = int(attributes["VisibilityTimeout"])
        return self._visibility_timeout

    def filling_seconds(self) -> float:
        """How long a partial batch may keep filling after the first receive was sent: the
        batching window, capped at half the queue's visibility timeout (see the module's
        docstring). 0 without a batching window."""
        if self.batching_window_seconds <= 0:
            return 0.0
        first = self._visibility_timeout is None
        cap = self.visibility_timeout() / 2
        if self.batching_window_seconds > cap:
            if first:  # once per poller, not once per batch
                logger.warning(
                    "%s: batching window %gs capped to %gs: the queue's visibility timeout is %ds",
                    self.name,
                    self.batching_window_seconds,
                    cap,
                    self.visibility_timeout(),
                )
            return cap
        return float(self.batching_window_seconds)

    def receive_batch(self) -> list[MessageTypeDef]:
        """One batch: a long poll, then (if a batching window is set and the batch is not
        full) further polls until :meth:`filling_seconds` have passed since the first poll
        was sent. Each message is in the batch once. Empty when the queue was empty."""
        # Taken before the first poll, so no later than SQS started its messages' timeouts
        # (a long poll that waited for a message only makes the cap more conservative).
        started = time.monotonic()
        messages = self._receive(self.batch_size, self.wait_time_seconds)
        if not messages or self.batching_window_seconds <= 0:
            return messages
        deadline = started + self.filling_seconds()
        by_id = {message["MessageId"]: message for message in messages}
        while (
            len(by_id) < self.batch_size
            and time.monotonic() < deadline
            and not self._stop.is_set()  # stopping: this batch goes to no function anyway
        ):
            more = self._receive(self.batch_size - len(by_id), 0)
            for message in more:
                if message["MessageId"] in by_id:
                    logger.debug("%s: %s came back while batching", self.name, message["MessageId"])
                by_id[message["MessageId"]] = message  # the newest receipt handle is valid
            if not more and self._stop.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
                break
        return list(by_id.values())

    def poll_once(self) -> PollOutcome:
        """Receive one batch, invoke the function once with it, delete what succeeded.

        Returns an empty :class:`PollOutcome` when no message arrived within the long poll.
        Errors from SQS itself propagate; errors from the handler do not (they are logged with
        their traceback and fail the batch).
        """
        messages = self.receive_batch()
        if not messages:
            return PollOutcome()
        with self._state:
            if self._stop.is_set():
                # Stopping: not handed to a function on its way out. In flight until their
                # visibility timeout ends (a restarted stack has them at once), as a batch
                # Lambda's poller received while scaling down.
                ids = [message["MessageId"] for message in messages]
                return PollOutcome(received=ids, retained=ids)
            self._handling = True
        try:
            return self._handle(messages)
        finally:
            with self._state:
                self._handling = False

    def _handle(self, messages: list[MessageTypeDef]) -> PollOutcome:
        event = {
            "Records": [
                sqs_event_record(message, queue_arn=self.queue_arn, region=self.region)
                for message in messages
            ]
        }
        ids = [message["MessageId"] for message in messages]
        try:
            answer = self.invoke(event)
        except Exception as error:
            if self._stop.is_set():  # stopping: the environment was killed under the batch
                logger.info(
                    "%s: batch cut short by the stop; %d message(s) left for redelivery",
                    self.name,
                    len(ids),
                )
            else:
                logger.exception(
                    "%s: handler raised; %d message(s) left for redelivery", self.name, len(ids)
                )
            return PollOutcome(received=ids, retained=ids, error=repr(error))
        failed: set[str] = set()
        if self.report_batch_item_failures:
            reported = failed_message_ids(answer, ids)
            if reported is None:
                logger.error(
                    "%s: invalid partial batch response %r: the whole batch fails",
                    self.name,
                    answer,
                )
                return PollOutcome(received=ids, retained=ids, error="invalid batch response")
            failed = reported
        to_delete = [message for message in messages if message["MessageId"] not in failed]
        deleted = self._delete(to_delete)
        retained = [message_id for message_id in ids if message_id not in deleted]
        if retained:
            logger.info(
                "%s: %d of %d message(s) left for redelivery", self.name, len(retained), len(ids)
            )
        return PollOutcome(received=ids, deleted=deleted, retained=retained)

    def _delete(self, messages: list[MessageTypeDef]) -> list[str]:
        deleted: list[str] = []
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            by_entry = {str(index): message for index, message in enumerate(chunk)}
            answer = self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": key, "ReceiptHandle": message["ReceiptHandle"]}
                    for key, message in by_entry.items()
                ],
            )
            deleted += [by_entry[item["Id"]]["MessageId"] for item in answer.get("Successful", [])]
            for item in answer.get("Failed", []):
                logger.error(
                    "%s: delete of %s failed: %s",
                    self.name,
                    by_entry[item["Id"]]["MessageId"],
                    item.get("Message"),
                )
        return deleted

    def run(self) -> None:
        """Poll until :meth:`stop` (the thread's body). SQS errors are logged and retried."""
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                if self._stop.is_set():
                    break
                logger.exception("%s: polling failed; retrying in 1 s", self.name)
                self._stop.wait(1)

    def start(self) -> None:
        """Start polling in a daemon thread (after the thread a :meth:`stop` did not wait for
        has ended: clearing the stop would have it poll and invoke beside the new one)."""
        leaving = self._leaving
        if leaving is not None:
            leaving.join()  # within its long poll: its batch is not handed over
            self._leaving = None
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the thread to stop after its current poll, without waiting."""
        with self._state:
            self._stop.set()

    def stop(self, timeout: float | None = None) -> None:
        """Ask the thread to stop and wait up to ``timeout`` seconds for a batch in progress
        (its invocation and its deletes) to finish. A thread still waiting on its long poll is
        not waited for (up to a second): what that receive returns is not handed to the
        function but left in flight (see :meth:`poll_once`), and the daemon thread ends."""
        with self._state:
            self._stop.set()
            handling = self._handling
        thread = self._thread
        if thread is None:
            return
        if handling:
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("%s: still busy after %s s; left running", self.name, timeout)
                return
        else:
            self._leaving = thread
        self._thread = None

    @property
    def running(self) -> bool:
        """True while the polling thread is alive."""
        return self._thread is not None and self._thread.is_alive()


def describe(pollers: Mapping[str, SqsPoller]) -> list[str]:
    """One line per poller: ``function <- queue (batch n, window s)``, for the start banner."""
    return [
        f"{name} <- {poller.queue_url} (batch {poller.batch_size}, "
        f"window {poller.batching_window_seconds:g}s)"
        for name, poller in pollers.items()
    ]
