"""The four real provider types against stubs that behave like their APIs (issue 7).

- End User Messaging SMS: botocore ``Stubber`` (moto does not cover ``pinpoint-sms-voice-v2``)
  asserting the exact ``SendTextMessage`` parameters;
- SNS: moto for the send, ``Stubber`` for the exact parameters and the error codes;
- Twilio and the HTTP aggregator: loopback servers (tests/provider_fakes.py) checking the
  auth, the path and the form / signature, and answering each error class, slowly, or not at
  all (reset after the request).

Each row of each error table is a test; the expected reason and retryability are written
here, from the providers' documentation, not read from the tables.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError
from botocore.stub import Stubber
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sns.models import sns_backends

from sms_gateway.domain.reasons import ReasonCode
from sms_gateway.providers import aggregator, end_user_messaging, sns, twilio
from sms_gateway.providers.base import ProviderError, SendRequest
from sms_gateway.providers.config import (
    EndUserMessagingConfig,
    HttpAggregatorConfig,
    SnsConfig,
    TwilioConfig,
    build_registry,
    parse_providers,
)
from tests.provider_fakes import (
    AGGREGATOR_SECRET,
    TWILIO_SID,
    TWILIO_TOKEN,
    FakeServer,
    fake_server,
)

REQUEST = SendRequest(
    message_id="msg-0001",
    attempt=1,
    to="+12025550143",
    sender_id=None,
    body="hello",
    encoding="GSM-7",
    segments=1,
    tenant_id="tenant-1",
    ttl_seconds=600,
)
P = ReasonCode


@pytest.fixture
def secrets(aws_env: None) -> Iterator[None]:
    """The Twilio token in SSM (SecureString), the aggregator key in Secrets Manager (JSON)."""
    with mock_aws():
        boto3.client("ssm").put_parameter(
            Name="/sms-gateway/twilio-token", Value=TWILIO_TOKEN, Type="SecureString"
        )
        boto3.client("secretsmanager").create_secret(
            Name="sms-gateway/aggregator",
            SecretString=json.dumps({"signing_secret": AGGREGATOR_SECRET}),
        )
        parameters.clear_caches()
        yield
    parameters.clear_caches()


# ---- AWS End User Messaging SMS ---------------------------------------------------------

EUM = EndUserMessagingConfig(
    type="end_user_messaging",
    origination_identity="pool-0123456789abcdef",
    region="us-east-1",
    configuration_set="sms-gateway-events",
    max_price="0.05",
)


def eum_provider(**changes: Any) -> tuple[end_user_messaging.EndUserMessagingProvider, Stubber]:
    client = boto3.client(
        "pinpoint-sms-voice-v2",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    config = EUM.model_copy(update=changes)
    return end_user_messaging.EndUserMessagingProvider("eum", config, client), Stubber(client)


def test_eum_sends_the_documented_request() -> None:
    provider, stub = eum_provider()
    stub.add_response(
        "send_text_message",
        {"MessageId": "eum-42"},
        {
            "DestinationPhoneNumber": "+12025550143",
            "OriginationIdentity": "pool-0123456789abcdef",
            "MessageBody": "hello",
            "MessageType": "TRANSACTIONAL",
            "ConfigurationSetName": "sms-gateway-events",
            "MaxPrice": "0.05",
            "TimeToLive": 600,
            "Context": {"message_id": "msg-0001", "tenant_id": "tenant-1"},
        },
    )
    with stub:
        assert provider.send(REQUEST).provider_message_id == "eum-42"
    stub.assert_no_pending_responses()


def test_eum_sender_id_ttl_bounds_and_dry_run() -> None:
    """The message's own sender ID wins; TimeToLive is clamped to 5..259200; DryRun is sent
    when configured; no validity period, no TimeToLive."""
    provider, stub = eum_provider(dry_run=True, configuration_set=None, max_price=None)
    base = {
        "DestinationPhoneNumber": "+12025550143",
        "MessageBody": "hello",
        "MessageType": "TRANSACTIONAL",
        "Context": {"message_id": "msg-0001", "tenant_id": "tenant-1"},
        "DryRun": True,
    }
    cases = [
        ({"sender_id": "ACME", "ttl_seconds": 1}, {"OriginationIdentity": "ACME", "TimeToLive": 5}),
        (
            {"ttl_seconds": 999_999},
            {"OriginationIdentity": "pool-0123456789abcdef", "TimeToLive": 259_200},
        ),
        ({"ttl_seconds": None}, {"OriginationIdentity": "pool-0123456789abcdef"}),
    ]
    for _changes, expected in cases:
        stub.add_response("send_text_message", {"MessageId": "dry"}, {**base, **expected})
    with stub:
        for changes, _ in cases:
            fields = {name: getattr(REQUEST, name) for name in SendRequest.__dataclass_fields__}
            assert provider.send(SendRequest(**{**fields, **changes})).provider_message_id == "dry"
    stub.assert_no_pending_responses()


# (exception, Reason or field, HTTP status) -> (our reason, retryable); from
# https://docs.aws.amazon.com/pinpoint/latest/apireference_smsvoicev2/API_SendTextMessage.html
EUM_ROWS: dict[str, tuple[ReasonCode, bool]] = {
    "ThrottlingException": (P.RATE_LIMITED, True),
    "InternalServerException": (P.PROVIDER_TRANSIENT, True),
    "AccessDeniedException": (P.AUTH_FAILED, False),
    "ResourceNotFoundException": (P.PROVIDER_PERMANENT, False),
    "ServiceQuotaExceededException/MONTHLY_SPEND_LIMIT_REACHED_FOR_TEXT": (
        P.QUOTA_EXCEEDED,
        False,
    ),
    "ServiceQuotaExceededException": (P.QUOTA_EXCEEDED, False),
    "ConflictException/DESTINATION_PHONE_NUMBER_OPTED_OUT": (P.OPTED_OUT, False),
    "ConflictException/DESTINATION_PHONE_NUMBER_NOT_VERIFIED": (P.PROVIDER_PERMANENT, False),
    "ConflictException/DESTINATION_PHONE_NUMBER_BLOCKED_BY_PROTECT_NUMBER_OVERRIDE": (
        P.RECIPIENT_BLACKLISTED,
        False,
    ),
    "ConflictException/DESTINATION_COUNTRY_BLOCKED_BY_PROTECT_CONFIGURATION": (
        P.PROVIDER_PERMANENT,
        False,
    ),
    "ConflictException": (P.PROVIDER_PERMANENT, False),
    "ValidationException/field:DestinationPhoneNumber": (P.INVALID_NUMBER, False),
    "ValidationException/DESTINATION_COUNTRY_BLOCKED": (P.PROVIDER_PERMANENT, False),
    "ValidationException/COUNTRY_NOT_ENABLED": (P.PROVIDER_PERMANENT, False),
    "ValidationException/INTERNATIONAL_SENDING_NOT_SUPPORTED": (P.PROVIDER_PERMANENT, False),
    "ValidationException/INVALID_IDENTITY_FOR_DESTINATION_COUNTRY": (P.PROVIDER_PERMANENT, False),
    "ValidationException/PRICE_OVER_THRESHOLD": (P.PROVIDER_PERMANENT, False),
    "ValidationException/SENDER_ID_NOT_REGISTERED": (P.PROVIDER_PERMANENT, False),
    "ValidationException/SENDER_ID_NOT_SUPPORTED": (P.PROVIDER_PERMANENT, False),
    "ValidationException/SENDER_ID_REQUIRES_REGISTRATION": (P.PROVIDER_PERMANENT, False),
    "ValidationException": (P.VALIDATION_ERROR, False),
}
EUM_STATUS = {
    "ThrottlingException": 429,
    "InternalServerException": 500,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ServiceQuotaExceededException": 402,
    "ConflictException": 409,
    "ValidationException": 400,
}


def test_eum_table_has_exactly_the_rows_tested_here() -> None:
    assert {r.code for r in end_user_messaging.ERRORS} == set(EUM_ROWS)
    assert all(
        r.source.startswith("https://docs.aws.amazon.com/") for r in end_user_messaging.ERRORS
    )


@pytest.mark.parametrize("row", sorted(EUM_ROWS))
def test_eum_error_row(row: str) -> None:
    code, _, qualifier = row.partition("/")
    modeled: dict[str, Any] = {}
    if qualifier.startswith("field:"):
        modeled["Fields"] = [{"Name": qualifier.removeprefix("field:"), "Message": "invalid"}]
        modeled["Reason"] = "FIELD_VALIDATION_FAILED"
    elif qualifier:
        modeled["Reason"] = qualifier
    provider, stub = eum_provider()
    stub.add_client_error(
        "send_text_message",
        service_error_code=code,
        service_message="refused",
        http_status_code=EUM_STATUS[code],
        modeled_fields=modeled,
    )
    with stub, pytest.raises(ProviderError) as caught:
        provider.send(REQUEST)
    assert (caught.value.reason, caught.value.retryable) == EUM_ROWS[row]
    assert caught.value.error_code == row


@pytest.mark.parametrize(
    ("exc", "reason", "retryable"),
    [
        (EndpointConnectionError(endpoint_url="https://x"), P.NETWORK_ERROR, True),
        (ConnectTimeoutError(endpoint_url="https://x"), P.TIMEOUT, True),
        (ReadTimeoutError(endpoint_url="https://x"), P.OUTCOME_UNKNOWN, True),
    ],
)
def test_aws_connection_failures(exc: Exception, reason: ReasonCode, retryable: bool) -> None:
    """Never connected: retryable; sent and no answer: outcome unknown."""

    class Broken:
        def send_text_message(self, **_: Any) -> Any:
            raise exc

    provider = end_user_messaging.EndUserMessagingProvider("eum", EUM, Broken())
    with pytest.raises(ProviderError) as caught:
        provider.send(REQUEST)
    assert (caught.value.reason, caught.value.retryable) == (reason, retryable)


# ---- Amazon SNS ---------------------------------------------------------------------------

SNS = SnsConfig(
    type="sns", region="us-east-1", sender_id="ACME", max_price="0.50", sms_type="Transactional"
)


def test_sns_publishes_with_the_sms_attributes(aws_env: None) -> None:
    client = boto3.client("sns", region_name="us-east-1")
    stub = Stubber(client)
    stub.add_response(
        "publish",
        {"MessageId": "sns-1"},
        {
            "PhoneNumber": "+12025550143",
            "Message": "hello",
            "MessageAttributes": {
                "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"},
                "AWS.SNS.SMS.SenderID": {"DataType": "String", "StringValue": "ACME"},
                "AWS.SNS.SMS.MaxPrice": {"DataType": "Number", "StringValue": "0.50"},
            },
        },
    )
    with stub:
        assert sns.SnsProvider("sns", SNS, client).send(REQUEST).provider_message_id == "sns-1"


def test_sns_send_through_moto(aws_env: None) -> None:
    with mock_aws():
        provider = sns.SnsProvider("sns", SNS.model_copy(update={"origination_number": None}))
        message_id = provider.send(REQUEST).provider_message_id
        sent = sns_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sms_messages
        assert sent[message_id][:2] == ("+12025550143", "hello")


SNS_ROWS: dict[str, tuple[ReasonCode, bool]] = {
    "Throttling": (P.RATE_LIMITED, True),
    "Throttled": (P.RATE_LIMITED, True),
    "KMSThrottling": (P.RATE_LIMITED, True),
    "InternalError": (P.PROVIDER_TRANSIENT, True),
    "ServiceUnavailable": (P.PROVIDER_TRANSIENT, True),
    "AuthorizationError": (P.AUTH_FAILED, False),
    "InvalidSecurity": (P.AUTH_FAILED, False),
    "InvalidClientTokenId": (P.AUTH_FAILED, False),
    "InvalidParameter": (P.INVALID_NUMBER, False),
    "ParameterValueInvalid": (P.VALIDATION_ERROR, False),
    "ValidationException": (P.VALIDATION_ERROR, False),
    "NotFound": (P.PROVIDER_PERMANENT, False),
}


def test_sns_table_has_exactly_the_rows_tested_here() -> None:
    assert {r.code for r in sns.ERRORS} == set(SNS_ROWS)


@pytest.mark.parametrize("code", sorted(SNS_ROWS))
def test_sns_error_row(code: str, aws_env: None) -> None:
    client = boto3.client("sns", region_name="us-east-1")
    stub = Stubber(client)
    stub.add_client_error("publish", service_error_code=code, http_status_code=400)
    with stub, pytest.raises(ProviderError) as caught:
        sns.SnsProvider("sns", SNS, client).send(REQUEST)
    assert (caught.value.reason, caught.value.retryable) == SNS_ROWS[code]


# ---- Twilio -------------------------------------------------------------------------------


@pytest.fixture
def twilio_api() -> Iterator[FakeServer]:
    with fake_server("twilio") as server:
        yield server


def twilio_config(server: FakeServer | str, **changes: Any) -> TwilioConfig:
    base = {
        "type": "twilio",
        "account_sid": TWILIO_SID,
        "auth_secret": "ssm:/sms-gateway/twilio-token",
        "from_number": "+12025550100",
        "status_callback_url": "https://api.example.com/prod/v1/receipts/twilio/twilio-us",
        "base_url": server if isinstance(server, str) else server.base_url,
        "read_timeout": 10,
    }
    return TwilioConfig.model_validate({**base, **changes})


def test_twilio_sends_the_documented_form(secrets: None, twilio_api: FakeServer) -> None:
    provider = twilio.TwilioProvider("twilio-us", twilio_config(twilio_api))
    sid = provider.send(REQUEST).provider_message_id
    assert sid.startswith("SM")
    (seen,) = twilio_api.requests
    assert seen.path == f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
    assert seen.headers["content-type"] == "application/x-www-form-urlencoded"
    assert dict(parse_qsl(seen.body.decode())) == {
        "To": "+12025550143",
        "Body": "hello",
        "From": "+12025550100",
        "StatusCallback": "https://api.example.com/prod/v1/receipts/twilio/twilio-us"
        "?message_id=msg-0001",
    }


def test_twilio_messaging_service_gets_the_validity_period(
    secrets: None, twilio_api: FakeServer
) -> None:
    config = twilio_config(
        twilio_api,
        from_number=None,
        messaging_service_sid="MG" + "b2" * 16,
        status_callback_url=None,
    )
    twilio.TwilioProvider("t", config).send(REQUEST)
    assert dict(parse_qsl(twilio_api.requests[0].body.decode())) == {
        "To": "+12025550143",
        "Body": "hello",
        "MessagingServiceSid": "MG" + "b2" * 16,
        "ValidityPeriod": "600",
    }


def test_twilio_wrong_token_is_auth_failed(
    secrets: None, twilio_api: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    boto3.client("ssm").put_parameter(
        Name="/sms-gateway/twilio-token", Value="wrong", Type="SecureString", Overwrite=True
    )
    parameters.clear_caches()
    with pytest.raises(ProviderError) as caught:
        twilio.TwilioProvider("t", twilio_config(twilio_api)).send(REQUEST)
    assert (caught.value.reason, caught.value.retryable, caught.value.error_code) == (
        P.AUTH_FAILED,
        False,
        "20003",
    )


# https://www.twilio.com/docs/api/errors/<code>
TWILIO_ROWS: dict[str, tuple[int, ReasonCode, bool]] = {
    "20003": (401, P.AUTH_FAILED, False),
    "20429": (429, P.RATE_LIMITED, True),
    "20500": (500, P.PROVIDER_TRANSIENT, True),
    "20503": (503, P.PROVIDER_TRANSIENT, True),
    "21211": (400, P.INVALID_NUMBER, False),
    "21614": (400, P.INVALID_NUMBER, False),
    "21612": (400, P.INVALID_NUMBER, False),
    "21610": (400, P.OPTED_OUT, False),
    "21408": (400, P.PROVIDER_PERMANENT, False),
    "21606": (400, P.PROVIDER_PERMANENT, False),
    "21617": (400, P.VALIDATION_ERROR, False),
    "30007": (400, P.RECIPIENT_BLACKLISTED, False),
    "21611": (400, P.RATE_LIMITED, True),
}


def test_twilio_table_has_exactly_the_rows_tested_here() -> None:
    assert {r.code for r in twilio.ERRORS} == set(TWILIO_ROWS)
    assert all(
        r.source == f"https://www.twilio.com/docs/api/errors/{r.code}" for r in twilio.ERRORS
    )


@pytest.mark.parametrize("code", sorted(TWILIO_ROWS))
def test_twilio_error_row(code: str, secrets: None, twilio_api: FakeServer) -> None:
    status, reason, retryable = TWILIO_ROWS[code]
    twilio_api.refuse(
        REQUEST.to, status, {"code": int(code), "message": "refused", "status": status}
    )
    with pytest.raises(ProviderError) as caught:
        twilio.TwilioProvider("t", twilio_config(twilio_api)).send(REQUEST)
    assert (caught.value.reason, caught.value.retryable, caught.value.error_code) == (
        reason,
        retryable,
        code,
    )


@pytest.mark.parametrize(
    ("status", "reason", "retryable"),
    [
        (429, P.RATE_LIMITED, True),
        (502, P.PROVIDER_TRANSIENT, True),
        (403, P.AUTH_FAILED, False),
        (400, P.PROVIDER_PERMANENT, False),
    ],
)
def test_twilio_unknown_code_falls_back_on_the_status(
    status: int, reason: ReasonCode, retryable: bool, secrets: None, twilio_api: FakeServer
) -> None:
    twilio_api.refuse(REQUEST.to, status, {"code": 99999, "message": "?", "status": status})
    with pytest.raises(ProviderError) as caught:
        twilio.TwilioProvider("t", twilio_config(twilio_api)).send(REQUEST)
    assert (caught.value.reason, caught.value.retryable) == (reason, retryable)


def test_twilio_slow_answer_and_reset_are_outcome_unknown(
    secrets: None, twilio_api: FakeServer
) -> None:
    provider = twilio.TwilioProvider("t", twilio_config(twilio_api, read_timeout=0.2))
    twilio_api.slow("+12025550150", 1.0)
    twilio_api.reset("+12025550151")
    for to in ("+12025550150", "+12025550151"):
        request = SendRequest(**{**_fields(REQUEST), "to": to})
        with pytest.raises(ProviderError) as caught:
            provider.send(request)
        assert caught.value.reason is P.OUTCOME_UNKNOWN
    assert len(twilio_api.requests) == 2  # no hidden retry


def test_twilio_unreachable_is_not_sent(secrets: None) -> None:
    with fake_server("twilio") as server:
        url = server.base_url
    provider = twilio.TwilioProvider("t", twilio_config(url))  # nothing listens there now
    with pytest.raises(ProviderError) as caught:
        provider.send(REQUEST)
    assert (caught.value.reason, caught.value.retryable) == (P.NETWORK_ERROR, True)


def _fields(request: SendRequest) -> dict[str, Any]:
    return {name: getattr(request, name) for name in SendRequest.__dataclass_fields__}


# ---- generic HTTP aggregator ----------------------------------------------------------


@pytest.fixture
def aggregator_api() -> Iterator[FakeServer]:
    with fake_server("http") as server:
        yield server


def aggregator_config(server: FakeServer) -> HttpAggregatorConfig:
    return HttpAggregatorConfig(
        type="http",
        url=server.base_url + "/sms",
        signing_secret="secretsmanager:sms-gateway/aggregator#signing_secret",
        read_timeout=10,
    )


def test_aggregator_posts_signed_json(secrets: None, aggregator_api: FakeServer) -> None:
    provider = aggregator.HttpAggregatorProvider("agg", aggregator_config(aggregator_api))
    assert provider.send(REQUEST).provider_message_id.startswith("agg-")
    (seen,) = aggregator_api.requests
    assert seen.path == "/sms"
    assert json.loads(seen.body) == {
        "message_id": "msg-0001",
        "tenant_id": "tenant-1",
        "attempt": 1,
        "to": "+12025550143",
        "from": None,
        "body": "hello",
        "encoding": "GSM-7",
        "segments": 1,
        "ttl_seconds": 600,
    }
    # the fake answered 200 only because the HMAC over "{ts}.{body}" matched


AGGREGATOR_ROWS: dict[str, tuple[int, ReasonCode, bool]] = {
    "rate_limited": (429, P.RATE_LIMITED, True),
    "temporarily_unavailable": (503, P.PROVIDER_TRANSIENT, True),
    "invalid_number": (400, P.INVALID_NUMBER, False),
    "unreachable_number": (400, P.INVALID_NUMBER, False),
    "opted_out": (400, P.OPTED_OUT, False),
    "blocked_content": (400, P.PROVIDER_PERMANENT, False),
    "unsupported_country": (400, P.PROVIDER_PERMANENT, False),
    "invalid_request": (400, P.VALIDATION_ERROR, False),
    "unauthorized": (401, P.AUTH_FAILED, False),
}


def test_aggregator_table_has_exactly_the_rows_tested_here() -> None:
    assert {r.code for r in aggregator.ERRORS} == set(AGGREGATOR_ROWS)


@pytest.mark.parametrize("code", sorted(AGGREGATOR_ROWS))
def test_aggregator_error_row(code: str, secrets: None, aggregator_api: FakeServer) -> None:
    status, reason, retryable = AGGREGATOR_ROWS[code]
    aggregator_api.refuse(REQUEST.to, status, {"error": {"code": code, "message": "no"}})
    with pytest.raises(ProviderError) as caught:
        aggregator.HttpAggregatorProvider("a", aggregator_config(aggregator_api)).send(REQUEST)
    assert (caught.value.reason, caught.value.retryable, caught.value.error_code) == (
        reason,
        retryable,
        code,
    )


def test_aggregator_reset_is_outcome_unknown(secrets: None, aggregator_api: FakeServer) -> None:
    aggregator_api.reset(REQUEST.to)
    with pytest.raises(ProviderError) as caught:
        aggregator.HttpAggregatorProvider("a", aggregator_config(aggregator_api)).send(REQUEST)
    assert caught.value.reason is P.OUTCOME_UNKNOWN


@pytest.mark.parametrize("kind", ["twilio", "aggregator"])
def test_a_2xx_without_an_id_is_sent_not_outcome_unknown(
    secrets: None, twilio_api: FakeServer, aggregator_api: FakeServer, kind: str
) -> None:
    """The provider answered success: it has the message. Calling that outcome unknown would
    resend it (at_least_once) or fail a message that goes out (at_most_once)."""
    server = twilio_api if kind == "twilio" else aggregator_api
    server.refuse(REQUEST.to, 202, {"status": "accepted"})
    provider: Any = (
        twilio.TwilioProvider("t", twilio_config(twilio_api))
        if kind == "twilio"
        else aggregator.HttpAggregatorProvider("a", aggregator_config(aggregator_api))
    )
    assert provider.send(REQUEST).provider_message_id is None
    assert len(server.requests) == 1


# ---- configuration ------------------------------------------------------------------------


def test_registry_has_only_what_is_configured() -> None:
    """A deployed configuration (no SMS_GATEWAY_DEMO_PROVIDERS) has no simulator."""
    configs = parse_providers(
        {
            "eum": EUM.model_dump(),
            "sns": {"type": "sns"},
            "sim": {"type": "simulator", "fail_first": 1},
        }
    )
    assert build_registry(configs).names() == ["eum", "sim", "sns"]
    assert build_registry({}).names() == []
    assert "provider-a" in build_registry({}, demo_simulators=True).names()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"type": "carrier-pigeon"}, "does not match any of the expected tags"),
        ({"type": "twilio", "account_sid": TWILIO_SID, "auth_secret": "tok"}, "must reference"),
        ({"type": "end_user_messaging"}, "origination_identity"),
        ({"type": "sns", "api_key": "x"}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_provider_configuration_names_the_field(
    config: dict[str, Any], message: str
) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as caught:
        parse_providers({"p": config})
    assert message in str(caught.value)
