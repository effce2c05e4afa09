"""Lifecycle table, reasons, route policies, backoff and the policy cache."""

from __future__ import annotations

from collections import Counter

import pytest

from sms_gateway.domain.reasons import ReasonCode
from sms_gateway.domain.retry import backoff_seconds
from sms_gateway.domain.routing import (
    Delivery,
    InvalidRoutePolicy,
    RoutePolicy,
    Strategy,
    choose_provider,
    parse_policy,
)
from sms_gateway.domain.states import (
    ALLOWED_TRANSITIONS,
    InvalidTransition,
    MessageStatus,
    can_transition,
    check_transition,
)
from sms_gateway.services.routing import CachedPolicyResolver, NoRoutePolicy

S = MessageStatus

# DESIGN section 4, written out again by hand: the table under test must equal it.
CONTRACT = {
    ("accepted", "queued"),
    ("queued", "sending"),
    ("queued", "failed"),
    ("queued", "expired"),
    ("queued", "canceled"),
    ("sending", "sent"),
    ("sending", "failed"),
    ("sending", "expired"),
    ("sending", "queued"),
    ("sending", "canceled"),
    ("sent", "delivered"),
    ("sent", "failed"),
    ("sent", "expired"),
    ("failed", "queued"),
}


def test_transition_table_is_exactly_the_contract() -> None:
    allowed = {(a.value, b.value) for a in S for b in S if can_transition(a, b)}
    assert allowed == CONTRACT
    assert set(ALLOWED_TRANSITIONS) == set(S)


@pytest.mark.parametrize(
    ("a", "b"),
    [(S.DELIVERED, S.SENT), (S.SENT, S.SENDING), (S.SENT, S.QUEUED), (S.DELIVERED, S.FAILED)],
)
def test_backwards_moves_are_refused(a: MessageStatus, b: MessageStatus) -> None:
    with pytest.raises(InvalidTransition):
        check_transition(a, b)


def test_retryable_reasons() -> None:
    retryable = {r.value for r in ReasonCode if r.retryable}
    assert retryable == {
        "quota_exceeded",
        "rate_limited",
        "provider_transient",
        "network_error",
        "timeout",
        "unknown",
        # retryable, but retried only under an at_least_once policy (decisions)
        "outcome_unknown",
    }
    assert not ReasonCode.PROVIDER_PERMANENT.retryable
    assert not ReasonCode.RECIPIENT_BLACKLISTED.retryable


def test_direct_policy() -> None:
    policy = parse_policy("t", "direct", '{"default_provider": "a"}')
    assert [choose_provider(policy, "m", n) for n in (1, 2, 3)] == ["a", "a", "a"]


def test_failover_moves_to_the_next_provider_after_each_failure() -> None:
    policy = parse_policy("t", "failover", {"providers": [{"provider": "a"}, {"provider": "b"}]})
    assert [choose_provider(policy, "m", n) for n in (1, 2, 3, 4)] == ["a", "b", "a", "b"]


def test_weighted_split_follows_weights_and_is_stable_per_message() -> None:
    policy = parse_policy(
        "t",
        "weighted",
        {"providers": [{"provider": "a", "weight": 70}, {"provider": "b", "weight": 30}]},
    )
    picks = Counter(choose_provider(policy, f"msg-{i}", 1) for i in range(10_000))
    # sha256 buckets are uniform: 7000 +- 3 sigma (sigma = sqrt(10000*.7*.3) ~ 46)
    assert 6860 <= picks["a"] <= 7140
    assert picks["a"] + picks["b"] == 10_000
    assert {choose_provider(policy, "msg-1", n) for n in (1, 2, 3)} == {
        choose_provider(policy, "msg-1", 1)
    }


def test_zero_weight_provider_never_chosen() -> None:
    policy = parse_policy(
        "t",
        "weighted",
        {"providers": [{"provider": "a", "weight": 0}, {"provider": "b", "weight": 5}]},
    )
    assert {choose_provider(policy, f"m{i}", 1) for i in range(200)} == {"b"}


@pytest.mark.parametrize(
    ("strategy", "payload"),
    [
        ("roundrobin", "{}"),
        ("direct", "{}"),
        ("direct", "not json"),
        ("weighted", '{"providers": []}'),
        ("weighted", '{"providers": [{"provider": "a", "weight": -1}]}'),
        ("weighted", '{"providers": [{"provider": "a", "weight": 0}]}'),
        ("weighted", '{"providers": [{"provider": "a", "weight": true}]}'),
        ("failover", '{"providers": [{"name": "a"}]}'),
        ("failover", "[]"),
    ],
)
def test_malformed_policies(strategy: str, payload: str) -> None:
    with pytest.raises(InvalidRoutePolicy):
        parse_policy("t", strategy, payload)


@pytest.mark.parametrize(
    ("attempt", "expected"), [(1, 30), (2, 60), (3, 120), (5, 480), (6, 900), (40, 900)]
)
def test_backoff_doubles_and_caps(attempt: int, expected: int) -> None:
    assert backoff_seconds(attempt, 30, 900) == expected


def test_backoff_never_exceeds_sqs_maximum() -> None:
    assert backoff_seconds(30, 3600, 10**9) == 43_200


class FakeStore:
    def __init__(self) -> None:
        self.policies = {"t1": RoutePolicy("t1", Strategy.DIRECT, ("a",))}
        self.reads = 0
        self.down = False

    def get(self, tenant_id: str) -> RoutePolicy | None:
        self.reads += 1
        if self.down:
            raise ConnectionError("store down")
        return self.policies.get(tenant_id)


class FakeTimer:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_cache_serves_within_ttl_and_refreshes_after() -> None:
    store, timer = FakeStore(), FakeTimer()
    resolver = CachedPolicyResolver(store, ttl_seconds=60, max_size=10, timer=timer)
    assert resolver.resolve("t1").providers == ("a",)
    timer.now = 59
    store.policies["t1"] = RoutePolicy("t1", Strategy.DIRECT, ("b",))
    assert resolver.resolve("t1").providers == ("a",)
    assert store.reads == 1
    timer.now = 61
    assert resolver.resolve("t1").providers == ("b",)
    assert store.reads == 2


def test_expired_entry_serves_while_store_fails() -> None:
    store, timer = FakeStore(), FakeTimer()
    resolver = CachedPolicyResolver(store, ttl_seconds=60, max_size=10, timer=timer)
    resolver.resolve("t1")
    timer.now = 1000
    store.down = True
    assert resolver.resolve("t1").providers == ("a",)
    with pytest.raises(ConnectionError):
        resolver.resolve("never-seen")


def test_cache_is_bounded() -> None:
    store, timer = FakeStore(), FakeTimer()
    for i in range(5):
        store.policies[f"x{i}"] = RoutePolicy(f"x{i}", Strategy.DIRECT, ("a",))
    resolver = CachedPolicyResolver(store, ttl_seconds=60, max_size=2, timer=timer)
    for i in range(5):
        resolver.resolve(f"x{i}")
    reads = store.reads
    resolver.resolve("x0")  # evicted by size: read again
    assert store.reads == reads + 1


def test_missing_policy_uses_default_provider_or_raises() -> None:
    store = FakeStore()
    assert CachedPolicyResolver(store, ttl_seconds=1, max_size=1, default_provider="z").resolve(
        "nobody"
    ).providers == ("z",)
    with pytest.raises(NoRoutePolicy):
        CachedPolicyResolver(store, ttl_seconds=1, max_size=1).resolve("nobody")


@pytest.mark.parametrize(
    ("payload", "delivery"),
    [
        ({"default_provider": "a"}, Delivery.AT_MOST_ONCE),
        ({"default_provider": "a", "delivery": "at_most_once"}, Delivery.AT_MOST_ONCE),
        ({"default_provider": "a", "delivery": "at_least_once"}, Delivery.AT_LEAST_ONCE),
    ],
)
def test_policy_delivery_guarantee_defaults_to_at_most_once(
    payload: dict[str, str], delivery: Delivery
) -> None:
    assert parse_policy("t", "direct", payload).delivery is delivery


def test_policy_refuses_an_unknown_delivery_guarantee() -> None:
    with pytest.raises(InvalidRoutePolicy, match="'delivery' must be"):
        parse_policy("t", "failover", {"providers": [{"provider": "a"}], "delivery": "twice"})
