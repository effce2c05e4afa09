"""Delivery receipts (DLRs): ``sent -> delivered | failed | expired``, idempotent, never backwards.

- A receipt for a ``sent`` message applies (one conditional transition + audit row) and emits
  the receipt-delay metric (seconds from ``sent_at`` to the handset delivery time).
- A receipt for a message still ``sending`` (the provider reported before our send call
  returned) is kept as ``pending`` and applied by the sender right after ``sent``.
- A receipt for a message with no attempt sent or in flight (``accepted``, ``queued``: not yet
  sent, or waiting for a retry) is refused (:class:`ReceiptConflict`, 409); nothing is stored.
- A receipt kept ``pending`` during an attempt that then ends without being sent (retry,
  failure, dead letter) is closed as ``stale`` when the sender records that end
  (:meth:`ReceiptService.close_waiting`), with a warning in the log.
- A receipt whose ``delivered_at`` is before the message was created, beyond
  :data:`~sms_gateway.domain.receipts.CLOCK_SKEW`, is refused (422); nothing is stored.
- A receipt for a message already past ``sent`` is ``stale``: stored, nothing changes.
- A receipt that names our message id and a provider message id other than the one the
  message was sent under reports on another send of it (an earlier, timed-out attempt or
  generation): ``stale``, stored, nothing changes
  (:func:`~sms_gateway.domain.receipts.names_another_send`). The same holds for a receipt
  kept ``pending`` when the send completes under another id.
- A receipt whose id matches nothing is stored ``unmatched`` and answered 404; if the sender
  later records that provider message id, it is applied then.
- An informational status (``sent``, ``accepted``, ``enroute``, ``buffered``) never moves a
  message: it is stored as ``stale`` whatever the message's state.
- A final receipt (delivered, undelivered, failed, rejected, expired) for a message with an
  attempt recorded ``unknown`` (the request left, no answer came) that is ``queued`` (an
  ``at_least_once`` retry waiting) or ``failed`` with reason ``outcome_unknown`` (an
  ``at_most_once`` tenant's) *settles* it (:meth:`ReceiptStore.settle_unknown`): that attempt
  becomes ``sent`` under the provider message id the receipt names, the message moves to
  the receipt's state, and the pending retry is never sent (its claim loses on the row's
  version; a later SQS copy is a duplicate). ``failed``/``outcome_unknown`` is the one failed
  state a receipt may overturn (:func:`~sms_gateway.domain.receipts.settles_unknown`).
- A final receipt that arrives while the retry is in flight (``sending``) is parked as any
  pending receipt: if the retry is sent, it is applied to that send (or ``stale`` when it
  names another provider message id: the SMS went out twice, which the retry made
  unavoidable); if the retry ends without a send (a transient error, unknown again, a dead
  letter), it settles the unknown attempt then, so no further attempt is made
  (:meth:`ReceiptService.end_waiting`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime

from sms_gateway.domain.errors import InvalidField, MessageNotFound, ReceiptConflict
from sms_gateway.domain.reasons import ReasonCode
from sms_gateway.domain.receipts import (
    Receipt,
    ReceiptStatus,
    names_another_send,
    settles_unknown,
    time_defect,
)
from sms_gateway.domain.states import MessageStatus
from sms_gateway.observability import log_transition, logger
from sms_gateway.services.ports import Clock, MessageStore, MetricsSink, ReceiptStore
from sms_gateway.storage.records import MessageRecord, OptOut

__all__ = [
    "RECEIPT_TARGETS",
    "MessageNotFound",
    "Receipt",
    "ReceiptConflict",
    "ReceiptOutcome",
    "ReceiptService",
    "ReceiptStatus",
]

RECEIPT_TARGETS: dict[str, MessageStatus] = {
    "delivered": MessageStatus.DELIVERED,
    "failed": MessageStatus.FAILED,
    "undelivered": MessageStatus.FAILED,
    "rejected": MessageStatus.FAILED,
    "expired": MessageStatus.EXPIRED,
}


def _raw(receipt: Receipt) -> str:
    """The receipt as stored in ``receipts.raw``: its given members as JSON."""
    fields = {
        "message_id": receipt.message_id,
        "provider_message_id": receipt.provider_message_id,
        "status": receipt.status,
        "delivered_at": (
            receipt.delivered_at.isoformat().replace("+00:00", "Z")
            if receipt.delivered_at
            else None
        ),
        "error_code": receipt.error_code,
    }
    return json.dumps({k: v for k, v in fields.items() if v is not None}, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class ReceiptOutcome:
    """``outcome``: applied | pending | stale; ``status``: the message's status afterwards."""

    message_id: str
    outcome: str
    status: MessageStatus


def failure_reason(error_code: str | None) -> ReasonCode:
    """The reason a failing receipt records: from the provider's delivery error table when
    its error code names one (``twilio:<ErrorCode>``:
    :func:`sms_gateway.providers.twilio.delivery_reason`), else ``provider_permanent``."""
    if error_code is not None and error_code.startswith("twilio:"):
        from sms_gateway.providers.twilio import delivery_reason  # only for Twilio receipts

        return delivery_reason(error_code.removeprefix("twilio:"))
    return ReasonCode.PROVIDER_PERMANENT


def receipt_failure(
    target: MessageStatus, error_code: str | None
) -> tuple[ReasonCode | None, str | None]:
    """The ``(reason, detail)`` a receipt moving a message to ``target`` records: both None for
    ``delivered``; else :func:`failure_reason` and ``"receipt: <state> (<error code>)"``."""
    if target is MessageStatus.DELIVERED:
        return None, None
    detail = f"receipt: {target.value}" + (f" ({error_code})" if error_code else "")
    return failure_reason(error_code), detail


class ReceiptService:
    """Applies receipts; see the module docstring."""

    def __init__(
        self,
        messages: MessageStore,
        receipts: ReceiptStore,
        metrics: MetricsSink,
        clock: Clock,
    ) -> None:
        self._repo = messages
        self._receipts = receipts
        self._metrics = metrics
        self._clock = clock

    def _find(self, request: Receipt, provider: str | None) -> MessageRecord | None:
        if request.message_id:
            message = self._repo.get(request.message_id)
        else:
            assert request.provider_message_id
            message = self._repo.find_by_provider_message_id(request.provider_message_id, provider)
        # A provider reports only on what it was given to send; with another provider on the
        # message now (a failover retry), an earlier attempt of its whose outcome is unknown
        # is the one thing it may report on.
        if (
            message is not None
            and provider is not None
            and message.provider != provider
            and not any(
                a.provider == provider and a.outcome == "unknown"
                for a in self._repo.attempts(message.id)
            )
        ):
            return None
        return message

    def handle(
        self, request: Receipt, provider: str | None = None, *, _retried: bool = False
    ) -> ReceiptOutcome:
        """Store and (when it moves the message forward) apply one receipt.

        ``provider``: the provider whose signature the receipt carried (None when receipts
        are unsigned, in local mode): only messages sent through it are found.

        Raises:
            MessageNotFound: neither id matches a message (the receipt is kept ``unmatched``).
            InvalidField: ``delivered_at`` is before the message was created (beyond clock
                skew); nothing is stored.
            ReceiptConflict: a receipt for a message with no attempt sent or in flight
                (``accepted``/``queued`` with no attempt whose outcome is unknown: nothing was
                handed to a provider); nothing is stored.
            StorageUnavailable: the database is down (the provider should retry).
        """
        now = self._clock()
        raw = _raw(request)
        message = self._find(request, provider)
        target = RECEIPT_TARGETS.get(request.status)

        def store(message_id: str | None, outcome: str, attempt: int | None = None) -> int:
            return self._receipts.add(
                message_id=message_id,
                provider_message_id=request.provider_message_id,
                status=request.status,
                error_code=request.error_code,
                delivered_at=request.delivered_at,
                raw=raw,
                outcome=outcome,
                now=now,
                provider=provider,
                attempt=attempt,
            )

        if message is None:
            store(request.message_id, "unmatched")
            raise MessageNotFound("no message with that id")
        if (defect := time_defect(request.delivered_at, message.created_at)) is not None:
            raise InvalidField("delivered_at", defect)
        if (
            target is not None
            and settles_unknown(message.status, message.reason_code)
            and not (
                request.provider_message_id
                and request.provider_message_id == message.provider_message_id
            )
            and any(
                a.outcome == "unknown" and (provider is None or a.provider == provider)
                for a in self._repo.attempts(message.id)
            )
        ):
            receipt_id = store(message.id, "received")
            if self._settle(
                message,
                receipt_id,
                target,
                request.provider_message_id,
                request.delivered_at,
                request.error_code,
            ):
                return ReceiptOutcome(message.id, "applied", target)
            # The message moved between our read and the settle (a sender claimed the
            # retry, the DLQ function failed it): this copy is closed, the receipt is taken
            # again against the row as it is now (parked if the retry is in flight).
            self._receipts.mark(receipt_id, "stale")
            if not _retried:
                return self.handle(request, provider, _retried=True)
        if message.status in (MessageStatus.ACCEPTED, MessageStatus.QUEUED):
            raise ReceiptConflict(
                f"message {message.id} is {message.status.value}: no attempt has been sent or "
                "is in flight, so there is nothing to report on yet"
            )
        if target is not None and message.status is MessageStatus.SENDING:
            store(message.id, "pending", message.attempts)
            # The sender may have recorded `sent` (and looked for waiting receipts) between our
            # read and our insert: look again, so the receipt cannot be left behind.
            current = self._repo.get(message.id)
            if current is not None and current.status is MessageStatus.SENT:
                self.apply_waiting(
                    current.id, current.provider_message_id, current.provider, current.attempts
                )
                after = self._repo.get(message.id)
                status = after.status if after else current.status
                return ReceiptOutcome(message.id, "applied", status)
            return ReceiptOutcome(message.id, "pending", message.status)
        if target is None or message.status is not MessageStatus.SENT:
            store(message.id, "stale")
            return ReceiptOutcome(message.id, "stale", message.status)
        if (provider is not None and provider != message.provider) or names_another_send(
            request.provider_message_id, message.provider_message_id
        ):
            # (a provider other than the one that sent it is let through `_find` only for its
            # own unknown attempt: it reports on that one, never on this send)
            receipt_id = store(message.id, "stale")
            logger.warning(
                "receipt about another send of the message kept as stale",
                extra={"message_id": message.id, "receipt_id": receipt_id},
            )
            return ReceiptOutcome(message.id, "stale", message.status)
        receipt_id = store(message.id, "received")
        moved = self._apply(message, receipt_id, target, request.delivered_at, request.error_code)
        current = self._repo.get(message.id)
        status = current.status if current else message.status
        return ReceiptOutcome(message.id, "applied" if moved else "stale", status)

    def _settle(
        self,
        message: MessageRecord,
        receipt_id: int,
        target: MessageStatus,
        provider_message_id: str | None,
        delivered_at: datetime | None,
        error_code: str | None,
    ) -> bool:
        """Settle ``message``'s unknown attempt with receipt ``receipt_id``; whether it did
        (logs both transitions, the metrics, and the receipt delay from the attempt's start)."""
        now = self._clock()
        reason, detail = receipt_failure(target, error_code)
        settled = self._receipts.settle_unknown(
            message.id,
            target,
            now,
            receipt_id=receipt_id,
            provider_message_id=provider_message_id,
            delivered_at=delivered_at,
            reason=reason,
            detail=detail,
        )
        if settled is None:
            return False
        self._record_opt_out(replace(message, provider=settled.provider), reason, now)
        log_transition(
            message.id,
            message.tenant_id,
            settled.previous,
            MessageStatus.SENT,
            attempt=settled.attempt,
            provider=settled.provider,
        )
        log_transition(
            message.id,
            message.tenant_id,
            MessageStatus.SENT,
            target,
            attempt=settled.attempt,
            provider=settled.provider,
            reason_code=reason,
        )
        logger.info(
            "unknown outcome settled by a receipt",
            extra={"message_id": message.id, "attempt": settled.attempt, "receipt": receipt_id},
        )
        self._metrics.add("UnknownOutcomesSettled", 1, "Count")
        self._metrics.add("StatusTransitions", 1, "Count", status=MessageStatus.SENT.value)
        self._metrics.add("StatusTransitions", 1, "Count", status=target.value)
        handset_time = delivered_at or now
        delay = max(0.0, (handset_time - settled.sent_at).total_seconds())
        self._metrics.add("ReceiptDelay", delay, "Seconds")
        return True

    def _record_opt_out(
        self, message: MessageRecord, reason: ReasonCode | None, now: datetime
    ) -> None:
        """A failing receipt whose reason is ``opted_out`` (Twilio ``ErrorCode`` 21610 in a
        status callback) records the number for the message's tenant and sender ID, as the
        sender does for a send's answer, so later sends fail without a provider call. A
        failure here is logged: the receipt is applied, and the next send is refused by the
        provider again."""
        if reason is not ReasonCode.OPTED_OUT:
            return
        entry = OptOut(
            message.tenant_id, message.to_number, message.sender_id, message.id, message.provider
        )
        try:
            self._repo.record_opt_outs([entry], now)
        except Exception:
            logger.exception("could not record an opted-out number from a receipt")
            return
        self._metrics.add("OptOutsRecorded", 1, "Count")

    def end_waiting(self, message_id: str, attempt: int) -> bool:
        """The receipts kept ``pending`` during ``attempt`` of ``message_id``, which ended
        without being sent (a retry, a failure, a dead letter): the first final one that can
        (signed by a provider with an unknown attempt on it, or unsigned) settles
        the message's unknown attempt when it has one (:meth:`_settle`; the message is then
        ``queued`` or ``failed``/``outcome_unknown``), and the rest are closed as ``stale``
        (:meth:`close_waiting`). Called by the sender when it records such an end for a
        message whose ``receipt_waiting`` flag is set. Returns whether a receipt settled it
        (then no further attempt may be made)."""
        waiting = [
            r
            for r in self._receipts.take_waiting(message_id, None, None, attempt)
            if r.outcome == "pending" and RECEIPT_TARGETS.get(r.status) is not None
        ]
        settled = False
        if waiting:
            message = self._repo.get(message_id)
            if message is not None and settles_unknown(message.status, message.reason_code):
                # oldest first, until one settles: a receipt signed by a provider with no
                # unknown attempt on the message settles nothing (settle_unknown)
                for receipt in waiting:
                    settled = self._settle(
                        message,
                        receipt.id,
                        RECEIPT_TARGETS[receipt.status],
                        receipt.provider_message_id,
                        receipt.delivered_at,
                        receipt.error_code,
                    )
                    if settled:
                        break
        self.close_waiting(message_id, attempt)
        return settled

    def _apply(
        self,
        message: MessageRecord,
        receipt_id: int,
        target: MessageStatus,
        delivered_at: datetime | None,
        error_code: str | None,
    ) -> bool:
        now = self._clock()
        reason, detail = receipt_failure(target, error_code)
        moved = self._receipts.apply(
            message.id,
            target,
            now,
            receipt_id=receipt_id,
            delivered_at=delivered_at,
            reason=reason,
            detail=detail,
        )
        if moved:
            self._record_opt_out(message, reason, now)
            log_transition(
                message.id,
                message.tenant_id,
                MessageStatus.SENT,
                target,
                attempt=message.attempts,
                provider=message.provider,
                reason_code=reason,
            )
            self._metrics.add("StatusTransitions", 1, "Count", status=target.value)
            if message.sent_at is not None:
                handset_time = delivered_at or now
                delay = max(0.0, (handset_time - message.sent_at).total_seconds())
                self._metrics.add("ReceiptDelay", delay, "Seconds")
        return moved

    def apply_waiting(
        self,
        message_id: str,
        provider_message_id: str | None,
        provider: str | None,
        attempt: int | None = None,
    ) -> bool:
        """Apply the oldest receipt kept while ``message_id`` was not yet ``sent`` (called by
        the sender right after ``sending -> sent`` when the message's ``receipt_waiting`` flag
        was set, or for a duplicate of a sent message with the flag); later ones become
        ``stale``. Only
        receipts signed by ``provider`` (the one that sent it) or unsigned ones (local mode)
        count, and (given ``attempt``, the one that was sent) only those kept during it; one
        naming a provider message id other than ``provider_message_id`` (the id it was sent
        under) reports on another send and becomes ``stale``.
        Returns whether a receipt moved the message."""
        waiting = self._receipts.take_waiting(message_id, provider_message_id, provider, attempt)
        if not waiting:
            return False
        message = self._repo.get(message_id)
        if message is None:  # pragma: no cover - the sender just wrote it
            return False
        moved = False
        for receipt in waiting:
            target = RECEIPT_TARGETS.get(receipt.status)
            if (
                target is None
                or moved
                or names_another_send(receipt.provider_message_id, provider_message_id)
            ):
                self._receipts.mark(receipt.id, "stale")
                continue
            moved = self._apply(
                message, receipt.id, target, receipt.delivered_at, receipt.error_code
            )
        return moved

    def close_waiting(self, message_id: str, attempt: int) -> int:
        """Close, as ``stale``, the receipts kept ``pending`` during ``attempt`` of
        ``message_id``, which ended without being sent (a retry, a failure, a dead letter):
        they reported on a send that did not happen, and would otherwise wait forever. Called
        by the sender when it records such an end for a message whose ``receipt_waiting``
        flag is set; logged (``pending receipt closed as stale``) with the receipts' ids.
        Returns how many were closed."""
        closed = [
            receipt.id
            for receipt in self._receipts.take_waiting(message_id, None, None, attempt)
            if receipt.outcome == "pending"
        ]
        for receipt_id in closed:
            self._receipts.mark(receipt_id, "stale")
        if closed:
            logger.warning(
                "pending receipt closed as stale: its attempt ended without being sent",
                extra={"message_id": message_id, "attempt": attempt, "receipt_ids": closed},
            )
            self._metrics.add("ReceiptsClosedStale", len(closed), "Count")
        return len(closed)
