"""The :class:`~sms_gateway.services.ports.MessageQueue` port over boto3 SQS."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


def _attributes(attributes: Mapping[str, str]) -> dict[str, Any]:
    return {k: {"DataType": "String", "StringValue": v} for k, v in attributes.items() if v}


class SqsMessageQueue:
    """SendQueue + DeadLetterQueue by URL. Errors are boto3's (``ClientError``) and propagate:
    the caller decides whether that fails a request (ingest) or a batch item (sender)."""

    def __init__(self, client: SQSClient, send_queue_url: str, dead_letter_queue_url: str) -> None:
        self._client = client
        self._send_queue_url = send_queue_url
        self._dead_letter_queue_url = dead_letter_queue_url

    def send(self, body: str, attributes: Mapping[str, str], delay_seconds: int = 0) -> str:
        """SendMessage to the SendQueue; returns the SQS message id."""
        answer = self._client.send_message(
            QueueUrl=self._send_queue_url,
            MessageBody=body,
            MessageAttributes=_attributes(attributes),
            DelaySeconds=delay_seconds,
        )
        return answer["MessageId"]

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
