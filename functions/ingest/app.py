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
from sms_gateway.api.rest import RouteDoc, Routes, json_response
from sms_gateway.api.tenancy import tenant_of_event
from sms_gateway.observability import logger, metrics, tracer

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import Response
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from sms_gateway.api.models import AcceptedMessage, BatchAccepted


IDEMPOTENCY_KEY = {
    "Idempotency-Key": "required: 1-255 printable ASCII characters naming this request for "
    "this tenant; the same key and body answer the first answer again"
}
REPLAYED = {"Idempotent-Replayed": "true when this is the stored answer of an earlier request"}
SEND_PROBLEMS = {
    400: ("validation-error", "malformed-json"),
    401: ("unauthorized",),
    403: ("api-key-not-active",),
    409: ("idempotency-key-in-flight",),
    422: ("validation-error", "idempotency-key-reused"),
    500: ("internal-error",),
    503: ("dependency-unavailable",),
}

app = Routes(lambda: wiring.settings().problem_type_base)


@app.post(
    "/v1/messages",
    RouteDoc(
        "Send one SMS",
        body="SendMessageBody",
        answers={202: "AcceptedMessage"},
        problems=SEND_PROBLEMS,
        request_headers=IDEMPOTENCY_KEY,
        answer_headers={
            202: {"Location": "the message's status URL: /v1/messages/{message_id}", **REPLAYED}
        },
    ),
)
@tracer.capture_method
def post_message() -> Response[AcceptedMessage]:
    """Accept one SMS; see :mod:`sms_gateway.services.ingest` for the idempotency rules."""
    from sms_gateway.api.models import AcceptedMessage
    from sms_gateway.api.requests import read_send_request

    container = wiring.ingest()
    event = app.current_event
    tenant_id = tenant_of_event(event, container.settings.auth_mode, wiring.tenant_of_key)
    key, message, payload = read_send_request(event, container.settings, tenant_id)
    accepted = container.service.accept(tenant_id, key, message, payload)
    answer = AcceptedMessage.model_validate(accepted.body)
    headers = {"Location": f"/v1/messages/{answer.message_id}"}
    if accepted.replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response(202, answer, headers)


@app.post(
    "/v1/messages/batch",
    RouteDoc(
        "Send up to 100 SMS",
        body="BatchBody",
        answers={202: "BatchAccepted"},
        problems=SEND_PROBLEMS,
        request_headers=IDEMPOTENCY_KEY,
        answer_headers={202: REPLAYED},
    ),
)
@tracer.capture_method
def post_messages_batch() -> Response[BatchAccepted]:
    """Accept up to 100 SMS under one Idempotency-Key; see
    :meth:`sms_gateway.services.ingest.IngestService.accept_batch`."""
    from sms_gateway.api.models import BatchAccepted
    from sms_gateway.api.requests import read_batch_request

    container = wiring.ingest()
    event = app.current_event
    tenant_id = tenant_of_event(event, container.settings.auth_mode, wiring.tenant_of_key)
    key, batch, payload = read_batch_request(event, container.settings, tenant_id)
    accepted = container.service.accept_batch(tenant_id, key, batch, payload)
    headers = {"Idempotent-Replayed": "true"} if accepted.replayed else None
    return json_response(202, BatchAccepted.model_validate(accepted.body), headers)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway REST proxy event in, proxy response out."""
    wiring.ingest().idempotency.register_lambda_context(context)
    return app.resolve(event, context)
