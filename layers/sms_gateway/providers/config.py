"""Provider configuration by name (issue 7): ``SMS_GATEWAY_PROVIDERS``, a JSON object
name -> settings, each with a ``type``:

- ``end_user_messaging``: AWS End User Messaging SMS (``pinpoint-sms-voice-v2``
  ``SendTextMessage``);
- ``sns``: Amazon SNS ``Publish`` to a phone number;
- ``twilio``: Twilio's Messages API;
- ``http``: the generic HTTP aggregator (JSON POST, HMAC-signed; docs/providers.md);
- ``simulator``: the deterministic fake of :mod:`sms_gateway.providers.simulator` (local
  stack, demo tenants, tests: only where a configuration names it).

Secrets are never in this JSON: fields ending in ``_secret`` hold a reference read by
:mod:`sms_gateway.providers.secrets` (Secrets Manager or SSM Parameter Store).

:func:`build_registry` imports a type's module only when the configuration names that type,
so the sender's cold start pays for the configured types alone.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from sms_gateway.providers.base import Provider, ProviderRegistry

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Timeout = Annotated[float, Field(gt=0, le=30)]


def _secret_reference(value: str) -> str:
    from sms_gateway.providers.secrets import is_reference

    if not is_reference(value):
        raise ValueError(
            "must reference a secret (secretsmanager:NAME, ssm:NAME or an ARN), not hold one"
        )
    return value


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    connect_timeout: Timeout = 3.0
    read_timeout: Timeout = 10.0


class SimulatorConfig(_Base):
    """A simulator (see :class:`~sms_gateway.providers.simulator.SimulatorProvider`)."""

    type: Literal["simulator"]
    fail_first: int = Field(default=0, ge=0)
    fail_always: Literal["transient", "permanent"] | None = None
    delay_seconds: float = Field(default=0.0, ge=0, le=30)


class EndUserMessagingConfig(_Base):
    """AWS End User Messaging SMS. ``origination_identity``: phone number, pool or sender ID
    (id or ARN; the IAM statement names it); ``message_type``: TRANSACTIONAL | PROMOTIONAL;
    ``max_price``: per-part price limit in USD as the API's string (``"0.05"``);
    ``dry_run``: the API checks and prices the request without sending (smoke tests)."""

    type: Literal["end_user_messaging"]
    origination_identity: str = Field(min_length=1, max_length=256)
    region: str | None = None
    configuration_set: str | None = None
    message_type: Literal["TRANSACTIONAL", "PROMOTIONAL"] = "TRANSACTIONAL"
    max_price: str | None = Field(default=None, pattern=r"^[0-9]{0,2}\.[0-9]{1,5}$")
    dry_run: bool = False


class SnsConfig(_Base):
    """Amazon SNS SMS. ``sms_type``: Transactional | Promotional; ``sender_id``: default
    sender ID (a message's own ``from`` wins); ``max_price`` in USD; ``origination_number``."""

    type: Literal["sns"]
    region: str | None = None
    sms_type: Literal["Transactional", "Promotional"] = "Transactional"
    sender_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9]{1,11}$")
    max_price: str | None = Field(default=None, pattern=r"^[0-9]{1,3}(\.[0-9]{1,5})?$")
    origination_number: str | None = Field(default=None, pattern=r"^\+[1-9][0-9]{1,14}$")


class TwilioConfig(_Base):
    """Twilio Messages API. Basic auth: ``account_sid`` + the auth token, or ``api_key_sid``
    + the API key secret (``auth_secret`` references whichever). Either
    ``messaging_service_sid`` or ``from_number`` (a message's own ``from`` wins over it).
    ``status_callback_url``: our receipts route for this provider (its full public URL, the
    one Twilio signs). ``callback_secret``: the account auth token that signs callbacks, when
    ``auth_secret`` is an API key's secret (default: ``auth_secret``). ``base_url``: Twilio's
    API (a loopback server in tests)."""

    type: Literal["twilio"]
    account_sid: str = Field(pattern=r"^AC[0-9a-fA-F]{32}$")
    auth_secret: str
    api_key_sid: str | None = Field(default=None, pattern=r"^SK[0-9a-fA-F]{32}$")
    messaging_service_sid: str | None = Field(default=None, pattern=r"^MG[0-9a-fA-F]{32}$")
    from_number: str | None = None
    status_callback_url: str | None = Field(default=None, pattern=r"^https?://")
    callback_secret: str | None = None
    base_url: str = Field(default="https://api.twilio.com", pattern=r"^https?://")

    @field_validator("auth_secret", "callback_secret")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        return None if value is None else _secret_reference(value)


class HttpAggregatorConfig(_Base):
    """The generic HTTP aggregator: a JSON POST to ``url`` signed with the secret
    ``signing_secret`` references (docs/providers.md gives the exact shape)."""

    type: Literal["http"]
    url: str = Field(pattern=r"^https?://")
    signing_secret: str

    @field_validator("signing_secret")
    @classmethod
    def _reference(cls, value: str) -> str:
        return _secret_reference(value)


ProviderConfig = Annotated[
    SimulatorConfig | EndUserMessagingConfig | SnsConfig | TwilioConfig | HttpAggregatorConfig,
    Field(discriminator="type"),
]
_CONFIGS: TypeAdapter[dict[str, ProviderConfig]] = TypeAdapter(dict[Name, ProviderConfig])

# type -> the module holding its adapter, imported only when configured (cold start)
MODULES: Mapping[str, str] = {
    "simulator": "sms_gateway.providers.simulator",
    "end_user_messaging": "sms_gateway.providers.end_user_messaging",
    "sns": "sms_gateway.providers.sns",
    "twilio": "sms_gateway.providers.twilio",
    "http": "sms_gateway.providers.aggregator",
}


def parse_providers(data: Mapping[str, Any]) -> dict[str, ProviderConfig]:
    """Validate ``SMS_GATEWAY_PROVIDERS`` (already JSON-decoded).

    Raises:
        pydantic.ValidationError: naming the provider and field at fault.
    """
    return _CONFIGS.validate_python(data)


def build_registry(
    configs: Mapping[str, ProviderConfig], *, demo_simulators: bool = False
) -> ProviderRegistry:
    """The providers a deployment declares, by name; plus the demo simulators
    (:func:`~sms_gateway.providers.simulator.demo_providers`) only when ``demo_simulators``
    (the local stack and tests ask for them). A configured name wins over a demo one.

    Each type's module is imported here, and only for the types ``configs`` names.
    """
    providers: dict[str, Provider] = {}
    if demo_simulators:
        from sms_gateway.providers import simulator

        providers.update({p.name: p for p in simulator.demo_providers()})
    for name, config in configs.items():
        module = importlib.import_module(MODULES[config.type])
        providers[name] = module.from_config(name, config)
    return ProviderRegistry(providers.values())
