"""The :class:`~sms_gateway.services.ports.MessageQueue` and
:class:`~sms_gateway.services.bulk.BatchQueue` ports over boto3 SQS."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from sms_gateway.services.bulk import BatchEntry, BatchSendResult, EntryFailure

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

# SendMessageBatch limits (SQS developer guide, "Quotas related to messages"): at most 10
# entries, and a total payload (bodies + attributes) of 256 KiB, the classic limit; SQS has
# raised it to 1 MiB since, so 256 KiB holds on every endpoint (and moto).
SEND_BATCH_MAX_ENTRIES = 10
SEND_BATCH_MAX_BYTES = 256 * 1024
# Pauses (seconds) before each further round of SendMessageBatch for the entries SQS answered
# in ``Failed`` without a sender fault: three rounds in all, well inside ingest's timeout.
BATCH_RETRY_PAUSES = (0.05, 0.25)


def _attributes(attributes: Mapping[str, str]) -> dict[str, Any]:
    return {k: {"DataType": "String", "StringValue": v} for k, v in attributes.items() if v}


class SqsMessageQueue:
    """SendQueue + DeadLetterQueue by URL. Errors are boto3's (``ClientError``) and propagate:
    the caller decides whether that fails a request (ingest) or a batch item (sender)."""

    def __init__(
        self,
        client: SQSClient,
        send_queue_url: str,
        dead_letter_queue_url: str,
        *,
        batch_retry_pauses: Sequence[float] = BATCH_RETRY_PAUSES,
    ) -> None:
        self._client = client
        self._send_queue_url = send_queue_url
        self._dead_letter_queue_url = dead_letter_queue_url
        self._batch_retry_pauses = tuple(batch_retry_pauses)

    def send(self, body: str, attributes: Mapping[str, str], delay_seconds: int = 0) -> str:
        """SendMessage to the SendQueue; returns the SQS message id."""
        answer = self._client.send_message(
            QueueUrl=self._send_queue_url,
            MessageBody=body,
            MessageAttributes=_attributes(attributes),
            DelaySeconds=delay_seconds,
        )
        return answer["MessageId"]

    def send_batch(self, entries: Sequence[BatchEntry]) -> BatchSendResult:
        """SendMessageBatch to the SendQueue: every entry, 10 (and at most 256 KiB) per call.

        SQS answers each call with ``Successful`` and ``Failed`` entries. A failed entry
        without ``SenderFault`` (SQS's side: ``InternalError``, throttling) is sent again, in
        a further round of calls holding only the failed entries, after each pause of
        ``batch_retry_pauses`` (3 rounds by default); an entry that succeeded is never sent
        again, and one with ``SenderFault`` (SQS refuses its content) is not retried.
        ``entry_id`` must be unique among ``entries`` (SQS's ``Id``: ``[A-Za-z0-9_-]{1,80}``).

        Returns which entries were queued (with their SQS message ids) and which were not,
        with SQS's last answer for each.

        Raises:
            ValueError: duplicate entry ids.
            botocore.exceptions.ClientError, BotoCoreError: a whole call failed (after
                boto3's own retries). Entries of earlier calls may be queued by then.
        """
        if len({e.entry_id for e in entries}) != len(entries):
            raise ValueError("SendMessageBatch entry ids must be unique")
        result = BatchSendResult()
        pending = list(entries)
        pauses = list(self._batch_retry_pauses)
        while pending:
            retry: list[BatchEntry] = []
            for chunk in _chunks(pending):
                by_id = {e.entry_id: e for e in chunk}
                result.calls += 1
                answer = self._client.send_message_batch(
                    QueueUrl=self._send_queue_url,
                    Entries=[
                        {
                            "Id": e.entry_id,
                            "MessageBody": e.body,
                            "MessageAttributes": _attributes(e.attributes),
                        }
                        for e in chunk
                    ],
                )
                for ok in answer.get("Successful", []):
                    result.sent[ok["Id"]] = ok["MessageId"]
                for failed in answer.get("Failed", []):
                    failure = EntryFailure(
                        entry_id=failed["Id"],
                        code=failed.get("Code", ""),
                        message=failed.get("Message", ""),
                        sender_fault=bool(failed.get("SenderFault")),
                    )
                    result.failed[failure.entry_id] = failure
                    if not failure.sender_fault:
                        retry.append(by_id[failure.entry_id])
            if not retry or not pauses:
                break
            time.sleep(pauses.pop(0))
            for entry in retry:
                del result.failed[entry.entry_id]
            pending = retry
        return result

    def change_visibility(self, receipt_handle: str, seconds: int) -> None:
        """ChangeMessageVisibility on the SendQueue."""
        self._client.change_message_visibility(
            QueueUrl=self._send_queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
        )

    def send_to_dead_letter(self, body: str, attributes: Mapping[str, str]) -> str:
        """SendMessage to the DeadLetterQueue; returns the SQS message id."""
        answer = self._client.send_message(
            QueueUrl=self._dead_letter_queue_url,
            MessageBody=body,
            MessageAttributes=_attributes(attributes),
        )
        return answer["MessageId"]


def _entry_bytes(entry: BatchEntry) -> int:
    """An entry's share of SendMessageBatch's payload limit: body + attribute names, types
    and values, UTF-8."""
    attrs = sum(
        len(k.encode()) + len("String") + len(v.encode()) for k, v in entry.attributes.items()
    )
    return len(entry.body.encode()) + attrs


def _chunks(entries: Sequence[BatchEntry]) -> Iterator[list[BatchEntry]]:
    """``entries`` in order, cut into SendMessageBatch calls of at most 10 entries and 256 KiB
    (one entry is at most 256 KiB: SQS's single-message limit, which ingest's body limit keeps
    far away)."""
    chunk: list[BatchEntry] = []
    size = 0
    for entry in entries:
        entry_size = _entry_bytes(entry)
        if chunk and (
            len(chunk) == SEND_BATCH_MAX_ENTRIES or size + entry_size > SEND_BATCH_MAX_BYTES
        ):
            yield chunk
            chunk, size = [], 0
        chunk.append(entry)
        size += entry_size
    if chunk:
        yield chunk


class _Attribute(Protocol):
    @property
    def string_value(self) -> str | None: ...


def string_attributes(message_attributes: Mapping[str, _Attribute]) -> dict[str, str]:
    """The string-typed message attributes of a Lambda SQS record, as a plain dict."""
    return {
        name: attr.string_value
        for name, attr in message_attributes.items()
        if attr.string_value is not None
    }
