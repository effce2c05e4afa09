"""AWS End User Messaging SMS (``pinpoint-sms-voice-v2`` ``SendTextMessage``), issue 7.

The request, for a :class:`~sms_gateway.providers.base.SendRequest`:

- ``DestinationPhoneNumber``: ``to`` (E.164); ``MessageBody``: the body as stored;
- ``OriginationIdentity``: the message's own sender ID (``from``) when it has one, else the
  configured phone number, pool or sender ID;
- ``MessageType``, ``ConfigurationSetName`` (its event destination sends our receipts),
  ``MaxPrice`` as configured;
- ``TimeToLive``: what is left of the message's validity period, in seconds, clamped to the
  API's 5..259200 (omitted without a validity period: the service's default, 72 h);
- ``Context``: ``{"message_id", "tenant_id"}``, echoed in every event of the message, so a
  receipt is matched by our id even before we stored the provider's;
- ``DryRun``: when configured (a smoke test: checked and priced, not sent).

Answer: ``MessageId`` -> the provider message id. Errors: :data:`ERRORS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sms_gateway.domain.reasons import ReasonCode as R
from sms_gateway.providers.aws import LazyClient, call_aws, make_client
from sms_gateway.providers.base import SendRequest, SendResult
from sms_gateway.providers.errors import ErrorRule, ErrorTable

if TYPE_CHECKING:
    from sms_gateway.providers.config import EndUserMessagingConfig

_API = "https://docs.aws.amazon.com/pinpoint/latest/apireference_smsvoicev2/"
_SEND = _API + "API_SendTextMessage.html#API_SendTextMessage_Errors"
_VALIDATION = _API + "API_ValidationException.html"
_CONFLICT = _API + "API_ConflictException.html"
_QUOTA = _API + "API_ServiceQuotaExceededException.html"
_ACCESS = _API + "API_AccessDeniedException.html"

ERRORS = ErrorTable(
    "end_user_messaging",
    [
        ErrorRule("ThrottlingException", R.RATE_LIMITED, True, _SEND),
        ErrorRule("InternalServerException", R.PROVIDER_TRANSIENT, True, _SEND),
        ErrorRule("AccessDeniedException", R.AUTH_FAILED, False, _ACCESS),
        ErrorRule("ResourceNotFoundException", R.PROVIDER_PERMANENT, False, _SEND),
        ErrorRule(
            "ServiceQuotaExceededException/MONTHLY_SPEND_LIMIT_REACHED_FOR_TEXT",
            R.QUOTA_EXCEEDED,
            False,  # the month's limit does not reset within a retry backoff (15 min at most)
            _QUOTA,
        ),
        ErrorRule("ServiceQuotaExceededException", R.QUOTA_EXCEEDED, False, _QUOTA),
        ErrorRule(
            "ConflictException/DESTINATION_PHONE_NUMBER_OPTED_OUT", R.OPTED_OUT, False, _CONFLICT
        ),
        ErrorRule(
            "ConflictException/DESTINATION_PHONE_NUMBER_NOT_VERIFIED",  # sandbox account
            R.PROVIDER_PERMANENT,
            False,
            _CONFLICT,
        ),
        ErrorRule(
            "ConflictException/DESTINATION_PHONE_NUMBER_BLOCKED_BY_PROTECT_NUMBER_OVERRIDE",
            R.RECIPIENT_BLACKLISTED,
            False,
            _CONFLICT,
        ),
        ErrorRule(
            "ConflictException/DESTINATION_COUNTRY_BLOCKED_BY_PROTECT_CONFIGURATION",
            R.PROVIDER_PERMANENT,
            False,
            _CONFLICT,
        ),
        ErrorRule("ConflictException", R.PROVIDER_PERMANENT, False, _CONFLICT),
        ErrorRule(
            "ValidationException/field:DestinationPhoneNumber", R.INVALID_NUMBER, False, _VALIDATION
        ),
        ErrorRule(
            "ValidationException/DESTINATION_COUNTRY_BLOCKED",
            R.PROVIDER_PERMANENT,
            False,
            _VALIDATION,
        ),
        ErrorRule(
            "ValidationException/COUNTRY_NOT_ENABLED", R.PROVIDER_PERMANENT, False, _VALIDATION
        ),
        ErrorRule(
            "ValidationException/INTERNATIONAL_SENDING_NOT_SUPPORTED",
            R.PROVIDER_PERMANENT,
            False,
            _VALIDATION,
        ),
        ErrorRule(
            "ValidationException/INVALID_IDENTITY_FOR_DESTINATION_COUNTRY",
            R.PROVIDER_PERMANENT,
            False,
            _VALIDATION,
        ),
        ErrorRule(
            "ValidationException/PRICE_OVER_THRESHOLD", R.PROVIDER_PERMANENT, False, _VALIDATION
        ),
        ErrorRule(
            "ValidationException/SENDER_ID_NOT_REGISTERED", R.PROVIDER_PERMANENT, False, _VALIDATION
        ),
        ErrorRule(
            "ValidationException/SENDER_ID_NOT_SUPPORTED", R.PROVIDER_PERMANENT, False, _VALIDATION
        ),
        ErrorRule(
            "ValidationException/SENDER_ID_REQUIRES_REGISTRATION",
            R.PROVIDER_PERMANENT,
            False,
            _VALIDATION,
        ),
        ErrorRule("ValidationException", R.VALIDATION_ERROR, False, _VALIDATION),
    ],
)

TTL_MIN, TTL_MAX = 5, 259_200  # TimeToLive bounds of SendTextMessage (seconds)


@dataclass
class EndUserMessagingProvider:
    """Sends through ``SendTextMessage``; see the module docstring. ``client``: a
    ``pinpoint-sms-voice-v2`` client (made on first send when None)."""

    name: str
    config: EndUserMessagingConfig
    client: Any = None

    def __post_init__(self) -> None:
        config = self.config
        self._client = LazyClient(
            lambda: make_client(
                "pinpoint-sms-voice-v2",
                config.region,
                config.connect_timeout,
                config.read_timeout,
            ),
            self.client,
        )

    def params(self, request: SendRequest) -> dict[str, Any]:
        """The ``SendTextMessage`` parameters for ``request``."""
        config = self.config
        params: dict[str, Any] = {
            "DestinationPhoneNumber": request.to,
            "OriginationIdentity": request.sender_id or config.origination_identity,
            "MessageBody": request.body,
            "MessageType": config.message_type,
            "Context": {"message_id": request.message_id, "tenant_id": request.tenant_id},
        }
        if config.configuration_set:
            params["ConfigurationSetName"] = config.configuration_set
        if config.max_price:
            params["MaxPrice"] = config.max_price
        if request.ttl_seconds is not None:
            params["TimeToLive"] = min(TTL_MAX, max(TTL_MIN, request.ttl_seconds))
        if config.dry_run:
            params["DryRun"] = True
        return params

    def send(self, request: SendRequest) -> SendResult:
        """Send one SMS.

        Raises:
            ProviderError: mapped by :data:`ERRORS`, or not sent / outcome unknown.
        """
        params = self.params(request)
        answer = call_aws(self.name, ERRORS, lambda: self._client().send_text_message(**params))
        return SendResult(provider_message_id=str(answer["MessageId"]))


def from_config(name: str, config: EndUserMessagingConfig) -> EndUserMessagingProvider:
    """The provider a configuration declares."""
    return EndUserMessagingProvider(name, config)
