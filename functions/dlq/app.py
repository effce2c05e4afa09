"""DlqFunction: DeadLetterQueue batches -> ``failed`` (reason ``dead_letter``) + ``dead_letters``
rows, with a partial batch response (a record that cannot be stored now stays on the DLQ)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from sms_gateway import wiring
from sms_gateway.adapters.sqs import string_attributes
from sms_gateway.observability import logged_failures, logger, metrics, tracer
from sms_gateway.services.dead_letter import DeadLetter

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@tracer.capture_method
def record_handler(record: SQSRecord) -> bool:
    """One dead letter; raising reports it as a batch item failure."""
    logger.set_correlation_id(record.message_id)
    with logged_failures():
        return wiring.sql().dead_letters.process(
            DeadLetter(
                sqs_message_id=record.message_id,
                body=record.body,
                receive_count=int(record.attributes.approximate_receive_count),
                attributes=string_attributes(record.message_attributes),
            )
        )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """SQS event in, ``{"batchItemFailures": [...]}`` out."""
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
