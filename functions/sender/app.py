"""SenderFunction: SendQueue batches -> provider sends, with a partial batch response.

The whole batch goes to the sender service at once (set-based: one intake write, parallel
provider calls, one outcome write). A record reported in ``batchItemFailures`` stays on the
queue (its visibility timeout already set to the retry backoff); SQS redrives it to the
DeadLetterQueue after maxReceiveCount.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes import SQSEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from sms_gateway import wiring
from sms_gateway.adapters.sqs import string_attributes
from sms_gateway.observability import logger, metrics, tracer
from sms_gateway.services.sender import SqsRecord


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """SQS event in, ``{"batchItemFailures": [{"itemIdentifier": ...}]}`` out.

    Records left unclaimed because the remaining time (``get_remaining_time_in_millis``)
    could not cover a send and its write are reported too, for redelivery. An unexpected
    error reports every record (what Powertools' batch processor would do).
    """
    records = [
        SqsRecord(
            sqs_message_id=record.message_id,
            receipt_handle=record.receipt_handle,
            body=record.body,
            receive_count=int(record.attributes.approximate_receive_count),
            attributes=string_attributes(record.message_attributes),
        )
        for record in SQSEvent(event).records
    ]
    try:
        report = wiring.sql().sender.process_batch(
            records, remaining_ms=context.get_remaining_time_in_millis
        )
    except Exception:
        logger.exception("sender batch failed")
        failures = [r.sqs_message_id for r in records]
    else:
        for key, kept in report.kept.items():
            logger.info("record kept", extra={"sqs_message_id": key, "reason": str(kept)})
        failures = report.failures
    return {"batchItemFailures": [{"itemIdentifier": key} for key in failures if key]}
