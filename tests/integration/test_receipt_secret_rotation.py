"""Receipt secrets as references (issue 10, item 5): deployed, ``SMS_GATEWAY_RECEIPT_SECRETS``
names Secrets Manager secrets or SSM parameters, read at verify time through Powertools
parameters; a Secrets Manager secret's current (AWSCURRENT) and previous (AWSPREVIOUS) values
both verify, so a provider can switch keys without lost receipts."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters

from sms_gateway import wiring
from sms_gateway.api.signatures import sign
from sms_gateway.providers import secrets as provider_secrets
from tests.integration.test_signed_receipts import receipt, sent_via_provider_b
from tests.support import Gateway, HttpAnswer


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    parameters.clear_caches()
    provider_secrets.clear_previous_cache()
    yield
    parameters.clear_caches()
    provider_secrets.clear_previous_cache()


def signed_with(gw: Gateway, secret: str, message_id: str) -> HttpAnswer:
    body = json.dumps({"message_id": message_id, "status": "delivered"})
    now = int(time.time())
    headers = {"X-Provider": "provider-b", "X-Timestamp": str(now)}
    return receipt(gw, body, **headers, **{"X-Signature": sign(secret, now, body)})


def deployed_with(monkeypatch: pytest.MonkeyPatch, reference: str) -> None:
    """api_key mode (deployed), provider-b's receipt secret given by ``reference``."""
    monkeypatch.setenv("SMS_GATEWAY_AUTH_MODE", "api_key")
    monkeypatch.setenv("SMS_GATEWAY_RECEIPT_SECRETS", json.dumps({"provider-b": reference}))
    wiring.reset()


def rotated_secret() -> str:
    """A Secrets Manager secret created with "k1", then rotated twice: AWSCURRENT "k3",
    AWSPREVIOUS "k2", "k1" no longer staged. Returns its name."""
    name = f"sms-gateway/receipts/{uuid.uuid4()}"
    client = boto3.client("secretsmanager")
    client.create_secret(Name=name, SecretString="k1")
    client.put_secret_value(SecretId=name, SecretString="k2")
    client.put_secret_value(SecretId=name, SecretString="k3")
    return name


@pytest.mark.parametrize(("secret", "status"), [("k3", 200), ("k2", 200), ("k1", 401)])
def test_current_and_previous_values_verify_an_older_one_does_not(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch, secret: str, status: int
) -> None:
    name = rotated_secret()
    message_id = sent_via_provider_b(gateway)
    deployed_with(monkeypatch, f"secretsmanager:{name}")
    answer = signed_with(gateway, secret, message_id)
    assert answer.status == status
    expected = "delivered" if status == 200 else "sent"
    monkeypatch.setenv("SMS_GATEWAY_AUTH_MODE", "local")
    wiring.reset()
    assert gateway.get_message("tenant-3", message_id).body["status"] == expected


def test_a_secret_never_rotated_verifies_its_only_value(
    sqlite_gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"sms-gateway/receipts/{uuid.uuid4()}"
    arn = boto3.client("secretsmanager").create_secret(
        Name=name, SecretString=json.dumps({"hmac": "only"})
    )["ARN"]
    message_id = sent_via_provider_b(sqlite_gateway)
    deployed_with(monkeypatch, f"{arn}#hmac")
    assert signed_with(sqlite_gateway, "wrong", message_id).status == 401  # no AWSPREVIOUS
    assert signed_with(sqlite_gateway, "only", message_id).status == 200


def test_an_ssm_parameter_verifies(
    sqlite_gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"/sms-gateway/receipts/{uuid.uuid4()}"
    boto3.client("ssm").put_parameter(Name=name, Value="from-ssm", Type="SecureString")
    message_id = sent_via_provider_b(sqlite_gateway)
    deployed_with(monkeypatch, f"ssm:{name}")
    assert signed_with(sqlite_gateway, "other", message_id).status == 401
    assert signed_with(sqlite_gateway, "from-ssm", message_id).status == 200


def test_a_rotation_is_picked_up_after_the_cache_expires(
    sqlite_gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"sms-gateway/receipts/{uuid.uuid4()}"
    client = boto3.client("secretsmanager")
    client.create_secret(Name=name, SecretString="old")
    message_id = sent_via_provider_b(sqlite_gateway)
    deployed_with(monkeypatch, f"secretsmanager:{name}")
    assert signed_with(sqlite_gateway, "old", message_id).status == 200
    client.put_secret_value(SecretId=name, SecretString="new")
    parameters.clear_caches()  # what MAX_AGE_SECONDS does in a warm container
    provider_secrets.clear_previous_cache()
    assert signed_with(sqlite_gateway, "new", message_id).status == 200
    assert signed_with(sqlite_gateway, "old", message_id).status == 200  # now AWSPREVIOUS


def test_an_unreadable_secret_is_503_not_401(
    sqlite_gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secret that cannot be read (deleted, no permission) is the gateway's fault: 503, so
    the provider retries the receipt instead of dropping it as refused."""
    message_id = sent_via_provider_b(sqlite_gateway)
    deployed_with(monkeypatch, f"secretsmanager:sms-gateway/missing-{uuid.uuid4()}")
    answer = signed_with(sqlite_gateway, "anything", message_id)
    assert answer.status == 503
    assert answer.headers["content-type"] == "application/problem+json"


def test_the_previous_version_is_read_only_when_the_current_one_does_not_match() -> None:
    from sms_gateway.api.signatures import verify

    read: list[str] = []

    def versions(reference: str) -> Iterator[str]:
        for value in ("current", "previous"):
            read.append(value)
            yield value

    body = '{"message_id": "m"}'
    for secret, expected in (("current", ["current"]), ("previous", ["current", "previous"])):
        read.clear()
        headers = {
            "X-Provider": "p",
            "X-Timestamp": "1000",
            "X-Signature": sign(secret, 1000, body),
        }
        assert verify(headers, body, {"p": "secretsmanager:x"}, 1000.0, versions=versions) == "p"
        assert read == expected
