"""template.yaml's provider wiring (issue 7): the configuration reaches the functions that
send and verify, IAM names the providers' resources only, and a deployed configuration has
no simulator unless it declares one."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sms_gateway.local.template import FunctionSpec, Resolver, SamTemplate
from sms_gateway.providers.config import build_registry
from sms_gateway.settings import Settings
from tests.support import REPO_ROOT


@pytest.fixture(scope="module")
def template() -> SamTemplate:
    return SamTemplate.from_file(REPO_ROOT / "template.yaml")


def _functions(template: SamTemplate) -> dict[str, FunctionSpec]:
    return {f.logical_id: f for f in template.functions()}


def _statements(template: SamTemplate, logical_id: str, condition: str) -> list[dict[str, Any]]:
    """The ``Fn::If [condition, statement, NoValue]`` statements of a function's role (its
    ``Role: !GetAtt <Role>.Arn``), without their Sid."""
    role = template.resources[logical_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    found = []
    for policy in template.resources[role]["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            branch = statement.get("Fn::If") if isinstance(statement, dict) else None
            if branch and branch[0] == condition:
                assert branch[2] == {"Ref": "AWS::NoValue"}
                found.append({k: v for k, v in branch[1].items() if k != "Sid"})
    return found


def _env(template: SamTemplate, logical_id: str, overrides: dict[str, str]) -> dict[str, str]:
    resolver = Resolver(template, parameter_overrides=overrides)
    resolver.refs.update(
        {
            "SendQueue": "q",
            "DeadLetterQueue": "d",
            "RateLimitTable": "rl",
            "TenantsTable": "t",
            "SmsApi": "api1",
        }
    )
    env = resolver.resolve(dict(_functions(template)[logical_id].environment))  # Globals merged
    return {k: str(v) for k, v in env.items()}


@pytest.mark.parametrize("function", ["SenderFunction", "StatusFunction"])
def test_deployed_configuration_has_no_simulators_unless_declared(
    template: SamTemplate, function: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in _env(template, function, {}).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SMS_GATEWAY_DEMO_PROVIDERS", raising=False)
    settings = Settings()
    assert settings.demo_providers is False
    assert build_registry(settings.providers, demo_simulators=settings.demo_providers).names() == []
    declared = {"sim": {"type": "simulator"}, "sns-us": {"type": "sns"}}
    for key, value in _env(template, function, {"Providers": json.dumps(declared)}).items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert build_registry(settings.providers).names() == ["sim", "sns-us"]


def test_provider_iam_names_resources_only(template: SamTemplate) -> None:
    sender = {
        condition: _statements(template, "SenderFunction", condition)
        for condition in (
            "HasProviderSecrets",
            "HasProviderParameters",
            "HasEndUserMessaging",
            "HasSnsSms",
        )
    }
    assert sender["HasProviderSecrets"] == [
        {
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": {"Ref": "ProviderSecretArns"},
        }
    ]
    assert sender["HasProviderParameters"] == [
        {
            "Effect": "Allow",
            "Action": "ssm:GetParameter",
            "Resource": {"Ref": "ProviderParameterArns"},
        }
    ]
    assert sender["HasEndUserMessaging"] == [
        {
            "Effect": "Allow",
            "Action": "sms-voice:SendTextMessage",
            "Resource": {"Ref": "EndUserMessagingResourceArns"},
        }
    ]
    # SNS: a phone number has no ARN; every topic is denied
    allow, deny = sender["HasSnsSms"]
    assert (allow["Effect"], allow["Action"], allow["Resource"]) == ("Allow", "sns:Publish", "*")
    assert (deny["Effect"], deny["Action"]) == ("Deny", "sns:Publish")
    # the status function reads the secrets (Twilio's token) but sends nothing
    assert (
        _statements(template, "StatusFunction", "HasProviderSecrets")
        == sender["HasProviderSecrets"]
    )
    assert _statements(template, "StatusFunction", "HasEndUserMessaging") == []
    assert _statements(template, "StatusFunction", "HasSnsSms") == []


def test_provider_conditions_are_off_by_default(template: SamTemplate) -> None:
    resolver = Resolver(template)
    for condition in (
        "HasProviderSecrets",
        "HasProviderParameters",
        "HasEndUserMessaging",
        "HasSnsSms",
    ):
        assert resolver.condition(condition) is False
    arn = "arn:aws:sms-voice:us-east-1:123456789012:pool/pool-1"
    on = Resolver(
        template, parameter_overrides={"EndUserMessagingResourceArns": arn, "SnsSmsEnabled": "true"}
    )
    assert on.condition("HasEndUserMessaging") is True
    assert on.condition("HasSnsSms") is True


def test_the_function_verifying_receipts_may_read_the_receipt_secrets(
    template: SamTemplate,
) -> None:
    """ReceiptSecrets holds references (issue 10, item 5) whose ARNs go into
    ProviderSecretArns / ProviderParameterArns: whichever function serves POST /v1/receipts
    must be allowed to read both lists (and only them)."""
    verifying = [
        logical_id
        for logical_id, resource in template.resources_of_type("AWS::Serverless::Function").items()
        if any(
            event.get("Properties", {}).get("Path") == "/v1/receipts"
            for event in resource["Properties"].get("Events", {}).values()
        )
    ]
    assert verifying == ["StatusFunction"]
    for function in verifying:
        assert _statements(template, function, "HasProviderSecrets") == [
            {
                "Effect": "Allow",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": {"Ref": "ProviderSecretArns"},
            }
        ]
        assert _statements(template, function, "HasProviderParameters") == [
            {
                "Effect": "Allow",
                "Action": "ssm:GetParameter",
                "Resource": {"Ref": "ProviderParameterArns"},
            }
        ]
