"""Tenants as records (issue 11, item 1): API key id -> tenant id for the API functions, and
the operator's tenant commands.

:class:`TenantKeyResolver` is what ingest and status call on every request in ``api_key``
mode: the key id API Gateway authenticated -> its tenant id, through an in-memory TTL cache
(cachetools), so a warm container reads DynamoDB once per key and cache period. A key with no
record, or revoked, raises :class:`~sms_gateway.domain.errors.ApiKeyNotActive` (403). A revoked
key is refused by this function within the cache's TTL; API Gateway refuses it sooner, since
revoking also disables the key there.

:class:`TenantAdmin` is the one code path of ``sms-gateway admin tenant ...`` and the
AdminFunction's ``tenant_*`` commands (:mod:`sms_gateway.services.admin`).

No SQL here (the ingest function imports this module): the route-policy writer is passed in.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from cachetools import TTLCache

from sms_gateway.domain.errors import ApiKeyNotActive
from sms_gateway.domain.tenants import (
    DEFAULT_LIMITS,
    InvalidTenant,
    KeyRecord,
    KeyState,
    Tenant,
    TenantLimits,
    check_tenant_id,
    new_tenant_id,
)

if TYPE_CHECKING:
    from sms_gateway.adapters.apigateway_plans import ApiGatewayUsagePlans
    from sms_gateway.adapters.dynamodb_tenants import DynamoDbTenantStore


class KeyDirectory(Protocol):
    """Where key records live (:class:`~sms_gateway.adapters.dynamodb_tenants.
    DynamoDbTenantStore`)."""

    def get_key(self, key_id: str) -> KeyRecord | None:
        """The key's record, or None."""
        ...


class TenantKeyResolver:
    """API key id -> tenant id, cached ``ttl_seconds`` (monotonic clock) for at most
    ``max_size`` keys; ``ttl_seconds == 0`` reads the directory every time.

    Answers for unknown and revoked keys are cached too (a flood of requests with a revoked
    key costs one read per period), so a key registered a moment after its first refused
    request works after at most ``ttl_seconds``.
    """

    def __init__(
        self,
        directory: KeyDirectory,
        ttl_seconds: float,
        max_size: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._directory = directory
        self._cache: TTLCache[str, str | None] | None = (
            TTLCache(maxsize=max_size, ttl=ttl_seconds, timer=clock) if ttl_seconds > 0 else None
        )

    def tenant_of(self, key_id: str) -> str:
        """The tenant of API key ``key_id``.

        Raises:
            ApiKeyNotActive: the key has no record or is revoked.
            botocore.exceptions.ClientError, BotoCoreError: the directory cannot be read
                (the API answers 503; nothing is cached).
        """
        if self._cache is not None and key_id in self._cache:
            tenant = self._cache[key_id]
        else:
            record = self._directory.get_key(key_id)
            tenant = record.tenant_id if record is not None and record.active else None
            if self._cache is not None:
                self._cache[key_id] = tenant
        if tenant is None:
            raise ApiKeyNotActive("this API key belongs to no tenant, or it was revoked")
        return tenant


class TenantNotFound(LookupError):
    """No tenant record with that id."""


class TenantCommandError(ValueError):
    """A tenant command that cannot run as given; the message says why."""


class AdoptionIncomplete(RuntimeError):
    """:meth:`TenantAdmin.adopt_plan_keys` stopped before adopting every key (out of time);
    the keys adopted so far stay adopted."""


PolicyWriter = Callable[[str, str, dict[str, Any], datetime], int]
"""(tenant_id, strategy, payload, now) -> the policy's new version (the SQL policy store's
``put``)."""


@dataclass(frozen=True)
class IssuedKey:
    """A key just created: its id and its value (the secret, shown once)."""

    key_id: str
    value: str


@dataclass(frozen=True)
class PlanAdoption:
    """What :meth:`TenantAdmin.adopt_plan_keys` did: the plan's key count and the ids of the
    keys it adopted (the others were recorded already)."""

    plan_id: str
    keys: int
    adopted: tuple[str, ...]

    @property
    def recorded_before(self) -> int:
        """Keys of the plan that had a record already (active or revoked)."""
        return self.keys - len(self.adopted)


def tenant_view(tenant: Tenant, keys: Sequence[KeyRecord] = ()) -> dict[str, Any]:
    """A tenant and its keys as JSON (no key values: they are never stored)."""
    limits = tenant.limits
    return {
        "tenant_id": tenant.tenant_id,
        "name": tenant.name,
        "usage_plan_id": tenant.usage_plan_id,
        "shared_plan": tenant.shared_plan,
        "rate_limit": limits.rate_limit if limits else None,
        "burst_limit": limits.burst_limit if limits else None,
        "daily_quota": limits.daily_quota if limits else None,
        "created_at": tenant.created_at.isoformat(),
        "keys": [
            {
                "key_id": k.key_id,
                "state": k.state.value,
                "created_at": k.created_at.isoformat(),
                "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
            }
            for k in keys
        ],
    }


class TenantAdmin:
    """The operator's tenant commands over the tenant records (``store``), this stack's usage
    plans and keys (``plans``), and the route policies (``write_policy``, SQL; None where no
    database is configured). ``clock``: aware UTC now. ``providers``: the provider names a
    policy may use (None: not checked here).

    Order of writes: API Gateway first, then the records. A command cut short leaves at most
    an API Gateway key or plan that no record names: such a key maps to no tenant (403), and
    the command can be run again.
    """

    def __init__(
        self,
        store: DynamoDbTenantStore,
        plans: ApiGatewayUsagePlans,
        clock: Callable[[], datetime],
        write_policy: PolicyWriter | None = None,
        providers: Sequence[str] | None = None,
    ) -> None:
        self._store = store
        self._plans = plans
        self._clock = clock
        self._write_policy = write_policy
        self._providers = providers

    def _tenant(self, tenant_id: str) -> Tenant:
        tenant = self._store.get_tenant(tenant_id)
        if tenant is None:
            raise TenantNotFound(f"no tenant {tenant_id}")
        return tenant

    def create(
        self, name: str, tenant_id: str | None = None, limits: TenantLimits = DEFAULT_LIMITS
    ) -> tuple[Tenant, IssuedKey]:
        """A new tenant with its own usage plan (``limits``) and its first API key.

        Raises:
            InvalidTenant: a bad id or name.
            TenantCommandError: the tenant id is taken.
        """
        tenant_id = check_tenant_id(tenant_id) if tenant_id else new_tenant_id()
        if not 1 <= len(name) <= 256:
            raise InvalidTenant("name must be 1-256 characters")
        if self._store.get_tenant(tenant_id) is not None:
            raise TenantCommandError(f"tenant {tenant_id} exists already")
        now = self._clock()
        plan_id = self._plans.create_plan(tenant_id, limits)
        key_id, value = self._plans.create_key(tenant_id, now.strftime("%Y%m%dT%H%M%SZ"))
        self._plans.attach(plan_id, key_id)
        tenant = Tenant(tenant_id, name, plan_id, limits, now)
        from sms_gateway.adapters.dynamodb_tenants import RecordExists

        try:
            self._store.create_tenant(tenant)
        except RecordExists as exc:
            self._plans.disable_key(key_id)
            raise TenantCommandError(f"tenant {tenant_id} exists already") from exc
        self._store.create_key(KeyRecord(key_id, tenant_id, KeyState.ACTIVE, now))
        return tenant, IssuedKey(key_id, value)

    def adopt(self, key_id: str, name: str, limits: TenantLimits | None = None) -> Tenant:
        """Register an existing API key as a tenant whose id is that key id, so the messages
        and route policy recorded under it (before tenants were records) stay its own.

        Without ``limits`` the key stays in the usage plan it is in (``shared_plan``; the
        stack's original plan); with them it moves to a new plan of its own.

        Raises:
            TenantCommandError: the key is registered already, or is in no usage plan of
                this stage and no ``limits`` were given.
        """
        check_tenant_id(key_id)
        if self._store.get_key(key_id) is not None:
            raise TenantCommandError(f"API key {key_id} is registered already")
        current = self._plans.plans_of_key(key_id)
        existing = self._store.get_tenant(key_id)
        if existing is not None:
            if existing.usage_plan_id not in current:
                raise TenantCommandError(f"tenant {key_id} exists already")
            # An adoption cut short between its two records (the tenant written, not the
            # key): the key is in the tenant's plan, so finish it with the key's record.
            self._store.create_key(KeyRecord(key_id, key_id, KeyState.ACTIVE, self._clock()))
            return existing
        now = self._clock()
        if limits is not None:
            plan_id = self._move(key_id, current, self._plans.create_plan(key_id, limits))
            tenant = Tenant(key_id, name, plan_id, limits, now)
        elif current:
            tenant = Tenant(key_id, name, current[0], None, now, shared_plan=True)
        else:
            raise TenantCommandError(
                f"API key {key_id} is in no usage plan of this stage: give its limits "
                "(rate_limit, burst_limit, daily_quota) to make it one"
            )
        self._store.create_tenant(tenant)
        self._store.create_key(KeyRecord(key_id, key_id, KeyState.ACTIVE, now))
        return tenant

    def adopt_plan_keys(
        self, plan_id: str, out_of_time: Callable[[], bool] = lambda: False
    ) -> PlanAdoption:
        """Adopt every key of usage plan ``plan_id`` (the stack's shared plan) that has no
        record, as :meth:`adopt` without limits does (tenant id = key id, named after the key,
        staying in that plan). A key already recorded, active or revoked, is left alone (a
        revoked key is never made active again). Run again, it adopts only what is still
        unrecorded, and finishes an adoption cut short (see :meth:`adopt`).

        Raises:
            botocore.exceptions.ClientError, BotoCoreError: API Gateway or DynamoDB failed;
                the keys adopted before stay adopted.
            TenantCommandError, InvalidTenant: a key could not be adopted (its id is not a
                valid tenant id, or a tenant with its id and another plan exists).
            AdoptionIncomplete: ``out_of_time()`` said so before a key was adopted (checked
                before each one: the caller's time limit, so that it can still answer).
        """
        from sms_gateway.adapters.dynamodb_tenants import RecordExists

        keys = self._plans.keys_of_plan(plan_id)
        adopted: list[str] = []
        for key_id, key_name in keys:
            if self._store.get_key(key_id) is not None:
                continue
            if out_of_time():
                raise AdoptionIncomplete(
                    f"out of time after adopting {len(adopted)} of the {len(keys)} keys of "
                    f"usage plan {plan_id}: the next run adopts the rest"
                )
            try:
                self.adopt(key_id, key_name[:256] or key_id)
            except RecordExists:
                # adopted at the same moment by someone else (tenant adopt): fine if recorded
                if self._store.get_key(key_id) is None:
                    raise
                continue
            adopted.append(key_id)
        return PlanAdoption(plan_id, len(keys), tuple(adopted))

    def _move(self, key_id: str, from_plans: Sequence[str], to_plan: str) -> str:
        # A key is in at most one plan per stage: out of the old one, then into the new. For
        # the moment between the two calls API Gateway refuses the key (403).
        for plan_id in from_plans:
            if plan_id != to_plan:
                self._plans.detach(plan_id, key_id)
        if to_plan not in from_plans:
            self._plans.attach(to_plan, key_id)
        return to_plan

    def add_key(self, tenant_id: str) -> IssuedKey:
        """A new API key for the tenant, in its usage plan (for rotation: add, switch the
        clients over, then revoke the old key).

        Raises:
            TenantNotFound: no such tenant.
        """
        tenant = self._tenant(tenant_id)
        now = self._clock()
        key_id, value = self._plans.create_key(tenant_id, now.strftime("%Y%m%dT%H%M%SZ"))
        self._plans.attach(tenant.usage_plan_id, key_id)
        self._store.create_key(KeyRecord(key_id, tenant_id, KeyState.ACTIVE, now))
        return IssuedKey(key_id, value)

    def revoke_key(self, tenant_id: str, key_id: str) -> KeyRecord:
        """Revoke one of the tenant's keys: its record says ``revoked`` (the API functions
        refuse it, 403, within their cache TTL) and API Gateway disables it.

        Raises:
            TenantNotFound: no such tenant.
            TenantCommandError: the key is not one of the tenant's.
        """
        from sms_gateway.adapters.dynamodb_tenants import RecordMissing

        self._tenant(tenant_id)
        try:
            record = self._store.revoke_key(key_id, tenant_id, self._clock())
        except RecordMissing as exc:
            raise TenantCommandError(str(exc)) from exc
        self._plans.disable_key(key_id)
        return record

    def set_limits(self, tenant_id: str, limits: TenantLimits) -> Tenant:
        """Set the tenant's throttle and daily quota. A tenant on a shared plan (adopted)
        first gets a plan of its own, and its active keys move to it.

        Raises:
            TenantNotFound: no such tenant.
        """
        tenant = self._tenant(tenant_id)
        if tenant.shared_plan:
            plan_id = self._plans.create_plan(tenant_id, limits)
            for key in self._store.keys_of(tenant_id):
                if key.active:
                    self._move(key.key_id, [tenant.usage_plan_id], plan_id)
            tenant = replace(tenant, usage_plan_id=plan_id, shared_plan=False, limits=limits)
        else:
            self._plans.update_plan(tenant.usage_plan_id, limits)
            tenant = replace(tenant, limits=limits)
        self._store.replace_tenant(tenant)
        return tenant

    def set_policy(self, tenant_id: str, strategy: str, payload: dict[str, Any]) -> int:
        """Create or replace the tenant's route policy (the existing policy store, keyed by
        the tenant id); returns its version.

        Raises:
            TenantNotFound: no such tenant.
            TenantCommandError: no database here, or a provider the deployment does not
                declare.
            InvalidRoutePolicy: not a contract shape.
        """
        from sms_gateway.domain.routing import parse_policy

        self._tenant(tenant_id)
        if self._write_policy is None:
            raise TenantCommandError("no database configured: a policy cannot be written here")
        policy = parse_policy(tenant_id, strategy, payload)
        if self._providers is not None:
            unknown = sorted(set(policy.providers) - set(self._providers))
            if unknown:
                raise TenantCommandError(
                    f"unknown provider(s) {', '.join(unknown)}; the deployment declares "
                    f"{', '.join(self._providers) or 'none'}"
                )
        return self._write_policy(tenant_id, strategy, payload, self._clock())

    def show(self, tenant_id: str) -> dict[str, Any]:
        """The tenant and its keys (:func:`tenant_view`).

        Raises:
            TenantNotFound: no such tenant.
        """
        return tenant_view(self._tenant(tenant_id), self._store.keys_of(tenant_id))

    def all_tenants(self) -> list[dict[str, Any]]:
        """Every tenant, without its keys."""
        return [tenant_view(t) for t in self._store.list_tenants()]
