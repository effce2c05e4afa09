"""Gateway settings, read from the environment (pydantic-settings).

Every variable is prefixed ``SMS_GATEWAY_``; the README's configuration table lists them all.
Only :mod:`sms_gateway.wiring` builds a :class:`Settings`; everything else gets values passed in.
An invalid value fails at start with a ``pydantic.ValidationError`` naming the variable.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from sms_gateway.providers.config import ProviderConfig
from sms_gateway.storage.kinds import DatabaseEngine


class AuthMode(StrEnum):
    """Where the tenant identity of an API request comes from (DESIGN section 9).

    ``api_key``: the API Gateway API key that authenticated the request
    (``requestContext.identity.apiKeyId``); the deployed default.
    ``local``: the ``X-Tenant-ID`` header; only for the local stack and ``sam local``.
    """

    API_KEY = "api_key"
    LOCAL = "local"


class ProviderRate(BaseModel):
    """One provider's send rate (``SMS_GATEWAY_PROVIDER_RATES``).

    ``rate``: segments per second (> 0); ``burst``: segments the provider may get at once
    (>= the longest message, ``SMS_GATEWAY_MAX_SEGMENTS``); ``penalty_seconds``: how long all
    senders hold the provider after it answered ``rate_limited`` without a hint of its own.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: float = Field(gt=0, le=1_000_000)
    burst: int = Field(ge=1, le=1_000_000)
    penalty_seconds: float = Field(default=1.0, ge=0, le=900)


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

    # The database. Deployed: its address here and only the credentials in a Secrets Manager
    # secret (db_host + db_secret_arn). Local stack, tests, CLI: a DSN with everything.
    message_dsn: str = "sqlite:///sms-gateway.db"
    db_host: str = ""
    db_port: int = Field(default=0, ge=0, le=65535)
    db_name: str = ""
    db_engine: DatabaseEngine = DatabaseEngine.POSTGRESQL
    db_secret_arn: str = ""
    db_secret_max_age_seconds: int = Field(default=300, ge=0, le=86_400)
    db_tls: bool = False
    db_tls_ca_file: str = ""
    db_pool_recycle_seconds: int = Field(default=240, ge=1)

    # provider -> HMAC secret for signed receipts, as JSON. Deployed (api_key mode) each value
    # is a reference read at verify time (sms_gateway.providers.secrets):
    # {"provider-a": "secretsmanager:sms-gateway/receipts/provider-a"}; local mode may use
    # literal secrets: {"provider-a": "s3cret"}.
    receipt_secrets: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)

    # name -> provider settings, as JSON (sms_gateway.providers.config): the providers route
    # policies may name. {"eum": {"type": "end_user_messaging", "origination_identity": ...}}
    providers: Annotated[dict[str, ProviderConfig], NoDecode] = Field(default_factory=dict)
    # the seed's demo simulators (provider-a, provider-b, ...): the local stack and tests only
    demo_providers: bool = False

    route_cache_ttl_seconds: float = Field(default=60.0, ge=0)
    route_cache_size: int = Field(default=1024, ge=1)
    default_provider: str = ""

    retry_base_seconds: int = Field(default=30, ge=0, le=43_200)
    retry_max_seconds: int = Field(default=900, ge=0, le=43_200)
    lease_seconds: int = Field(default=60, ge=1)
    outage_requeue_limit: int = Field(default=10, ge=0, le=1000)

    # provider -> send rate, as JSON: {"provider-a": {"rate": 10, "burst": 20}}. A provider
    # not named is unlimited (no DynamoDB call).
    # (NoDecode: parsed here, so that malformed JSON is a ValidationError naming the variable.)
    provider_rates: Annotated[dict[str, ProviderRate], NoDecode] = Field(default_factory=dict)
    rate_limit_table: str = ""

    # Tenants whose recipient numbers are checked as *possible* (a known country code and a
    # possible length) rather than valid by libphonenumber's metadata: for numbers newer than
    # the metadata. Comma-separated tenant ids. Ingest reads it (no SQL
    # there, so not a route policy).
    possible_number_tenants: Annotated[frozenset[str], NoDecode] = Field(default_factory=frozenset)

    # Tenants as records (sms_gateway.services.tenants): the DynamoDB table of tenant and
    # API-key records (TenantsTable). api_key mode needs it on the API functions: the key id
    # API Gateway authenticated -> its tenant id, cached tenant_cache_ttl_seconds (a revoked
    # key is refused within that time). The admin commands also need the API and stage the
    # tenants' usage plans cover, and the stack's original usage plan (adopted keys).
    tenants_table: str = ""
    tenant_cache_ttl_seconds: float = Field(default=30.0, ge=0, le=3600)
    api_id: str = ""
    api_stage: str = ""

    # Where docs/problems.md is published: problem `type` URIs are this + a section anchor.
    problem_type_base: str = Field(
        default="https://sms-gateway.example/docs/problems.md#", min_length=1
    )

    @property
    def provider_names(self) -> list[str]:
        """The provider names route policies may use, sorted: the configured ones, plus the
        demo simulators when ``demo_providers``."""
        names = set(self.providers)
        if self.demo_providers:
            from sms_gateway.providers.simulator import demo_providers

            names |= {p.name for p in demo_providers()}
        return sorted(names)

    # Retention (RetentionFunction), counted from a message's creation: bodies and numbers
    # redacted after redact_after_days, rows deleted after delete_after_days; at most
    # retention_max_batches batches of retention_batch_size messages per run and kind. The
    # audit trail (message_events) of a deleted message is kept audit_after_days from each
    # event. A tenant's route policy may set its own redact/delete periods.
    redact_after_days: int = Field(default=30, ge=1, le=36_500)
    delete_after_days: int = Field(default=400, ge=1, le=36_500)
    audit_after_days: int = Field(default=1095, ge=1, le=36_500)
    retention_batch_size: int = Field(default=500, ge=1, le=10_000)
    retention_max_batches: int = Field(default=20, ge=1, le=1000)

    @property
    def receipts_signed(self) -> bool:
        """Whether receipts must be signed: always when deployed (``api_key`` mode), and in
        local mode as soon as any receipt secret is configured."""
        return self.auth_mode is AuthMode.API_KEY or bool(self.receipt_secrets)

    @model_validator(mode="after")
    def _check_database(self) -> Settings:
        if self.db_host or self.db_secret_arn:
            missing = [
                name
                for name, value in (
                    ("SMS_GATEWAY_DB_HOST", self.db_host),
                    ("SMS_GATEWAY_DB_NAME", self.db_name),
                    ("SMS_GATEWAY_DB_SECRET_ARN", self.db_secret_arn),
                )
                if not value
            ]
            if missing:
                raise ValueError(
                    f"{', '.join(missing)} must be set: a database given by host takes its "
                    "name from SMS_GATEWAY_DB_NAME and its credentials from the secret"
                )
        return self

    @model_validator(mode="after")
    def _check_receipt_secrets(self) -> Settings:
        from sms_gateway.providers.secrets import is_reference

        if self.auth_mode is AuthMode.API_KEY:
            literal = sorted(n for n, v in self.receipt_secrets.items() if not is_reference(v))
            if literal:
                raise ValueError(
                    f"SMS_GATEWAY_RECEIPT_SECRETS: the value for {', '.join(literal)} is a "
                    "literal secret; deployed (SMS_GATEWAY_AUTH_MODE=api_key) each value must "
                    "be a reference: secretsmanager:<name or ARN>, a Secrets Manager ARN, "
                    "ssm:<parameter name> or an SSM parameter ARN (optionally #field)"
                )
        return self

    @model_validator(mode="after")
    def _check_retry_bounds(self) -> Settings:
        if self.retry_max_seconds < self.retry_base_seconds:
            raise ValueError(
                "SMS_GATEWAY_RETRY_MAX_SECONDS must be >= SMS_GATEWAY_RETRY_BASE_SECONDS"
            )
        return self

    @field_validator("possible_number_tenants", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return frozenset(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _check_retention(self) -> Settings:
        if self.delete_after_days < self.redact_after_days:
            raise ValueError(
                "SMS_GATEWAY_DELETE_AFTER_DAYS must be >= SMS_GATEWAY_REDACT_AFTER_DAYS"
            )
        if self.audit_after_days < self.delete_after_days:
            raise ValueError(
                "SMS_GATEWAY_AUDIT_AFTER_DAYS must be >= SMS_GATEWAY_DELETE_AFTER_DAYS"
            )
        return self

    @field_validator("provider_rates", "receipt_secrets", "providers", mode="before")
    @classmethod
    def _parse_json(cls, value: Any) -> Any:
        if isinstance(value, str | bytes):
            try:
                return json.loads(value)
            except ValueError as exc:
                raise ValueError(f"not JSON ({exc})") from None
        return value

    @model_validator(mode="after")
    def _check_provider_rates(self) -> Settings:
        short = sorted(
            name for name, r in self.provider_rates.items() if r.burst < self.max_segments
        )
        if short:
            raise ValueError(
                f"SMS_GATEWAY_PROVIDER_RATES: burst of {', '.join(short)} is below "
                f"SMS_GATEWAY_MAX_SEGMENTS ({self.max_segments}): its longest messages could "
                "never be sent"
            )
        if self.provider_rates and not self.rate_limit_table:
            raise ValueError(
                "SMS_GATEWAY_RATE_LIMIT_TABLE must be set when SMS_GATEWAY_PROVIDER_RATES "
                "names providers"
            )
        return self
