"""Twilio Messages API (issue 7):
``POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json``.

https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource

Form-encoded (``application/x-www-form-urlencoded``), HTTP basic auth: the account SID and
auth token, or an API key SID and its secret (the secret read from Secrets Manager or SSM,
:mod:`sms_gateway.providers.secrets`). Fields:

- ``To`` (E.164), ``Body``;
- ``From``: the message's own sender ID, else the configured number; or
  ``MessagingServiceSid`` when configured and the message names no sender;
- ``StatusCallback``: the configured receipts URL plus ``?message_id=<our id>`` (Twilio signs
  and posts to exactly that URL, so a callback matches our message even before its ``sid``
  is stored);
- ``ValidityPeriod``: what is left of the validity period (1..36000 s; Twilio honours it
  with a messaging service only, so it is sent with one only).

Answer 201 ``{"sid": "SM..."}`` -> the provider message id. A refusal is
``{"code": 21211, "message": ..., "status": 400}``: :data:`ERRORS` maps the code, else the
HTTP status (429, 5xx transient).

An attempt whose outcome is unknown (no answer after the request left) is looked up before the
sender decides (:meth:`TwilioProvider.lookup`): ``GET .../Messages.json?To=...&From=...``
(https://www.twilio.com/docs/messaging/api/message-resource#read-multiple-message-resources;
twilio-python's ``MessageList.page``: ``To``, ``From``, ``DateSent``, ``PageSize``; answer
``{"messages": [{"sid", "to", "from", "body", "date_created" (RFC 2822), ...}], ...}``, newest
first). ``DateSent`` is not used: a message Twilio has accepted but not yet sent has no
``date_sent``, and is exactly the one to find. A message matches on its body and a creation
time at or after the attempt's start (:func:`match_sid`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from sms_gateway.domain.reasons import ReasonCode as R
from sms_gateway.observability import logger
from sms_gateway.providers import transport
from sms_gateway.providers.base import ProviderError, SendRequest, SendResult
from sms_gateway.providers.errors import ErrorRule, ErrorTable
from sms_gateway.providers.secrets import SecretUnavailable, read_secret

if TYPE_CHECKING:
    from sms_gateway.providers.config import TwilioConfig

_DOCS = "https://www.twilio.com/docs/api/errors/"

ERRORS = ErrorTable(
    "twilio",
    [
        ErrorRule("20003", R.AUTH_FAILED, False, _DOCS + "20003"),  # authentication error
        ErrorRule("20429", R.RATE_LIMITED, True, _DOCS + "20429"),  # too many requests
        ErrorRule("20500", R.PROVIDER_TRANSIENT, True, _DOCS + "20500"),  # internal error
        ErrorRule("20503", R.PROVIDER_TRANSIENT, True, _DOCS + "20503"),  # service unavailable
        ErrorRule("21211", R.INVALID_NUMBER, False, _DOCS + "21211"),  # invalid 'To' number
        ErrorRule("21614", R.INVALID_NUMBER, False, _DOCS + "21614"),  # 'To' not a mobile number
        ErrorRule("21612", R.INVALID_NUMBER, False, _DOCS + "21612"),  # 'To' not reachable by SMS
        ErrorRule("21610", R.OPTED_OUT, False, _DOCS + "21610"),  # unsubscribed recipient (STOP)
        # geo permissions: the 'To' country is not enabled for the account (unsupported country)
        ErrorRule("21408", R.PROVIDER_PERMANENT, False, _DOCS + "21408"),
        ErrorRule("21606", R.PROVIDER_PERMANENT, False, _DOCS + "21606"),  # 'From' not SMS-capable
        ErrorRule("21617", R.VALIDATION_ERROR, False, _DOCS + "21617"),  # body over 1600 chars
        ErrorRule("30007", R.RECIPIENT_BLACKLISTED, False, _DOCS + "30007"),  # filtered (content)
        ErrorRule("21611", R.RATE_LIMITED, True, _DOCS + "21611"),  # 'From' queue full
    ],
)

# ErrorCode of a failed/undelivered status callback (the message left Twilio and was not
# delivered): the reason the message's failure records. Not retried (a receipt ends the
# message); a code not listed is provider_permanent.
DELIVERY_ERRORS: dict[str, ErrorRule] = {
    rule.code: rule
    for rule in (
        ErrorRule("21610", R.OPTED_OUT, False, _DOCS + "21610"),  # unsubscribed recipient
        ErrorRule("30001", R.RATE_LIMITED, False, _DOCS + "30001"),  # queue overflow
        ErrorRule("30002", R.AUTH_FAILED, False, _DOCS + "30002"),  # account suspended
        ErrorRule("30003", R.INVALID_NUMBER, False, _DOCS + "30003"),  # unreachable handset
        ErrorRule("30004", R.RECIPIENT_BLACKLISTED, False, _DOCS + "30004"),  # message blocked
        ErrorRule("30005", R.INVALID_NUMBER, False, _DOCS + "30005"),  # unknown handset
        ErrorRule("30006", R.INVALID_NUMBER, False, _DOCS + "30006"),  # landline / no carrier
        ErrorRule("30007", R.RECIPIENT_BLACKLISTED, False, _DOCS + "30007"),  # filtered
        ErrorRule("30008", R.PROVIDER_PERMANENT, False, _DOCS + "30008"),  # unknown error
    )
}


def delivery_reason(error_code: str) -> R:
    """The reason a failed status callback's ``ErrorCode`` records (:data:`DELIVERY_ERRORS`,
    else ``provider_permanent``)."""
    rule = DELIVERY_ERRORS.get(error_code)
    return rule.reason if rule is not None else R.PROVIDER_PERMANENT


VALIDITY_MAX = 36_000  # Twilio's ValidityPeriod upper bound (seconds)


@dataclass
class TwilioProvider:
    """Sends through Twilio's Messages API; see the module docstring."""

    name: str
    config: TwilioConfig

    @property
    def url(self) -> str:
        """The Messages resource URL of the account."""
        base = self.config.base_url.rstrip("/")
        return f"{base}/2010-04-01/Accounts/{self.config.account_sid}/Messages.json"

    def form(self, request: SendRequest) -> dict[str, str]:
        """The form fields for ``request``."""
        config = self.config
        fields = {"To": request.to, "Body": request.body}
        if request.sender_id:
            fields["From"] = request.sender_id
        elif config.messaging_service_sid:
            fields["MessagingServiceSid"] = config.messaging_service_sid
        elif config.from_number:
            fields["From"] = config.from_number
        if config.status_callback_url:
            joiner = "&" if "?" in config.status_callback_url else "?"
            query = urlencode({"message_id": request.message_id})
            fields["StatusCallback"] = f"{config.status_callback_url}{joiner}{query}"
        if request.ttl_seconds is not None and "MessagingServiceSid" in fields:
            fields["ValidityPeriod"] = str(min(VALIDITY_MAX, max(1, request.ttl_seconds)))
        return fields

    def _authorization(self) -> str:
        try:
            secret = read_secret(self.config.auth_secret)
        except SecretUnavailable as exc:
            raise ProviderError(
                R.PROVIDER_TRANSIENT, f"{self.name}: {exc}", error_code="SECRET_UNAVAILABLE"
            ) from exc
        user = self.config.api_key_sid or self.config.account_sid
        return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()

    def send(self, request: SendRequest) -> SendResult:
        """Send one SMS.

        Raises:
            ProviderError: mapped by :data:`ERRORS` (or the HTTP status), not sent, or
                outcome unknown.
        """
        headers = {
            "Authorization": self._authorization(),
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        answer = transport.post(
            self.name,
            self.url,
            urlencode(self.form(request)).encode(),
            headers,
            connect_timeout=self.config.connect_timeout,
            read_timeout=self.config.read_timeout,
        )
        data = _json(answer.body)
        if 200 <= answer.status < 300:
            sid = data.get("sid")
            if not isinstance(sid, str) or not sid:
                # it answered success: it has the message; without its id we still count it
                # sent (its status callbacks carry our message_id in the callback URL)
                logger.warning(
                    "provider accepted without a message sid",
                    extra={"provider": self.name, "http_status": answer.status},
                )
                return SendResult(provider_message_id=None)
            return SendResult(provider_message_id=sid)
        code = data.get("code")
        detail = f"HTTP {answer.status}: {data.get('message', '')}".strip()
        raise ERRORS.error(self.name, None if code is None else str(code), answer.status, detail)

    def lookup(self, request: SendRequest, started_at: datetime) -> str | None:
        """Settle an attempt whose outcome is unknown: the SID of the message Twilio created
        for ``request`` at or after ``started_at`` (aware UTC), from one page of the Messages
        list filtered by ``To`` (and ``From`` when the request names one); None when it is
        not there or the match is ambiguous (see the module docstring and :func:`match_sid`).

        Raises:
            ProviderError: the list could not be read (no answer, an error status).
        """
        params = {"To": request.to, "PageSize": str(LOOKUP_PAGE_SIZE)}
        sender = self.form(request).get("From")
        if sender:
            params["From"] = sender
        headers = {"Authorization": self._authorization(), "Accept": "application/json"}
        answer = transport.get(
            self.name,
            f"{self.url}?{urlencode(params)}",
            headers,
            connect_timeout=self.config.connect_timeout,
            read_timeout=self.config.read_timeout,
        )
        if answer.status != 200:
            raise ProviderError(
                R.PROVIDER_TRANSIENT,
                f"{self.name}: message lookup answered HTTP {answer.status}",
                error_code="LOOKUP_FAILED",
            )
        messages = _json(answer.body).get("messages")
        if not isinstance(messages, list):
            return None
        return match_sid((m for m in messages if isinstance(m, Mapping)), request.body, started_at)


# Twilio's and our clocks differ; a message created this much before the attempt's start (to
# the second: date_created has no fraction) still counts as the attempt's.
LOOKUP_SKEW = timedelta(seconds=2)
LOOKUP_PAGE_SIZE = 20
# A trial account prefixes every body with this (Twilio's trial restrictions).
TRIAL_PREFIX = "Sent from your Twilio trial account - "


def match_sid(messages: Iterable[Mapping[str, Any]], body: str, started_at: datetime) -> str | None:
    """The ``sid`` of the one listed message (``messages``: Twilio's Messages list entries)
    whose body is ``body`` (or the trial account's prefix plus it) and whose
    ``date_created`` (RFC 2822) is at or after ``started_at`` - :data:`LOOKUP_SKEW`; None
    when none matches or several do (two identical SMS to the same number since the
    attempt began: which one is ours is unknown, so the outcome stays unknown)."""
    found = []
    for message in messages:
        text = message.get("body")
        if text != body and text != TRIAL_PREFIX + body:
            continue
        try:
            created = parsedate_to_datetime(str(message.get("date_created")))
        except (TypeError, ValueError):
            continue
        if created.tzinfo is None or created < started_at - LOOKUP_SKEW:
            continue
        sid = message.get("sid")
        if isinstance(sid, str) and sid:
            found.append(sid)
    return found[0] if len(found) == 1 else None


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def from_config(name: str, config: TwilioConfig) -> TwilioProvider:
    """The provider a configuration declares."""
    return TwilioProvider(name, config)
