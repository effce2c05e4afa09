"""The DLQ function's use case: a dead letter -> ``failed`` (reason ``dead_letter``) + a
``dead_letters`` row that says why.

Dead letters arrive two ways, handled alike: SQS redrive after ``maxReceiveCount`` receives
(crashes, outages, malformed records), and the sender's own hand-off once a message's
``max_attempts`` is spent. The detail is the last provider error (from the attempt rows, or the
``last_error`` attribute the sender attached), else the reason the message could not be tried.
A malformed payload is kept raw with reason ``validation_error``. Storing the same dead letter
twice (an SQS redelivery to this function) is a no-op. A dead letter recorded while a live
sender holds the message leaves the message to that sender; it is replayable only if the
message then fails by it (reason ``dead_letter``, same generation: see
:func:`~sms_gateway.domain.operations.replay_skip`), never after the sender sent it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import ValidationError

from sms_gateway.domain.message import QueuedMessage
from sms_gateway.domain.reasons import ReasonCode
from sms_gateway.domain.states import MessageStatus
from sms_gateway.observability import log_transition, logger
from sms_gateway.services.ports import Clock, DeadLetterStore, MessageStore, MetricsSink


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One DeadLetterQueue record. ``attributes``: its string message attributes."""

    sqs_message_id: str
    body: str
    receive_count: int
    attributes: Mapping[str, str] = field(default_factory=dict)


class DeadLetterService:
    """Records dead letters; see the module docstring."""

    def __init__(
        self,
        messages: MessageStore,
        dead_letters: DeadLetterStore,
        metrics: MetricsSink,
        clock: Clock,
    ) -> None:
        self._repo = messages
        self._letters = dead_letters
        self._metrics = metrics
        self._clock = clock

    def process(self, letter: DeadLetter) -> bool:
        """Record ``letter``; returns False when it was already recorded.

        Raises:
            StorageUnavailable: the database is down; the record stays on the DLQ for later.
        """
        now = self._clock()
        try:
            msg = QueuedMessage.model_validate_json(letter.body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
                for err in exc.errors()[:5]
            )
            stored = self._letters.record(
                sqs_message_id=letter.sqs_message_id,
                message_id=None,
                tenant_id=None,
                receive_count=letter.receive_count,
                reason=ReasonCode.VALIDATION_ERROR,
                detail=f"malformed payload: {problems}",
                raw_payload=letter.body,
                now=now,
            )
        else:
            if self._repo.record_queued(msg, now):  # a message that never reached the sender
                log_transition(
                    msg.message_id, msg.tenant_id, MessageStatus.ACCEPTED, MessageStatus.QUEUED
                )
            detail = self._last_error(msg.message_id, letter)
            stored = self._letters.record(
                sqs_message_id=letter.sqs_message_id,
                message_id=msg.message_id,
                tenant_id=msg.tenant_id,
                receive_count=letter.receive_count,
                reason=ReasonCode.DEAD_LETTER,
                detail=detail,
                raw_payload=letter.body,
                now=now,
                generation=msg.generation,
            )
            if self._replayed_since(msg):
                # a late copy of a generation an operator already replayed: the message is on
                # its next generation, whose own record decides its fate
                logger.warning(
                    "dead letter of an already replayed generation: message left as it is",
                    extra={"generation": msg.generation},
                )
                return stored
            # even for a second copy: the first may have met a live sender that has since
            # put the message back to queued
            left = self._letters.fail_message(msg.message_id, ReasonCode.DEAD_LETTER, detail, now)
            if left is not None:
                log_transition(
                    msg.message_id,
                    msg.tenant_id,
                    left,
                    MessageStatus.FAILED,
                    reason_code=ReasonCode.DEAD_LETTER,
                )
        if stored:
            self._metrics.add("DeadLetters", 1, "Count")
        return stored

    def _replayed_since(self, msg: QueuedMessage) -> bool:
        """Whether a dead letter of ``msg``'s generation (or a later one) was replayed."""
        return any(
            row["generation"] >= msg.generation and row["replayed_at"] is not None
            for row in self._letters.list_for(msg.message_id)
        )

    def _last_error(self, message_id: str, letter: DeadLetter) -> str:
        for attempt in reversed(self._repo.attempts(message_id)):
            if attempt.error_detail:
                code = f" [{attempt.error_code}]" if attempt.error_code else ""
                return (
                    f"attempt {attempt.attempt_number} via {attempt.provider}: "
                    f"{attempt.error_detail}{code}"
                )
        if letter.attributes.get("last_error"):
            return letter.attributes["last_error"]
        message = self._repo.get(message_id)
        if message is not None and message.reason_detail:
            return message.reason_detail
        return f"redriven after {letter.receive_count} receive(s) without a recorded attempt"
