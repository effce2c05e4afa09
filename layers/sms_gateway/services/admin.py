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
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from sms_gateway.domain.operations import ReplaySelection, parse_duration
from sms_gateway.domain.states import MessageStatus
from sms_gateway.services.operations import InvalidReplay, MessageOperations, stuck_view


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


AdminCommand = Annotated[ReplayCommand | StuckCommand, Field(discriminator="command")]
_COMMAND: TypeAdapter[ReplayCommand | StuckCommand] = TypeAdapter(AdminCommand)


def parse_command(payload: Any) -> ReplayCommand | StuckCommand:
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


def run_command(payload: Any, operations: MessageOperations, now: datetime) -> dict[str, Any]:
    """Run one command (module docstring) and return its JSON answer. ``now``: aware UTC,
    for the ages of stuck messages.

    Raises:
        AdminError: the command is invalid (nothing was done).
        StorageUnavailable: the database cannot be reached.
    """
    command = parse_command(payload)
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
