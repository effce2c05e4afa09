"""The sender's decisions (domain/decisions.py): examples worked out by hand, and properties
over random histories (hypothesis): never sends a finished message, never moves backwards,
every path ends terminal within max_attempts."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sms_gateway.domain.decisions import (
    AttemptOutcome,
    IntakeKind,
    MessageState,
    NextKind,
    decide_after_attempt,
    decide_intake,
    fits_in_time,
    released,
)
from sms_gateway.domain.states import MessageStatus, can_transition

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
S = MessageStatus


@pytest.mark.parametrize(
    ("state", "kind", "attempt", "wait"),
    [
        (MessageState(S.QUEUED, 0, 3), IntakeKind.ATTEMPT, 1, 0),
        (MessageState(S.QUEUED, 2, 3), IntakeKind.ATTEMPT, 3, 0),
        (MessageState(S.QUEUED, 3, 3), IntakeKind.DEAD_LETTER, 0, 0),
        (MessageState(S.QUEUED, 0, 3, expires_at=NOW), IntakeKind.EXPIRE, 0, 0),
        (MessageState(S.QUEUED, 0, 3, expires_at=NOW + timedelta(1)), IntakeKind.ATTEMPT, 1, 0),
        (
            MessageState(S.SENDING, 1, 3, NOW + timedelta(seconds=2.5)),
            IntakeKind.WAIT_FOR_LEASE,
            0,
            3,
        ),
        (
            MessageState(S.SENDING, 1, 3, NOW + timedelta(seconds=0.2)),
            IntakeKind.WAIT_FOR_LEASE,
            0,
            1,
        ),
        (MessageState(S.SENDING, 1, 3, NOW), IntakeKind.RELEASE_LEASE, 0, 0),
        (MessageState(S.SENDING, 1, 3, None), IntakeKind.RELEASE_LEASE, 0, 0),
        (MessageState(S.SENT, 1, 3), IntakeKind.DUPLICATE, 0, 0),
        (MessageState(S.DELIVERED, 1, 3), IntakeKind.DUPLICATE, 0, 0),
        (MessageState(S.FAILED, 3, 3), IntakeKind.DUPLICATE, 0, 0),
        (MessageState(S.EXPIRED, 0, 3), IntakeKind.DUPLICATE, 0, 0),
    ],
)
def test_intake_examples(state: MessageState, kind: IntakeKind, attempt: int, wait: int) -> None:
    decision = decide_intake(state, NOW)
    assert (decision.kind, decision.attempt, decision.wait_seconds) == (kind, attempt, wait)


@pytest.mark.parametrize(
    ("attempt", "outcome", "kind", "target", "delay"),
    [
        (1, AttemptOutcome.ACCEPTED, NextKind.SENT, S.SENT, 0),
        (1, AttemptOutcome.PERMANENT, NextKind.FAIL, S.FAILED, 0),
        (1, AttemptOutcome.TRANSIENT, NextKind.RETRY, S.QUEUED, 30),
        (2, AttemptOutcome.UNKNOWN, NextKind.RETRY, S.QUEUED, 60),
        (3, AttemptOutcome.TRANSIENT, NextKind.DEAD_LETTER, S.QUEUED, 0),
        (3, AttemptOutcome.ACCEPTED, NextKind.SENT, S.SENT, 0),
    ],
)
def test_after_attempt_examples(
    attempt: int, outcome: AttemptOutcome, kind: NextKind, target: S, delay: int
) -> None:
    decided = decide_after_attempt(
        attempt, 3, outcome, retry_base_seconds=30, retry_max_seconds=900
    )
    assert (decided.kind, decided.target, decided.delay_seconds) == (kind, target, delay)


def test_time_rule_counts_waves_per_provider() -> None:
    # 4 at a time, 5 s per send, 1 s to write: 12 s left cover two waves (11 s), not three
    assert fits_in_time(12_000, 0, 4, 5_000, 1_000)
    assert fits_in_time(12_000, 7, 4, 5_000, 1_000)
    assert not fits_in_time(12_000, 8, 4, 5_000, 1_000)
    assert not fits_in_time(5_999, 0, 4, 5_000, 1_000)
    with pytest.raises(ValueError):
        fits_in_time(1, 0, 0, 1, 1)


FINAL = {S.SENT, S.DELIVERED, S.FAILED, S.EXPIRED, S.CANCELED}

# one step of the world: a record is delivered, with what the provider will answer (or a crash
# of the sender mid-send), and how far the clock moves first
steps = st.lists(
    st.tuples(
        st.sampled_from(["accept", "transient", "permanent", "unknown", "crash"]),
        st.integers(min_value=0, max_value=120),
    ),
    min_size=1,
    max_size=40,
)


def simulate(
    max_attempts: int, history: list[tuple[str, int]], validity: int | None
) -> tuple[list[S], int, bool]:
    """Drive one message through the decisions as the sender performs them; returns the
    statuses it took, the provider calls made, and whether it was handed to the DLQ."""
    lease = 60
    now = NOW
    expires = NOW + timedelta(seconds=validity) if validity is not None else None
    state = MessageState(S.QUEUED, 0, max_attempts, None, expires)
    statuses = [state.status]
    sends = 0
    dead = False

    def move(target: S, **changes: object) -> None:
        nonlocal state
        assert can_transition(state.status, target), (state.status, target)
        assert state.status not in FINAL or (state.status, target) == (S.FAILED, S.QUEUED)
        fields = {
            "status": target,
            "attempts": state.attempts,
            "max_attempts": state.max_attempts,
            "lease_expires_at": None,
            "expires_at": state.expires_at,
        }
        fields.update(changes)
        state = MessageState(**fields)  # type: ignore[arg-type]
        statuses.append(target)

    for answer, wait in history:
        now += timedelta(seconds=wait)
        if dead:
            break
        decision = decide_intake(state, now)
        if decision.kind is IntakeKind.RELEASE_LEASE:
            state = released(state)
            statuses.append(state.status)
            decision = decide_intake(state, now)
        if decision.kind is IntakeKind.EXPIRE:
            move(S.EXPIRED)
            continue
        if decision.kind is IntakeKind.DEAD_LETTER:
            dead = True
            continue
        if decision.kind is not IntakeKind.ATTEMPT:
            continue
        assert state.status is S.QUEUED and state.status not in FINAL
        move(S.SENDING, attempts=decision.attempt, lease_expires_at=now + timedelta(seconds=lease))
        sends += 1
        if answer == "crash":
            continue  # the lease will run out
        outcome = AttemptOutcome(answer if answer != "accept" else "accepted")
        nxt = decide_after_attempt(
            decision.attempt, max_attempts, outcome, retry_base_seconds=1, retry_max_seconds=8
        )
        move(nxt.target, attempts=decision.attempt)
        if nxt.kind is NextKind.DEAD_LETTER:
            dead = True
    return statuses, sends, dead


@settings(max_examples=300, deadline=None)
@given(
    max_attempts=st.integers(min_value=1, max_value=6),
    history=steps,
    validity=st.one_of(st.none(), st.integers(min_value=1, max_value=3000)),
)
def test_never_sends_finished_never_backwards_and_bounded(
    max_attempts: int, history: list[tuple[str, int]], validity: int | None
) -> None:
    statuses, sends, _dead = simulate(max_attempts, history, validity)
    # never moves backwards: every step is in the lifecycle table (checked in move), and
    # nothing leaves a final status
    for before, after in itertools.pairwise(statuses):
        assert before not in FINAL, (before, after)
    # never more provider calls than max_attempts
    assert sends <= max_attempts
    # at most one send per SENDING status
    assert statuses.count(S.SENDING) == sends


@settings(max_examples=200, deadline=None)
@given(
    max_attempts=st.integers(min_value=1, max_value=6),
    answers=st.lists(
        st.sampled_from(["accept", "transient", "permanent", "unknown", "crash"]),
        min_size=20,
        max_size=20,
    ),
)
def test_every_path_ends_terminal_within_max_attempts(
    max_attempts: int, answers: list[str]
) -> None:
    # each delivery comes after the lease (61 s): enough deliveries always end the story
    statuses, sends, dead = simulate(max_attempts, [(a, 61) for a in answers], None)
    assert sends <= max_attempts
    assert dead or statuses[-1] in FINAL
    if dead:
        assert statuses[-1] is S.QUEUED  # handed to the DLQ, whose function fails it


@pytest.mark.parametrize(
    ("attempt", "max_attempts", "at_least_once", "kind", "target", "delay"),
    [
        # at most once (the default): failed at once, whatever attempts remain
        (1, 3, False, NextKind.FAIL, MessageStatus.FAILED, 0),
        (3, 3, False, NextKind.FAIL, MessageStatus.FAILED, 0),
        # at least once: as a transient failure (backoff 30 * 2^(n-1), then the dead letter)
        (1, 3, True, NextKind.RETRY, MessageStatus.QUEUED, 30),
        (2, 3, True, NextKind.RETRY, MessageStatus.QUEUED, 60),
        (3, 3, True, NextKind.DEAD_LETTER, MessageStatus.QUEUED, 0),
    ],
)
def test_outcome_unknown_follows_the_delivery_guarantee(
    attempt: int,
    max_attempts: int,
    at_least_once: bool,
    kind: NextKind,
    target: MessageStatus,
    delay: int,
) -> None:
    decided = decide_after_attempt(
        attempt,
        max_attempts,
        AttemptOutcome.OUTCOME_UNKNOWN,
        retry_base_seconds=30,
        retry_max_seconds=900,
        at_least_once=at_least_once,
    )
    assert (decided.kind, decided.target, decided.delay_seconds) == (kind, target, delay)


def test_an_adapter_bug_is_still_retried_under_at_most_once() -> None:
    """``unknown`` (not a provider's answer) keeps its retry; only ``outcome_unknown`` fails."""
    decided = decide_after_attempt(
        1, 3, AttemptOutcome.UNKNOWN, retry_base_seconds=30, retry_max_seconds=900
    )
    assert decided.kind is NextKind.RETRY
