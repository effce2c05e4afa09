"""Tenants as records (issue 11, item 1): a tenant id that never changes, and the API keys
that map to it, several at a time so a key can be rotated.

Deployed (``api_key`` mode) API Gateway authenticates a request by its API key and hands the
function the key's id (``requestContext.identity.apiKeyId``); the gateway maps that id to its
tenant through a :class:`KeyRecord`. Messages, idempotency keys and route policies are keyed
by the tenant id, so a new key of the same tenant sees the same messages and policy.

Pure data and rules: no I/O (the DynamoDB store is :mod:`sms_gateway.adapters.dynamodb_tenants`).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

# The tenant id's alphabet: the same as the local X-Tenant-ID header's
# (sms_gateway.api.tenancy), so a tenant id works in both modes. API Gateway key ids
# (10 lower-case letters and digits) fit it, so an existing key id can be adopted as a tenant id.
TENANT_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# Limits an operator may set per tenant (API Gateway's own bounds are per account and region:
# the account's 10,000 requests per second by default; these stop a typo, not the account).
MAX_RATE_LIMIT: Final = 10_000.0
MAX_BURST_LIMIT: Final = 5_000
MAX_DAILY_QUOTA: Final = 100_000_000


class KeyState(StrEnum):
    """An API key's state: ``active`` keys authenticate their tenant, ``revoked`` ones never
    again (a revoked key is also disabled in API Gateway)."""

    ACTIVE = "active"
    REVOKED = "revoked"


class InvalidTenant(ValueError):
    """A tenant id, name or limit that breaks a rule; the message names it."""


@dataclass(frozen=True, slots=True)
class TenantLimits:
    """A tenant's usage plan: ``rate_limit`` requests per second (steady), ``burst_limit``
    requests at once, ``daily_quota`` requests per UTC day (API Gateway's usage-plan
    ``throttle`` and ``quota`` with ``period: DAY``).

    Raises:
        InvalidTenant: a value out of its bounds (rate in (0, 10,000], burst in [1, 5,000] and
            not below the rate, quota in [1, 100,000,000]).
    """

    rate_limit: float
    burst_limit: int
    daily_quota: int

    def __post_init__(self) -> None:
        if not 0 < self.rate_limit <= MAX_RATE_LIMIT:
            raise InvalidTenant(f"rate_limit must be in (0, {MAX_RATE_LIMIT:g}] requests/s")
        if not 1 <= self.burst_limit <= MAX_BURST_LIMIT:
            raise InvalidTenant(f"burst_limit must be in [1, {MAX_BURST_LIMIT}] requests")
        if self.burst_limit < self.rate_limit:
            raise InvalidTenant(
                "burst_limit must be at least rate_limit (a bucket smaller than one second's "
                "rate throttles the steady rate itself)"
            )
        if not 1 <= self.daily_quota <= MAX_DAILY_QUOTA:
            raise InvalidTenant(f"daily_quota must be in [1, {MAX_DAILY_QUOTA}] requests/day")


# New tenants get these unless the operator says otherwise (README, "the operator's month").
DEFAULT_LIMITS: Final = TenantLimits(rate_limit=10.0, burst_limit=20, daily_quota=10_000)


@dataclass(frozen=True, slots=True)
class Tenant:
    """A tenant record: ``tenant_id`` (never changes), ``name`` (for people), its own
    ``usage_plan_id`` (API Gateway) and ``limits``, ``created_at`` (aware UTC).

    ``shared_plan``: the tenant's keys are in a usage plan it does not own (an adopted key
    still in the stack's original plan); setting its quota first gives it its own plan.
    """

    tenant_id: str
    name: str
    usage_plan_id: str
    limits: TenantLimits | None
    created_at: datetime
    shared_plan: bool = False


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One API key id -> its tenant: ``state``, ``created_at`` and ``revoked_at`` (aware UTC)."""

    key_id: str
    tenant_id: str
    state: KeyState
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        """Whether the key authenticates its tenant."""
        return self.state is KeyState.ACTIVE


def check_tenant_id(tenant_id: str) -> str:
    """``tenant_id`` if it is 1-128 of ``A-Z a-z 0-9 . _ : -``.

    Raises:
        InvalidTenant: otherwise.
    """
    if not TENANT_ID.fullmatch(tenant_id):
        raise InvalidTenant("tenant_id must be 1-128 of A-Z a-z 0-9 . _ : -")
    return tenant_id


def new_tenant_id() -> str:
    """A fresh tenant id: ``t-`` and 20 hex digits of a random UUID (80 bits)."""
    return f"t-{uuid.uuid4().hex[:20]}"
