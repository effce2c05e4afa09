"""Delivery receipts (DLRs) as the domain knows them: what a provider reported, and the
rules on its time that need the message (DESIGN section 5)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

ReceiptStatus = Literal[
    "delivered",
    "failed",
    "undelivered",
    "expired",
    "rejected",
    "sent",
    "accepted",
    "enroute",
    "buffered",
]

# Provider and gateway clocks differ: a handset time up to this much before the message was
# created is taken as clock skew, not as a wrong receipt.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Receipt:
    """One receipt: at least one of ``message_id`` (ours) or ``provider_message_id`` (the
    provider's); ``status`` as the provider reported it; ``delivered_at``: the handset time
    (aware datetime) when given; ``error_code``: the provider's code for a failure."""

    message_id: str | None = None
    provider_message_id: str | None = None
    status: ReceiptStatus = "delivered"
    delivered_at: datetime | None = None
    error_code: str | None = None


def time_defect(delivered_at: datetime | None, created_at: datetime | None) -> str | None:
    """Why a receipt's ``delivered_at`` cannot be true for a message created at
    ``created_at`` (both aware), or None: before the message existed, beyond
    :data:`CLOCK_SKEW`."""
    if delivered_at is None or created_at is None:
        return None
    if delivered_at < created_at - CLOCK_SKEW:
        created = created_at.isoformat().replace("+00:00", "Z")
        return (
            f"is before the message was created ({created}) by more than "
            f"{int(CLOCK_SKEW.total_seconds() // 60)} minutes of clock skew"
        )
    return None


def names_another_send(receipt_id: str | None, sent_id: str | None) -> bool:
    """Whether a receipt that names our message reports on another send of it: it gives a
    provider message id (``receipt_id``) and the message was sent under a different one
    (``sent_id``). E.g. an ``at_least_once`` retry whose first attempt timed out after the
    provider created SM1, the second creating SM2: SM1's ``undelivered`` says nothing of SM2.
    Such a receipt is ``stale``: it never moves the message. Without either id nothing
    contradicts the match by our message id."""
    return bool(receipt_id) and bool(sent_id) and receipt_id != sent_id
