"""The message as it travels on the SendQueue, and how its id is derived.

``QueuedMessage`` is the SQS message body (JSON) written by ingest and read by the sender and
the DLQ function: one SMS per SQS message. It is a contract between functions that may be
deployed at different times, so fields are only ever added with defaults.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sms_gateway.domain.content import CarriableText, ContentInfo, Encoding
from sms_gateway.domain.errors import FieldError

# Namespace for message ids derived from (tenant, idempotency key, payload): uuid5 of this.
MESSAGE_ID_NAMESPACE = uuid.UUID("6f1c1e9e-4d0b-5c47-9a43-8e2f5a1b7c3d")


def derive_message_id(tenant_id: str, idempotency_key: str, payload_hash: str, window: int) -> str:
    """A message id that a retried ingest reproduces (UUID version 5, 36 chars).

    ``window`` is the idempotency-retention window the request falls in
    (``unix seconds // retention seconds``): see :func:`retention_window`.

    The same tenant, key, payload and window give the same id, so an ingest that crashed after
    queueing and was retried queues a message the sender recognizes as the same one. A key
    reused after its idempotency record expired is at least one retention period later, so it
    always falls in another window and makes a new message, even with the same payload.
    (A crashed ingest retried across a window boundary makes a second message: the odds are
    the retry delay over the retention period, e.g. 2 min / 24 h = 0.14 %.)
    """
    name = "\x1f".join((tenant_id, idempotency_key, payload_hash, str(window)))
    return str(uuid.uuid5(MESSAGE_ID_NAMESPACE, name))


def retention_window(at: datetime, retention_seconds: int) -> int:
    """Which idempotency-retention window ``at`` (aware) falls in: ``epoch seconds // period``."""
    return int(at.timestamp()) // retention_seconds


def payload_fingerprint(canonical_json: str) -> str:
    """SHA-256 hex of the canonical JSON of a request body (sorted keys, no whitespace)."""
    return hashlib.sha256(canonical_json.encode()).hexdigest()


class QueuedMessage(BaseModel):
    """One SMS on the SendQueue.

    ``to`` is E.164; ``segments`` and ``encoding`` were computed at ingest (GSM 03.38 rules);
    ``max_attempts`` is at most the queue's maxReceiveCount; ``expires_at`` (UTC) is set when
    the client gave a ``validity_period``: the message is not sent after it. ``generation``: 0
    as ingest queues it, ``n`` once an operator replayed its dead letter ``n`` times
    (:mod:`sms_gateway.services.operations`); its next dead letter is stored under it.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    # What ingest refuses can never be queued: a record carrying it anyway is malformed.
    message_id: str = Field(min_length=1, max_length=64)
    tenant_id: CarriableText = Field(min_length=1, max_length=128)
    to: CarriableText = Field(min_length=2, max_length=16)
    sender_id: CarriableText | None = Field(default=None, max_length=16)
    body: CarriableText = Field(min_length=1)
    encoding: Encoding
    segments: int = Field(ge=1)
    max_attempts: int = Field(ge=1)
    reference: CarriableText | None = Field(default=None, max_length=128)
    idempotency_key: CarriableText = Field(min_length=1, max_length=255)
    created_at: datetime
    expires_at: datetime | None = None
    generation: int = Field(default=0, ge=0)


@dataclass(frozen=True, slots=True)
class ValidatedMessage:
    """A request that passed every rule. ``to``: E.164; ``content``: encoding and segments;
    ``max_attempts``: the request's or the default (maxReceiveCount); seconds for validity."""

    to: str
    body: str
    sender_id: str | None
    max_attempts: int
    reference: str | None
    validity_period: int | None
    content: ContentInfo


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One message of a batch: ``index`` is its 0-based position in ``messages``, ``payload``
    the JSON value as sent (its id is derived from it), and either ``message`` (valid) or
    ``errors`` (its own field errors, fields named as in the single route: ``to``, ``body``)."""

    index: int
    payload: Any
    message: ValidatedMessage | None
    errors: tuple[FieldError, ...] = ()


@dataclass(frozen=True, slots=True)
class ValidatedBatch:
    """A batch whose request-level shape is right; ``items`` in request order."""

    items: tuple[BatchItem, ...]
    all_or_nothing: bool

    @property
    def accepted(self) -> list[BatchItem]:
        """The valid messages, in request order."""
        return [item for item in self.items if item.message is not None]

    @property
    def rejected(self) -> list[BatchItem]:
        """The invalid messages, in request order."""
        return [item for item in self.items if item.message is None]
