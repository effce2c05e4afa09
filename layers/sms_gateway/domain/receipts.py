"""Delivery receipts (DLRs) as the domain knows them: what a provider reported, and the
rules on its time that need the message (DESIGN section 5)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sms_gateway.domain.reasons import ReasonCode
from sms_gateway.domain.states import MessageStatus

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


def settles_unknown(status: MessageStatus, reason_code: str | None) -> bool:
    """Whether a final receipt may settle a message in ``status`` (with ``reason_code``)
    whose attempt's outcome is unknown (issue 7, exactly-once).

    An attempt recorded ``unknown`` (read timeout or reset after the request left) may have
    been accepted by the provider; a final receipt (delivered, undelivered, failed, expired)
    about it proves it was. The message can be in one of two states then:

    - ``queued``: an ``at_least_once`` tenant's retry is waiting (or the sender is about to
      hand it to the DeadLetterQueue). The settle bumps the row's version, so the sender's
      claim (guarded by the version it read) loses, and a later SQS copy is a duplicate.
    - ``failed`` with reason ``outcome_unknown``: an ``at_most_once`` tenant's message, failed
      only because nobody knew. This is the one failed state a receipt may overturn: the
      failure recorded ignorance, not a provider's verdict; every other ``failed`` (a
      permanent refusal, a dead letter, a receipt) is the provider's or the operator's word
      and stays.

    The caller also checks that the message has an attempt recorded ``unknown``."""
    if status is MessageStatus.QUEUED:
        return True
    return status is MessageStatus.FAILED and reason_code == ReasonCode.OUTCOME_UNKNOWN.value
