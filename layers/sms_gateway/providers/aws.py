"""What the AWS provider types (End User Messaging SMS, SNS) share: a client with timeouts
and no hidden retries, and the mapping of botocore's failures.

- ``ClientError``: AWS answered; the type's :class:`~sms_gateway.providers.errors.ErrorTable`
  maps ``Error.Code`` (and the ``Reason`` some services add: ``Code/Reason`` rows win);
- connection never made (``EndpointConnectionError``, ``ConnectTimeoutError``): not sent,
  retryable;
- request sent, no answer (``ReadTimeoutError``, ``ConnectionClosedError``): outcome unknown.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from sms_gateway.providers.errors import ErrorTable, not_sent, outcome_unknown


def make_client(service: str, region: str | None, connect: float, read: float) -> Any:
    """A boto3 client for ``service``: connect/read timeouts in seconds, one attempt only
    (botocore's retries would resend an SMS whose outcome is unknown)."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=connect,
        read_timeout=read,
        retries={"total_max_attempts": 1, "mode": "standard"},
    )
    return boto3.client(service, region_name=region, config=config)  # type: ignore[call-overload]


class LazyClient:
    """A client made on first use (thread-safe), or the one given (tests: a Stubber's)."""

    def __init__(self, factory: Callable[[], Any], client: Any = None) -> None:
        self._factory = factory
        self._client = client
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._factory()
            return self._client


def call_aws[T](name: str, table: ErrorTable, send: Callable[[], T]) -> T:
    """``send()``, its failures as :class:`ProviderError` (see the module docstring).

    Raises:
        ProviderError: mapped by ``table`` or by the connection state.
    """
    try:
        return send()
    except ClientError as exc:
        response: dict[str, Any] = dict(exc.response)
        error = response.get("Error", {})
        code = str(error.get("Code", ""))
        reason = response.get("Reason") or error.get("Reason")
        fields = response.get("Fields") or []
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        detail = f"{code}: {error.get('Message', '')}".strip()
        keys = [f"{code}/{reason}"] if reason else []
        keys += [f"{code}/field:{f.get('Name')}" for f in fields if isinstance(f, dict)]
        known = next((key for key in keys if table.rule(key) is not None), code)
        raise table.error(name, known, status, detail) from exc
    except (EndpointConnectionError, ConnectTimeoutError) as exc:
        raise not_sent(
            name,
            f"cannot connect ({type(exc).__name__})",
            timeout=isinstance(exc, ConnectTimeoutError),
        ) from exc
    except ReadTimeoutError as exc:
        raise outcome_unknown(name, "no answer within the read timeout") from exc
    except ConnectionClosedError as exc:
        raise outcome_unknown(name, "connection closed after the request was sent") from exc
