"""The pure rules of cancel, replay and stuck (sms_gateway.domain.operations)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sms_gateway.domain.operations import (
    CancelKind,
    ReplaySelection,
    ReplaySkip,
    can_replay,
    current_generation,
    decide_cancel,
    parse_duration,
    replay_max_attempts,
    replay_skip,
)
from sms_gateway.domain.states import MessageStatus, can_transition


@pytest.mark.parametrize("status", list(MessageStatus))
def test_cancel_only_from_queued_and_idempotent_once_canceled(status: MessageStatus) -> None:
    expected = {
        MessageStatus.QUEUED: CancelKind.CANCEL,
        MessageStatus.CANCELED: CancelKind.ALREADY,
    }.get(status, CancelKind.REFUSE)
    assert decide_cancel(status) is expected
    if expected is CancelKind.CANCEL:  # the lifecycle table allows what cancel does
        assert can_transition(status, MessageStatus.CANCELED)


@pytest.mark.parametrize("status", list(MessageStatus))
def test_replay_only_from_failed_which_the_table_allows(status: MessageStatus) -> None:
    assert can_replay(status) is (status is MessageStatus.FAILED)
    if can_replay(status):
        assert can_transition(status, MessageStatus.QUEUED)


@given(st.integers(0, 1000), st.integers(1, 1000))
def test_replay_adds_the_budget_to_the_attempts_spent(attempts: int, budget: int) -> None:
    assert replay_max_attempts(attempts, budget) - attempts == budget


@pytest.mark.parametrize(("attempts", "budget"), [(3, 0), (-1, 1)])
def test_replay_budget_and_attempts_are_checked(attempts: int, budget: int) -> None:
    with pytest.raises(ValueError, match="budget"):
        replay_max_attempts(attempts, budget)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), (" 15M ", 900)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "15", "m", "0m", "15 m", "1.5h", "15m2", "-5m", "1w"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_a_replay_selection_needs_a_criterion_and_an_ordered_range() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ReplaySelection()
    t = datetime(2026, 11, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="before"):
        ReplaySelection(since=t, until=t)
    with pytest.raises(ValueError, match="limit"):
        ReplaySelection(tenant_id="t", limit=0)
    assert ReplaySelection(since=t).limit == 100


@pytest.mark.parametrize(("replayed", "generation"), [([], 0), ([0], 1), ([0, 1], 2), ([2, 0], 3)])
def test_the_current_generation_follows_the_newest_replay(
    replayed: list[int], generation: int
) -> None:
    assert current_generation(replayed) == generation


@pytest.mark.parametrize(
    ("status", "reason", "letter", "current", "expected"),
    [
        (MessageStatus.FAILED, "dead_letter", 0, 0, None),
        (MessageStatus.FAILED, "dead_letter", 1, 1, None),
        # a receipt failed the sent message (sent -> failed), or the provider refused it
        (MessageStatus.FAILED, "provider_permanent", 0, 0, ReplaySkip.FAILED_OTHERWISE),
        (MessageStatus.FAILED, "opted_out", 0, 0, ReplaySkip.FAILED_OTHERWISE),
        (MessageStatus.FAILED, None, 0, 0, ReplaySkip.FAILED_OTHERWISE),
        # dead-lettered, but on another generation than this dead letter's
        (MessageStatus.FAILED, "dead_letter", 0, 1, ReplaySkip.FAILED_OTHERWISE),
        (MessageStatus.SENT, "dead_letter", 0, 0, ReplaySkip.NOT_FAILED),
        (MessageStatus.QUEUED, None, 0, 1, ReplaySkip.NOT_FAILED),
    ],
)
def test_a_dead_letter_is_replayed_only_when_it_is_the_message_s_failure(
    status: MessageStatus,
    reason: str | None,
    letter: int,
    current: int,
    expected: ReplaySkip | None,
) -> None:
    assert replay_skip(status, reason, letter, current) is expected
