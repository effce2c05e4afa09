"""Settings from ``SMS_GATEWAY_*`` variables (sms_gateway.settings, read by sms_gateway.wiring)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping

import pytest
from pydantic import ValidationError

from sms_gateway import wiring
from sms_gateway.settings import AuthMode, Settings

SettingsFrom = Callable[[Mapping[str, str]], Settings]


@pytest.fixture
def settings_from(monkeypatch: pytest.MonkeyPatch) -> SettingsFrom:
    """Settings as a container reads them (pydantic-settings, from the process environment)
    when exactly ``environ``'s variables are set (every other SMS_GATEWAY_* unset)."""

    def make(environ: Mapping[str, str]) -> Settings:
        for name in list(os.environ):
            if name.upper().startswith("SMS_GATEWAY_"):
                monkeypatch.delenv(name)
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        return Settings()

    return make


def test_defaults_when_nothing_is_set(settings_from: SettingsFrom) -> None:
    settings = settings_from({"PATH": "/usr/bin", "POWERTOOLS_SERVICE_NAME": "x"})
    assert settings.auth_mode is AuthMode.API_KEY
    assert settings.max_receive_count == 3
    assert settings.receipt_secrets == {}
    assert settings.receipts_signed is True


def test_values_are_converted_from_text(settings_from: SettingsFrom) -> None:
    settings = settings_from(
        {
            "SMS_GATEWAY_AUTH_MODE": "local",
            "SMS_GATEWAY_MAX_RECEIVE_COUNT": "5",
            "sms_gateway_retry_base_seconds": "7",  # names are case-insensitive
            "SMS_GATEWAY_ROUTE_CACHE_TTL_SECONDS": "0.5",
            "SMS_GATEWAY_RECEIPT_SECRETS": '{"provider-a": "s3cret"}',
            "SMS_GATEWAY_NOT_A_SETTING": "ignored",
            "OTHER_MAX_RECEIVE_COUNT": "9",
        }
    )
    assert settings.auth_mode is AuthMode.LOCAL
    assert settings.max_receive_count == 5
    assert settings.retry_base_seconds == 7
    assert settings.route_cache_ttl_seconds == 0.5
    assert settings.receipt_secrets == {"provider-a": "s3cret"}
    assert settings.receipts_signed is True  # local mode, but a secret is configured


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("SMS_GATEWAY_MAX_RECEIVE_COUNT", "0", "max_receive_count"),
        ("SMS_GATEWAY_MAX_RECEIVE_COUNT", "three", "max_receive_count"),
        ("SMS_GATEWAY_AUTH_MODE", "header", "auth_mode"),
        ("SMS_GATEWAY_RECEIPT_SECRETS", "provider-a=s3cret", "receipt_secrets"),
        ("SMS_GATEWAY_RECEIPT_SECRETS", '["provider-a"]', "receipt_secrets"),
    ],
)
def test_an_invalid_value_is_located_by_its_field(
    settings_from: SettingsFrom, variable: str, value: str, field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        settings_from({variable: value})
    assert {error["loc"][0] for error in caught.value.errors()} == {field}


def test_deployed_a_literal_receipt_secret_is_refused_naming_the_setting(
    settings_from: SettingsFrom,
) -> None:
    secrets = '{"provider-b": "secretsmanager:sms-gateway/b", "provider-a": "s3cret"}'
    with pytest.raises(ValidationError) as caught:
        settings_from({"SMS_GATEWAY_AUTH_MODE": "api_key", "SMS_GATEWAY_RECEIPT_SECRETS": secrets})
    message = str(caught.value)
    assert "SMS_GATEWAY_RECEIPT_SECRETS" in message
    assert "the value for provider-a is a literal secret" in message
    assert "provider-b" not in message  # a reference is fine


def test_deployed_receipt_secrets_may_be_any_reference(settings_from: SettingsFrom) -> None:
    references = {
        "sm": "secretsmanager:sms-gateway/receipts#hmac",
        "sm-arn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:receipts-AbCdEf",
        "ssm": "ssm:/sms-gateway/receipts/ssm",
        "ssm-arn": "arn:aws:ssm:eu-west-1:123456789012:parameter/sms-gateway/receipts",
    }
    settings = settings_from({"SMS_GATEWAY_RECEIPT_SECRETS": json.dumps(references)})
    assert settings.auth_mode is AuthMode.API_KEY
    assert settings.receipt_secrets == references


def test_wiring_names_the_variable_at_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMS_GATEWAY_MAX_RECEIVE_COUNT", "0")
    monkeypatch.setenv("SMS_GATEWAY_RETRY_BASE_SECONDS", "-1")
    wiring.reset()
    try:
        with pytest.raises(wiring.SettingsError) as caught:
            wiring.settings()
    finally:
        monkeypatch.undo()
        wiring.reset()
    message = str(caught.value)
    assert "SMS_GATEWAY_MAX_RECEIVE_COUNT: Input should be greater than or equal to 1" in message
    assert "SMS_GATEWAY_RETRY_BASE_SECONDS" in message


def test_retry_bounds_are_checked_together(settings_from: SettingsFrom) -> None:
    with pytest.raises(ValidationError, match="SMS_GATEWAY_RETRY_MAX_SECONDS must be >="):
        settings_from(
            {"SMS_GATEWAY_RETRY_BASE_SECONDS": "60", "SMS_GATEWAY_RETRY_MAX_SECONDS": "30"}
        )
