"""SMS_GATEWAY_PROVIDER_RATES / SMS_GATEWAY_RATE_LIMIT_TABLE: validated at start, naming the
variable; wiring.rate_limiter() builds the limiter from them (no AWS client without rates)."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import boto3
import pytest

from sms_gateway import wiring
from sms_gateway.adapters.dynamodb_ratelimit import DynamoDbBucketStore
from sms_gateway.services.ratelimit import BucketRateLimiter, UnlimitedRateLimiter

RATES = '{"provider-a": {"rate": 2.5, "burst": 20, "penalty_seconds": 5}}'


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("SMS_GATEWAY_PROVIDER_RATES", "SMS_GATEWAY_RATE_LIMIT_TABLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    wiring.reset()
    yield
    wiring.reset()


def test_without_rates_every_provider_is_unlimited_and_no_client_is_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(boto3, "client", lambda *a, **k: pytest.fail("no AWS client"))
    assert isinstance(wiring.rate_limiter(), UnlimitedRateLimiter)
    assert wiring.settings().provider_rates == {}


def test_rates_build_a_dynamodb_limiter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMS_GATEWAY_PROVIDER_RATES", RATES)
    monkeypatch.setenv("SMS_GATEWAY_RATE_LIMIT_TABLE", "buckets")
    limiter = wiring.rate_limiter()
    assert isinstance(limiter, BucketRateLimiter)
    assert limiter.limited("provider-a") and not limiter.limited("provider-b")
    assert isinstance(limiter._store, DynamoDbBucketStore)
    assert limiter._store._table == "buckets"
    assert limiter._rates["provider-a"].segments_per_second == Fraction(5, 2)
    assert limiter._penalties == {"provider-a": 5.0}
    assert wiring.rate_limiter() is limiter  # one per container


@pytest.mark.parametrize(
    ("rates", "table", "named"),
    [
        ('{"provider-a": {"rate": 0, "burst": 20}}', "t", "SMS_GATEWAY_PROVIDER_RATES"),
        ('{"provider-a": {"rate": 10}}', "t", "SMS_GATEWAY_PROVIDER_RATES"),
        ('{"provider-a": {"rate": 10, "burst": 20, "x": 1}}', "t", "SMS_GATEWAY_PROVIDER_RATES"),
        ("not json", "t", "SMS_GATEWAY_PROVIDER_RATES"),
        # burst below the longest accepted message (10 segments): it could never be sent
        ('{"provider-a": {"rate": 10, "burst": 9}}', "t", "SMS_GATEWAY_MAX_SEGMENTS"),
        (RATES, "", "SMS_GATEWAY_RATE_LIMIT_TABLE"),
    ],
)
def test_invalid_rates_fail_at_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, rates: str, table: str, named: str
) -> None:
    monkeypatch.setenv("SMS_GATEWAY_PROVIDER_RATES", rates)
    monkeypatch.setenv("SMS_GATEWAY_RATE_LIMIT_TABLE", table)
    with pytest.raises(wiring.SettingsError, match=named):
        wiring.rate_limiter()
