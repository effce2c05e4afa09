"""The send-rate limiter (sms_gateway.services.ratelimit) on the in-memory bucket store: the
rules of acquire / throttled, and the writes they cost, in milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sms_gateway.domain.ratelimit import OversizeMessage, SendRate
from sms_gateway.services.ratelimit import (
    BucketRateLimiter,
    InMemoryBucketStore,
    UnlimitedRateLimiter,
    epoch_ns,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def limiter(
    store: InMemoryBucketStore, clock: Clock, **rates: tuple[float, int]
) -> BucketRateLimiter:
    return BucketRateLimiter(
        store,
        {name.replace("_", "-"): SendRate.of(r, b) for name, (r, b) in rates.items()},
        clock,
        penalties={"provider-a": 2.0},
    )


def test_epoch_ns_is_exact() -> None:
    assert epoch_ns(T0) == 1_735_689_600 * 10**9
    assert epoch_ns(T0 + timedelta(microseconds=7)) == 1_735_689_600 * 10**9 + 7_000


def test_unlimited_provider_is_granted_everything_without_a_write() -> None:
    store, clock = InMemoryBucketStore(), Clock()
    rl = limiter(store, clock, provider_a=(10, 20))
    grant = rl.acquire("provider-b", [10] * 50)
    assert (grant.messages, grant.segments, grant.complete) == (50, 500, True)
    rl.throttled("provider-b")
    assert store.writes == 0
    assert not rl.limited("provider-b") and rl.limited("provider-a")
    assert UnlimitedRateLimiter().acquire("x", [3, 4]).segments == 7


def test_one_write_per_batch_and_the_rest_waits_exactly() -> None:
    store, clock = InMemoryBucketStore(), Clock()
    rl = limiter(store, clock, provider_a=(10, 20))
    grant = rl.acquire("provider-a", [2] * 10)  # 20 segments: the whole burst
    assert (grant.messages, grant.segments) == (10, 20)
    assert store.writes == 1
    grant = rl.acquire("provider-a", [2, 2])
    # Empty bucket: nothing granted, no write needed (this container saw the last value).
    assert (grant.messages, grant.ready_in_seconds) == (0, (0.2, 0.4))
    assert store.writes == 1
    clock.advance(0.3)  # 3 segments refilled
    grant = rl.acquire("provider-a", [2, 2])
    assert (grant.messages, grant.segments, grant.ready_in_seconds) == (1, 2, (0.1,))
    assert store.writes == 2


def test_two_containers_share_one_bucket() -> None:
    store, clock = InMemoryBucketStore(), Clock()
    first = limiter(store, clock, provider_a=(10, 20))
    second = limiter(store, clock, provider_a=(10, 20))
    assert first.acquire("provider-a", [5, 5]).segments == 10
    # The second container has never seen the bucket: it guesses "full", the condition fails
    # and returns the stored value, and the retry takes what is really left.
    grant = second.acquire("provider-a", [4, 4, 4])
    assert (grant.messages, grant.segments) == (2, 8)
    assert store.writes == 3
    # The first container's view is stale (it thinks 10 are left); its take of 5 fails the
    # condition, and its retry grants the 2 that remain.
    grant = first.acquire("provider-a", [1, 1, 5])
    assert (grant.messages, grant.segments) == (2, 2)
    assert store.writes == 5


def test_a_throttle_holds_that_provider_only_then_refills_from_empty() -> None:
    store, clock = InMemoryBucketStore(), Clock()
    rl = limiter(store, clock, provider_a=(10, 20), provider_b=(10, 20))
    other = limiter(store, clock, provider_a=(10, 20), provider_b=(10, 20))
    assert rl.acquire("provider-a", [1]).messages == 1
    rl.throttled("provider-a")  # configured penalty: 2 s
    # Every container sees the hold; provider-b is untouched.
    held = other.acquire("provider-a", [1])
    assert (held.messages, held.retry_after_seconds) == (0, 2.1)
    assert other.acquire("provider-b", [10, 10]).segments == 20
    clock.advance(2.0)
    assert rl.acquire("provider-a", [1]).messages == 0
    clock.advance(0.5)  # 5 segments since the hold ended, not a full burst
    assert rl.acquire("provider-a", [1] * 20).segments == 5


def test_a_provider_hint_wins_over_the_penalty_and_holds_never_shorten() -> None:
    store, clock = InMemoryBucketStore(), Clock()
    rl = limiter(store, clock, provider_a=(10, 20))
    rl.throttled("provider-a", retry_after_seconds=30)
    rl.throttled("provider-a", retry_after_seconds=1)
    grant = rl.acquire("provider-a", [1])
    assert grant.retry_after_seconds == 30.1
    with pytest.raises(ValueError):
        rl.throttled("provider-a", retry_after_seconds=-1)


def test_gives_up_after_bounded_attempts_without_granting() -> None:
    class AlwaysLoses(InMemoryBucketStore):
        """Another sender always wins the race: every take's condition fails."""

        def take(self, provider, take):  # type: ignore[no-untyped-def]
            self.writes += 1
            return False, None

    store, clock = AlwaysLoses(), Clock()
    grant = limiter(store, clock, provider_a=(10, 20)).acquire("provider-a", [1, 1])
    assert (grant.messages, grant.segments) == (0, 0)
    assert store.writes == 4


def test_oversize_messages_are_refused() -> None:
    rl = limiter(InMemoryBucketStore(), Clock(), provider_a=(10, 5))
    with pytest.raises(OversizeMessage):
        rl.acquire("provider-a", [6])
    assert rl.acquire("provider-a", []).messages == 0
