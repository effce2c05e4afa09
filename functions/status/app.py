"""StatusFunction: ``GET /v1/messages/{message_id}`` and ``POST
/v1/messages/{message_id}/cancel`` (tenant-scoped), ``POST /v1/receipts`` (delivery receipts
from providers) and ``POST /v1/receipts/twilio/{provider}`` (Twilio's status callbacks).

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
from sms_gateway.api.rest import RouteDoc, Routes, json_response
from sms_gateway.api.tenancy import tenant_of_event
from sms_gateway.domain.errors import MessageNotFound
from sms_gateway.observability import logger, metrics, tracer

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import Response
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from sms_gateway.api.models import MessageView, ReceiptAnswer


app = Routes(lambda: wiring.settings().problem_type_base)

SIGNING_HEADERS = {
    "X-Provider": "the provider's name as route policies know it (required when signed)",
    "X-Timestamp": "Unix seconds when the provider signed, within 300 s of the gateway's clock",
    "X-Signature": 'v1= + hex HMAC-SHA256 of "{X-Timestamp}.{raw body}" with the provider\'s '
    "receipt secret",
}


@app.get(
    "/v1/messages/<message_id>",
    RouteDoc(
        "Read a message's status",
        answers={200: "MessageView"},
        problems={
            401: ("unauthorized",),
            403: ("api-key-not-active",),
            404: ("message-not-found",),
            422: ("validation-error",),
            500: ("internal-error",),
            503: ("storage-unavailable", "dependency-unavailable"),
        },
    ),
)
@tracer.capture_method
def get_message(message_id: str) -> Response[MessageView]:
    """A message's status; another tenant's id answers 404 exactly like an unknown id."""
    from sms_gateway.api.views import message_view

    container = wiring.sql()
    event = app.current_event
    tenant_id = tenant_of_event(event, container.settings.auth_mode, wiring.tenant_of_key)
    message = container.repository.get_for_tenant(tenant_id, message_id)
    if message is None:
        raise MessageNotFound(f"no message {message_id}")
    return json_response(200, message_view(message))


@app.post(
    "/v1/messages/<message_id>/cancel",
    RouteDoc(
        "Cancel a queued message",
        answers={200: "MessageView"},
        problems={
            401: ("unauthorized",),
            403: ("api-key-not-active",),
            404: ("message-not-found",),
            409: ("message-not-cancelable",),
            422: ("validation-error",),
            500: ("internal-error",),
            503: ("storage-unavailable", "dependency-unavailable"),
        },
    ),
)
@tracer.capture_method
def cancel_message(message_id: str) -> Response[MessageView]:
    """Cancel a queued message: 200 with the message (``canceled``), also when it was canceled
    before; 409 once it is ``sending`` or past it; another tenant's id 404 like an unknown one.
    """
    from sms_gateway.api.views import message_view

    container = wiring.sql()
    tenant_id = tenant_of_event(
        app.current_event, container.settings.auth_mode, wiring.tenant_of_key
    )
    message = wiring.operations().cancel(tenant_id, message_id)
    return json_response(200, message_view(message))


@app.post(
    "/v1/receipts",
    RouteDoc(
        "Report a delivery receipt (providers)",
        body="ReceiptBody",
        answers={200: "ReceiptAnswer", 202: "ReceiptAnswer"},
        problems={
            400: ("malformed-json",),
            401: ("receipt-signature-invalid",),
            404: ("message-not-found",),
            409: ("receipt-without-attempt",),
            422: ("validation-error",),
            500: ("internal-error",),
            503: ("storage-unavailable",),
        },
        request_headers=SIGNING_HEADERS,
        auth="receipt_signature",
    ),
)
@tracer.capture_method
def post_receipt() -> Response[ReceiptAnswer]:
    """A delivery receipt: 200 applied or stale, 202 kept until the send completes, 404 no
    such message, 409 no attempt sent or in flight."""
    from sms_gateway.api.requests import read_receipt
    from sms_gateway.api.views import receipt_view

    container = wiring.sql()
    receipt, provider = read_receipt(app.current_event, container.settings, time.time())
    outcome = container.receipts.handle(receipt, provider=provider)
    return json_response(202 if outcome.outcome == "pending" else 200, receipt_view(outcome))


@app.post(
    "/v1/receipts/twilio/<provider>",
    RouteDoc(
        "Twilio status callback for a twilio provider (form-encoded, as Twilio posts it)",
        answers={200: "ReceiptAnswer", 202: "ReceiptAnswer"},
        problems={
            401: ("receipt-signature-invalid",),
            404: ("not-found", "message-not-found"),
            409: ("receipt-without-attempt",),
            422: ("validation-error",),
            500: ("internal-error",),
            503: ("storage-unavailable", "dependency-unavailable"),
        },
        request_headers={
            "X-Twilio-Signature": "base64 HMAC-SHA1 of the callback URL and the sorted form "
            "fields with the provider's auth token (Twilio's webhook security)"
        },
        auth="receipt_signature",
    ),
)
@tracer.capture_method
def post_twilio_callback(provider: str) -> Response[ReceiptAnswer]:
    """A Twilio status callback for ``provider`` (a ``twilio`` provider of
    ``SMS_GATEWAY_PROVIDERS``), verified by ``X-Twilio-Signature``: 200 applied or stale, 202
    kept until the send completes, 401 bad signature, 404 no such provider or message, 409 no
    attempt sent or in flight."""
    from urllib.parse import parse_qsl

    from sms_gateway.api import twilio_callbacks
    from sms_gateway.api.errors import KINDS
    from sms_gateway.api.requests import receipt_from_payload, request_text
    from sms_gateway.api.views import receipt_view

    container = wiring.sql()
    config = container.settings.providers.get(provider)
    if config is None or config.type != "twilio":
        raise KINDS["not-found"].problem("no such Twilio provider")
    event = app.current_event
    params = parse_qsl(request_text(event) or "", keep_blank_values=True)
    token = wiring.provider_secret(config.callback_secret or config.auth_secret)
    urls = twilio_callbacks.request_urls(event.raw_event, config.status_callback_url)
    signature = event.headers.get("X-Twilio-Signature") or ""
    if not twilio_callbacks.signature_valid(token, urls, params, signature):
        raise twilio_callbacks.refused("X-Twilio-Signature does not match the URL and form")
    query = event.query_string_parameters or {}
    receipt = receipt_from_payload(twilio_callbacks.receipt_payload(params, query))
    outcome = container.receipts.handle(receipt, provider=provider)
    return json_response(202 if outcome.outcome == "pending" else 200, receipt_view(outcome))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway REST proxy event in, proxy response out."""
    return app.resolve(event, context)
