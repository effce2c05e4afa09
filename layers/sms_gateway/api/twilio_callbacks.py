"""Twilio status callbacks (issue 7): ``POST /v1/receipts/twilio/{provider}``, form-encoded,
verified by ``X-Twilio-Signature``.

The signature, exactly as Twilio documents it
(https://www.twilio.com/docs/usage/security#validating-requests) and as its SDK computes it
(``twilio/request_validator.py``, ``RequestValidator.compute_signature``):

1. take the full URL Twilio requested (scheme, host, path, query string);
2. for each POST parameter name in sorted order (names once), append the name followed by
   each of its distinct values in sorted order;
3. HMAC-SHA1 of that string, keyed with the account's auth token; base64.

Twilio is inconsistent about the default port, so (as the SDK does) the signature is accepted
over the URL with the port (``:443`` / ``:80`` added when missing) or without it.

Behind API Gateway the URL Twilio used is rebuilt from the event: ``https://`` + ``Host`` +
the request context's path (which holds the stage, ``/prod/v1/...``, or a custom domain's base
path) + the query string; the provider's configured ``status_callback_url`` (the URL we gave
Twilio) is tried as well, so a proxy that rewrites the host does not break verification.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from sms_gateway.api.problems import FieldError, Problem, validation_problem

# Twilio MessageStatus -> our receipt status (ReceiptRequest.status); the informational ones
# never move a message. https://www.twilio.com/docs/messaging/api/message-resource#message-status-values
MESSAGE_STATUSES: Mapping[str, str] = {
    "delivered": "delivered",
    "read": "delivered",  # WhatsApp/RCS read receipt: delivered before it was read
    "undelivered": "undelivered",
    "failed": "failed",
    "canceled": "failed",
    "sent": "sent",
    "queued": "accepted",
    "accepted": "accepted",
    "scheduled": "accepted",
    "sending": "enroute",
    "partially_delivered": "sent",
}


def compute_signature(token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """``X-Twilio-Signature`` for a POST of ``params`` (name, value pairs; a name may repeat)
    to ``url``, keyed with ``token`` (see the module docstring)."""
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    text = url + "".join(name + v for name in sorted(values) for v in sorted(values[name]))
    mac = hmac.new(token.encode(), text.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def _port_variants(url: str) -> list[str]:
    """``url`` without its port and with one (the SDK's ``remove_port`` / ``add_port``: the
    port given, else 443 for https and 80 for http)."""
    parts = urlsplit(url)
    if parts.port is not None:
        bare = parts.netloc.rsplit(":", 1)[0]
        with_port = parts.netloc
    else:
        bare = parts.netloc
        with_port = f"{parts.netloc}:{443 if parts.scheme == 'https' else 80}"
    return [urlunsplit(parts._replace(netloc=n)) for n in (bare, with_port)]


def signature_valid(
    token: str, urls: Sequence[str], params: Sequence[tuple[str, str]], signature: str
) -> bool:
    """Whether ``signature`` is Twilio's over any of ``urls`` (each with and without its
    default port) and ``params``; compared in constant time."""
    if not signature:
        return False
    return any(
        hmac.compare_digest(compute_signature(token, candidate, params), signature)
        for url in urls
        for candidate in _port_variants(url)
    )


def request_urls(event: Mapping[str, Any], configured: str | None) -> list[str]:
    """The URLs Twilio may have signed for this API Gateway REST proxy ``event``: rebuilt from
    the event (``X-Forwarded-Proto``, ``Host``, the request context's path with its stage, the
    query string), then ``configured`` (the provider's ``status_callback_url``) with the same
    query string."""
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    query = urlencode(
        [
            (name, value)
            for name, values in (event.get("multiValueQueryStringParameters") or {}).items()
            for value in values or []
        ]
    )
    urls = []
    host = headers.get("host")
    if host:
        scheme = headers.get("x-forwarded-proto", "https")
        context = event.get("requestContext") or {}
        path = context.get("path") or event.get("path") or "/"
        urls.append(urlunsplit((scheme, host, path, query, "")))
    if configured:
        parts = urlsplit(configured)
        urls.append(urlunsplit(parts._replace(query=query)))
    return urls


def refused(detail: str) -> Problem:
    """The 401 answer to a callback whose signature does not verify."""
    from sms_gateway.api.errors import KINDS

    return KINDS["receipt-signature-invalid"].problem(detail)


def receipt_payload(params: Sequence[tuple[str, str]], query: Mapping[str, str]) -> dict[str, Any]:
    """The ``POST /v1/receipts`` payload a verified callback stands for: our message id (the
    ``message_id`` we put in the callback URL), ``MessageSid``, the mapped ``MessageStatus``,
    ``ErrorCode`` kept as the error code.

    Raises:
        Problem: 422 naming ``MessageStatus`` when Twilio sent a status we do not know.
    """
    form = dict(params)
    status = form.get("MessageStatus") or form.get("SmsStatus") or ""
    if status not in MESSAGE_STATUSES:
        raise validation_problem([FieldError("MessageStatus", "not a Twilio message status")])
    payload: dict[str, Any] = {"status": MESSAGE_STATUSES[status]}
    if query.get("message_id"):
        payload["message_id"] = query["message_id"]
    if form.get("MessageSid"):
        payload["provider_message_id"] = form["MessageSid"]
    if form.get("ErrorCode"):
        payload["error_code"] = f"twilio:{form['ErrorCode']}"
    return payload
