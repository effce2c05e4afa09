"""AdminFunction: operator commands inside the VPC, run with ``sam remote invoke``.

The event is one command object of :mod:`sms_gateway.services.admin` (the same code
``sms-gateway admin ...`` runs from a machine that reaches the database), for example::

    sam remote invoke AdminFunction --stack-name sms-gateway \\
        --event '{"command": "replay", "tenant_id": "...", "since": "2026-11-30T00:00:00Z"}'
    sam remote invoke AdminFunction --stack-name sms-gateway \\
        --event '{"command": "stuck", "state": "queued", "older_than": "15m"}'
    sam remote invoke AdminFunction --stack-name sms-gateway \\
        --event '{"command": "tenant_create", "name": "Acme", "daily_quota": 5000}'

Answers the command's JSON, or ``{"error": "..."}`` for a command that cannot run as given
(nothing was done). Replays are counted in the ``DeadLetterReplays`` metric.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from sms_gateway import wiring
from sms_gateway.observability import logger, metrics, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """A command object in, its answer out."""
    from sms_gateway.services.admin import AdminError, run_command

    try:
        return run_command(
            event, wiring.operations(), wiring.utc_now(), tenants=wiring.tenant_admin
        )
    except (AdminError, wiring.SettingsError) as exc:
        logger.warning("admin command refused", extra={"error": str(exc)})
        return {"error": str(exc)}
