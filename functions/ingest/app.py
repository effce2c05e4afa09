"""IngestFunction: ``POST /v1/messages`` (one SMS) and ``POST /v1/messages/batch`` (up to
100) -> idempotency (DynamoDB) -> SendQueue -> 202.

No SQL and no VPC: this function only validates, deduplicates and queues.

Cold start: the module loads Powertools' logger, metrics and tracer; boto3, pydantic,
libphonenumber, the idempotency utility and the event handler load on the first request
(through :mod:`sms_gateway.wiring` and the imports inside the route), once per container.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from sms_gateway import wiring
from sms_gateway.api.problems import Problem
from sms_gateway.api.rest import ProblemMap, Routes, json_response
from sms_gateway.api.tenancy import tenant_of_event
from sms_gateway.observability import logger, metrics, tracer

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import Response
    from aws_lambda_powertools.utilities.typing import LambdaContext


def ingest_problems() -> ProblemMap:
    """The ingest service's errors as HTTP answers (imported with the service)."""
    from sms_gateway.services.bulk import BatchNotQueued, BatchRefused
    from sms_gateway.services.ingest import IdempotencyInProgress, IdempotencyKeyReused

    return {
        IdempotencyKeyReused: Problem(
            422, "idempotency-key-reused", "Idempotency-Key reused", "different payload"
        ),
        IdempotencyInProgress: Problem(
            409,
            "idempotency-key-in-flight",
            "Request in progress",
            "in flight",
            headers={"Retry-After": "1"},
        ),
        # Some messages of a bulk request are queued, some are not: not a 202 for them.
        BatchNotQueued: Problem(
            503,
            "dependency-unavailable",
            "Service temporarily unavailable",
            "not every message could be queued",
            headers={"Retry-After": "2"},
        ),
        BatchRefused: Problem(
            500, "internal-error", "Internal error", "not every message could be queued"
        ),
    }


app = Routes(ingest_problems)


@app.post("/v1/messages")
@tracer.capture_method
def post_message() -> Response[str]:
    """Accept one SMS; see :mod:`sms_gateway.services.ingest` for the idempotency rules."""
    from sms_gateway.api.requests import decode_json_body, idempotency_key_of, request_text

    container = wiring.ingest()
    event = app.current_event
    tenant_id = tenant_of_event(event, container.settings.auth_mode)
    key = idempotency_key_of(event.headers.get("Idempotency-Key"))
    accepted = container.service.accept(tenant_id, key, decode_json_body(request_text(event)))
    headers = {"Location": f"/v1/messages/{accepted.body['message_id']}"}
    if accepted.replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response(202, accepted.body, headers)


@app.post("/v1/messages/batch")
@tracer.capture_method
def post_messages_batch() -> Response[str]:
    """Accept up to 100 SMS under one Idempotency-Key; see
    :meth:`sms_gateway.services.ingest.IngestService.accept_batch`."""
    from sms_gateway.api.requests import decode_json_body, idempotency_key_of, request_text

    container = wiring.ingest()
    event = app.current_event
    tenant_id = tenant_of_event(event, container.settings.auth_mode)
    key = idempotency_key_of(event.headers.get("Idempotency-Key"))
    accepted = container.service.accept_batch(tenant_id, key, decode_json_body(request_text(event)))
    headers = {"Idempotent-Replayed": "true"} if accepted.replayed else None
    return json_response(202, accepted.body, headers)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway REST proxy event in, proxy response out."""
    wiring.ingest().idempotency.register_lambda_context(context)
    return app.resolve(event, context)
