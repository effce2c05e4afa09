"""A tenant's own retention periods in its route policy (issue 11): parsed from the
payload's ``retention`` block, bounded like the stack's (delete >= 15 days, delete > redact)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sms_gateway.domain.routing import (
    InvalidRoutePolicy,
    Strategy,
    TenantRetention,
    parse_policy,
)


def _policy(retention: Any) -> str:
    return json.dumps({"default_provider": "provider-b", "retention": retention})


def test_a_policy_without_retention_keeps_the_stacks_periods() -> None:
    policy = parse_policy("t", "direct", '{"default_provider": "provider-b"}')
    assert policy.retention is None


@pytest.mark.parametrize("strategy", ["direct", "failover", "weighted"])
def test_every_strategy_takes_a_retention_block(strategy: str) -> None:
    payload: dict[str, Any] = {"retention": {"redact_after_days": 7, "delete_after_days": 15}}
    if strategy == "direct":
        payload["default_provider"] = "a"
    else:
        payload["providers"] = [{"provider": "a", "weight": 1}]
    policy = parse_policy("t", strategy, payload, version=3)
    assert policy.retention == TenantRetention(7, 15)
    assert (policy.strategy, policy.providers, policy.version) == (Strategy(strategy), ("a",), 3)


@pytest.mark.parametrize(
    ("retention", "complaint"),
    [
        ({"redact_after_days": 7, "delete_after_days": 14}, ">= 15"),
        ({"redact_after_days": 20, "delete_after_days": 20}, "more than"),
        ({"redact_after_days": 30, "delete_after_days": 20}, "more than"),
        ({"redact_after_days": 0, "delete_after_days": 20}, "between 1 and 36500"),
        ({"redact_after_days": 1, "delete_after_days": 36_501}, "between 1 and 36500"),
        ({"redact_after_days": "7", "delete_after_days": 20}, "integer"),
        ({"redact_after_days": True, "delete_after_days": 20}, "integer"),
        ({"redact_after_days": 7.5, "delete_after_days": 20}, "integer"),
        ({"redact_after_days": 7}, "exactly"),
        ({"redact_after_days": 7, "delete_after_days": 20, "audit": 9}, "exactly"),
        ([7, 20], "exactly"),
        (None, "exactly"),
    ],
)
def test_out_of_bounds_periods_are_refused(retention: Any, complaint: str) -> None:
    with pytest.raises(InvalidRoutePolicy, match=complaint):
        parse_policy("t", "direct", _policy(retention))


def test_the_tightest_allowed_periods() -> None:
    assert parse_policy("t", "direct", _policy({"redact_after_days": 1, "delete_after_days": 15}))
    assert parse_policy("t", "direct", _policy({"redact_after_days": 14, "delete_after_days": 15}))
