"""The sender's decisions as pure functions: no I/O, no clock of their own (issue 6, item 2).

Two questions, each answered from data alone:

- :func:`decide_intake`: a SendQueue record arrived for a message whose stored row is
  ``state``; at ``now``, what happens? (duplicate / wait for the lease / release the lease /
  expire / dead-letter / attempt ``n``).
- :func:`decide_after_attempt`: attempt ``n`` of ``max_attempts`` came back with ``outcome``;
  what follows? (sent / retry in ``s`` seconds / fail / dead-letter).

And one about time: :func:`fits_in_time`, whether a claim can still be sent and written
before the invocation's deadline (Lambda's ``get_remaining_time_in_millis``).

The rules are DESIGN sections 2 and 4 (state table, leases, ``max_attempts`` hand-off to the
DeadLetterQueue, validity period) and the backoff of :mod:`sms_gateway.domain.retry`. The
service (:mod:`sms_gateway.services.sender`) performs what these functions decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sms_gateway.domain.retry import backoff_seconds
from sms_gateway.domain.states import MessageStatus


@dataclass(frozen=True, slots=True)
class MessageState:
    """What the decisions need of a ``messages`` row.

    ``attempts``: provider calls started so far (0 before the first claim); ``max_attempts``
    >= 1; ``lease_expires_at``: end of the current claim (``sending`` only), aware UTC;
    ``expires_at``: end of the validity period (None: none), aware UTC.
    """

    status: MessageStatus
    attempts: int
    max_attempts: int
    lease_expires_at: datetime | None = None
    expires_at: datetime | None = None


class IntakeKind(StrEnum):
    """What to do with a record, given its message's row."""

    DUPLICATE = "duplicate"  # the message is past ``queued``: acknowledge, send nothing
    WAIT_FOR_LEASE = "wait_for_lease"  # another sender holds a live claim: keep the record
    RELEASE_LEASE = "release_lease"  # the claim expired: ``sending -> queued``, then decide again
    EXPIRE = "expire"  # the validity period ended: ``queued -> expired``
    DEAD_LETTER = "dead_letter"  # ``max_attempts`` spent: hand to the DeadLetterQueue
    ATTEMPT = "attempt"  # claim it for attempt ``attempt``


@dataclass(frozen=True, slots=True)
class Intake:
    """A decision of :func:`decide_intake`. ``attempt``: 1-based (ATTEMPT only);
    ``wait_seconds``: how long the record should stay hidden (WAIT_FOR_LEASE only)."""

    kind: IntakeKind
    attempt: int = 0
    wait_seconds: int = 0


def decide_intake(state: MessageState, now: datetime) -> Intake:
    """What happens to a record whose message is in ``state`` at ``now`` (aware UTC).

    Rules (DESIGN section 4, the sender's exactly-once rules):

    - ``sending`` with a lease ending after ``now``: another invocation is sending it; wait
      for ``ceil(lease - now)`` seconds (at least 1), never send;
    - ``sending`` with an ended (or missing) lease: its sender is gone; release the lease;
    - any status but ``queued``: a duplicate delivery; nothing is sent;
    - validity period over (``expires_at <= now``): expire;
    - ``attempts >= max_attempts``: dead-letter;
    - otherwise attempt ``attempts + 1``.
    """
    if state.status is MessageStatus.SENDING:
        lease = state.lease_expires_at
        if lease is not None and lease > now:
            remaining = (lease - now).total_seconds()
            return Intake(IntakeKind.WAIT_FOR_LEASE, wait_seconds=max(1, int(remaining) + 1))
        return Intake(IntakeKind.RELEASE_LEASE)
    if state.status is not MessageStatus.QUEUED:
        return Intake(IntakeKind.DUPLICATE)
    if state.expires_at is not None and state.expires_at <= now:
        return Intake(IntakeKind.EXPIRE)
    if state.attempts >= state.max_attempts:
        return Intake(IntakeKind.DEAD_LETTER)
    return Intake(IntakeKind.ATTEMPT, attempt=state.attempts + 1)


def released(state: MessageState) -> MessageState:
    """``state`` after its expired lease was released: ``queued``, attempts kept (the lost
    attempt counts: whether the provider got it is unknown)."""
    return MessageState(
        MessageStatus.QUEUED, state.attempts, state.max_attempts, None, state.expires_at
    )


class AttemptOutcome(StrEnum):
    """How a provider call ended.

    ``unknown``: the adapter raised something that is not a provider error (a bug): it is
    retried like a transient failure (a lost message is worse than a second send).
    ``outcome_unknown``: the provider adapter says the request left and no answer came (read
    timeout, reset): the tenant's delivery guarantee decides (issue 7).
    """

    ACCEPTED = "accepted"
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    UNKNOWN = "unknown"
    OUTCOME_UNKNOWN = "outcome_unknown"


class NextKind(StrEnum):
    """What follows an attempt."""

    SENT = "sent"
    RETRY = "retry"
    FAIL = "fail"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True, slots=True)
class Next:
    """A decision of :func:`decide_after_attempt`. ``target``: the message's status after
    ``sending``; ``delay_seconds``: the record's visibility timeout before the next attempt
    (RETRY only)."""

    kind: NextKind
    target: MessageStatus
    delay_seconds: int = 0


def decide_after_attempt(
    attempt: int,
    max_attempts: int,
    outcome: AttemptOutcome,
    *,
    retry_base_seconds: int,
    retry_max_seconds: int,
    at_least_once: bool = False,
) -> Next:
    """What follows attempt ``attempt`` (1-based) of a message allowed ``max_attempts``.

    - accepted: ``sent``;
    - permanent (invalid or opted-out number): ``failed`` at once, no retry, no DLQ wait;
    - outcome unknown: ``failed`` at once (reason ``outcome_unknown``) unless the tenant's
      policy says ``at_least_once`` (``at_least_once=True``), then as transient: none of the
      four provider APIs takes an idempotency key, so a resend may reach the handset twice;
    - transient or unknown: back to ``queued``; retried after
      :func:`~sms_gateway.domain.retry.backoff_seconds` (``attempt``, base, cap) while
      attempts remain, else dead-lettered (the sender hands it to the DeadLetterQueue, whose
      function moves it to ``failed`` with reason ``dead_letter``).

    Raises:
        ValueError: ``attempt`` < 1 (from the backoff).
    """
    if outcome is AttemptOutcome.ACCEPTED:
        return Next(NextKind.SENT, MessageStatus.SENT)
    if outcome is AttemptOutcome.PERMANENT or (
        outcome is AttemptOutcome.OUTCOME_UNKNOWN and not at_least_once
    ):
        return Next(NextKind.FAIL, MessageStatus.FAILED)
    if attempt >= max_attempts:
        return Next(NextKind.DEAD_LETTER, MessageStatus.QUEUED)
    delay = backoff_seconds(attempt, retry_base_seconds, retry_max_seconds)
    return Next(NextKind.RETRY, MessageStatus.QUEUED, delay)


def fits_in_time(
    remaining_ms: int,
    position: int,
    concurrency: int,
    send_budget_ms: int,
    write_budget_ms: int,
) -> bool:
    """Whether the ``position``-th claim (0-based) for one provider can be sent and its
    outcome written before the deadline.

    Sends to one provider run ``concurrency`` at a time, so that claim waits for
    ``position // concurrency`` earlier waves: it needs ``(position // concurrency + 1) *
    send_budget_ms + write_budget_ms`` milliseconds. A record that does not fit is left
    unclaimed (a batch item failure, redelivered) rather than claimed and then abandoned
    mid-send, which would hold it for a whole lease.

    Raises:
        ValueError: ``concurrency`` < 1 or a negative ``position``.
    """
    if concurrency < 1 or position < 0:
        raise ValueError("concurrency must be >= 1 and position >= 0")
    waves = position // concurrency + 1
    return waves * send_budget_ms + write_budget_ms <= remaining_ms
