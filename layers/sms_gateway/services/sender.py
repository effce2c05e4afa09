"""The sender: a batch of SendQueue records -> at most one provider call per message -> recorded
state, set-based (issue 6).

One invocation runs in two database phases around the provider calls (DESIGN section 2):

1. **intake** (:meth:`MessageStore.intake`): record the batch's new messages (``queued``) and
   claim the claimable ones (``queued -> sending`` + an ``in_flight`` attempt row each), in as
   few statements as the dialect allows. The claim is committed before any provider call.
2. **provider calls**, in parallel (a thread pool), at most ``provider_concurrency`` at a time
   per provider, so a slow provider does not serialize the batch.
3. **outcomes** (:meth:`MessageStore.finish_many`): every attempt closed and every message
   moved in one write; receipts that arrived during the send are applied for the messages
   whose row says one is waiting (a flag, not a query per SMS).

What happens to each record and after each attempt is decided by the pure functions of
:mod:`sms_gateway.domain.decisions`; this module performs those decisions. The exactly-once
rules they encode:

- A record whose message is already past ``queued`` (sent, delivered, failed, ...) is a
  duplicate delivery: it is acknowledged and nothing is sent. Copies of one message within a
  batch are sent once (the other copies are acknowledged as duplicates).
- A message in ``sending`` whose lease has not expired is being sent by another invocation:
  this copy is kept (hidden until the lease ends), never deleted, in case that invocation
  crashed. Once the lease expired, the message goes back to ``queued`` and is claimed again.
- A record of an older replay generation than the message's (a copy of generation ``n`` still
  on the SendQueue after an operator replayed the dead letter and started ``n + 1``) is
  stale: acknowledged with no effect (nothing sent, no attempt counted, never handed to the
  DeadLetterQueue), whatever state the message is in; the new generation's record carries
  it. Within a batch the copy of the newest generation is the one handled. A message's
  ``max_attempts`` is read from its row (a replay raises it), not from the record.
- A message whose own ``max_attempts`` is spent is handed to the DeadLetterQueue by the sender
  itself, so every dead letter reaches the DLQ function the same way.
- A malformed record is reported as a batch item failure with visibility 0, so SQS redrives it
  to the DLQ after ``maxReceiveCount`` receives (no time wasted waiting on it).
- The invocation claims a record only if its remaining time covers the send and the write
  after it (:func:`~sms_gateway.domain.decisions.fits_in_time`); the others stay unclaimed
  and are reported as batch item failures, for redelivery.
- A database outage does not spend receives: the records are put back as fresh copies.
- Per-provider send rates (:mod:`sms_gateway.services.ratelimit`): the limiter is asked once
  per provider per batch, *before* the claim, with the messages the intake would claim for
  that provider (in send order). Those it does not grant are not claimed (no attempt row, no
  attempt spent, still ``queued``) and are put back as fresh copies delayed by the wait
  (acknowledging the original, so no SQS receive is spent either: with ``maxReceiveCount`` 3,
  a message deferred three times under sustained load would otherwise be redriven to the DLQ
  without one attempt). A limiter that cannot be reached is an outage for that provider's
  messages (put back like during a database outage), never a grant. A provider that answered
  ``rate_limited`` is held for every sender (``throttled``) once per batch.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import ValidationError

from sms_gateway.domain.content import text_defect
from sms_gateway.domain.decisions import (
    AttemptOutcome,
    IntakeKind,
    NextKind,
    decide_after_attempt,
    decide_intake,
    fits_in_time,
)
from sms_gateway.domain.message import QueuedMessage
from sms_gateway.domain.reasons import ReasonCode
from sms_gateway.domain.retry import backoff_seconds
from sms_gateway.domain.routing import (
    Delivery,
    RoutePolicy,
    SenderIdNotAllowed,
    choose_provider,
    sender_id_for,
)
from sms_gateway.domain.states import MessageStatus
from sms_gateway.observability import log_transition, logger
from sms_gateway.providers.base import (
    Provider,
    ProviderError,
    ProviderRegistry,
    SendRequest,
    SettlesUnknown,
    UnknownProvider,
)
from sms_gateway.services.ports import (
    Clock,
    MessageQueue,
    MessageStore,
    MetricsSink,
    SendRateLimiter,
)
from sms_gateway.services.ratelimit import UnlimitedRateLimiter
from sms_gateway.services.receipts import ReceiptService
from sms_gateway.services.routing import CachedPolicyResolver, NoRoutePolicy
from sms_gateway.storage.errors import StorageUnavailable
from sms_gateway.storage.records import (
    AttemptResult,
    Claim,
    Finish,
    Finished,
    MessageRecord,
    OptOut,
)

# Message attribute counting the requeues of a record during a database outage.
OUTAGE_REQUEUES = "outage_requeues"
# Message attribute counting the deferrals of a record by the provider's send rate.
RATE_DEFERRALS = "rate_deferrals"
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


# How an attempt row's ``outcome`` records each kind of answer (``message_attempts.outcome``):
# an attempt whose outcome is unknown is recorded ``unknown`` whatever follows it (issue 7).
_ATTEMPT_OUTCOMES = {
    AttemptOutcome.ACCEPTED: "sent",
    AttemptOutcome.PERMANENT: "permanent_error",
    AttemptOutcome.OUTCOME_UNKNOWN: "unknown",
}


class SendOutcome(StrEnum):
    """What processing one record came to (all of these acknowledge the record)."""

    SENT = "sent"
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"
    EXPIRED = "expired"
    DUPLICATE = "duplicate"
    REQUEUED = "requeued"
    DEFERRED = "deferred"


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

    @property
    def rate_deferrals(self) -> int:
        """How often the provider's send rate already put this message back on the queue."""
        value = self.attributes.get(RATE_DEFERRALS, "0")
        return int(value) if value.isdigit() else 0


@dataclass(frozen=True, slots=True)
class SenderConfig:
    """Retry backoff ``retry_base_seconds`` * 2^(n-1) capped at ``retry_max_seconds``;
    ``lease_seconds``: how long a claim holds ``sending`` (the function's timeout);
    ``outage_requeue_limit``: how often a record is put back during a database outage;
    ``provider_concurrency``: provider calls in flight at once per provider (>= 1);
    ``send_budget_ms`` / ``write_budget_ms``: the time one provider call / the outcome write
    may take, for the remaining-time rule (milliseconds)."""

    retry_base_seconds: int
    retry_max_seconds: int
    lease_seconds: int
    outage_requeue_limit: int = 10
    provider_concurrency: int = 10
    send_budget_ms: int = 5_000
    write_budget_ms: int = 1_000


@dataclass
class BatchReport:
    """What a batch came to: ``outcomes`` (acknowledged records) and ``kept`` (records to
    report as batch item failures, with why), both by SQS message id."""

    outcomes: dict[str, SendOutcome] = field(default_factory=dict)
    kept: dict[str, RetryLater] = field(default_factory=dict)

    @property
    def failures(self) -> list[str]:
        """SQS message ids for ``batchItemFailures``."""
        return list(self.kept)

    def settled(self, record: SqsRecord) -> bool:
        """Whether ``record`` already has its outcome."""
        return record.sqs_message_id in self.outcomes or record.sqs_message_id in self.kept


@dataclass
class _Rates:
    """What the rate limiter answered during one batch: per provider, the message ids it was
    asked about (None: granted, else the seconds to wait), and the providers whose limiter
    could not be reached. Kept for the whole batch so that the intake's plan, which may run
    twice (PostgreSQL; a released lease), asks once per provider for a message."""

    asked: dict[str, dict[str, int | None]] = field(default_factory=dict)
    down: dict[str, Exception] = field(default_factory=dict)
    deferred: dict[str, tuple[str, int]] = field(default_factory=dict)
    unreachable: dict[str, Exception] = field(default_factory=dict)

    def forget(self, message_id: str) -> None:
        """Drop the per-message verdict of an earlier plan (the plan runs again)."""
        self.deferred.pop(message_id, None)
        self.unreachable.pop(message_id, None)


@dataclass(frozen=True, slots=True)
class _Send:
    """A claimed message on its way to ``provider``."""

    record: SqsRecord
    msg: QueuedMessage
    row: MessageRecord
    attempt: int
    provider_name: str
    provider: Provider
    at_least_once: bool = False
    sender_id: str | None = None  # the sender ID sent with: its ``from``, or the policy default


@dataclass(frozen=True, slots=True)
class _Answer:
    """What a provider call came to: ``result`` stored; ``outcome`` for the decision;
    ``error`` the provider's error (None when accepted)."""

    send: _Send
    result: AttemptResult
    outcome: AttemptOutcome
    error: ProviderError | None
    # an unknown outcome the provider's lookup settled: the answer without the lookup, taken
    # instead when the SID found is another message's (:meth:`SenderService._vet_lookups`)
    unknown: _Answer | None = None


class SenderService:
    """Processes SendQueue batches; see the module docstring for the rules.

    ``executor``: runs provider calls (a thread pool of its own when None, reused by warm
    invocations). ``rate_limiter``: per-provider send rates (none: everything granted).
    """

    def __init__(
        self,
        *,
        messages: MessageStore,
        policies: CachedPolicyResolver,
        providers: ProviderRegistry,
        queue: MessageQueue,
        receipts: ReceiptService,
        metrics: MetricsSink,
        clock: Clock,
        config: SenderConfig,
        executor: Executor | None = None,
        rate_limiter: SendRateLimiter | None = None,
    ) -> None:
        self._store = messages
        self._rate_limiter: SendRateLimiter = rate_limiter or UnlimitedRateLimiter()
        self._policies = policies
        self._providers = providers
        self._queue = queue
        self._receipts = receipts
        self._metrics = metrics
        self._clock = clock
        self._config = config
        self._executor = executor
        self._limits: dict[str, threading.BoundedSemaphore] = {}
        self._limits_lock = threading.Lock()

    # ---- entry points --------------------------------------------------------------------

    def process(self, record: SqsRecord) -> SendOutcome:
        """Handle one record (a batch of one).

        Raises:
            RetryLater: keep the record (see :meth:`process_batch`).
        """
        report = self.process_batch([record])
        if record.sqs_message_id in report.kept:
            raise report.kept[record.sqs_message_id]
        return report.outcomes[record.sqs_message_id]

    def process_batch(
        self,
        records: Sequence[SqsRecord],
        remaining_ms: Callable[[], int] | None = None,
    ) -> BatchReport:
        """Handle a batch (SQS delivers at most 10).

        ``remaining_ms``: the invocation's remaining time in milliseconds (Lambda's
        ``context.get_remaining_time_in_millis``); None: unlimited.

        Returns which records are done and which to keep (batch item failures): malformed
        ones (visibility 0), transient failures (visibility = backoff), messages another
        sender holds (visibility = rest of its lease), records left unclaimed for lack of
        time, and, during a database outage past ``outage_requeue_limit``, all of them.

        A database outage must not use up the records' SQS receives (``maxReceiveCount``
        would dead-letter them without a single attempt during an RDS failover): each is put
        back on the SendQueue as a fresh copy, delayed by the retry backoff, and acknowledged,
        up to ``outage_requeue_limit`` times. The copy has the same body, so the same message
        id: if both ever exist, the sender sends once.
        """
        report = BatchReport()
        primaries: dict[str, tuple[SqsRecord, QueuedMessage]] = {}
        for record in records:
            try:
                msg = QueuedMessage.model_validate_json(record.body)
            except ValidationError as exc:
                logger.warning(
                    "malformed SendQueue record",
                    extra={"sqs_message_id": record.sqs_message_id, "errors": exc.error_count()},
                )
                try:  # best effort: without it the record just waits out its visibility
                    self._queue.change_visibility(record.receipt_handle, 0)
                except Exception:
                    logger.warning("could not reset the visibility of a malformed record")
                report.kept[record.sqs_message_id] = MalformedRecord("malformed payload", 0)
                continue
            if msg.message_id in primaries:
                # another copy of a message this batch handles: the copy of the newest replay
                # generation carries it (an older one is stale), the others are duplicates
                logger.info("duplicate delivery within the batch")
                other, other_msg = primaries[msg.message_id]
                if msg.generation <= other_msg.generation:
                    report.outcomes[record.sqs_message_id] = SendOutcome.DUPLICATE
                    continue
                report.outcomes[other.sqs_message_id] = SendOutcome.DUPLICATE
            primaries[msg.message_id] = (record, msg)
        try:
            self._run(primaries, report, remaining_ms)
        except StorageUnavailable as exc:
            for record, _ in primaries.values():
                if not report.settled(record):
                    self._outage(record, exc, report)
        return report

    # ---- the phases ----------------------------------------------------------------------

    def _run(
        self,
        primaries: dict[str, tuple[SqsRecord, QueuedMessage]],
        report: BatchReport,
        remaining_ms: Callable[[], int] | None,
    ) -> None:
        sends: list[_Send] = []
        rates = _Rates()
        pending = dict(primaries)
        for _ in range(2):  # a second round for messages whose expired lease was released
            if not pending:
                break
            pending = self._intake(pending, report, remaining_ms, sends, rates)
        for record, _msg in pending.values():  # released twice in one invocation: leave it
            report.kept[record.sqs_message_id] = RetryLater("lease changed hands", None)
        if sends:
            answers = self._send_all(sends)
            self._throttle(answers)
            self._finish(answers, report)

    def _intake(
        self,
        batch: dict[str, tuple[SqsRecord, QueuedMessage]],
        report: BatchReport,
        remaining_ms: Callable[[], int] | None,
        sends: list[_Send],
        rates: _Rates,
    ) -> dict[str, tuple[SqsRecord, QueuedMessage]]:
        """Phase 1 for ``batch``; appends the claimed messages to ``sends`` and returns the
        messages released from an expired lease (to be taken in again). The rate limiter is
        asked inside the plan, so a message it does not grant is never claimed."""
        now = self._clock()
        lease_until = now + timedelta(seconds=self._config.lease_seconds)
        routed: dict[str, tuple[str, Provider]] = {}
        at_least_once: set[str] = set()
        senders: dict[str, str | None] = {}
        refused: dict[str, str] = {}
        no_route: dict[str, Exception] = {}
        out_of_time: set[str] = set()

        per_provider: Counter[str] = Counter()
        deadline: list[int | None] = []  # the remaining time, read once per intake

        # The tenants' policies, read before the intake transaction: plan() runs inside it,
        # and the container has one database connection (a cache miss there would wait for
        # a second one).
        routes: dict[str, RoutePolicy | NoRoutePolicy] = {}
        for tenant_id in dict.fromkeys(msg.tenant_id for _record, msg in batch.values()):
            try:
                routes[tenant_id] = self._policies.resolve(tenant_id)
            except NoRoutePolicy as exc:
                routes[tenant_id] = exc

        def plan(rows: dict[str, MessageRecord]) -> list[Claim]:
            # May be called twice (PostgreSQL: the rows assumed new, then those that
            # existed); the per-provider counts carry over, so the time rule stays whole.
            if not deadline:
                deadline.append(remaining_ms() if remaining_ms is not None else None)
            remaining = deadline[0]
            claims = []
            for message_id, row in rows.items():
                if message_id not in batch:
                    continue
                no_route.pop(message_id, None)
                out_of_time.discard(message_id)
                rates.forget(message_id)
                if message_id in routed:  # assumed new, but it existed: undo its count
                    per_provider[routed.pop(message_id)[0]] -= 1
                msg = batch[message_id][1]
                if msg.generation < row.generation:  # stale: see _settle_unclaimed
                    continue
                decision = decide_intake(row.state, now)
                if decision.kind is not IntakeKind.ATTEMPT:
                    continue
                refused.pop(message_id, None)
                try:
                    policy = routes[msg.tenant_id]
                    if isinstance(policy, NoRoutePolicy):
                        raise policy
                    name = choose_provider(policy, message_id, decision.attempt)
                    provider = self._providers.get(name)
                except (NoRoutePolicy, UnknownProvider) as exc:
                    no_route[message_id] = exc
                    continue
                try:
                    senders[message_id] = sender_id_for(policy, row.sender_id)
                except SenderIdNotAllowed as exc:
                    # another tenant's number or brand, or none allowed: never claimed, no
                    # provider call; failed permanently below
                    refused[message_id] = str(exc)
                    continue
                if remaining is not None and not fits_in_time(
                    remaining,
                    per_provider[name],
                    self._config.provider_concurrency,
                    self._config.send_budget_ms,
                    self._config.write_budget_ms,
                ):
                    out_of_time.add(message_id)
                    continue
                per_provider[name] += 1
                routed[message_id] = (name, provider)
                if policy.delivery is Delivery.AT_LEAST_ONCE:
                    at_least_once.add(message_id)
                else:
                    at_least_once.discard(message_id)
                claims.append(Claim(message_id, row.version, decision.attempt, name))
            granted = self._ask_rates(claims, rows, rates)
            for claim in claims:
                if claim.message_id not in granted:
                    per_provider[routed.pop(claim.message_id)[0]] -= 1
            return [c for c in claims if c.message_id in granted]

        messages = [msg for _record, msg in batch.values()]
        taken = self._store.intake(messages, plan, lease_until, now)
        released: dict[str, tuple[SqsRecord, QueuedMessage]] = {}
        for message_id, (record, msg) in batch.items():
            if message_id in taken.new:
                log_transition(
                    message_id, msg.tenant_id, MessageStatus.ACCEPTED, MessageStatus.QUEUED
                )
            row = taken.rows.get(message_id)
            if row is None:  # pragma: no cover - just inserted; only a delete could do it
                report.kept[record.sqs_message_id] = RetryLater("message row vanished", None)
                continue
            if message_id in taken.opted_out:
                # the number opted out for this tenant and sender ID: failed by the intake,
                # no provider call (issue 7)
                self._metrics.add("StatusTransitions", 1, "Count", status="failed")
                self._metrics.add("OptedOutRefused", 1, "Count")
                log_transition(
                    message_id,
                    msg.tenant_id,
                    MessageStatus.QUEUED,
                    MessageStatus.FAILED,
                    reason_code=ReasonCode.OPTED_OUT,
                )
                report.outcomes[record.sqs_message_id] = SendOutcome.FAILED
                continue
            if message_id in taken.claimed:
                name, provider = routed[message_id]
                attempt = row.attempts + 1
                self._metrics.add("StatusTransitions", 1, "Count", status="sending")
                log_transition(
                    message_id,
                    msg.tenant_id,
                    MessageStatus.QUEUED,
                    MessageStatus.SENDING,
                    attempt=attempt,
                    provider=name,
                )
                sends.append(
                    _Send(
                        record,
                        msg,
                        row,
                        attempt,
                        name,
                        provider,
                        at_least_once=message_id in at_least_once,
                        sender_id=senders.get(message_id),
                    )
                )
                continue
            if message_id in refused:
                self._refuse_sender_id(record, msg, refused[message_id], now, report)
                continue
            if self._settle_unclaimed(record, msg, row, now, no_route, out_of_time, rates, report):
                released[message_id] = (record, msg)
        return released

    def _refuse_sender_id(
        self, record: SqsRecord, msg: QueuedMessage, detail: str, now: datetime, report: BatchReport
    ) -> None:
        """``queued -> failed`` with reason ``sender_id_not_allowed`` (permanent, no attempt,
        no provider call) for a message whose ``from`` its tenant's policy does not list."""
        if self._store.transition(
            msg.message_id,
            MessageStatus.QUEUED,
            MessageStatus.FAILED,
            now,
            reason=ReasonCode.SENDER_ID_NOT_ALLOWED,
            detail=detail,
        ):
            self._metrics.add("StatusTransitions", 1, "Count", status="failed")
            self._metrics.add("SenderIdRefused", 1, "Count")
            log_transition(
                msg.message_id,
                msg.tenant_id,
                MessageStatus.QUEUED,
                MessageStatus.FAILED,
                reason_code=ReasonCode.SENDER_ID_NOT_ALLOWED,
            )
            report.outcomes[record.sqs_message_id] = SendOutcome.FAILED
        else:  # another copy moved it meanwhile
            report.outcomes[record.sqs_message_id] = SendOutcome.DUPLICATE

    def _ask_rates(
        self, claims: Sequence[Claim], rows: Mapping[str, MessageRecord], rates: _Rates
    ) -> set[str]:
        """The ids of ``claims`` the rate limiter grants now; the others are noted in
        ``rates`` (deferred with their wait, or their provider's limiter unreachable).

        One ``acquire`` per provider, with that provider's messages in send order; a message
        the limiter already answered for in this batch (the plan running again) keeps that
        answer, so a provider is asked again only for messages it was not asked about."""
        by_provider: dict[str, list[Claim]] = {}
        for claim in claims:
            by_provider.setdefault(claim.provider, []).append(claim)
        granted: set[str] = set()
        for name, group in by_provider.items():
            answers = rates.asked.setdefault(name, {})
            new = [c for c in group if c.message_id not in answers]
            if new and name not in rates.down:
                try:
                    grant = self._rate_limiter.acquire(
                        name, [rows[c.message_id].segments for c in new]
                    )
                except Exception as exc:  # never a grant: an outage for these messages
                    logger.warning(
                        "rate limiter unavailable",
                        extra={"provider": name, "error": f"{type(exc).__name__}: {exc}"},
                    )
                    self._metrics.add("RateLimiterErrors", 1, "Count", provider=name)
                    rates.down[name] = exc
                else:
                    waits = [max(1, math.ceil(seconds)) for seconds in grant.ready_in_seconds]
                    for index, claim in enumerate(new):
                        late = index - grant.messages
                        answers[claim.message_id] = (
                            None if late < 0 else (waits[late] if late < len(waits) else 1)
                        )
            for claim in group:
                if name in rates.down and claim.message_id not in answers:
                    rates.unreachable[claim.message_id] = rates.down[name]
                    continue
                wait = answers[claim.message_id]
                if wait is None:
                    granted.add(claim.message_id)
                else:
                    rates.deferred[claim.message_id] = (name, wait)
        return granted

    def _settle_unclaimed(
        self,
        record: SqsRecord,
        msg: QueuedMessage,
        row: MessageRecord,
        now: datetime,
        no_route: Mapping[str, Exception],
        out_of_time: set[str],
        rates: _Rates,
        report: BatchReport,
    ) -> bool:
        """Perform the decision for a record that was not claimed; True when its expired
        lease was released (take it in again)."""
        key = record.sqs_message_id
        if msg.generation < row.generation:
            # a copy of a generation an operator replayed: its max_attempts and receives are
            # the old generation's, so it must not attempt, wait or dead-letter the new one
            logger.info(
                "stale copy of an older replay generation: acknowledged",
                extra={"generation": msg.generation, "current_generation": row.generation},
            )
            report.outcomes[key] = SendOutcome.DUPLICATE
            return False
        decision = decide_intake(row.state, now)
        kind = decision.kind
        if kind is IntakeKind.WAIT_FOR_LEASE:
            # Another invocation holds the claim. Keep this copy until the lease ends: if
            # that sender crashed, this copy is what brings the message back.
            self._queue.change_visibility(record.receipt_handle, decision.wait_seconds)
            report.kept[key] = RetryLater("claimed by another sender", decision.wait_seconds)
            return False
        if kind is IntakeKind.RELEASE_LEASE:
            if not self._store.release_expired_lease(msg.message_id, now):
                report.kept[key] = RetryLater("lease changed hands", None)
                return False
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
            return True
        if kind is IntakeKind.DUPLICATE:
            logger.info("duplicate delivery", extra={"status": row.status.value})
            if row.status is MessageStatus.SENT and row.receipt_waiting:
                # the copy that sent it may have died before applying waiting receipts
                self._receipts.apply_waiting(
                    row.id, row.provider_message_id, row.provider, row.attempts
                )
            report.outcomes[key] = SendOutcome.DUPLICATE
            return False
        if kind is IntakeKind.EXPIRE:
            if self._store.transition(
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
            report.outcomes[key] = SendOutcome.EXPIRED
            return False
        if kind is IntakeKind.DEAD_LETTER:
            report.outcomes[key] = self._hand_to_dead_letter(
                record, row.reason_detail, row.attempts
            )
            return False
        # ATTEMPT, not claimed: no route, no time, over the provider's rate (or its limiter
        # unreachable), or another sender claimed it first
        if msg.message_id in rates.deferred:
            provider, wait = rates.deferred[msg.message_id]
            self._defer(record, provider, wait, report)
        elif msg.message_id in rates.unreachable:
            self._outage(record, rates.unreachable[msg.message_id], report)
        elif msg.message_id in no_route:
            # A configuration gap: keep the message (it burns no attempt) until an operator
            # fixes the policy; SQS redrives it to the DLQ after maxReceiveCount receives.
            exc = no_route[msg.message_id]
            self._store.note_problem(msg.message_id, ReasonCode.UNKNOWN, str(exc), now)
            delay = backoff_seconds(
                max(1, record.receive_count),
                self._config.retry_base_seconds,
                self._config.retry_max_seconds,
            )
            try:
                self._queue.change_visibility(record.receipt_handle, delay)
            except Exception:  # best effort: the record then waits out its visibility timeout
                logger.warning("could not delay a record without a route", exc_info=True)
            report.kept[key] = RetryLater(str(exc), delay)
        elif msg.message_id in out_of_time:
            logger.info("not enough time left in the invocation: left unclaimed")
            report.kept[key] = RetryLater("not enough time left to send", None)
        else:
            report.outcomes[key] = SendOutcome.DUPLICATE
        return False

    def _limit(self, provider: str) -> threading.BoundedSemaphore:
        with self._limits_lock:
            if provider not in self._limits:
                self._limits[provider] = threading.BoundedSemaphore(
                    self._config.provider_concurrency
                )
            return self._limits[provider]

    def _call(self, send: _Send) -> _Answer:
        """One provider call (in a worker thread), bounded per provider."""
        ttl = None
        if send.row.expires_at is not None:
            ttl = max(0, math.ceil((send.row.expires_at - self._clock()).total_seconds()))
        request = SendRequest(
            message_id=send.msg.message_id,
            attempt=send.attempt,
            to=send.row.to_number,
            sender_id=send.sender_id,
            body=send.row.body,
            encoding=send.row.encoding,
            segments=send.row.segments,
            tenant_id=send.row.tenant_id,
            ttl_seconds=ttl,
        )
        with self._limit(send.provider_name):
            began = self._clock()
            started = time.perf_counter()
            try:
                accepted = send.provider.send(request)
            except ProviderError as exc:
                error = exc
                if exc.reason is ReasonCode.OUTCOME_UNKNOWN:
                    found = self._look_up(send, request, began)
                    latency_ms = int((time.perf_counter() - started) * 1000)
                    unknown = _Answer(
                        send,
                        bounded(
                            AttemptResult(
                                "unknown",
                                latency_ms,
                                reason_code=exc.reason,
                                error_code=exc.error_code,
                                error_detail=exc.detail,
                            )
                        ),
                        AttemptOutcome.OUTCOME_UNKNOWN,
                        exc,
                    )
                    if found is None:
                        return unknown
                    result = AttemptResult(
                        "sent",
                        latency_ms,
                        provider_message_id=found,
                        error_detail=f"{exc.detail}; found by the provider's lookup",
                    )
                    return _Answer(
                        send, bounded(result), AttemptOutcome.ACCEPTED, None, unknown=unknown
                    )
                elif exc.retryable:
                    outcome = AttemptOutcome.TRANSIENT
                else:
                    outcome = AttemptOutcome.PERMANENT
            except Exception as exc:  # an adapter bug must not lose the message: retry it
                logger.exception("provider adapter raised an unexpected error")
                error = ProviderError(
                    ReasonCode.UNKNOWN, f"{send.provider_name}: {type(exc).__name__}"
                )
                outcome = AttemptOutcome.UNKNOWN
            else:
                latency_ms = int((time.perf_counter() - started) * 1000)
                result = AttemptResult(
                    "sent", latency_ms, provider_message_id=accepted.provider_message_id
                )
                return _Answer(send, bounded(result), AttemptOutcome.ACCEPTED, None)
        latency_ms = int((time.perf_counter() - started) * 1000)
        result = AttemptResult(
            _ATTEMPT_OUTCOMES.get(
                outcome, "transient_error" if error.retryable else "permanent_error"
            ),
            latency_ms,
            reason_code=error.reason,
            error_code=error.error_code,
            error_detail=error.detail,
        )
        return _Answer(send, bounded(result), outcome, error)

    def _look_up(self, send: _Send, request: SendRequest, began: datetime) -> str | None:
        """Settle an unknown outcome with the provider's lookup when it has one
        (:class:`~sms_gateway.providers.base.SettlesUnknown`, Twilio): the provider message
        id it found, else None (not found, ambiguous, or the lookup failed: the outcome stays
        unknown and the tenant's delivery guarantee decides)."""
        if not isinstance(send.provider, SettlesUnknown):
            return None
        try:
            found = send.provider.lookup(request, began)
        except Exception as exc:  # a failed lookup leaves the outcome unknown, nothing more
            logger.warning(
                "unknown-outcome lookup failed",
                extra={"provider": send.provider_name, "error": f"{type(exc).__name__}: {exc}"},
            )
            found = None
        self._metrics.add(
            "UnknownOutcomeLookups",
            1,
            "Count",
            provider=send.provider_name,
            outcome="found" if found else "not_found",
        )
        return found

    def _send_all(self, sends: list[_Send]) -> list[_Answer]:
        """Phase 2: every provider call, in parallel when there are several."""
        if len(sends) == 1:
            return self._vet_lookups([self._call(sends[0])])
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=10, thread_name_prefix="send")
        return self._vet_lookups(list(self._executor.map(self._call, sends)))

    def _vet_lookups(self, answers: list[_Answer]) -> list[_Answer]:
        """Undo a lookup's match (:meth:`_look_up`) whose provider message id is already
        another message's: another answer of this batch, or a message the store knows under
        it (through any provider entry: two may share one account). The provider's list is
        filtered by ``To``/``From`` and matched on the body, so an identical SMS of another
        message (another tenant's on the same account and number, or a twin) is listed too;
        taking its id would record an attempt the provider may never have received as sent
        (the message dropped) and give two messages one provider message id. The outcome
        stays unknown then (the answer without the lookup, ``_Answer.unknown``), as it does
        when the store cannot tell. A twin still in flight in another sender instance is
        not recorded yet and is not seen here (see docs/providers.md).
        """
        if not any(a.unknown is not None for a in answers):
            return answers
        taken: dict[str, int] = {}
        for a in answers:
            if a.result.provider_message_id:
                sid = a.result.provider_message_id
                taken[sid] = taken.get(sid, 0) + 1
        vetted = []
        for a in answers:
            if a.unknown is not None and a.result.provider_message_id:
                sid = a.result.provider_message_id
                try:
                    # any provider: two provider entries may share one account (its ids are
                    # unique across it)
                    owner = self._store.find_by_provider_message_id(sid)
                except Exception:  # the store cannot tell: the outcome stays unknown
                    logger.warning("could not check a looked-up provider message id")
                    vetted.append(a.unknown)
                    continue
                if taken[sid] > 1 or (owner is not None and owner.id != a.send.msg.message_id):
                    logger.warning(
                        "lookup found another message's provider message id: outcome unknown",
                        extra={
                            "message_id": a.send.msg.message_id,
                            "provider": a.send.provider_name,
                        },
                    )
                    self._metrics.add(
                        "UnknownOutcomeLookups",
                        1,
                        "Count",
                        provider=a.send.provider_name,
                        outcome="foreign",
                    )
                    vetted.append(a.unknown)
                    continue
            vetted.append(a)
        return vetted

    def _finish(self, answers: list[_Answer], report: BatchReport) -> None:
        """Phase 3: write every outcome, then act on each (receipts, DLQ, visibility)."""
        nexts = {
            a.send.msg.message_id: decide_after_attempt(
                a.send.attempt,
                a.send.row.max_attempts,  # the row's: a replay raises it, a record keeps its own
                a.outcome,
                retry_base_seconds=self._config.retry_base_seconds,
                retry_max_seconds=self._config.retry_max_seconds,
                at_least_once=a.send.at_least_once,
            )
            for a in answers
        }
        now = self._clock()
        finishes = [
            Finish(
                a.send.msg.message_id, a.send.attempt, a.result, nexts[a.send.msg.message_id].target
            )
            for a in answers
        ]
        done = self._write_outcomes(finishes, now)
        self._record_opt_outs(answers, now)
        for answer in answers:
            send = answer.send
            message_id = send.msg.message_id
            decided = nexts[message_id]
            provider_outcome = _ATTEMPT_OUTCOMES.get(answer.outcome, "transient_error")
            self._metrics.add(
                "SendLatency", answer.result.latency_ms, "Milliseconds", provider=send.provider_name
            )
            self._metrics.add(
                "ProviderResults", 1, "Count", provider=send.provider_name, outcome=provider_outcome
            )
            if message_id in done.moved:
                log_transition(
                    message_id,
                    send.msg.tenant_id,
                    MessageStatus.SENDING,
                    decided.target,
                    attempt=send.attempt,
                    provider=send.provider_name,
                    reason_code=answer.error.reason if answer.error else None,
                    latency_ms=answer.result.latency_ms,
                )
            else:
                logger.error(
                    "attempt finished after the message left 'sending' (lease lost)",
                    extra={"attempt": send.attempt, "target": decided.target.value},
                )
            self._metrics.add("StatusTransitions", 1, "Count", status=decided.target.value)
            key = send.record.sqs_message_id
            if decided.kind is NextKind.SENT:
                if message_id in done.receipts_waiting:
                    self._apply_waiting(send, answer.result.provider_message_id)
                report.outcomes[key] = SendOutcome.SENT
                continue
            if message_id in done.receipts_waiting and self._end_waiting(message_id, send.attempt):
                # this attempt ended without a send, but a final receipt kept during it
                # settled an earlier attempt whose outcome was unknown: no retry, no dead letter
                report.outcomes[key] = SendOutcome.SENT
                continue
            if decided.kind is NextKind.FAIL:
                report.outcomes[key] = SendOutcome.FAILED
            elif decided.kind is NextKind.DEAD_LETTER:
                detail = answer.error.detail if answer.error else None
                report.outcomes[key] = self._hand_to_dead_letter(send.record, detail, send.attempt)
            else:
                self._queue.change_visibility(send.record.receipt_handle, decided.delay_seconds)
                self._metrics.add("Retries", 1, "Count", provider=send.provider_name)
                detail = answer.error.detail if answer.error else "retry"
                report.kept[key] = RetryLater(detail, decided.delay_seconds)

    def _record_opt_outs(self, answers: Sequence[_Answer], now: datetime) -> None:
        """Record the numbers whose provider answered ``opted_out`` (permanent), so that later
        sends to them fail at the intake without a provider call. One statement, only in a
        batch that has such an answer; a failure is logged (the outcomes are already written,
        and the provider refuses the number again next time).

        Keyed on the message's own ``from`` (what the intake checks), and also on the sender
        ID it went out with when that differs (the policy's ``default_sender_id`` for a
        message without ``from``): the recipient opted out of that sender, so a later
        message naming it in ``from`` is stopped too. ``OptOutsRecorded`` counts messages."""
        opted = [
            a
            for a in answers
            if a.outcome is AttemptOutcome.PERMANENT
            and a.error is not None
            and a.error.reason is ReasonCode.OPTED_OUT
        ]
        if not opted:
            return
        entries = [
            OptOut(
                a.send.row.tenant_id,
                a.send.row.to_number,
                sender,
                a.send.msg.message_id,
                a.send.provider_name,
            )
            for a in opted
            for sender in dict.fromkeys((a.send.row.sender_id, a.send.sender_id))
        ]
        try:
            self._store.record_opt_outs(entries, now)
        except Exception:
            logger.exception("could not record opted-out numbers")
            return
        self._metrics.add("OptOutsRecorded", len(opted), "Count")

    def _end_waiting(self, message_id: str, attempt: int) -> bool:
        """Settle or close the receipts kept during an attempt that ended without being sent
        (:meth:`ReceiptService.end_waiting`); whether one settled the message. A failure
        here is not the send's: logged, and the flag stays for the next end or send."""
        try:
            return self._receipts.end_waiting(message_id, attempt)
        except StorageUnavailable:
            logger.warning("could not close the receipts of an unsent attempt now")
            return False

    def _apply_waiting(self, send: _Send, provider_message_id: str | None) -> None:
        """Apply receipts kept while the message was in flight. A failure here is not the
        send's: the flag stays set, and the next copy of the record (or the receipt's own
        retry) applies them."""
        try:
            self._receipts.apply_waiting(
                send.msg.message_id, provider_message_id, send.provider_name, send.attempt
            )
        except StorageUnavailable:
            logger.warning("could not apply waiting receipts now; kept for the next delivery")
            try:
                self._queue.send(send.record.body, dict(send.record.attributes), delay_seconds=0)
            except Exception:
                logger.warning("could not requeue the record to apply its waiting receipts")

    def _write_outcomes(self, finishes: list[Finish], now: datetime) -> Finished:
        """Record what the providers answered. They have already acted, so a failed write here
        would mean second sends after the lease: retry it in-process first (a database blip),
        then give up to the lease mechanism; a value the database refuses is dropped (the
        outcome kept) rather than leave the message to be sent again."""
        pauses = list(FINISH_RETRY_PAUSES)
        while True:
            try:
                return self._store.finish_many(finishes, now)
            except StorageUnavailable:
                if not pauses:
                    raise
                time.sleep(pauses.pop(0))
            except Exception:
                logger.exception("post-send write refused; writing the outcomes one by one")
                break
        moved: set[str] = set()
        waiting: set[str] = set()
        for finish in finishes:
            try:
                done = self._store.finish_many([finish], now)
            except StorageUnavailable:
                raise
            except Exception:
                logger.exception("post-send write refused; recording the outcome without details")
                stripped = replace(
                    finish.result,
                    provider_message_id=None,
                    error_code=None,
                    error_detail="(unstorable)",
                )
                done = self._store.finish_many([replace(finish, result=stripped)], now)
            moved |= done.moved
            waiting |= done.receipts_waiting
        return Finished(frozenset(moved), frozenset(waiting))

    # ---- hand-offs -----------------------------------------------------------------------

    def _throttle(self, answers: Sequence[_Answer]) -> None:
        """Hold every provider that answered ``rate_limited`` in this batch, once each. A
        failure to hold is logged: the answers are already in hand and must be written."""
        limited = dict.fromkeys(
            a.send.provider_name
            for a in answers
            if a.error is not None and a.error.reason is ReasonCode.RATE_LIMITED
        )
        for provider in limited:
            try:
                self._rate_limiter.throttled(provider)
            except Exception as exc:
                logger.warning(
                    "could not hold a rate-limited provider",
                    extra={"provider": provider, "error": f"{type(exc).__name__}: {exc}"},
                )

    def _defer(self, record: SqsRecord, provider: str, wait: int, report: BatchReport) -> None:
        """Put a message the provider's rate did not grant back on the queue ``wait``
        seconds from now, as a fresh copy (the original acknowledged): neither an attempt nor
        an SQS receive is spent. If the copy cannot be sent, the original is kept instead,
        hidden for the wait (that spends a receive, which SQS counts anyway)."""
        delay = min(wait, SQS_MAX_DELAY_SECONDS)
        self._metrics.add("RateLimitDeferred", 1, "Count", provider=provider)
        logger.info(
            "over the provider's send rate: deferred",
            extra={"provider": provider, "delay_seconds": delay},
        )
        try:
            self._queue.send(
                record.body,
                {**record.attributes, RATE_DEFERRALS: str(record.rate_deferrals + 1)},
                delay_seconds=delay,
            )
        except Exception:
            logger.warning("could not requeue a deferred record; keeping it for the wait")
            try:
                self._queue.change_visibility(record.receipt_handle, delay)
            except Exception:
                logger.warning("could not set the visibility of a deferred record")
            report.kept[record.sqs_message_id] = RetryLater("over the provider's rate", delay)
            return
        report.outcomes[record.sqs_message_id] = SendOutcome.DEFERRED

    def _outage(self, record: SqsRecord, exc: Exception, report: BatchReport) -> None:
        requeues = record.outage_requeues
        delay = backoff_seconds(
            requeues + 1, self._config.retry_base_seconds, self._config.retry_max_seconds
        )
        what = "message store" if isinstance(exc, StorageUnavailable) else "rate limiter"
        logger.warning(f"{what} unavailable", extra={"error": str(exc), "requeues": requeues})
        if requeues < self._config.outage_requeue_limit:
            self._queue.send(
                record.body,
                {**record.attributes, OUTAGE_REQUEUES: str(requeues + 1)},
                delay_seconds=min(delay, SQS_MAX_DELAY_SECONDS),
            )
            report.outcomes[record.sqs_message_id] = SendOutcome.REQUEUED
            return
        try:
            self._queue.change_visibility(record.receipt_handle, delay)
        except Exception:
            logger.warning("could not set the visibility of a record during an outage")
        report.kept[record.sqs_message_id] = RetryLater(f"{what} unavailable", delay)

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
