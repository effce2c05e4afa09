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
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import ValidationError

from sms_gateway.domain.content import text_defect
from sms_gateway.domain.message import QueuedMessage
from sms_gateway.domain.reasons import ReasonCode
from sms_gateway.domain.retry import backoff_seconds
from sms_gateway.domain.routing import choose_provider
from sms_gateway.domain.states import MessageStatus
from sms_gateway.observability import log_transition, logger
from sms_gateway.providers.base import ProviderError, ProviderRegistry, SendRequest, UnknownProvider
from sms_gateway.services.ports import Clock, MessageQueue, MetricsSink
from sms_gateway.services.receipts import ReceiptService
from sms_gateway.services.routing import CachedPolicyResolver, NoRoutePolicy
from sms_gateway.storage.errors import StorageUnavailable
from sms_gateway.storage.repository import AttemptResult, MessageRepository

# Message attribute counting the requeues of a record during a database outage.
OUTAGE_REQUEUES = "outage_requeues"
# SQS caps DelaySeconds at 15 minutes.
SQS_MAX_DELAY_SECONDS = 900
# Pauses (seconds) between in-process retries of the write after a provider answered.
FINISH_RETRY_PAUSES = (0.2, 1.0)
# Column widths the provider's values must fit (storage/tables.py).
PROVIDER_MESSAGE_ID_MAX = 255
ERROR_CODE_MAX = 64
ERROR_DETAIL_MAX = 4096


def _storable(value: str | None, limit: int) -> str | None:
    """``value`` cut to ``limit`` characters, NUL and unpaired surrogates replaced by U+FFFD."""
    if value is None:
        return None
    if text_defect(value):
        value = "".join(
            "\ufffd" if ch == "\x00" or 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in value
        )
    return value[:limit]


def bounded(result: AttemptResult) -> AttemptResult:
    """``result`` with provider-supplied values made storable: cut to their column widths, NUL
    and unpaired surrogates replaced, so that a provider's odd answer can never make the
    post-send write fail (and the message be sent again after the lease)."""
    pmid = _storable(result.provider_message_id, PROVIDER_MESSAGE_ID_MAX)
    if pmid != result.provider_message_id:
        logger.warning("provider message id not storable as given: truncated or cleaned")
    return replace(
        result,
        provider_message_id=pmid,
        error_code=_storable(result.error_code, ERROR_CODE_MAX),
        error_detail=_storable(result.error_detail, ERROR_DETAIL_MAX),
    )


class SendOutcome(StrEnum):
    """What processing one record came to (all of these acknowledge the record)."""

    SENT = "sent"
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"
    EXPIRED = "expired"
    DUPLICATE = "duplicate"
    REQUEUED = "requeued"


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
    """The parts of an SQS record the sender needs. ``receive_count``: ApproximateReceiveCount;
    ``attributes``: its string message attributes."""

    sqs_message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    attributes: Mapping[str, str] = field(default_factory=dict)

    @property
    def outage_requeues(self) -> int:
        """How often an outage already put this message back on the queue."""
        value = self.attributes.get(OUTAGE_REQUEUES, "0")
        return int(value) if value.isdigit() else 0


@dataclass(frozen=True, slots=True)
class SenderConfig:
    """Retry backoff ``retry_base_seconds`` * 2^(n-1) capped at ``retry_max_seconds``;
    ``lease_seconds``: how long a claim holds ``sending`` (the function's timeout);
    ``outage_requeue_limit``: how often a record is put back during a database outage."""

    retry_base_seconds: int
    retry_max_seconds: int
    lease_seconds: int
    outage_requeue_limit: int = 10


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
        """Handle one record (see :meth:`_process`).

        A database outage must not use up the record's SQS receives (``maxReceiveCount`` would
        dead-letter it without a single attempt during an RDS failover): the record is put
        back on the SendQueue as a fresh copy, delayed by the retry backoff, and this one is
        acknowledged, up to ``outage_requeue_limit`` times. The copy has the same body, so the
        same message id: if both ever exist, the sender sends once.

        Raises:
            RetryLater: keep the record (a transient failure, backoff applied; or an outage
                past the requeue limit).
            MalformedRecord: the body is not a queued message.
        """
        try:
            return self._process(record)
        except StorageUnavailable as exc:
            requeues = record.outage_requeues
            delay = backoff_seconds(
                requeues + 1, self._config.retry_base_seconds, self._config.retry_max_seconds
            )
            logger.warning(
                "message store unavailable", extra={"error": str(exc), "requeues": requeues}
            )
            if requeues < self._config.outage_requeue_limit:
                self._queue.send(
                    record.body,
                    {**record.attributes, OUTAGE_REQUEUES: str(requeues + 1)},
                    delay_seconds=min(delay, SQS_MAX_DELAY_SECONDS),
                )
                return SendOutcome.REQUEUED
            try:
                self._queue.change_visibility(record.receipt_handle, delay)
            except Exception:
                logger.warning("could not set the visibility of a record during an outage")
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
        if self._repo.record_queued(msg, now):
            log_transition(
                msg.message_id, msg.tenant_id, MessageStatus.ACCEPTED, MessageStatus.QUEUED
            )
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
            log_transition(
                msg.message_id,
                msg.tenant_id,
                MessageStatus.SENDING,
                MessageStatus.QUEUED,
                attempt=row.attempts,
                provider=row.provider,
                reason_code=ReasonCode.TIMEOUT,
            )
            row = self._repo.get(msg.message_id)
            assert row is not None
        if row.status is not MessageStatus.QUEUED:
            logger.info("duplicate delivery", extra={"status": row.status.value})
            if row.status is MessageStatus.SENT:
                # the copy that sent it may have died before applying waiting receipts
                self._receipts.apply_waiting(
                    row.id, row.provider_message_id, row.provider, row.attempts
                )
            return SendOutcome.DUPLICATE

        if row.expires_at is not None and row.expires_at <= now:
            if self._repo.transition(
                msg.message_id,
                MessageStatus.QUEUED,
                MessageStatus.EXPIRED,
                now,
                detail="validity period ended before the message could be sent",
            ):
                self._metrics.add("StatusTransitions", 1, "Count", status="expired")
                log_transition(
                    msg.message_id, msg.tenant_id, MessageStatus.QUEUED, MessageStatus.EXPIRED
                )
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
        log_transition(
            msg.message_id,
            msg.tenant_id,
            MessageStatus.QUEUED,
            MessageStatus.SENDING,
            attempt=attempt,
            provider=provider_name,
        )

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
        sent = bounded(
            AttemptResult("sent", latency_ms, provider_message_id=result.provider_message_id)
        )
        if self._finish(msg.message_id, attempt, sent, MessageStatus.SENT, done):
            log_transition(
                msg.message_id,
                msg.tenant_id,
                MessageStatus.SENDING,
                MessageStatus.SENT,
                attempt=attempt,
                provider=provider_name,
                latency_ms=latency_ms,
            )
        self._metrics.add("StatusTransitions", 1, "Count", status="sent")
        self._receipts.apply_waiting(
            msg.message_id, sent.provider_message_id, provider_name, attempt
        )
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
        target = MessageStatus.QUEUED if error.retryable else MessageStatus.FAILED
        if self._finish(msg.message_id, attempt, result, target, now):
            log_transition(
                msg.message_id,
                msg.tenant_id,
                MessageStatus.SENDING,
                target,
                attempt=attempt,
                provider=provider_name,
                reason_code=error.reason,
                latency_ms=latency_ms,
            )
        self._metrics.add("StatusTransitions", 1, "Count", status=target.value)
        if not error.retryable:
            return SendOutcome.FAILED
        if attempt >= msg.max_attempts:
            return self._hand_to_dead_letter(record, error.detail, attempt)
        delay = backoff_seconds(
            attempt, self._config.retry_base_seconds, self._config.retry_max_seconds
        )
        self._queue.change_visibility(record.receipt_handle, delay)
        self._metrics.add("Retries", 1, "Count", provider=provider_name)
        raise RetryLater(error.detail, delay)

    def _finish(
        self,
        message_id: str,
        attempt: int,
        result: AttemptResult,
        target: MessageStatus,
        now: datetime,
    ) -> bool:
        """Record what the provider answered. The provider has already acted, so a failed write
        here would mean a second send after the lease: retry it in-process first (a database
        blip), then give up to the lease mechanism."""
        result = bounded(result)
        pauses = list(FINISH_RETRY_PAUSES)
        stripped = False
        while True:
            try:
                moved = self._repo.finish_attempt(message_id, attempt, result, target, now)
            except StorageUnavailable:
                if not pauses:
                    raise
                time.sleep(pauses.pop(0))
                continue
            except Exception:
                if stripped:
                    raise
                # the database refused one of the provider's values: keep the outcome, drop
                # the values, rather than leave the message to be sent again
                logger.exception("post-send write refused; recording the outcome without details")
                result = replace(
                    result, provider_message_id=None, error_code=None, error_detail="(unstorable)"
                )
                stripped = True
                continue
            if not moved:
                logger.error(
                    "attempt finished after the message left 'sending' (lease lost)",
                    extra={"attempt": attempt, "target": target.value},
                )
            return moved

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
