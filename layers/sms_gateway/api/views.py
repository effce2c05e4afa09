"""Response bodies of the HTTP API (DESIGN section 5)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sms_gateway.api.models import MessageView, ReceiptAnswer

if TYPE_CHECKING:
    from sms_gateway.services.receipts import ReceiptOutcome
    from sms_gateway.storage.repository import MessageRecord


def rfc3339(value: datetime | None) -> str | None:
    """An aware UTC datetime as RFC 3339 with ``Z`` (None stays None)."""
    return value.isoformat().replace("+00:00", "Z") if value else None


def message_view(message: MessageRecord) -> MessageView:
    """``GET /v1/messages/{id}``'s body."""
    fields = {
        "message_id": message.id,
        "status": message.status.value,
        "to": message.to_number,
        "from": message.sender_id,
        "encoding": message.encoding,
        "segments": message.segments,
        "provider": message.provider,
        "attempts": message.attempts,
        "max_attempts": message.max_attempts,
        "reason_code": message.reason_code,
        "reason_detail": message.reason_detail,
        "provider_message_id": message.provider_message_id,
        "reference": message.reference,
        "created_at": rfc3339(message.created_at),
        "sent_at": rfc3339(message.sent_at),
        "delivered_at": rfc3339(message.delivered_at),
    }
    return MessageView.model_validate(fields)


def receipt_view(outcome: ReceiptOutcome) -> ReceiptAnswer:
    """``POST /v1/receipts``'s body."""
    return ReceiptAnswer.model_validate(
        {"message_id": outcome.message_id, "outcome": outcome.outcome, "status": outcome.status}
    )
