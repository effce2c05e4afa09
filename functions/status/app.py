"""StatusFunction: ``GET /v1/messages/{message_id}`` (tenant-scoped), ``POST
/v1/messages/{message_id}/cancel`` (tenant-scoped) and ``POST /v1/receipts`` (delivery
receipts from providers).

Cold start: the module loads Powertools' logger, metrics and tracer, and the SQL stack its
services are built on (SQLAlchemy, pydantic, the stores and services: about 1 s of CPU) in the
init phase, as the sender and DLQ functions do: this function answers a client within its
10 s Timeout, and Lambda runs init before that clock starts. The database driver, the engine
and the event handler load on the first request (:mod:`sms_gateway.wiring`), once per
container.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

# Imported for their cost at init (see the module docstring), not for a name.
import sms_gateway.services.receipts
import sms_gateway.storage.repository  # noqa: F401
from sms_gateway import wiring
from sms_gateway.api import signatures
from sms_gateway.api.problems import Problem, field_errors, validation_problem
from sms_gateway.api.rest import ProblemMap, Routes, json_response
from sms_gateway.api.tenancy import tenant_of_event
from sms_gateway.observability import logger, metrics, tracer
from sms_gateway.storage.errors import StorageUnavailable

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import Response
    from aws_lambda_powertools.utilities.typing import LambdaContext


def status_problems() -> ProblemMap:
    """The status and receipt services' errors as HTTP answers (imported with them)."""
    from sms_gateway.services.operations import MessageNotCancelable
    from sms_gateway.services.receipts import MessageNotFound

    return {
        MessageNotFound: Problem(404, "message-not-found", "Message not found", "not found"),
        MessageNotCancelable: Problem(
            409,
            "message-not-cancelable",
            "Message can no longer be canceled",
            "only a queued message can be canceled",
        ),
        StorageUnavailable: Problem(
            503,
            "storage-unavailable",
            "Service temporarily unavailable",
            "the message store is unavailable",
            headers={"Retry-After": "5"},
        ),
    }


app = Routes(status_problems)


@app.get("/v1/messages/<message_id>")
@tracer.capture_method
def get_message(message_id: str) -> Response[str]:
    """A message's status; another tenant's id answers 404 exactly like an unknown id."""
    from sms_gateway.api.views import message_view
    from sms_gateway.services.receipts import MessageNotFound

    container = wiring.sql()
    event = app.current_event
    tenant_id = tenant_of_event(event, container.settings.auth_mode)
    message = container.repository.get_for_tenant(tenant_id, message_id)
    if message is None:
        raise MessageNotFound(f"no message {message_id}")
    return json_response(200, message_view(message))


@app.post("/v1/messages/<message_id>/cancel")
@tracer.capture_method
def cancel_message(message_id: str) -> Response[str]:
    """Cancel a queued message: 200 with the message (``canceled``), also when it was canceled
    before; 409 once it is ``sending`` or past it; another tenant's id 404 like an unknown one.
    """
    from sms_gateway.api.views import message_view

    container = wiring.sql()
    tenant_id = tenant_of_event(app.current_event, container.settings.auth_mode)
    message = wiring.operations().cancel(tenant_id, message_id)
    return json_response(200, message_view(message))


@app.post("/v1/receipts")
@tracer.capture_method
def post_receipt() -> Response[str]:
    """A delivery receipt: 200 applied or stale, 202 kept until the send completes, 404."""
    from pydantic import ValidationError

    from sms_gateway.api.requests import decode_json_body, request_text
    from sms_gateway.services.receipts import ReceiptRequest, receipt_answer

    container = wiring.sql()
    raw = request_text(app.current_event) or ""
    provider = None
    if container.settings.receipts_signed:
        provider = signatures.verify(
            app.current_event.headers, raw, container.settings.receipt_secrets, time.time()
        )
    payload = decode_json_body(raw)
    try:
        request = ReceiptRequest.model_validate(payload)
    except ValidationError as exc:
        raise validation_problem(field_errors(exc)) from exc
    outcome = container.receipts.handle(request, provider=provider)
    return json_response(202 if outcome.outcome == "pending" else 200, receipt_answer(outcome))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway REST proxy event in, proxy response out."""
    return app.resolve(event, context)
