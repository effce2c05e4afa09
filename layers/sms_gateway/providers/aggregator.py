"""The generic HTTP aggregator (issue 7): a JSON POST an in-house aggregator can implement.

The request (docs/providers.md is the contract)::

    POST {url}
    Content-Type: application/json
    X-Timestamp: <Unix seconds>
    X-Signature: v1=<hex HMAC-SHA256 over "{X-Timestamp}.{raw body}" with the signing secret>

    {"message_id": "...", "tenant_id": "...", "attempt": 1, "to": "+E164", "from": null,
     "body": "...", "encoding": "GSM-7", "segments": 1, "ttl_seconds": null}

(the same signature scheme as our signed receipts: :mod:`sms_gateway.api.signatures`).

Answers: 2xx ``{"provider_message_id": "..."}``; a refusal ``{"error": {"code": C,
"message": ...}}`` with ``C`` from :data:`ERRORS` (else its HTTP status decides: 429 and 5xx
transient). ``message_id`` is the aggregator's idempotency key if it keeps one: a resend of
an attempt whose outcome was unknown carries the same ``message_id``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sms_gateway.domain.reasons import ReasonCode as R
from sms_gateway.observability import logger
from sms_gateway.providers import transport
from sms_gateway.providers.base import ProviderError, SendRequest, SendResult
from sms_gateway.providers.errors import ErrorRule, ErrorTable
from sms_gateway.providers.secrets import SecretUnavailable, read_secret

if TYPE_CHECKING:
    from sms_gateway.providers.config import HttpAggregatorConfig

_DOCS = "docs/providers.md#generic-http-aggregator"

ERRORS = ErrorTable(
    "http",
    [
        ErrorRule("rate_limited", R.RATE_LIMITED, True, _DOCS),
        ErrorRule("temporarily_unavailable", R.PROVIDER_TRANSIENT, True, _DOCS),
        ErrorRule("invalid_number", R.INVALID_NUMBER, False, _DOCS),
        ErrorRule("unreachable_number", R.INVALID_NUMBER, False, _DOCS),
        ErrorRule("opted_out", R.OPTED_OUT, False, _DOCS),
        ErrorRule("blocked_content", R.PROVIDER_PERMANENT, False, _DOCS),
        ErrorRule("unsupported_country", R.PROVIDER_PERMANENT, False, _DOCS),
        ErrorRule("invalid_request", R.VALIDATION_ERROR, False, _DOCS),
        ErrorRule("unauthorized", R.AUTH_FAILED, False, _DOCS),
    ],
)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``X-Signature`` for ``body`` sent at ``timestamp``: ``v1=`` + hex HMAC-SHA256 over
    ``b"{timestamp}." + body``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


@dataclass
class HttpAggregatorProvider:
    """Sends to the configured aggregator; see the module docstring."""

    name: str
    config: HttpAggregatorConfig

    @staticmethod
    def payload(request: SendRequest) -> dict[str, Any]:
        """The JSON document for ``request``."""
        return {
            "message_id": request.message_id,
            "tenant_id": request.tenant_id,
            "attempt": request.attempt,
            "to": request.to,
            "from": request.sender_id,
            "body": request.body,
            "encoding": request.encoding,
            "segments": request.segments,
            "ttl_seconds": request.ttl_seconds,
        }

    def send(self, request: SendRequest) -> SendResult:
        """Send one SMS.

        Raises:
            ProviderError: mapped by :data:`ERRORS` (or the HTTP status), not sent, or
                outcome unknown.
        """
        try:
            secret = read_secret(self.config.signing_secret)
        except SecretUnavailable as exc:
            raise ProviderError(
                R.PROVIDER_TRANSIENT, f"{self.name}: {exc}", error_code="SECRET_UNAVAILABLE"
            ) from exc
        body = json.dumps(self.payload(request), separators=(",", ":")).encode()
        timestamp = int(time.time())
        answer = transport.post(
            self.name,
            self.config.url,
            body,
            {
                "Content-Type": "application/json",
                "X-Timestamp": str(timestamp),
                "X-Signature": signature(secret, timestamp, body),
            },
            connect_timeout=self.config.connect_timeout,
            read_timeout=self.config.read_timeout,
        )
        try:
            data = json.loads(answer.body)
        except ValueError:
            data = {}
        data = data if isinstance(data, dict) else {}
        if 200 <= answer.status < 300:
            pmid = data.get("provider_message_id")
            if not isinstance(pmid, str) or not pmid:
                # it accepted the message: sent, though its receipts can only name our id
                logger.warning(
                    "provider accepted without a provider_message_id",
                    extra={"provider": self.name, "http_status": answer.status},
                )
                return SendResult(provider_message_id=None)
            return SendResult(provider_message_id=pmid)
        found = data.get("error")
        error: dict[str, Any] = found if isinstance(found, dict) else {}
        code = error.get("code") if isinstance(error.get("code"), str) else None
        detail = f"HTTP {answer.status}: {error.get('message', '')}".strip()
        raise ERRORS.error(self.name, code, answer.status, detail)


def from_config(name: str, config: HttpAggregatorConfig) -> HttpAggregatorProvider:
    """The provider a configuration declares."""
    return HttpAggregatorProvider(name, config)
