"""RetentionFunction: on EventBridge Scheduler's schedule (template: ``RetentionSchedule``),
redact bodies and numbers past ``SMS_GATEWAY_REDACT_AFTER_DAYS`` and delete rows past
``SMS_GATEWAY_DELETE_AFTER_DAYS``, in bounded batches (:mod:`sms_gateway.services.retention`).

The event is the schedule's input and is not read. Answers ``{"deleted", "redacted",
"other_rows", "more"}``; ``more`` means the next run continues a backlog.
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
    """A scheduled run."""
    return wiring.retention().run().as_dict()
