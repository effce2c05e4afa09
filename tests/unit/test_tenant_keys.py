"""API key id -> tenant id in the API functions (sms_gateway.services.tenants): the TTL
cache, revoked and unknown keys, and the tenant rules of sms_gateway.domain.tenants."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sms_gateway.api.tenancy import tenant_of
from sms_gateway.domain.errors import ApiKeyNotActive
from sms_gateway.domain.tenants import (
    InvalidTenant,
    KeyRecord,
    KeyState,
    TenantLimits,
    check_tenant_id,
    new_tenant_id,
)
from sms_gateway.services.tenants import TenantKeyResolver
from sms_gateway.settings import AuthMode

CREATED = datetime(2026, 11, 30, tzinfo=UTC)


class Directory:
    """Key records in memory, counting reads."""

    def __init__(self) -> None:
        self.keys: dict[str, KeyRecord] = {}
        self.reads = 0

    def get_key(self, key_id: str) -> KeyRecord | None:
        self.reads += 1
        return self.keys.get(key_id)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_maps_to_its_tenant_and_is_read_once_per_ttl() -> None:
    directory, clock = Directory(), Clock()
    directory.keys["k1"] = KeyRecord("k1", "acme", KeyState.ACTIVE, CREATED)
    resolver = TenantKeyResolver(directory, ttl_seconds=30, clock=clock)
    assert [resolver.tenant_of("k1") for _ in range(5)] == ["acme"] * 5
    assert directory.reads == 1
    # revoked in the table: still served from the cache until the TTL has passed ...
    directory.keys["k1"] = KeyRecord("k1", "acme", KeyState.REVOKED, CREATED, CREATED)
    clock.now += 29.9
    assert resolver.tenant_of("k1") == "acme"
    assert directory.reads == 1
    # ... and refused once it has
    clock.now += 0.2
    with pytest.raises(ApiKeyNotActive):
        resolver.tenant_of("k1")
    assert directory.reads == 2


def test_unknown_keys_are_refused_and_the_refusal_is_cached() -> None:
    directory, clock = Directory(), Clock()
    resolver = TenantKeyResolver(directory, ttl_seconds=10, clock=clock)
    for _ in range(3):
        with pytest.raises(ApiKeyNotActive):
            resolver.tenant_of("nobody")
    assert directory.reads == 1
    directory.keys["nobody"] = KeyRecord("nobody", "late", KeyState.ACTIVE, CREATED)
    clock.now += 10.1
    assert resolver.tenant_of("nobody") == "late"


def test_ttl_zero_reads_every_time() -> None:
    directory = Directory()
    directory.keys["k1"] = KeyRecord("k1", "acme", KeyState.ACTIVE, CREATED)
    resolver = TenantKeyResolver(directory, ttl_seconds=0)
    for _ in range(3):
        resolver.tenant_of("k1")
    assert directory.reads == 3


def test_a_directory_failure_is_not_cached() -> None:
    class Failing(Directory):
        def get_key(self, key_id: str) -> KeyRecord | None:
            self.reads += 1
            if self.reads == 1:
                raise ConnectionError("DynamoDB unreachable")
            return KeyRecord(key_id, "acme", KeyState.ACTIVE, CREATED)

    directory = Failing()
    resolver = TenantKeyResolver(directory, ttl_seconds=60, clock=Clock())
    with pytest.raises(ConnectionError):
        resolver.tenant_of("k1")
    assert resolver.tenant_of("k1") == "acme"


def test_tenancy_maps_the_api_key_id_and_ignores_the_header_when_deployed() -> None:
    context = {"identity": {"apiKeyId": "k1"}}
    assert tenant_of(context, "spoofed", AuthMode.API_KEY, {"k1": "acme"}.__getitem__) == "acme"
    # local mode: the header, and no lookup
    assert tenant_of(context, "tenant-1", AuthMode.LOCAL, {}.__getitem__) == "tenant-1"


@pytest.mark.parametrize(
    ("rate", "burst", "quota", "message"),
    [
        (0, 10, 100, "rate_limit"),
        (10_001, 10_000, 100, "rate_limit"),
        (10, 0, 100, "burst_limit"),
        (10, 5, 100, "at least rate_limit"),
        (10, 20, 0, "daily_quota"),
        (10, 20, 100_000_001, "daily_quota"),
    ],
)
def test_limits_out_of_bounds_are_refused(
    rate: float, burst: int, quota: int, message: str
) -> None:
    with pytest.raises(InvalidTenant, match=message):
        TenantLimits(rate, burst, quota)


def test_tenant_ids() -> None:
    fresh = new_tenant_id()
    assert fresh.startswith("t-") and len(fresh) == 22
    assert check_tenant_id(fresh) == fresh
    assert check_tenant_id("a1b2c3d4e5") == "a1b2c3d4e5"  # an API Gateway key id (adoption)
    for bad in ("", "a b", "x" * 129, "é"):
        with pytest.raises(InvalidTenant):
            check_tenant_id(bad)
