"""Who the caller is (DESIGN section 9).

Deployed (``api_key`` mode) the tenant is the one whose API key authenticated the request:
API Gateway hands the key's id (``requestContext.identity.apiKeyId``), never a header the
client can set, and the tenant records map it to a tenant id that survives key rotation
(:mod:`sms_gateway.services.tenants`; a key that maps to no tenant answers 403). The
``X-Tenant-ID`` header is honoured only in ``local`` mode (local stack, ``sam local``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from sms_gateway.api.problems import Problem

if TYPE_CHECKING:
    from sms_gateway.settings import AuthMode

TENANT_HEADER = "X-Tenant-ID"
_TENANT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "unauthorized", "Unauthorized", detail)


def tenant_of(
    request_context: dict[str, Any] | None,
    tenant_header: str | None,
    mode: AuthMode,
    tenant_of_key: Callable[[str], str] | None = None,
) -> str:
    """The tenant id of an API request.

    ``request_context``: the API Gateway event's ``requestContext``; ``tenant_header``: the
    ``X-Tenant-ID`` header value (looked at only in local mode); ``tenant_of_key``: API key
    id -> tenant id (api_key mode; :meth:`~sms_gateway.services.tenants.TenantKeyResolver.
    tenant_of`). Without it (tests of this function alone) the key id itself is returned.

    Raises:
        Problem: 401 when no tenant identity is present (or it is malformed).
        ApiKeyNotActive: (from ``tenant_of_key``) the key maps to no tenant: 403.
    """
    from sms_gateway.settings import AuthMode  # loaded with the settings, before any request

    if mode is AuthMode.LOCAL:
        if not tenant_header:
            raise _unauthorized(f"local mode: send the {TENANT_HEADER} header")
        if not _TENANT_ID.fullmatch(tenant_header):
            raise _unauthorized(f"{TENANT_HEADER} must be 1-128 of A-Z a-z 0-9 . _ : -")
        return tenant_header
    identity = (request_context or {}).get("identity") or {}
    api_key_id = identity.get("apiKeyId")
    if not api_key_id or not isinstance(api_key_id, str):
        raise _unauthorized("the request carries no API key identity (x-api-key)")
    return tenant_of_key(api_key_id) if tenant_of_key is not None else api_key_id


class ProxyEvent(Protocol):
    """The parts of Powertools' ``APIGatewayProxyEvent`` that carry identity."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def raw_event(self) -> dict[str, Any]: ...


def tenant_of_event(
    event: ProxyEvent, mode: AuthMode, tenant_of_key: Callable[[str], str] | None = None
) -> str:
    """:func:`tenant_of` for a Powertools API Gateway event (headers are case-insensitive).

    Raises:
        Problem: 401 when no tenant identity is present.
        ApiKeyNotActive: the key maps to no tenant (403).
    """
    return tenant_of(
        event.raw_event.get("requestContext"),
        event.headers.get(TENANT_HEADER),
        mode,
        tenant_of_key,
    )
