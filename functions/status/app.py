"""StatusFunction: ``GET /v1/messages/{message_id}`` (tenant-scoped) and ``POST /v1/receipts``
(delivery receipts from providers).

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
    from sms_gateway.providers.secrets import SecretUnavailable
    from sms_gateway.services.receipts import MessageNotFound

    return {
        MessageNotFound: Problem(404, "message-not-found", "Message not found", "not found"),
        SecretUnavailable: Problem(
            503,
            "dependency-unavailable",
            "Service temporarily unavailable",
            "a provider secret cannot be read now",
            headers={"Retry-After": "5"},
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


@app.post("/v1/receipts/twilio/<provider>")
@tracer.capture_method
def post_twilio_callback(provider: str) -> Response[str]:
    """A Twilio status callback for ``provider`` (a ``twilio`` provider of
    ``SMS_GATEWAY_PROVIDERS``), verified by ``X-Twilio-Signature``: 200 applied or stale, 202
    kept until the send completes, 401 bad signature, 404 no such provider or message."""
    from urllib.parse import parse_qsl

    from sms_gateway.api import twilio_callbacks
    from sms_gateway.services.receipts import ReceiptRequest, receipt_answer

    container = wiring.sql()
    config = container.settings.providers.get(provider)
    if config is None or config.type != "twilio":
        raise Problem(404, "not-found", "Not found", "no such Twilio provider")
    event = app.current_event
    raw = request_text_of(event)
    params = parse_qsl(raw, keep_blank_values=True)
    token = wiring.provider_secret(config.callback_secret or config.auth_secret)
    urls = twilio_callbacks.request_urls(event.raw_event, config.status_callback_url)
    signature = event.headers.get("X-Twilio-Signature") or ""
    if not twilio_callbacks.signature_valid(token, urls, params, signature):
        raise twilio_callbacks.refused("X-Twilio-Signature does not match the URL and form")
    query = event.query_string_parameters or {}
    request = ReceiptRequest.model_validate(twilio_callbacks.receipt_payload(params, query))
    outcome = container.receipts.handle(request, provider=provider)
    return json_response(202 if outcome.outcome == "pending" else 200, receipt_answer(outcome))


def request_text_of(event: Any) -> str:
    """The raw body as text (base64 undone)."""
    from sms_gateway.api.requests import request_text

    return request_text(event) or ""


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway REST proxy event in, proxy response out."""
    return app.resolve(event, context)
