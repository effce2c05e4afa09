"""Signed receipts (DESIGN section 9): deployed, only a provider's signed callback counts, and
only for messages sent through that provider."""

from __future__ import annotations

import json
import time

import pytest

from sms_gateway import wiring
from sms_gateway.api.signatures import sign
from tests.support import Gateway, HttpAnswer, api_event

SECRETS = {"provider-b": "b-secret", "provider-a": "a-secret"}


@pytest.fixture
def signed(sqlite_gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> Gateway:
    monkeypatch.setenv("SMS_GATEWAY_RECEIPT_SECRETS", json.dumps(SECRETS))
    wiring.reset()
    return sqlite_gateway


def receipt(gw: Gateway, body: str, **headers: str) -> HttpAnswer:
    return gw.api(
        "status",
        api_event(
            "POST",
            "/v1/receipts",
            body=body,
            headers={"Content-Type": "application/json", **headers},
        ),
    )


def sent_via_provider_b(gw: Gateway) -> str:
    answer = gw.post_message("tenant-3", "signed", {"to": "+14155550100", "body": "hi"})
    gw.run_until_idle()
    return str(answer.body["message_id"])


def test_signed_receipt_is_applied(signed: Gateway) -> None:
    message_id = sent_via_provider_b(signed)
    body = json.dumps({"message_id": message_id, "status": "delivered"})
    now = int(time.time())
    answer = receipt(
        signed,
        body,
        **{
            "X-Provider": "provider-b",
            "X-Timestamp": str(now),
            "X-Signature": sign("b-secret", now, body),
        },
    )
    assert answer.status == 200
    assert answer.body["outcome"] == "applied"


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "send X-Provider"),
        (
            {"X-Provider": "provider-x", "X-Timestamp": "{now}", "X-Signature": "v1=00"},
            "no receipt secret",
        ),
        (
            {"X-Provider": "provider-b", "X-Timestamp": "{stale}", "X-Signature": "{good_stale}"},
            "within 300 s",
        ),
        (
            {"X-Provider": "provider-b", "X-Timestamp": "{now}", "X-Signature": "{other_body}"},
            "does not match",
        ),
        (
            {"X-Provider": "provider-b", "X-Timestamp": "{now}", "X-Signature": "{wrong_secret}"},
            "does not match",
        ),
    ],
)
def test_unsigned_or_badly_signed_receipts_are_401(
    signed: Gateway, headers: dict[str, str], detail: str
) -> None:
    message_id = sent_via_provider_b(signed)
    body = json.dumps({"message_id": message_id, "status": "delivered"})
    now = int(time.time())
    values = {
        "now": str(now),
        "stale": str(now - 301),
        "good_stale": sign("b-secret", now - 301, body),
        "other_body": sign("b-secret", now, body.replace("delivered", "failed")),
        "wrong_secret": sign("a-secret", now, body),
    }
    answer = receipt(signed, body, **{k: v.format(**values) for k, v in headers.items()})
    assert answer.status == 401
    assert answer.headers["content-type"] == "application/problem+json"
    assert detail in answer.body["detail"]
    assert signed.get_message("tenant-3", message_id).body["status"] == "sent"


def test_a_provider_cannot_touch_another_providers_message(signed: Gateway) -> None:
    message_id = sent_via_provider_b(signed)
    body = json.dumps({"message_id": message_id, "status": "undelivered"})
    now = int(time.time())
    answer = receipt(
        signed,
        body,
        **{
            "X-Provider": "provider-a",
            "X-Timestamp": str(now),
            "X-Signature": sign("a-secret", now, body),
        },
    )
    assert answer.status == 404
    assert signed.get_message("tenant-3", message_id).body["status"] == "sent"


def test_api_key_mode_requires_signatures_even_without_secrets(
    sqlite_gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMS_GATEWAY_AUTH_MODE", "api_key")
    wiring.reset()
    answer = receipt(sqlite_gateway, json.dumps({"message_id": "x"}))
    assert answer.status == 401
