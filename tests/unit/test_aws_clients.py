"""Every AWS client the functions build has short timeouts and bounded retries
(sms_gateway.adapters.aws), and the wiring builds no client any other way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sms_gateway import wiring
from sms_gateway.adapters import aws

LAYER = Path(aws.__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("build", "service"),
    [
        (aws.sqs_client, "sqs"),
        (aws.dynamodb_client, "dynamodb"),
        (aws.secretsmanager_client, "secretsmanager"),
    ],
)
def test_clients_fail_fast(build: object, service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    client = build()  # type: ignore[operator]
    config = client.meta.config
    assert client.meta.service_model.service_name == service
    # botocore's defaults are 60 s each and "legacy" retries (5 attempts for some services)
    assert (config.connect_timeout, config.read_timeout) == (2, 3)
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}


def test_wiring_clients_are_the_adapter_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("SMS_GATEWAY_SEND_QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/1/q")
    wiring.reset()
    try:
        queue = wiring._sqs_queue()
        assert queue._client.meta.config.connect_timeout == 2
    finally:
        wiring.reset()


def test_no_module_builds_a_boto3_client_itself() -> None:
    """Only adapters/aws.py calls boto3.client / boto3.Session(...).client in the code that
    ships (the local stack talks to its own moto server and is not shipped to Lambda)."""
    offenders = []
    for path in sorted(LAYER.rglob("*.py")):
        if "local" in path.relative_to(LAYER).parts or path.name == "aws.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "client"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "boto3"
            ):
                offenders.append(f"{path.relative_to(LAYER)}:{node.lineno}")
    assert offenders == []
