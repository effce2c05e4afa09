"""Gateway settings, read from the environment (pydantic-settings).

Every variable is prefixed ``SMS_GATEWAY_``; the README's configuration table lists them all.
Only :mod:`sms_gateway.wiring` builds a :class:`Settings`; everything else gets values passed in.
An invalid value fails at start with a ``pydantic.ValidationError`` naming the variable.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class AuthMode(StrEnum):
    """Where the tenant identity of an API request comes from (DESIGN section 9).

    ``api_key``: the API Gateway API key that authenticated the request
    (``requestContext.identity.apiKeyId``); the deployed default.
    ``local``: the ``X-Tenant-ID`` header; only for the local stack and ``sam local``.
    """

    API_KEY = "api_key"
    LOCAL = "local"


class Settings(BaseSettings):
    """All configuration of the gateway's functions.

    Durations are in seconds. ``max_receive_count`` must equal the SendQueue's
    ``RedrivePolicy.maxReceiveCount`` in ``template.yaml`` (the template passes it through).
    """

    model_config = SettingsConfigDict(env_prefix="SMS_GATEWAY_", extra="ignore", frozen=True)

    auth_mode: AuthMode = AuthMode.API_KEY
    idempotency_table: str = "sms-gateway-idempotency"
    idempotency_ttl_seconds: int = Field(default=86_400, ge=60, le=7 * 86_400)
    send_queue_url: str = ""
    dead_letter_queue_url: str = ""
    max_receive_count: int = Field(default=3, ge=1, le=1000)
    max_segments: int = Field(default=10, ge=1, le=255)

    message_dsn: str = "sqlite:///sms-gateway.db"
    db_secret_arn: str = ""
    db_pool_recycle_seconds: int = Field(default=240, ge=1)

    # provider -> HMAC secret for signed receipts, as JSON: {"provider-a": "..."}
    receipt_secrets: dict[str, str] = Field(default_factory=dict)

    route_cache_ttl_seconds: float = Field(default=60.0, ge=0)
    route_cache_size: int = Field(default=1024, ge=1)
    default_provider: str = ""

    retry_base_seconds: int = Field(default=30, ge=0, le=43_200)
    retry_max_seconds: int = Field(default=900, ge=0, le=43_200)
    lease_seconds: int = Field(default=60, ge=1)
    outage_requeue_limit: int = Field(default=10, ge=0, le=1000)

    @property
    def receipts_signed(self) -> bool:
        """Whether receipts must be signed: always when deployed (``api_key`` mode), and in
        local mode as soon as any receipt secret is configured."""
        return self.auth_mode is AuthMode.API_KEY or bool(self.receipt_secrets)

    @model_validator(mode="after")
    def _check_retry_bounds(self) -> Settings:
        if self.retry_max_seconds < self.retry_base_seconds:
            raise ValueError(
                "SMS_GATEWAY_RETRY_MAX_SECONDS must be >= SMS_GATEWAY_RETRY_BASE_SECONDS"
            )
        return self
