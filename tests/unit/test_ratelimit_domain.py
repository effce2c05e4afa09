"""The token bucket arithmetic (sms_gateway.domain.ratelimit): exact, in integer nanoseconds.

The properties are checked against bounds worked out independently of the implementation:
the configured rate as an exact fraction, never the rounded interval the code uses.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sms_gateway.domain.ratelimit import (
    NS_PER_SECOND,
    OversizeMessage,
    SendRate,
    available,
    grant_after,
    held_until,
    plan_take,
    ready_in_ns,
)

T0 = 1_735_689_600 * NS_PER_SECOND  # 2025-01-01T00:00:00Z

rates = st.builds(
    SendRate.of,
    st.one_of(
        st.integers(min_value=1, max_value=1000),
        st.sampled_from([0.1, 0.5, 1.5, 3, 7, 33.3]),
    ),
    st.integers(min_value=10, max_value=60),
)
# (gap before the request in ns, the request): segments per message, or a hold of n ns.
requests = st.one_of(
    st.lists(st.integers(min_value=1, max_value=10), min_size=1, max_size=12),
    st.integers(min_value=0, max_value=5 * NS_PER_SECOND).map(lambda ns: ("hold", ns)),
)
steps = st.lists(
    st.tuples(st.integers(min_value=0, max_value=3 * NS_PER_SECOND), requests), max_size=40
)


def run(rate: SendRate, script: list[tuple[int, object]]) -> list[tuple[int, int]]:
    """Play ``script`` on one bucket; (time, segments granted) per take."""
    state: int | None = None
    now = T0
    granted: list[tuple[int, int]] = []
    for gap, request in script:
        now += gap
        if isinstance(request, tuple):
            state = held_until(state, now + request[1])
            continue
        assert isinstance(request, list)
        plan = plan_take(rate, state, now, request)
        if plan.take is not None:
            assert plan.take.holds(state)
            state = plan.take.apply(state)
        granted.append((now, plan.segments))
    return granted


def test_interval_rounds_up_and_reads_decimal_spelling() -> None:
    assert SendRate.of(10, 20).interval_ns == 100_000_000
    assert SendRate.of(0.1, 10).interval_ns == 10 * NS_PER_SECOND  # exactly 1/10, not binary
    assert SendRate.of(3, 10).interval_ns == 333_333_334  # ceil: never faster than 3/s
    assert SendRate.of(10, 20).tolerance_ns == 2 * NS_PER_SECOND
    with pytest.raises(ValueError):
        SendRate.of(0, 10)
    with pytest.raises(ValueError):
        SendRate.of(1, 0)


def test_a_new_bucket_is_full_and_grants_whole_messages_in_order() -> None:
    rate = SendRate.of(10, 20)
    plan = plan_take(rate, None, T0, [8, 8, 3, 1])
    # 8 + 8 = 16 fits; 16 + 3 = 19 fits; + 1 = 20 fits.
    assert (plan.messages, plan.segments) == (4, 20)
    plan = plan_take(rate, None, T0, [8, 8, 8, 1])
    # 24 > 20: the third message (and everything after it, order is kept) waits.
    assert (plan.messages, plan.segments) == (2, 16)
    assert plan.take is not None and plan.take.from_full
    after = plan.take.apply(None)
    assert after == T0 - 2 * NS_PER_SECOND + 16 * 100_000_000
    assert available(rate, after, T0) == 4
    grant = grant_after(rate, after, T0, [8, 8, 8, 1], plan.messages)
    # 4 left, 8 needed: 4 more segments at 10/s = 0.4 s; then the 1-segment one 0.1 s later.
    assert grant.ready_in_ns == (400_000_000, 500_000_000)
    assert grant.retry_after_seconds == 0.4
    assert not grant.complete
    # Asked of a full bucket, the same messages are ready at once, then one interval apart.
    assert ready_in_ns(rate, None, T0, [20, 1]) == (0, 100_000_000)


def test_refill_is_rate_times_elapsed_capped_at_burst() -> None:
    rate = SendRate.of(10, 20)
    empty = T0
    assert available(rate, empty, T0) == 0
    assert available(rate, empty, T0 + 99_999_999) == 0
    assert available(rate, empty, T0 + 100_000_000) == 1
    assert available(rate, empty, T0 + 1_500_000_000) == 15
    assert available(rate, empty, T0 + 60 * NS_PER_SECOND) == 20
    assert available(rate, empty + NS_PER_SECOND, T0) == 0  # held: nothing before the end


def test_a_partial_bucket_take_adds_its_cost_to_the_stored_value() -> None:
    rate = SendRate.of(10, 20)
    state = T0 - NS_PER_SECOND  # 10 tokens at T0
    plan = plan_take(rate, state, T0, [4, 4, 4])
    assert (plan.messages, plan.segments) == (2, 8)
    take = plan.take
    assert take is not None and not take.from_full
    assert take.holds(state)
    # Another sender took 5 meanwhile: 8 no longer fit, the condition fails.
    assert not take.holds(state + 5 * 100_000_000)
    # Another sender took 2: 8 still fit, and the take applies on top of theirs.
    assert take.holds(state + 2 * 100_000_000)
    assert take.apply(state + 2 * 100_000_000) == state + 10 * 100_000_000
    # The bucket turned out full: the partial form must not apply (it would skip the clamp).
    assert not take.holds(T0 - 30 * NS_PER_SECOND)


def test_messages_longer_than_the_burst_or_empty_are_refused() -> None:
    rate = SendRate.of(10, 5)
    with pytest.raises(OversizeMessage):
        plan_take(rate, None, T0, [1, 6])
    with pytest.raises(ValueError):
        plan_take(rate, None, T0, [0])


def test_a_hold_empties_the_bucket_until_it_ends_then_refills_from_empty() -> None:
    rate = SendRate.of(10, 20)
    state = held_until(None, T0 + 2 * NS_PER_SECOND)
    assert plan_take(rate, state, T0 + NS_PER_SECOND, [1]).messages == 0
    assert plan_take(rate, state, T0 + 2 * NS_PER_SECOND, [1]).messages == 0
    assert plan_take(rate, state, T0 + 2 * NS_PER_SECOND + 100_000_000, [1]).messages == 1
    # A shorter, later hold never shortens a longer one.
    assert held_until(state, T0 + NS_PER_SECOND) == state
    grant = grant_after(rate, state, T0, [3], 0)
    assert grant.ready_in_ns == (2 * NS_PER_SECOND + 300_000_000,)


@settings(max_examples=300, deadline=None)
@given(rate=rates, script=steps)
def test_never_grants_more_than_burst_plus_rate_times_elapsed_over_any_window(
    rate: SendRate, script: list[tuple[int, object]]
) -> None:
    granted = run(rate, script)
    for i, (start, _) in enumerate(granted):
        total = 0
        for end, segments in granted[i:]:
            total += segments
            # segments <= burst + rate * (end - start) seconds, exactly.
            assert Fraction(total - rate.burst) <= rate.segments_per_second * Fraction(
                end - start, NS_PER_SECOND
            )


@settings(max_examples=300, deadline=None)
@given(rate=rates, script=steps, wanted=st.lists(st.integers(1, 10), min_size=1, max_size=12))
def test_grant_is_the_longest_prefix_and_the_wait_is_exact(
    rate: SendRate, script: list[tuple[int, object]], wanted: list[int]
) -> None:
    # Reach an arbitrary state, then ask.
    state: int | None = None
    now = T0
    for gap, request in script:
        now += gap
        if isinstance(request, tuple):
            state = held_until(state, now + request[1])
        else:
            assert isinstance(request, list)
            plan = plan_take(rate, state, now, request)
            if plan.take is not None:
                state = plan.take.apply(state)
    room = available(rate, state, now)
    plan = plan_take(rate, state, now, wanted)
    assert sum(wanted[: plan.messages]) == plan.segments <= room
    if plan.messages < len(wanted):
        assert plan.segments + wanted[plan.messages] > room  # the next one did not fit
    after = plan.take.apply(state) if plan.take is not None else state
    if plan.take is not None:
        assert plan.take.holds(state)
        assert available(rate, after, now) == room - plan.segments
    grant = grant_after(rate, after, now, wanted, plan.messages)
    assert grant.messages == plan.messages
    assert len(grant.ready_in_ns) == len(wanted) - plan.messages
    if grant.ready_in_ns:
        first = grant.ready_in_ns[0]
        need = wanted[plan.messages]
        assert first > 0
        assert available(rate, after, now + first) >= need
        assert available(rate, after, now + first - 1) < need
        # Taking each waiting message at its ready time, in order, always succeeds.
        state_j = after
        for need_j, ready in zip(wanted[plan.messages :], grant.ready_in_ns, strict=True):
            plan_j = plan_take(rate, state_j, now + ready, [need_j])
            assert plan_j.messages == 1
            assert plan_j.take is not None
            state_j = plan_j.take.apply(state_j)
        assert list(grant.ready_in_ns) == sorted(grant.ready_in_ns)


@settings(max_examples=200, deadline=None)
@given(rate=rates, gap=st.integers(0, 100 * NS_PER_SECOND), first=st.integers(1, 10))
def test_an_idle_bucket_refills_to_exactly_the_burst(rate: SendRate, gap: int, first: int) -> None:
    plan = plan_take(rate, None, T0, [first])
    assert plan.take is not None
    state = plan.take.apply(None)
    expected = min(rate.burst, rate.burst - first + gap // rate.interval_ns)
    assert available(rate, state, T0 + gap) == expected


@pytest.mark.parametrize("rate", [SendRate.of(3, 10), SendRate.of(7, 10), SendRate.of(0.3, 10)])
def test_draining_at_the_ready_times_never_beats_the_exact_rate(rate: SendRate) -> None:
    # Rates whose interval is not a whole number of nanoseconds: rounding must go the safe way.
    plan = plan_take(rate, None, T0, [rate.burst])
    assert plan.take is not None
    state, now, total = plan.take.apply(None), T0, rate.burst
    for _ in range(2000):
        (wait,) = grant_after(rate, state, now, [1], 0).ready_in_ns
        now += wait
        step = plan_take(rate, state, now, [1])
        assert step.take is not None
        state, total = step.take.apply(state), total + 1
        assert total - rate.burst <= rate.segments_per_second * Fraction(now - T0, NS_PER_SECOND)
