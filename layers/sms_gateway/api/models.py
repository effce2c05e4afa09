"""Request and response models of the HTTP API v1 (DESIGN section 5): the boundary.

Requests: :class:`SendMessageBody` (``POST /v1/messages``, and each message of
``POST /v1/messages/batch``), :class:`BatchBody`, :class:`ReceiptBody` (``POST /v1/receipts``).
They check shape (strict types, unknown members refused, lengths); the domain rules (a valid
E.164 number, segments, sender IDs, a receipt's time against its message) are the domain's
and the services'. Responses: one model per 2xx body and :class:`ProblemDocument`; the routes
answer through them, so a body has one field order whether it is a first answer or a replay.
``docs/openapi.json`` is generated from these models and the routes (``make openapi``).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic import model_validator as _model_validator

from sms_gateway.domain.content import CarriableText, Encoding
from sms_gateway.domain.receipts import Receipt, ReceiptStatus
from sms_gateway.domain.states import MessageStatus

BATCH_MAX_MESSAGES = 100
REFERENCE_MAX = 128
MESSAGE_ID_MAX = 64

# RFC 3339 section 5.6 date-time: a full date, a full time and a zone (Z or +hh:mm).
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
RFC3339_HINT = "must be an RFC 3339 date-time with a time zone, e.g. 2026-02-05T12:00:00Z"


class SendMessageBody(BaseModel):
    """The JSON body of ``POST /v1/messages`` as clients send it. ``to``: a number in E.164
    or international form (spaces, dashes, parentheses and a leading 00 allowed); ``body``:
    the text (GSM-7 or UCS-2, at most ``SMS_GATEWAY_MAX_SEGMENTS`` segments); ``from``: a
    sender ID (alphanumeric 1-11 or a number) among the tenant's route policy's
    ``sender_ids`` (else the message fails with reason ``sender_id_not_allowed``, without a
    provider call); ``max_attempts``: 1..maxReceiveCount;
    ``reference``: the client's own label, at most 128 characters; ``validity_period``:
    seconds, 60..259200."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=False)

    to: CarriableText = Field(examples=["+12025550143"])
    body: CarriableText = Field(examples=["Your code is 123456"])
    from_: CarriableText | None = Field(default=None, alias="from", examples=["ACME"])
    # (bounds checked with a message of ours in sms_gateway.api.requests; the schema says them)
    max_attempts: int | None = Field(default=None, json_schema_extra={"minimum": 1})
    reference: CarriableText | None = Field(default=None, max_length=REFERENCE_MAX)
    validity_period: int | None = Field(
        default=None, json_schema_extra={"minimum": 60, "maximum": 72 * 3600}
    )


class BatchBody(BaseModel):
    """``POST /v1/messages/batch``: up to 100 messages under one Idempotency-Key; an invalid
    message rejects only itself unless ``all_or_nothing``. (Each message is checked on its
    own, by :class:`SendMessageBody`'s rules: see :mod:`sms_gateway.api.batch`.)"""

    model_config = ConfigDict(extra="forbid", strict=True)

    messages: list[SendMessageBody] = Field(min_length=1, max_length=BATCH_MAX_MESSAGES)
    all_or_nothing: bool = False


MessageId = Annotated[
    CarriableText,
    StringConstraints(min_length=1, max_length=MESSAGE_ID_MAX, strip_whitespace=True),
]
ProviderId = Annotated[
    CarriableText, StringConstraints(min_length=1, max_length=255, strip_whitespace=True)
]


class ReceiptBody(BaseModel):
    """``POST /v1/receipts`` body. ``status`` defaults to ``delivered``; ``delivered_at`` is
    an RFC 3339 date-time with its zone (``Z`` or ``+hh:mm``): epoch numbers, offsets without
    a colon and zone-less times are refused."""

    model_config = ConfigDict(extra="forbid", strict=False)

    message_id: MessageId | None = None
    provider_message_id: ProviderId | None = None
    status: ReceiptStatus = "delivered"
    delivered_at: datetime | None = Field(default=None, json_schema_extra={"format": "date-time"})
    error_code: Annotated[CarriableText, StringConstraints(max_length=64)] | None = None

    @field_validator("delivered_at", mode="before")
    @classmethod
    def _rfc3339(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str) or not _RFC3339.fullmatch(value):
            raise ValueError(RFC3339_HINT)
        return value

    @field_validator("delivered_at")
    @classmethod
    def _sane_year(cls, value: datetime | None) -> datetime | None:
        if value is not None and not 2000 <= value.year <= 2100:
            raise ValueError("must be a date between 2000 and 2100")
        return value

    @_model_validator(mode="after")
    def _one_id(self) -> ReceiptBody:
        if not self.message_id and not self.provider_message_id:
            raise ValueError("one of message_id or provider_message_id is required")
        return self

    def to_domain(self) -> Receipt:
        """The receipt as the receipt service takes it."""
        return Receipt(
            message_id=self.message_id,
            provider_message_id=self.provider_message_id,
            status=self.status,
            delivered_at=self.delivered_at,
            error_code=self.error_code,
        )


# ---- responses ------------------------------------------------------------------------------


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AcceptedMessage(_Answer):
    """``202`` to ``POST /v1/messages`` (the first answer and every replay, same bytes)."""

    message_id: str
    status: Literal["queued"]
    to: str = Field(description="the recipient in E.164")
    encoding: Encoding
    segments: int = Field(ge=1)
    created_at: str = Field(json_schema_extra={"format": "date-time"})


class FieldErrorDoc(_Answer):
    """One invalid field: the JSON member (``messages[2].to``), ``$`` or a header name."""

    field: str
    message: str


class QueuedItem(_Answer):
    """A batch message that was queued."""

    index: int = Field(ge=0)
    message_id: str
    status: Literal["queued"]
    to: str
    encoding: Encoding
    segments: int = Field(ge=1)


class RejectedItem(_Answer):
    """A batch message that was rejected (the others stand)."""

    index: int = Field(ge=0)
    status: Literal["rejected"]
    errors: list[FieldErrorDoc]


class BatchAccepted(_Answer):
    """``202`` to ``POST /v1/messages/batch``: every message in request order."""

    messages: list[QueuedItem | RejectedItem]
    accepted: int = Field(ge=0)
    rejected: int = Field(ge=0)


class MessageView(_Answer):
    """``200`` to ``GET /v1/messages/{message_id}``."""

    message_id: str
    status: MessageStatus
    to: str
    from_: str | None = Field(alias="from")
    encoding: Encoding
    segments: int
    provider: str | None
    attempts: int
    max_attempts: int
    reason_code: str | None
    reason_detail: str | None
    provider_message_id: str | None
    reference: str | None
    created_at: str | None = Field(json_schema_extra={"format": "date-time"})
    sent_at: str | None = Field(json_schema_extra={"format": "date-time"})
    delivered_at: str | None = Field(json_schema_extra={"format": "date-time"})


class ReceiptAnswer(_Answer):
    """``200`` (applied or stale) or ``202`` (pending) to ``POST /v1/receipts``."""

    message_id: str
    outcome: Literal["applied", "pending", "stale"]
    status: MessageStatus


class ProblemDocument(_Answer):
    """An ``application/problem+json`` answer (RFC 9457)."""

    type: str = Field(description="the problem type: a section of docs/problems.md")
    title: str
    status: int
    detail: str
    errors: list[FieldErrorDoc] | None = None


def dump(model: BaseModel) -> dict[str, Any]:
    """A response model as the JSON object it is sent as (declared field order, aliases)."""
    return model.model_dump(mode="json", by_alias=True)
