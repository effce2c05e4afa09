"""Real provider types through the whole gateway (ingest -> SendQueue -> sender -> SQL), on
SQLite, PostgreSQL and MariaDB (issue 7): every error-table row of the HTTP types ends in the
recorded state it implies, and every unknown-outcome path follows the tenant's delivery
guarantee.

The providers are declared as a deployment declares them (``SMS_GATEWAY_PROVIDERS``), their
secrets in moto's SSM and Secrets Manager, their APIs loopback fakes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters

from sms_gateway import wiring
from sms_gateway.storage.engine import make_engine
from sms_gateway.storage.repository import RoutePolicyRepository
from tests.provider_fakes import (
    AGGREGATOR_SECRET,
    TWILIO_SID,
    TWILIO_TOKEN,
    FakeServer,
    fake_server,
)
from tests.support import Gateway, api_event

# code -> (HTTP status, reason recorded when permanent, retryable): the providers' docs
AGGREGATOR_ROWS: dict[str, tuple[int, str, bool]] = {
    "rate_limited": (429, "rate_limited", True),
    "temporarily_unavailable": (503, "provider_transient", True),
    "invalid_number": (400, "invalid_number", False),
    "unreachable_number": (400, "invalid_number", False),
    "opted_out": (400, "opted_out", False),
    "blocked_content": (400, "provider_permanent", False),
    "unsupported_country": (400, "provider_permanent", False),
    "invalid_request": (400, "validation_error", False),
    "unauthorized": (401, "auth_failed", False),
}
TWILIO_ROWS: dict[str, tuple[int, str, bool]] = {
    "20003": (401, "auth_failed", False),
    "20429": (429, "rate_limited", True),
    "20500": (500, "provider_transient", True),
    "20503": (503, "provider_transient", True),
    "21211": (400, "invalid_number", False),
    "21614": (400, "invalid_number", False),
    "21612": (400, "invalid_number", False),
    "21610": (400, "opted_out", False),
    "21408": (400, "provider_permanent", False),
    "21606": (400, "provider_permanent", False),
    "21617": (400, "validation_error", False),
    "30007": (400, "recipient_blacklisted", False),
    "21611": (400, "rate_limited", True),
}


@pytest.fixture
def real(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The gateway with an ``agg`` (HTTP aggregator) and a ``tw`` (Twilio) provider, and
    tenants routed to them: ``t-agg``/``t-tw`` (at most once), ``t-agg-alo`` (at least once)."""
    boto3.client("ssm").put_parameter(
        Name="/gw/twilio", Value=TWILIO_TOKEN, Type="SecureString", Overwrite=True
    )
    sm = boto3.client("secretsmanager")
    try:
        sm.create_secret(Name="gw/agg", SecretString=AGGREGATOR_SECRET)
    except sm.exceptions.ResourceExistsException:
        sm.put_secret_value(SecretId="gw/agg", SecretString=AGGREGATOR_SECRET)
    parameters.clear_caches()
    with fake_server("http") as agg, fake_server("twilio") as tw:
        providers = {
            "agg": {
                "type": "http",
                "url": agg.base_url + "/send",
                "signing_secret": "secretsmanager:gw/agg",
                "read_timeout": 10,
            },
            "tw": {
                "type": "twilio",
                "account_sid": TWILIO_SID,
                "auth_secret": "ssm:/gw/twilio",
                "from_number": "+12025550100",
                "base_url": tw.base_url,
                "read_timeout": 10,  # generous: a loaded machine must not look like a timeout
            },
        }
        # the same API with a short read timeout, for the slow-answer case
        providers["tw-short"] = {**providers["tw"], "read_timeout": 0.3}
        monkeypatch.setenv("SMS_GATEWAY_PROVIDERS", json.dumps(providers))
        engine = make_engine(gateway.dsn)
        try:
            policies = RoutePolicyRepository(engine)
            now = datetime.now(UTC)
            policies.put("t-agg", "direct", {"default_provider": "agg"}, now)
            policies.put("t-tw", "direct", {"default_provider": "tw"}, now)
            policies.put("t-tw-short", "direct", {"default_provider": "tw-short"}, now)
            policies.put(
                "t-agg-alo",
                "direct",
                {"default_provider": "agg", "delivery": "at_least_once"},
                now,
            )
        finally:
            engine.dispose()
        wiring.reset()
        yield {"gateway": gateway, "agg": agg, "tw": tw}
    parameters.clear_caches()


def _send(gw: Gateway, tenant: str, to: str, key: str) -> str:
    answer = gw.post_message(tenant, key, {"to": to, "body": "hi", "max_attempts": 2})
    assert answer.status == 202, answer.body
    return str(answer.body["message_id"])


def _check_rows(
    gw: Gateway, fake: FakeServer, tenant: str, rows: dict[str, tuple[int, str, bool]], twilio: bool
) -> None:
    sent: dict[str, str] = {}
    for index, (code, (status, _, _)) in enumerate(sorted(rows.items())):
        to = f"+1202555{index:04d}"
        body = (
            {"code": int(code), "message": "no", "status": status}
            if twilio
            else {"error": {"code": code, "message": "no"}}
        )
        fake.refuse(to, status, body)
        sent[code] = _send(gw, tenant, to, f"{tenant}-{code}")
    gw.run_until_idle()
    for code, message_id in sent.items():
        _, reason, retryable = rows[code]
        view = gw.get_message(tenant, message_id).body
        outcomes = [a.outcome for a in gw.repo.attempts(message_id)]
        if retryable:  # both attempts spent, then the dead letter
            assert (view["status"], view["reason_code"], view["attempts"]) == (
                "failed",
                "dead_letter",
                2,
            ), code
            assert outcomes == ["transient_error", "transient_error"], code
        else:  # failed at once with the row's reason, no retry
            assert (view["status"], view["reason_code"], view["attempts"]) == (
                "failed",
                reason,
                1,
            ), code
            assert outcomes == ["permanent_error"], code
            assert [e[2] for e in gw.repo.events(message_id)][-1] == reason


def test_every_aggregator_row_ends_in_its_state(real: dict[str, Any]) -> None:
    _check_rows(real["gateway"], real["agg"], "t-agg", AGGREGATOR_ROWS, twilio=False)


def test_every_twilio_row_ends_in_its_state(real: dict[str, Any]) -> None:
    _check_rows(real["gateway"], real["tw"], "t-tw", TWILIO_ROWS, twilio=True)


def test_success_records_the_provider_message_id(real: dict[str, Any]) -> None:
    gw: Gateway = real["gateway"]
    message_id = _send(gw, "t-tw", "+12025550143", "ok")
    gw.run_until_idle()
    view = gw.get_message("t-tw", message_id).body
    assert view["status"] == "sent"
    assert view["provider"] == "tw"
    assert view["provider_message_id"].startswith("SM")
    assert len(real["tw"].requests) == 1


def test_outcome_unknown_at_most_once_fails_without_a_resend(real: dict[str, Any]) -> None:
    gw: Gateway = real["gateway"]
    real["agg"].reset("+12025550177", times=1)
    message_id = _send(gw, "t-agg", "+12025550177", "unknown-amo")
    gw.run_until_idle()
    view = gw.get_message("t-agg", message_id).body
    assert (view["status"], view["reason_code"], view["attempts"]) == (
        "failed",
        "outcome_unknown",
        1,
    )
    assert [a.outcome for a in gw.repo.attempts(message_id)] == ["unknown"]
    assert len(real["agg"].requests) == 1  # never sent twice
    assert gw.queue_depth("send") == gw.queue_depth("dlq") == 0


def test_outcome_unknown_at_least_once_is_retried(real: dict[str, Any]) -> None:
    gw: Gateway = real["gateway"]
    real["agg"].reset("+12025550178", times=1)
    message_id = _send(gw, "t-agg-alo", "+12025550178", "unknown-alo")
    gw.run_until_idle()
    view = gw.get_message("t-agg-alo", message_id).body
    assert (view["status"], view["attempts"]) == ("sent", 2)
    assert [a.outcome for a in gw.repo.attempts(message_id)] == ["unknown", "sent"]
    # both requests carried our message id: an aggregator that keeps it can drop the second
    assert [json.loads(r.body)["message_id"] for r in real["agg"].requests] == [message_id] * 2


def test_slow_answer_is_outcome_unknown(real: dict[str, Any]) -> None:
    gw: Gateway = real["gateway"]
    real["tw"].slow("+12025550179", 1.5)
    # the lookup that follows an unknown outcome cannot read the list: it stays unknown
    # (test_twilio_lookup.py covers what a lookup finds)
    real["tw"].script.list_status = 503
    message_id = _send(gw, "t-tw-short", "+12025550179", "slow")
    gw.run_until_idle()
    view = gw.get_message("t-tw-short", message_id).body
    assert (view["status"], view["reason_code"]) == ("failed", "outcome_unknown")
    assert [a.outcome for a in gw.repo.attempts(message_id)] == ["unknown"]


# ---- Twilio status callbacks ------------------------------------------------------------

HOST = "1234567890.execute-api.us-east-1.amazonaws.com"  # the sample event's Host


def _twilio_sign(token: str, url: str, form: list[tuple[str, str]]) -> str:
    """Twilio's documented algorithm, written out: URL, then each name+value sorted by name
    (no repeated names here), HMAC-SHA1 with the auth token, base64."""
    text = url + "".join(name + value for name, value in sorted(form))
    return base64.b64encode(hmac.new(token.encode(), text.encode(), hashlib.sha1).digest()).decode()


def _callback(
    gw: Gateway, message_id: str, form: list[tuple[str, str]], *, port: str = "", token: str = ""
) -> Any:
    url = f"https://{HOST}{port}/dev/v1/receipts/twilio/tw?message_id={message_id}"
    event = api_event(
        "POST",
        "/v1/receipts/twilio/tw",
        body=urlencode(form),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": _twilio_sign(token or TWILIO_TOKEN, url, form),
        },
        path_parameters={"provider": "tw"},
    )
    event["resource"] = event["requestContext"]["resourcePath"] = "/v1/receipts/twilio/{provider}"
    event["queryStringParameters"] = {"message_id": message_id}
    event["multiValueQueryStringParameters"] = {"message_id": [message_id]}
    return gw.api("status", event)


def _sent_via_twilio(real: dict[str, Any], key: str) -> tuple[Gateway, str, str]:
    gw: Gateway = real["gateway"]
    message_id = _send(gw, "t-tw", "+12025550143", key)
    gw.run_until_idle()
    view = gw.get_message("t-tw", message_id).body
    assert view["status"] == "sent"
    return gw, message_id, str(view["provider_message_id"])


@pytest.mark.parametrize("port", ["", ":443"])
def test_twilio_delivered_callback_is_verified_and_applied(real: dict[str, Any], port: str) -> None:
    gw, message_id, sid = _sent_via_twilio(real, f"cb-{port}")
    form = [("MessageSid", sid), ("MessageStatus", "delivered"), ("AccountSid", TWILIO_SID)]
    answer = _callback(gw, message_id, form, port=port)
    assert answer.status == 200, answer.body
    assert gw.get_message("t-tw", message_id).body["status"] == "delivered"


# a failed callback's ErrorCode -> the reason recorded (Twilio's error dictionary,
# https://www.twilio.com/docs/api/errors/<code>); a code not in the table: provider_permanent
CALLBACK_ERRORS = {
    "21610": "opted_out",  # unsubscribed recipient
    "30001": "rate_limited",  # queue overflow
    "30002": "auth_failed",  # account suspended
    "30003": "invalid_number",  # unreachable destination handset
    "30004": "recipient_blacklisted",  # message blocked
    "30005": "invalid_number",  # unknown destination handset
    "30006": "invalid_number",  # landline or unreachable carrier
    "30007": "recipient_blacklisted",  # message filtered
    "30008": "provider_permanent",  # unknown error
    "30034": "provider_permanent",  # not in the table
}


def test_the_callback_error_table_is_the_tested_one() -> None:
    from sms_gateway.providers.twilio import DELIVERY_ERRORS

    assert set(DELIVERY_ERRORS) == set(CALLBACK_ERRORS) - {"30034"}


@pytest.mark.parametrize(("status", "code"), [("undelivered", "30003"), ("failed", "30007")])
def test_twilio_failed_callback_keeps_the_error_code(
    real: dict[str, Any], status: str, code: str
) -> None:
    gw, message_id, sid = _sent_via_twilio(real, f"cb-{status}")
    form = [("MessageSid", sid), ("MessageStatus", status), ("ErrorCode", code)]
    assert _callback(gw, message_id, form).status == 200
    view = gw.get_message("t-tw", message_id).body
    assert (view["status"], view["reason_code"], view["reason_detail"]) == (
        "failed",
        CALLBACK_ERRORS[code],
        f"receipt: failed (twilio:{code})",
    )


def test_every_callback_error_code_records_its_reason(real: dict[str, Any]) -> None:
    gw: Gateway = real["gateway"]
    sent = {code: _send(gw, "t-tw", "+12025550143", f"cb-code-{code}") for code in CALLBACK_ERRORS}
    gw.run_until_idle()
    for code, message_id in sent.items():
        sid = gw.get_message("t-tw", message_id).body["provider_message_id"]
        form = [("MessageSid", sid), ("MessageStatus", "undelivered"), ("ErrorCode", code)]
        assert _callback(gw, message_id, form).status == 200
        view = gw.get_message("t-tw", message_id).body
        assert (view["status"], view["reason_code"]) == ("failed", CALLBACK_ERRORS[code]), code


def test_twilio_callback_with_a_wrong_signature_changes_nothing(real: dict[str, Any]) -> None:
    gw, message_id, sid = _sent_via_twilio(real, "cb-forged")
    form = [("MessageSid", sid), ("MessageStatus", "delivered")]
    answer = _callback(gw, message_id, form, token="not-the-auth-token")
    assert answer.status == 401
    assert answer.body["type"].endswith("#receipt-signature-invalid")
    assert gw.get_message("t-tw", message_id).body["status"] == "sent"


def test_accepted_without_an_id_is_sent_once(real: dict[str, Any]) -> None:
    """A 2xx without the provider's id: the provider has the message, so it is ``sent`` (no
    provider message id) and never sent again, even for an at_least_once tenant."""
    gw: Gateway = real["gateway"]
    real["agg"].refuse("+12025550181", 202, {"status": "accepted"})
    message_id = _send(gw, "t-agg-alo", "+12025550181", "no-id-accepted")
    gw.run_until_idle()
    bodies = [json.loads(r.body) for r in real["agg"].requests]
    assert [b["message_id"] for b in bodies].count(message_id) == 1
    view = gw.get_message("t-agg-alo", message_id).body
    assert (view["status"], view["provider_message_id"]) == ("sent", None)
