"""Operator commands as data: one entry point for ``sms-gateway admin ...``
(:mod:`sms_gateway.local.cli`) and the AdminFunction (``functions/admin``, run with ``sam
remote invoke AdminFunction --event '{...}'``), so both run the same code.

Commands (JSON objects):

- ``{"command": "replay", "message_id"?, "tenant_id"?, "reason"?, "since"?, "until"?,
  "attempts"?: 1, "limit"?: 100}``: replay dead letters (at least one criterion; times RFC
  3339). Answer: ``{"replayed": n, "message_ids": [...], "skipped": {dead letter id: why},
  "failed": {dead letter id: why}}``.
- ``{"command": "stuck", "state": "queued", "older_than": "15m", "limit"?: 100}``: messages
  in a state longer than a duration. Answer: ``{"messages": [{message_id, tenant_id, status,
  since, age_seconds, attempts, max_attempts, reason_code, reason_detail}, ...]}``.

Tenant commands (:class:`~sms_gateway.services.tenants.TenantAdmin`; README, "the operator's
month"). ``limits`` below are ``"rate_limit"`` (requests/s), ``"burst_limit"`` (requests) and
``"daily_quota"`` (requests per UTC day); a tenant is shown as ``{tenant_id, name,
usage_plan_id, shared_plan, rate_limit, burst_limit, daily_quota, created_at, keys: [{key_id,
state, created_at, revoked_at}]}``:

- ``{"command": "tenant_create", "name", "tenant_id"?, limits?}`` (defaults 10/s, 20, 10,000
  a day): a tenant, its own usage plan and its first API key. Answer: ``{"tenant": ...,
  "api_key": {"key_id", "value"}}``; the value is shown this once and stored nowhere.
- ``{"command": "tenant_adopt", "key_id", "name", limits?}``: an existing API key becomes a
  tenant whose id is the key id (its messages and policy stay its own). Answer: the tenant.
- ``{"command": "tenant_key_add", "tenant_id"}``: another key. Answer: ``{"tenant_id",
  "api_key": {"key_id", "value"}}``.
- ``{"command": "tenant_key_revoke", "tenant_id", "key_id"}``: Answer: ``{"tenant_id",
  "key_id", "state": "revoked", "revoked_at"}``.
- ``{"command": "tenant_quota", "tenant_id", "rate_limit", "burst_limit", "daily_quota"}``:
  Answer: the tenant.
- ``{"command": "tenant_policy", "tenant_id", "strategy", "payload"}``: its route policy.
  Answer: ``{"tenant_id", "strategy", "version"}``.
- ``{"command": "tenant_list"}`` -> ``{"tenants": [...]}`` (without keys);
  ``{"command": "tenant_show", "tenant_id"}`` -> the tenant with its keys.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from sms_gateway.domain.operations import ReplaySelection, parse_duration
from sms_gateway.domain.states import MessageStatus
from sms_gateway.services.operations import InvalidReplay, MessageOperations, stuck_view

if TYPE_CHECKING:
    from sms_gateway.services.tenants import TenantAdmin


class AdminError(ValueError):
    """A command that cannot run as given; the message says why (field by field)."""


class ReplayCommand(BaseModel):
    """``replay``: see the module docstring."""

    model_config = ConfigDict(extra="forbid")

    command: Literal["replay"]
    message_id: str | None = Field(default=None, min_length=1, max_length=64)
    tenant_id: str | None = Field(default=None, min_length=1, max_length=128)
    reason: str | None = Field(default=None, min_length=1, max_length=32)
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    attempts: int = Field(default=1, ge=1)
    limit: int = Field(default=100, ge=1, le=1000)


class StuckCommand(BaseModel):
    """``stuck``: see the module docstring."""

    model_config = ConfigDict(extra="forbid")

    command: Literal["stuck"]
    state: MessageStatus
    older_than: str
    limit: int = Field(default=100, ge=1, le=1000)


_TENANT_ID = Field(min_length=1, max_length=128)
_KEY_ID = Field(min_length=1, max_length=128)


class _Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate_limit: float | None = Field(default=None, gt=0)
    burst_limit: int | None = Field(default=None, ge=1)
    daily_quota: int | None = Field(default=None, ge=1)

    def limits(self, base: Any) -> Any:
        """These limits over ``base`` (a ``TenantLimits``; None: all three must be given).

        Raises:
            AdminError: a limit is missing, or the three break a rule.
        """
        from sms_gateway.domain.tenants import InvalidTenant, TenantLimits

        given = {
            "rate_limit": self.rate_limit,
            "burst_limit": self.burst_limit,
            "daily_quota": self.daily_quota,
        }
        if base is None:
            missing = [name for name, value in given.items() if value is None]
            if missing:
                raise AdminError(f"{', '.join(missing)}: required")
            base = TenantLimits(1.0, 1, 1)  # replaced entirely below

        def pick(name: str) -> Any:
            value = given[name]
            return getattr(base, name) if value is None else value

        try:
            return TenantLimits(pick("rate_limit"), pick("burst_limit"), pick("daily_quota"))
        except InvalidTenant as exc:
            raise AdminError(str(exc)) from exc

    @property
    def any_given(self) -> bool:
        """Whether any limit was given."""
        return any(v is not None for v in (self.rate_limit, self.burst_limit, self.daily_quota))


class TenantCreateCommand(_Limits):
    """``tenant_create``: see the module docstring."""

    command: Literal["tenant_create"]
    name: str = Field(min_length=1, max_length=256)
    tenant_id: str | None = Field(default=None, min_length=1, max_length=128)


class TenantAdoptCommand(_Limits):
    """``tenant_adopt``: see the module docstring."""

    command: Literal["tenant_adopt"]
    key_id: str = _KEY_ID
    name: str = Field(min_length=1, max_length=256)


class TenantKeyAddCommand(BaseModel):
    """``tenant_key_add``: see the module docstring."""

    model_config = ConfigDict(extra="forbid")

    command: Literal["tenant_key_add"]
    tenant_id: str = _TENANT_ID


class TenantKeyRevokeCommand(BaseModel):
    """``tenant_key_revoke``: see the module docstring."""

    model_config = ConfigDict(extra="forbid")

    command: Literal["tenant_key_revoke"]
    tenant_id: str = _TENANT_ID
    key_id: str = _KEY_ID


class TenantQuotaCommand(_Limits):
    """``tenant_quota``: see the module docstring (all three limits required)."""

    command: Literal["tenant_quota"]
    tenant_id: str = _TENANT_ID


class TenantPolicyCommand(BaseModel):
    """``tenant_policy``: see the module docstring."""

    model_config = ConfigDict(extra="forbid")

    command: Literal["tenant_policy"]
    tenant_id: str = _TENANT_ID
    strategy: Literal["direct", "weighted", "failover"]
    payload: dict[str, Any]


class TenantListCommand(BaseModel):
    """``tenant_list``: see the module docstring."""

    model_config = ConfigDict(extra="forbid")

    command: Literal["tenant_list"]


class TenantShowCommand(BaseModel):
    """``tenant_show``: see the module docstring."""

    model_config = ConfigDict(extra="forbid")

    command: Literal["tenant_show"]
    tenant_id: str = _TENANT_ID


TenantCommand = (
    TenantCreateCommand
    | TenantAdoptCommand
    | TenantKeyAddCommand
    | TenantKeyRevokeCommand
    | TenantQuotaCommand
    | TenantPolicyCommand
    | TenantListCommand
    | TenantShowCommand
)
AnyCommand = ReplayCommand | StuckCommand | TenantCommand
AdminCommand = Annotated[AnyCommand, Field(discriminator="command")]
_COMMAND: TypeAdapter[AnyCommand] = TypeAdapter(AdminCommand)


def parse_command(payload: Any) -> AnyCommand:
    """Validate a command object.

    Raises:
        AdminError: naming each invalid member.
    """
    try:
        return _COMMAND.validate_python(payload)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'command'}: {err['msg']}"
            for err in exc.errors()
        )
        raise AdminError(problems) from exc


def run_command(
    payload: Any,
    operations: MessageOperations | None,
    now: datetime,
    tenants: Callable[[], TenantAdmin] | None = None,
) -> dict[str, Any]:
    """Run one command (module docstring) and return its JSON answer. ``now``: aware UTC,
    for the ages of stuck messages. ``operations``: the message operations (None: message
    commands are refused); ``tenants``: builds the tenant commands' service (None: refused).

    Raises:
        AdminError: the command is invalid, or names a tenant or key that is not there
            (nothing was done).
        StorageUnavailable: the database cannot be reached.
        botocore.exceptions.ClientError: DynamoDB or API Gateway refused a call.
    """
    command = parse_command(payload)
    if not isinstance(command, ReplayCommand | StuckCommand):
        if tenants is None:
            raise AdminError(f"{command.command}: the tenant commands are not configured here")
        return run_tenant_command(command, tenants())
    if operations is None:
        raise AdminError(f"{command.command}: the message operations are not configured here")
    if isinstance(command, ReplayCommand):
        try:
            selection = ReplaySelection(
                message_id=command.message_id,
                tenant_id=command.tenant_id,
                reason=command.reason,
                since=command.since,
                until=command.until,
                limit=command.limit,
            )
            report = operations.replay(selection, budget=command.attempts)
        except (InvalidReplay, ValueError) as exc:
            raise AdminError(str(exc)) from exc
        return report.as_dict()
    try:
        seconds = parse_duration(command.older_than)
    except ValueError as exc:
        raise AdminError(f"older_than: {exc}") from exc
    found = operations.stuck(command.state, seconds, command.limit)
    return {"messages": [stuck_view(m, now) for m in found]}


def run_tenant_command(command: TenantCommand, tenants: TenantAdmin) -> dict[str, Any]:
    """Run one tenant command (module docstring) with ``tenants``.

    Raises:
        AdminError: as :func:`run_command`.
    """
    from sms_gateway.domain.routing import InvalidRoutePolicy
    from sms_gateway.domain.tenants import DEFAULT_LIMITS, InvalidTenant
    from sms_gateway.services.tenants import TenantCommandError, TenantNotFound, tenant_view

    try:
        if isinstance(command, TenantCreateCommand):
            tenant, key = tenants.create(
                command.name, command.tenant_id, command.limits(DEFAULT_LIMITS)
            )
            return {
                "tenant": tenant_view(tenant, ()),
                "api_key": {"key_id": key.key_id, "value": key.value},
            }
        if isinstance(command, TenantAdoptCommand):
            limits = command.limits(None) if command.any_given else None
            return tenant_view(tenants.adopt(command.key_id, command.name, limits))
        if isinstance(command, TenantKeyAddCommand):
            key = tenants.add_key(command.tenant_id)
            return {
                "tenant_id": command.tenant_id,
                "api_key": {"key_id": key.key_id, "value": key.value},
            }
        if isinstance(command, TenantKeyRevokeCommand):
            record = tenants.revoke_key(command.tenant_id, command.key_id)
            return {
                "tenant_id": record.tenant_id,
                "key_id": record.key_id,
                "state": record.state.value,
                "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
            }
        if isinstance(command, TenantQuotaCommand):
            return tenant_view(tenants.set_limits(command.tenant_id, command.limits(None)))
        if isinstance(command, TenantPolicyCommand):
            version = tenants.set_policy(command.tenant_id, command.strategy, command.payload)
            return {
                "tenant_id": command.tenant_id,
                "strategy": command.strategy,
                "version": version,
            }
        if isinstance(command, TenantListCommand):
            return {"tenants": tenants.all_tenants()}
        return tenants.show(command.tenant_id)
    except (InvalidTenant, TenantCommandError, TenantNotFound, InvalidRoutePolicy) as exc:
        raise AdminError(str(exc)) from exc
