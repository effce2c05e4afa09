"""Amazon SNS ``Publish`` to a phone number (issue 7).

The request: ``PhoneNumber`` (E.164), ``Message`` (the body) and the SMS message attributes
(https://docs.aws.amazon.com/sns/latest/dg/sms_publish-to-phone.html):
``AWS.SNS.SMS.SMSType`` (Transactional | Promotional), ``AWS.SNS.SMS.SenderID`` (the message's
``from``, else the configured one), ``AWS.SNS.SMS.MaxPrice`` (Number, USD),
``AWS.MM.SMS.OriginationNumber``. Answer: ``MessageId``.

SNS reports delivery only to CloudWatch Logs (delivery status logging): without a subscription
to those logs, an SNS message stays ``sent`` (README, "Receipts"). Errors: :data:`ERRORS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sms_gateway.domain.reasons import ReasonCode as R
from sms_gateway.providers.aws import LazyClient, call_aws, make_client
from sms_gateway.providers.base import SendRequest, SendResult
from sms_gateway.providers.errors import ErrorRule, ErrorTable

if TYPE_CHECKING:
    from sms_gateway.providers.config import SnsConfig

_PUBLISH = "https://docs.aws.amazon.com/sns/latest/api/API_Publish.html#API_Publish_Errors"
_COMMON = "https://docs.aws.amazon.com/sns/latest/api/CommonErrors.html"

ERRORS = ErrorTable(
    "sns",
    [
        ErrorRule("Throttling", R.RATE_LIMITED, True, _COMMON),
        ErrorRule("Throttled", R.RATE_LIMITED, True, _PUBLISH),
        ErrorRule("KMSThrottling", R.RATE_LIMITED, True, _PUBLISH),
        ErrorRule("InternalError", R.PROVIDER_TRANSIENT, True, _PUBLISH),
        ErrorRule("ServiceUnavailable", R.PROVIDER_TRANSIENT, True, _COMMON),
        ErrorRule("AuthorizationError", R.AUTH_FAILED, False, _PUBLISH),
        ErrorRule("InvalidSecurity", R.AUTH_FAILED, False, _PUBLISH),
        ErrorRule("InvalidClientTokenId", R.AUTH_FAILED, False, _COMMON),
        # SNS answers InvalidParameter for a PhoneNumber that is not E.164 or not routable
        ErrorRule("InvalidParameter", R.INVALID_NUMBER, False, _PUBLISH),
        ErrorRule("ParameterValueInvalid", R.VALIDATION_ERROR, False, _PUBLISH),
        ErrorRule("ValidationException", R.VALIDATION_ERROR, False, _PUBLISH),
        ErrorRule("NotFound", R.PROVIDER_PERMANENT, False, _PUBLISH),
    ],
)


def _string(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


@dataclass
class SnsProvider:
    """Sends through SNS ``Publish``; see the module docstring. ``client``: an SNS client
    (made on first send when None)."""

    name: str
    config: SnsConfig
    client: Any = None

    def __post_init__(self) -> None:
        config = self.config
        self._client = LazyClient(
            lambda: make_client("sns", config.region, config.connect_timeout, config.read_timeout),
            self.client,
        )

    def params(self, request: SendRequest) -> dict[str, Any]:
        """The ``Publish`` parameters for ``request``."""
        config = self.config
        attributes = {"AWS.SNS.SMS.SMSType": _string(config.sms_type)}
        sender_id = request.sender_id or config.sender_id
        if sender_id:
            attributes["AWS.SNS.SMS.SenderID"] = _string(sender_id)
        if config.max_price:
            attributes["AWS.SNS.SMS.MaxPrice"] = {
                "DataType": "Number",
                "StringValue": config.max_price,
            }
        if config.origination_number:
            attributes["AWS.MM.SMS.OriginationNumber"] = _string(config.origination_number)
        return {"PhoneNumber": request.to, "Message": request.body, "MessageAttributes": attributes}

    def send(self, request: SendRequest) -> SendResult:
        """Send one SMS.

        Raises:
            ProviderError: mapped by :data:`ERRORS`, or not sent / outcome unknown.
        """
        params = self.params(request)
        answer = call_aws(self.name, ERRORS, lambda: self._client().publish(**params))
        return SendResult(provider_message_id=str(answer["MessageId"]))


def from_config(name: str, config: SnsConfig) -> SnsProvider:
    """The provider a configuration declares."""
    return SnsProvider(name, config)
