"""Message operations (issue 11, item 2): a tenant cancels a queued message; an operator
replays dead letters and lists stuck messages.

The same functions serve ``POST /v1/messages/{id}/cancel`` (StatusFunction), ``sms-gateway
admin replay|stuck`` (:mod:`sms_gateway.local.cli`) and the AdminFunction
(``functions/admin``, :mod:`sms_gateway.services.admin`). The rules are
:mod:`sms_gateway.domain.operations`; how they hold against the sender:

- **Cancel** is one guarded update ``queued -> canceled``; the sender's claim is a guarded
  update ``queued -> sending`` on the version it read. Whichever commits first wins, the
  other matches no row: a cancel that lost answers ``409`` (the message is ``sending``), a
  claim that lost leaves the message unclaimed, and every later copy of its SQS record finds
  ``canceled`` and is acknowledged without a send (a duplicate delivery, see
  :mod:`sms_gateway.services.sender`).
- **Replay** moves a dead-lettered message ``failed -> queued`` as generation ``n + 1`` with
  ``budget`` more attempts, then queues it again (a new SQS record of the same message id, so
  the sender's exactly-once rules hold as for any record). The dead letter is kept, marked
  ``replayed_at``; a message that is no longer ``failed`` (sent after all, canceled, replayed
  already), or whose failure is not that dead letter (a receipt or a permanent provider error
  failed it after a live sender sent it), is skipped, so a replay never sends a message twice.
  If the queue refuses the record, the move is undone (the message ``failed`` again, the
  dead letter unmarked).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sms_gateway.domain.errors import MessageNotCancelable
from sms_gateway.domain.message import QueuedMessage
from sms_gateway.domain.operations import CancelKind, ReplaySelection, ReplaySkip, decide_cancel
from sms_gateway.domain.states import MessageStatus
from sms_gateway.observability import log_transition, logger
from sms_gateway.services.ports import Clock, MessageQueue, MessageStore, MetricsSink
from sms_gateway.services.receipts import MessageNotFound

if TYPE_CHECKING:
    from sms_gateway.storage.operations import DeadLetterRow, SqlOperationsStore, StuckMessage
    from sms_gateway.storage.records import MessageRecord

CANCEL_DETAIL = "canceled by the tenant"


class InvalidReplay(ValueError):
    """A replay request the gateway cannot honour (a budget out of range, no criterion)."""


@dataclass
class ReplayReport:
    """What a replay did: ``replayed`` message ids (in dead-letter order), ``skipped`` dead
    letter ids with why, ``failed``: dead letter ids whose record could not be queued (undone)."""

    replayed: list[str] = field(default_factory=list)
    skipped: dict[int, ReplaySkip] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: counts and ids (the CLI and the AdminFunction answer with it)."""
        return {
            "replayed": len(self.replayed),
            "message_ids": list(self.replayed),
            "skipped": {str(k): v.value for k, v in self.skipped.items()},
            "failed": {str(k): v for k, v in self.failed.items()},
        }


class MessageOperations:
    """Cancel, replay, stuck; see the module docstring.

    ``max_budget``: the most attempts a replay may grant (the SendQueue's maxReceiveCount:
    each attempt of a generation spends one receive of its record).
    """

    def __init__(
        self,
        *,
        messages: MessageStore,
        operations: SqlOperationsStore,
        queue: MessageQueue | None,
        metrics: MetricsSink,
        clock: Clock,
        max_budget: int,
    ) -> None:
        self._messages = messages
        self._ops = operations
        self._queue = queue
        self._metrics = metrics
        self._clock = clock
        self._max_budget = max_budget

    # ---- cancel ---------------------------------------------------------------------------

    def cancel(self, tenant_id: str, message_id: str) -> MessageRecord:
        """Cancel ``tenant_id``'s message ``message_id``; returns it as stored (``canceled``).

        Idempotent: a canceled message is returned as it is, so a repeated cancel gets the
        same answer. A message the sender has not recorded yet (the first second after its
        ``202``) is unknown here, like for ``GET``.

        Raises:
            MessageNotFound: unknown id or another tenant's (alike).
            MessageNotCancelable: the message is ``sending`` or past it.
            StorageUnavailable: the database cannot be reached.
        """
        for _ in range(2):  # once more if the row changed between the read and the update
            message = self._messages.get_for_tenant(tenant_id, message_id)
            if message is None:
                raise MessageNotFound(f"no message {message_id}")
            kind = decide_cancel(message.status)
            if kind is CancelKind.ALREADY:
                return message
            if kind is CancelKind.REFUSE:
                raise MessageNotCancelable(message_id, message.status)
            now = self._clock()
            if self._messages.transition(
                message_id,
                MessageStatus.QUEUED,
                MessageStatus.CANCELED,
                now,
                detail=CANCEL_DETAIL,
                lease_expires_at=None,
                # a problem noted while it waited (no route) is not why it ended
                reason_code=None,
                reason_detail=CANCEL_DETAIL,
            ):
                self._metrics.add("StatusTransitions", 1, "Count", status="canceled")
                log_transition(message_id, tenant_id, MessageStatus.QUEUED, MessageStatus.CANCELED)
                canceled = self._messages.get_for_tenant(tenant_id, message_id)
                if canceled is None:  # deleted meanwhile (retention): unknown from now on
                    raise MessageNotFound(f"no message {message_id}")
                return canceled
        # moved twice under us: answer with where it stands now
        message = self._messages.get_for_tenant(tenant_id, message_id)
        if message is None:
            raise MessageNotFound(f"no message {message_id}")
        if message.status is MessageStatus.CANCELED:
            return message
        raise MessageNotCancelable(message_id, message.status)

    # ---- replay ---------------------------------------------------------------------------

    def replay(self, selection: ReplaySelection, budget: int = 1) -> ReplayReport:
        """Replay the dead letters ``selection`` picks (oldest first, at most its limit).

        Each dead letter whose message is ``failed`` starts a new generation: ``budget`` more
        attempts (1..``max_budget``), a new SendQueue record. Counted in the
        ``DeadLetterReplays`` metric.

        Raises:
            InvalidReplay: ``budget`` out of range.
            StorageUnavailable: the database cannot be reached (what was replayed before
                stays replayed; run it again for the rest).
        """
        if not 1 <= budget <= self._max_budget:
            raise InvalidReplay(f"attempts must be 1..{self._max_budget} (maxReceiveCount)")
        if self._queue is None:
            raise InvalidReplay("no SendQueue configured: set SMS_GATEWAY_SEND_QUEUE_URL")
        report = ReplayReport()
        for letter in self._ops.replayable(selection):
            self._replay_one(self._queue, letter, budget, report)
        if report.replayed:
            self._metrics.add("DeadLetterReplays", len(report.replayed), "Count")
        counts = Counter(v.value for v in report.skipped.values())
        logger.info(
            "dead letters replayed",
            extra={"replayed": len(report.replayed), "skipped": dict(counts)},
        )
        return report

    def _replay_one(
        self, queue: MessageQueue, letter: DeadLetterRow, budget: int, report: ReplayReport
    ) -> None:
        now = self._clock()
        started = self._ops.start_replay(letter, budget, now)
        if isinstance(started, ReplaySkip):
            report.skipped[letter.id] = started
            return
        record = queued_message(started, letter.generation + 1)
        try:
            queue.send(record.model_dump_json(), {}, delay_seconds=0)
        except Exception as exc:  # the queue refused it: the message must not stay queued
            detail = f"replay could not be queued: {type(exc).__name__}"
            logger.warning("replay could not be queued; undone", extra={"error": detail})
            self._ops.undo_replay(letter, started, detail, self._clock())
            report.failed[letter.id] = detail
            return
        log_transition(started.id, started.tenant_id, MessageStatus.FAILED, MessageStatus.QUEUED)
        report.replayed.append(started.id)

    # ---- stuck ----------------------------------------------------------------------------

    def stuck(
        self, status: MessageStatus, older_than_seconds: int, limit: int = 100
    ) -> list[StuckMessage]:
        """Messages in ``status`` for longer than ``older_than_seconds`` (since their last
        transition into it), longest first, at most ``limit``."""
        before = self._clock() - timedelta(seconds=older_than_seconds)
        return self._ops.stuck(status, before, limit)


def queued_message(message: MessageRecord, generation: int) -> QueuedMessage:
    """The SendQueue record of a stored message (a replay): the row's content, its current
    ``max_attempts``, the given replay ``generation``."""
    return QueuedMessage(
        message_id=message.id,
        tenant_id=message.tenant_id,
        to=message.to_number,
        sender_id=message.sender_id,
        body=message.body,
        encoding=message.encoding,
        segments=message.segments,
        max_attempts=message.max_attempts,
        reference=message.reference,
        idempotency_key=message.idempotency_key,
        created_at=message.created_at,
        expires_at=message.expires_at,
        generation=generation,
    )


def stuck_view(message: StuckMessage, now: datetime) -> dict[str, object]:
    """A stuck message as JSON (CLI, AdminFunction): ``age_seconds`` since ``since``."""
    return {
        "message_id": message.id,
        "tenant_id": message.tenant_id,
        "status": message.status.value,
        "since": message.since.isoformat().replace("+00:00", "Z"),
        "age_seconds": int((now - message.since).total_seconds()),
        "attempts": message.attempts,
        "max_attempts": message.max_attempts,
        "reason_code": message.reason_code,
        "reason_detail": message.reason_detail,
    }
