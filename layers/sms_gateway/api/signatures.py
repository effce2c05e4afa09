"""Signed delivery receipts (DESIGN section 9): each provider signs its callbacks.

A provider sends three headers with ``POST /v1/receipts``:

- ``X-Provider``: its name as route policies know it (``provider-a``);
- ``X-Timestamp``: Unix time in seconds when it signed;
- ``X-Signature``: ``v1=`` + hex HMAC-SHA256 over ``"{timestamp}.{raw body}"`` with the secret
  configured for that provider (``SMS_GATEWAY_RECEIPT_SECRETS``, a JSON object
  provider -> secret reference deployed, or literal secret in local mode).

The gateway accepts a signature within ``window`` seconds of its clock (replays of an old
callback are refused) and compares in constant time against each of the provider's secret
versions (current, then previous during a rotation window: ``versions``). A verified receipt
may only touch messages that were sent through the signing provider.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping

from sms_gateway.api.problems import Problem

SIGNATURE_VERSION = "v1"
_TIMESTAMP = re.compile(r"[0-9]{1,12}")  # ASCII digits only (str.isdigit takes '²' too)
DEFAULT_WINDOW_SECONDS = 300


def sign(secret: str, timestamp: int, body: str) -> str:
    """The ``X-Signature`` value for ``body`` signed at ``timestamp`` (Unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def _literal(value: str) -> Iterable[str]:
    return (value,)


def _refused(detail: str) -> Problem:
    return Problem(401, "receipt-signature-invalid", "Receipt signature invalid", detail)


def verify(
    headers: Mapping[str, str],
    body: str,
    secrets: Mapping[str, str],
    now: float,
    window: int = DEFAULT_WINDOW_SECONDS,
    versions: Callable[[str], Iterable[str]] = _literal,
) -> str:
    """Check a receipt's signature; returns the provider that signed it.

    ``headers``: case-insensitive request headers; ``body``: the raw request body;
    ``secrets``: provider -> configured value; ``now``: Unix seconds; ``versions``: the secrets
    a configured value stands for, newest first, tried in order until one matches (default:
    the value itself; :func:`sms_gateway.providers.secrets.secret_versions` reads references).

    Raises:
        SecretUnavailable: a secret version cannot be read (answered 503, so the provider
            retries rather than losing the receipt).
        Problem: 401 naming what is missing or wrong (unknown provider, stale timestamp,
            signature mismatch). Nothing is stored for a refused receipt.
    """
    provider = headers.get("X-Provider") or ""
    timestamp = headers.get("X-Timestamp") or ""
    signature = headers.get("X-Signature") or ""
    if not (provider and timestamp and signature):
        raise _refused("send X-Provider, X-Timestamp and X-Signature")
    secret = secrets.get(provider)
    if not secret:
        raise _refused(f"no receipt secret is configured for provider {provider!r}")
    if not _TIMESTAMP.fullmatch(timestamp) or abs(now - int(timestamp)) > window:
        raise _refused(f"X-Timestamp must be Unix seconds within {window} s of now")
    for version in versions(secret):  # lazily: the previous version is read only if needed
        if hmac.compare_digest(sign(version, int(timestamp), body), signature):
            return provider
    raise _refused("X-Signature does not match the body")
