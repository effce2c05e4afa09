"""EumEventsFunction: AWS End User Messaging SMS events (the configuration set's event
destination, an SNS topic) -> delivery receipts (``sms_gateway.services.eum_events``).

A database outage raises: SNS invokes the function asynchronously, so Lambda retries the
event (twice, then drops it; the message stays ``sent``)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from sms_gateway import wiring
from sms_gateway.observability import logged_failures, logger, metrics, tracer
from sms_gateway.services.eum_events import handle_sns_event


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    """SNS event in; counts of the events by outcome out (``applied``, ``pending``, ``stale``,
    ``unmatched``, ``conflict``, ``ignored``)."""
    with logged_failures():
        counts = handle_sns_event(event, wiring.sql().receipts)
    logger.info("end user messaging events", extra={"outcomes": counts})
    return counts
