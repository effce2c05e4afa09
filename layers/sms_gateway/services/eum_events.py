"""Receipts from AWS End User Messaging SMS event destinations (issue 7, item 5).

A configuration set's event destination (an SNS topic; EventBridge carries the same JSON as
its ``detail``) delivers one JSON document per event
(https://docs.aws.amazon.com/sms-voice/latest/userguide/configuration-sets-event-types.html,
format: https://docs.aws.amazon.com/end-user-messaging/latest/userguide/nx-features-messaging-events.html)::

    {"eventType": "TEXT_DELIVERED", "isFinal": true, "eventTimestamp": 1686975103470,
     "messageId": "<provider message id>", "context": {"message_id": ..., "tenant_id": ...},
     "messageStatus": "DELIVERED", ...}

:data:`EVENT_STATUSES` maps each SMS event type to a receipt status; the receipt is applied
through :class:`~sms_gateway.services.receipts.ReceiptService`, so the never-regress rules of
``POST /v1/receipts`` hold. It is matched by our message id (the ``Context`` the sender set),
else by the provider's ``messageId``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sms_gateway.domain.errors import InvalidField, MessageNotFound, ReceiptConflict
from sms_gateway.domain.receipts import Receipt, ReceiptStatus
from sms_gateway.services.receipts import ReceiptService

# eventType -> Receipt.status; informational ones (queued, pending, unknown) never move
# a message. TEXT_SUCCESSFUL: "may be used interchangeably" with TEXT_DELIVERED depending on
# the destination country (AWS's event types page), so both count as delivered. TEXT_UNKNOWN
# (no final carrier event within 72 h) may hide a delivery: it leaves the message ``sent``.
EVENT_STATUSES: Mapping[str, ReceiptStatus] = {
    "TEXT_DELIVERED": "delivered",
    "TEXT_SUCCESSFUL": "delivered",
    "TEXT_QUEUED": "accepted",
    "TEXT_PENDING": "enroute",
    "TEXT_UNKNOWN": "sent",
    "TEXT_TTL_EXPIRED": "expired",
    "TEXT_BLOCKED": "rejected",
    "TEXT_CARRIER_BLOCKED": "rejected",
    "TEXT_SPAM": "rejected",
    "TEXT_PROTECT_BLOCKED": "rejected",
    "TEXT_INVALID": "undelivered",
    "TEXT_UNREACHABLE": "undelivered",
    "TEXT_CARRIER_UNREACHABLE": "undelivered",
    "TEXT_INVALID_MESSAGE": "failed",
}


def receipt_for_event(event: Mapping[str, Any]) -> Receipt | None:
    """The receipt an SMS event stands for; None for an event that is not an SMS event we map
    (voice, MMS, registration changes) or names no message (ids that are not strings of 1-128
    characters count as absent)."""
    status = EVENT_STATUSES.get(str(event.get("eventType", "")))
    if status is None:
        return None
    context = event.get("context") if isinstance(event.get("context"), Mapping) else {}
    message_id = _id(context.get("message_id") if isinstance(context, Mapping) else None)
    provider_message_id = _id(event.get("messageId"))
    if not message_id and not provider_message_id:
        return None
    delivered_at = None
    stamp = event.get("eventTimestamp")
    if status == "delivered" and isinstance(stamp, int | float) and not isinstance(stamp, bool):
        delivered_at = datetime.fromtimestamp(stamp / 1000, UTC)
    return Receipt(
        message_id=message_id,
        provider_message_id=provider_message_id,
        status=status,
        delivered_at=delivered_at,
        error_code=f"eum:{event['eventType']}"[:64],
    )


def _id(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= 128 else None


def handle_sns_event(event: Mapping[str, Any], receipts: ReceiptService) -> dict[str, int]:
    """Apply every SMS event of an SNS-triggered Lambda ``event`` (``Records[].Sns.Message``).

    Returns counts by outcome (``applied``, ``pending``, ``stale``, ``unmatched``,
    ``conflict``, ``invalid``, ``ignored``): one bad event never fails the others. An event
    for an unknown message is kept ``unmatched`` (the sender applies it when it records that
    provider message id), never retried.

    Raises:
        StorageUnavailable: the database is down (Lambda retries the SNS delivery).
    """
    counts: dict[str, int] = {}
    for record in event.get("Records", []):
        try:
            document = json.loads(record["Sns"]["Message"])
        except (KeyError, TypeError, ValueError):
            document = None
        request = receipt_for_event(document) if isinstance(document, dict) else None
        if request is None:
            outcome = "ignored"
        else:
            try:
                outcome = receipts.handle(request).outcome
            except MessageNotFound:
                outcome = "unmatched"
            except ReceiptConflict:
                outcome = "conflict"  # no attempt sent or in flight: nothing to report on
            except InvalidField:
                outcome = "invalid"  # e.g. a time before the message existed: this event only
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts
