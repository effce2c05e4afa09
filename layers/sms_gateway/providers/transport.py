"""The one HTTP client of the HTTP provider types (Twilio, the generic aggregator): urllib3.

urllib3 ships with botocore, so it costs no dependency. One module-level ``PoolManager``
keeps connections open across warm invocations; every request has a connect and a read
timeout; ``retries=False``: no hidden retry (the gateway's retry policy owns retries, and a
blind resend of an SMS may reach the handset twice).

What a failure means for the message:

- the connection could not be made (refused, DNS, connect timeout, TLS handshake): the
  request never left us -> :func:`~sms_gateway.providers.errors.not_sent` (retryable);
- the connection was made and the request written, then no answer (read timeout, reset,
  closed mid-answer): the provider may have taken it ->
  :func:`~sms_gateway.providers.errors.outcome_unknown`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from sms_gateway.providers.errors import not_sent, outcome_unknown

_POOL: urllib3.PoolManager | None = None
_POOL_LOCK = threading.Lock()
# Sender threads per container (SenderService's pool): one kept-alive connection each.
POOL_MAXSIZE = 10


def pool() -> urllib3.PoolManager:
    """The container's pool manager (made on first use, kept across invocations)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = urllib3.PoolManager(maxsize=POOL_MAXSIZE, retries=False, block=False)
        return _POOL


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """``status``: HTTP status; ``body``: the raw answer; ``headers``: lower-cased names."""

    status: int
    body: bytes
    headers: Mapping[str, str]


def post(
    name: str,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    connect_timeout: float,
    read_timeout: float,
) -> HttpAnswer:
    """POST ``body`` to ``url``; any HTTP status is an answer (the caller maps it).

    ``name``: the provider's name, for error texts. Timeouts in seconds.

    Raises:
        ProviderError: ``network_error`` / ``timeout`` when the request never left (safe to
            retry); ``outcome_unknown`` when it left and no answer came back.
    """
    return _request(
        "POST",
        name,
        url,
        body,
        headers,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )


def get(
    name: str,
    url: str,
    headers: Mapping[str, str],
    *,
    connect_timeout: float,
    read_timeout: float,
) -> HttpAnswer:
    """GET ``url`` (a read, e.g. a provider's message list); errors as :func:`post` (a read
    has no unknown outcome to speak of, but the same errors say it got no answer)."""
    return _request(
        "GET",
        name,
        url,
        None,
        headers,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )


def _request(
    method: str,
    name: str,
    url: str,
    body: bytes | None,
    headers: Mapping[str, str],
    *,
    connect_timeout: float,
    read_timeout: float,
) -> HttpAnswer:
    timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
    try:
        response = pool().request(
            method,
            url,
            body=body,
            headers=dict(headers),
            timeout=timeout,
            retries=False,
            redirect=False,
        )
    except (NewConnectionError, ConnectTimeoutError) as exc:
        connect_timeout_hit = not isinstance(exc, NewConnectionError)
        raise not_sent(
            name, f"cannot connect ({type(exc).__name__})", timeout=connect_timeout_hit
        ) from exc
    except SSLError as exc:
        raise not_sent(name, "TLS handshake failed") from exc
    except ReadTimeoutError as exc:
        raise outcome_unknown(name, f"no answer within {read_timeout:g} s") from exc
    except ProtocolError as exc:
        raise outcome_unknown(name, "connection reset after the request was sent") from exc
    except HTTPError as exc:
        raise outcome_unknown(name, f"HTTP error after sending ({type(exc).__name__})") from exc
    return HttpAnswer(
        response.status,
        response.data,
        {k.lower(): v for k, v in response.headers.items()},
    )
