"""The sender: one SQS record of the SendQueue -> at most one provider call -> recorded state.

Steps (DESIGN section 2): record the message (``queued``, insert-if-absent) -> route policy ->
claim (``queued -> sending`` + an ``in_flight`` attempt row, before the provider is called) ->
provider -> ``sent`` | retry later (``queued``, visibility-timeout backoff) | ``failed``.

Exactly-once rules:

- A record whose message is already past ``queued`` (sent, delivered, failed, ...) is a
  duplicate delivery: it is acknowledged and nothing is sent.
- A message in ``sending`` whose lease has not expired is being sent by another invocation:
  this copy is kept (hidden until the lease ends), never deleted, in case that invocation
  crashed. Once the lease expired, the message goes back to ``queued`` and is claimed again.
- A message whose own ``max_attempts`` is spent is handed to the DeadLetterQueue by the sender
  itself, so every dead letter reaches the DLQ function the same way.
- A malformed record is reported as a batch item failure with visibility 0, so SQS redrives it
  to the DLQ after ``maxReceiveCount`` receives (no time wasted waiting on it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from pydantic import ValidationError

from sms_gateway.domain.message import QueuedMessage
from sms_gateway.domain.reasons import ReasonCode
from sms_gateway.domain.retry import backoff_seconds
from sms_gateway.domain.routing import choose_provider
from sms_gateway.domain.states import MessageStatus
from sms_gateway.observability import logger
from sms_gateway.providers.base import ProviderError, ProviderRegistry, SendRequest, UnknownProvider
from sms_gateway.services.ports import Clock, MessageQueue, MetricsSink
from sms_gateway.services.receipts import ReceiptService
from sms_gateway.services.routing import CachedPolicyResolver, NoRoutePolicy
from sms_gateway.storage.errors import StorageUnavailable
from sms_gateway.storage.repository import AttemptResult, MessageRepository


class SendOutcome(StrEnum):
    """What processing one record came to (all of these acknowledge the record)."""

    SENT = "sent"
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"
    EXPIRED = "expired"
    DUPLICATE = "duplicate"


class RetryLater(Exception):
    """The record must stay on the queue: report it as a batch item failure.

    ``delay_seconds``: the visibility timeout already set on it (None: left as the queue's).
    """

    def __init__(self, reason: str, delay_seconds: int | None) -> None:
        super().__init__(reason)
        self.delay_seconds = delay_seconds


class MalformedRecord(RetryLater):
    """The record's body is not a :class:`QueuedMessage`; SQS redrives it to the DLQ."""


@dataclass(frozen=True, slots=True)
class SqsRecord:
    """The parts of an SQS record the sender needs. ``receive_count``: ApproximateReceiveCount."""

    sqs_message_id: str
    receipt_handle: str
    body: str
    receive_count: int


@dataclass(frozen=True, slots=True)
class SenderConfig:
    """Retry backoff ``retry_base_seconds`` * 2^(n-1) capped at ``retry_max_seconds``;
    ``lease_seconds``: how long a claim holds ``sending`` (the function's timeout)."""

    retry_base_seconds: int
    retry_max_seconds: int
    lease_seconds: int


class SenderService:
    """Processes SendQueue records; see the module docstring for the rules."""

    def __init__(
        self,
        *,
        repository: MessageRepository,
        policies: CachedPolicyResolver,
        providers: ProviderRegistry,
        queue: MessageQueue,
        receipts: ReceiptService,
        metrics: MetricsSink,
        clock: Clock,
        config: SenderConfig,
    ) -> None:
        self._repo = repository
        self._policies = policies
        self._providers = providers
        self._queue = queue
        self._receipts = receipts
        self._metrics = metrics
        self._clock = clock
        self._config = config

    def process(self, record: SqsRecord) -> SendOutcome:
        """Handle one record (see :meth:`_process`); a database outage keeps the record on the
        queue with the retry backoff as its visibility, so a blip does not cost the queue's
        full visibility timeout.

        Raises:
            RetryLater: keep the record (a transient failure or outage, backoff applied).
            MalformedRecord: the body is not a queued message.
        """
        try:
            return self._process(record)
        except StorageUnavailable as exc:
            delay = backoff_seconds(
                max(record.receive_count, 1),
                self._config.retry_base_seconds,
                self._config.retry_max_seconds,
            )
            try:
                self._queue.change_visibility(record.receipt_handle, delay)
            except Exception:
                logger.warning("could not set the visibility of a record during an outage")
                delay = None  # type: ignore[assignment]
            logger.warning("message store unavailable; record kept", extra={"error": str(exc)})
            raise RetryLater("message store unavailable", delay) from exc

    def _process(self, record: SqsRecord) -> SendOutcome:
        """Handle one record.

        Returns the outcome when the record may be deleted from the queue.

        Raises:
            RetryLater: keep the record (a transient failure, with backoff already applied).
            MalformedRecord: the body is not a queued message.
            StorageUnavailable: the database is down.
        """
        try:
            msg = QueuedMessage.model_validate_json(record.body)
        except ValidationError as exc:
            logger.warning(
                "malformed SendQueue record",
                extra={"sqs_message_id": record.sqs_message_id, "errors": exc.error_count()},
            )
            try:  # best effort: without it the record just waits out its visibility timeout
                self._queue.change_visibility(record.receipt_handle, 0)
            except Exception:
                logger.warning("could not reset the visibility of a malformed record")
            raise MalformedRecord("malformed payload", 0) from exc

        now = self._clock()
        self._repo.record_queued(msg, now)
        row = self._repo.get(msg.message_id)
        if row is None:  # pragma: no cover - just inserted; only a concurrent delete could do it
            raise RetryLater("message row vanished", None)

        if row.status is MessageStatus.SENDING:
            if row.lease_expires_at is not None and row.lease_expires_at > now:
                # Another invocation holds the claim. Keep this copy until the lease ends:
                # if that sender crashed, this copy is what brings the message back.
                remaining = int((row.lease_expires_at - now).total_seconds()) + 1
                self._queue.change_visibility(record.receipt_handle, remaining)
                raise RetryLater("claimed by another sender", remaining)
            if not self._repo.release_expired_lease(msg.message_id, now):
                raise RetryLater("lease changed hands", None)
            self._metrics.add("StatusTransitions", 1, "Count", status="queued")
            row = self._repo.get(msg.message_id)
            assert row is not None
        if row.status is not MessageStatus.QUEUED:
            logger.info("duplicate delivery", extra={"status": row.status.value})
            return SendOutcome.DUPLICATE

        if row.expires_at is not None and row.expires_at <= now:
            self._repo.transition(
                msg.message_id,
                MessageStatus.QUEUED,
                MessageStatus.EXPIRED,
                now,
                detail="validity period ended before the message could be sent",
            )
            self._metrics.add("StatusTransitions", 1, "Count", status="expired")
            return SendOutcome.EXPIRED

        if row.attempts >= row.max_attempts:
            return self._hand_to_dead_letter(record, row.reason_detail, row.attempts)

        attempt = row.attempts + 1
        try:
            policy = self._policies.resolve(msg.tenant_id)
            provider_name = choose_provider(policy, msg.message_id, attempt)
            provider = self._providers.get(provider_name)
        except (NoRoutePolicy, UnknownProvider) as exc:
            # A configuration gap: keep the message (it burns no attempt) until an operator
            # fixes the policy; SQS redrives it to the DLQ after maxReceiveCount receives.
            self._repo.note_problem(msg.message_id, ReasonCode.UNKNOWN, str(exc), now)
            delay = backoff_seconds(
                record.receive_count,
                self._config.retry_base_seconds,
                self._config.retry_max_seconds,
            )
            self._queue.change_visibility(record.receipt_handle, delay)
            raise RetryLater(str(exc), delay) from exc

        lease_until = now + timedelta(seconds=self._config.lease_seconds)
        if not self._repo.claim(
            msg.message_id, row.version, attempt, provider_name, lease_until, now
        ):
            return SendOutcome.DUPLICATE
        self._metrics.add("StatusTransitions", 1, "Count", status="sending")

        request = SendRequest(
            message_id=msg.message_id,
            attempt=attempt,
            to=row.to_number,
            sender_id=row.sender_id,
            body=row.body,
            encoding=row.encoding,
            segments=row.segments,
        )
        started = time.perf_counter()
        try:
            result = provider.send(request)
        except ProviderError as exc:
            latency_ms = int((time.perf_counter() - started) * 1000)
            return self._on_error(record, msg, attempt, provider_name, latency_ms, exc)
        except Exception as exc:  # an adapter bug must not lose the message: retry it
            latency_ms = int((time.perf_counter() - started) * 1000)
            logger.exception("provider adapter raised an unexpected error")
            error = ProviderError(ReasonCode.UNKNOWN, f"{provider_name}: {type(exc).__name__}")
            return self._on_error(record, msg, attempt, provider_name, latency_ms, error)

        latency_ms = int((time.perf_counter() - started) * 1000)
        self._metrics.add("SendLatency", latency_ms, "Milliseconds", provider=provider_name)
        self._metrics.add("ProviderResults", 1, "Count", provider=provider_name, outcome="sent")
        done = self._clock()
        self._repo.finish_attempt(
            msg.message_id,
            attempt,
            AttemptResult("sent", latency_ms, provider_message_id=result.provider_message_id),
            MessageStatus.SENT,
            done,
        )
        self._metrics.add("StatusTransitions", 1, "Count", status="sent")
        self._receipts.apply_waiting(msg.message_id, result.provider_message_id)
        return SendOutcome.SENT

    def _on_error(
        self,
        record: SqsRecord,
        msg: QueuedMessage,
        attempt: int,
        provider_name: str,
        latency_ms: int,
        error: ProviderError,
    ) -> SendOutcome:
        outcome = "transient_error" if error.retryable else "permanent_error"
        self._metrics.add("SendLatency", latency_ms, "Milliseconds", provider=provider_name)
        self._metrics.add("ProviderResults", 1, "Count", provider=provider_name, outcome=outcome)
        result = AttemptResult(
            outcome,
            latency_ms,
            reason_code=error.reason,
            error_code=error.error_code,
            error_detail=error.detail,
        )
        now = self._clock()
        if not error.retryable:
            self._repo.finish_attempt(msg.message_id, attempt, result, MessageStatus.FAILED, now)
            self._metrics.add("StatusTransitions", 1, "Count", status="failed")
            return SendOutcome.FAILED
        self._repo.finish_attempt(msg.message_id, attempt, result, MessageStatus.QUEUED, now)
        self._metrics.add("StatusTransitions", 1, "Count", status="queued")
        if attempt >= msg.max_attempts:
            return self._hand_to_dead_letter(record, error.detail, attempt)
        delay = backoff_seconds(
            attempt, self._config.retry_base_seconds, self._config.retry_max_seconds
        )
        self._queue.change_visibility(record.receipt_handle, delay)
        self._metrics.add("Retries", 1, "Count", provider=provider_name)
        raise RetryLater(error.detail, delay)

    def _hand_to_dead_letter(
        self, record: SqsRecord, last_error: str | None, attempts: int
    ) -> SendOutcome:
        self._queue.send_to_dead_letter(
            record.body,
            {
                "reason": ReasonCode.DEAD_LETTER.value,
                "last_error": (last_error or "")[:1024],
                "attempts": str(attempts),
                "source_sqs_message_id": record.sqs_message_id,
            },
        )
        logger.info(
            "max attempts spent: handed to the DeadLetterQueue", extra={"attempts": attempts}
        )
        return SendOutcome.DEAD_LETTERED
