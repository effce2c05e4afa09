"""Signed receipts (DESIGN section 9): deployed, only a provider's signed callback counts, and
only for messages sent through that provider."""

from __future__ import annotations

import json
import time

import pytest

from sms_gateway import wiring
from sms_gateway.api.signatures import sign
from sms_gateway.providers.base import SendRequest, SendResult
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


def signed_receipt(
    gw: Gateway, provider: str, payload: dict[str, str], secrets: dict[str, str] = SECRETS
) -> HttpAnswer:
    body = json.dumps(payload)
    now = int(time.time())
    headers = {
        "X-Provider": provider,
        "X-Timestamp": str(now),
        "X-Signature": sign(secrets[provider], now, body),
    }
    return receipt(gw, body, **headers)


def test_signed_receipt_is_applied(signed: Gateway) -> None:
    message_id = sent_via_provider_b(signed)
    answer = signed_receipt(signed, "provider-b", {"message_id": message_id, "status": "delivered"})
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


def test_failover_a_failed_providers_early_receipt_does_not_touch_the_next(
    signed: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = {**SECRETS, "provider-fail": "f-secret"}
    monkeypatch.setenv("SMS_GATEWAY_RECEIPT_SECRETS", json.dumps(secrets))
    wiring.reset()
    failing = signed.providers["provider-fail"]
    inner = failing.inner

    class ReportsUndelivered:
        name = "provider-fail"

        def send(self, request: SendRequest) -> SendResult:
            early["answer"] = signed_receipt(
                signed,
                "provider-fail",
                {"message_id": request.message_id, "status": "undelivered"},
                secrets,
            )
            result: SendResult = inner.send(request)
            return result

    early: dict[str, HttpAnswer] = {}
    failing.inner = ReportsUndelivered()
    answer = signed.post_message("tenant-4", "fo-receipt", {"to": "+14155550100", "body": "hi"})
    signed.run_until_idle()
    view = signed.get_message("tenant-4", answer.body["message_id"]).body
    assert early["answer"].status == 202  # kept while provider-fail held the claim
    assert (view["status"], view["provider"]) == ("sent", "provider-b")


def test_same_provider_id_from_two_providers(signed: Gateway) -> None:
    a = signed.post_message("tenant-3", "pa", {"to": "+14155550100", "body": "a"}).body
    signed.run_until_idle()
    b = signed.post_message("tenant-1", "pb", {"to": "+14155550100", "body": "b"}).body
    signed.run_until_idle()
    # force both provider ids to the same value, as two providers' id spaces may collide
    from sqlalchemy import update

    from sms_gateway.storage.tables import messages

    with wiring.sql().engine.begin() as conn:
        conn.execute(update(messages).values(provider_message_id="12345"))
    answer = signed_receipt(signed, "provider-b", {"provider_message_id": "12345"})
    assert answer.status == 200 and answer.body["message_id"] == a["message_id"]
    answer = signed_receipt(signed, "provider-a", {"provider_message_id": "12345"})
    assert answer.status == 200 and answer.body["message_id"] == b["message_id"]


@pytest.mark.parametrize("timestamp", ["²", "9" * 5000, "+123", " 123"])
def test_odd_timestamps_are_401_not_500(signed: Gateway, timestamp: str) -> None:
    answer = receipt(
        signed,
        '{"message_id": "x"}',
        **{"X-Provider": "provider-b", "X-Timestamp": timestamp, "X-Signature": "v1=00"},
    )
    assert answer.status == 401
