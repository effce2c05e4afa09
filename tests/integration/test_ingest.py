"""IngestFunction in-process under moto: validation, content, numbers, idempotency."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from sms_gateway import wiring
from sms_gateway.adapters.sqs import SqsMessageQueue
from sms_gateway.api.problems import PROBLEM_CONTENT_TYPE
from sms_gateway.api.requests import validate_send_request
from sms_gateway.services.ingest import IdempotencyInProgress
from tests.cases import CONTENT_CASES, PHONE_CASES
from tests.conftest import SharedAws
from tests.support import FakeLambdaContext, Gateway, HttpAnswer, api_event


def assert_problem(answer: HttpAnswer, status: int, *fields: str) -> None:
    assert answer.status == status, answer.body
    assert answer.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert answer.body["status"] == status
    assert answer.body["type"].startswith("https://")
    assert answer.body["title"] and answer.body["detail"]
    assert "Traceback" not in json.dumps(answer.body)
    if fields:
        assert {e["field"] for e in answer.body["errors"]} == set(fields)


@pytest.mark.parametrize("case", CONTENT_CASES, ids=[c["name"] for c in CONTENT_CASES])
def test_content_cases_come_back_exactly(sqlite_gateway: Gateway, case: dict[str, Any]) -> None:
    answer = sqlite_gateway.post_message(
        "tenant-1", f"content-{case['name']}", {"to": "+14155550100", "body": case["body"]}
    )
    assert answer.status == 202, answer.body
    assert answer.body["encoding"] == case["encoding"]
    assert answer.body["segments"] == case["segments"]
    # nothing dropped or replaced: the queued body is the body sent
    msg = sqlite_gateway.sqs.receive_message(QueueUrl=sqlite_gateway.send_queue_url)["Messages"][0]
    assert json.loads(msg["Body"])["body"] == case["body"]


@pytest.mark.parametrize("case", PHONE_CASES, ids=[repr(c["to"]) for c in PHONE_CASES])
def test_phone_cases(sqlite_gateway: Gateway, case: dict[str, Any]) -> None:
    answer = sqlite_gateway.post_message("tenant-1", "phone", {"to": case["to"], "body": "hi"})
    if "e164" in case:
        assert answer.status == 202, answer.body
        assert answer.body["to"] == case["e164"]
    else:
        assert case["expect_status"] == 422
        assert_problem(answer, 422, "to")
        assert sqlite_gateway.queue_depth() == 0


@pytest.mark.parametrize(
    ("to", "message"),
    [
        ("+10000000001", "area code 000 does not exist: North American area codes start with 2-9"),
        (
            "+39 0333 123 4567",
            "drop the national trunk prefix 0 after the country code (+39 333...)",
        ),
        (
            "+1 034 555 0100",
            "area code 034 does not exist: North American area codes start with 2-9",
        ),
        ("+1 411 555 1234", "411 is a service code (N11), not an area code"),
        ("+999 123 456 789", "unknown country code 999"),
    ],
)
def test_number_refusals_tell_the_client_why(
    sqlite_gateway: Gateway, to: str, message: str
) -> None:
    answer = sqlite_gateway.post_message("tenant-1", "why", {"to": to, "body": "hi"})
    assert_problem(answer, 422, "to")
    assert answer.body["errors"] == [{"field": "to", "message": message}]


def test_accepted_answer_shape(sqlite_gateway: Gateway) -> None:
    answer = sqlite_gateway.post_message("tenant-1", "shape", {"to": "+14155550100", "body": "hi"})
    assert answer.status == 202
    assert set(answer.body) == {"message_id", "status", "to", "encoding", "segments", "created_at"}
    assert answer.body["status"] == "queued"
    assert answer.headers["location"] == f"/v1/messages/{answer.body['message_id']}"
    assert "idempotent-replayed" not in answer.headers
    assert answer.body["created_at"].endswith("Z")


def test_behaviour_1_replay_ignores_key_order_and_whitespace(sqlite_gateway: Gateway) -> None:
    gw = sqlite_gateway
    first = gw.post_message("tenant-1", "k1", '{"to":"+14155550100","body":"hi"}')
    second = gw.post_message("tenant-1", "k1", '{ "body": "hi", "to": "+14155550100" }')
    assert first.status == second.status == 202
    assert second.body == first.body
    assert second.headers["idempotent-replayed"] == "true"
    assert gw.queue_depth() == 1

    changed = gw.post_message("tenant-1", "k1", '{"to":"+14155550101","body":"hi"}')
    assert_problem(changed, 422)
    assert changed.body["type"].endswith("idempotency-key-reused")
    assert gw.queue_depth() == 1

    gw.run_until_idle()
    message_id = first.body["message_id"]
    sends = gw.sends(message_id)
    # provider-a fails every message's first attempt by design; exactly one send succeeded
    assert [c.attempt for c in sends] == [1, 2]
    assert [a.outcome for a in gw.repo.attempts(message_id)] == ["transient_error", "sent"]
    assert gw.get_message("tenant-1", message_id).body["status"] == "sent"


def test_behaviour_2_keys_are_tenant_scoped(sqlite_gateway: Gateway) -> None:
    one = sqlite_gateway.post_message(
        "tenant-1", "shared-key", {"to": "+14155550100", "body": "hi"}
    )
    two = sqlite_gateway.post_message(
        "tenant-2", "shared-key", {"to": "+14155550100", "body": "hi"}
    )
    assert one.status == two.status == 202
    assert one.body["message_id"] != two.body["message_id"]
    assert "idempotent-replayed" not in two.headers
    assert sqlite_gateway.queue_depth() == 2


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (None, "missing"),
        ("", "empty"),
        ("x" * 256, "too long"),
        ("clé", "not ASCII"),
        ("a\tb", "control"),
    ],
)
def test_bad_idempotency_key_is_400(sqlite_gateway: Gateway, key: str | None, reason: str) -> None:
    answer = sqlite_gateway.post_message("tenant-1", key, {"to": "+14155550100", "body": "hi"})
    assert_problem(answer, 400, "Idempotency-Key")
    assert sqlite_gateway.queue_depth() == 0


def test_key_of_255_printable_ascii_is_accepted(sqlite_gateway: Gateway) -> None:
    answer = sqlite_gateway.post_message(
        "tenant-1", "~" * 255, {"to": "+14155550100", "body": "hi"}
    )
    assert answer.status == 202


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"to": "+14155550100", "body": ""}, {"body"}),
        ({"to": "+14155550100", "body": "a" * 1531}, {"body"}),
        ({"to": "+14155550100"}, {"body"}),
        ({"to": "+14155550100", "body": "hi", "priority": "high"}, {"priority"}),
        ({"to": "+14155550100", "body": "hi", "max_attempts": 0}, {"max_attempts"}),
        ({"to": "+14155550100", "body": "hi", "max_attempts": 4}, {"max_attempts"}),
        ({"to": "+14155550100", "body": "hi", "max_attempts": "2"}, {"max_attempts"}),
        ({"to": "+14155550100", "body": "hi", "reference": "r" * 129}, {"reference"}),
        ({"to": "+14155550100", "body": "hi", "validity_period": 10}, {"validity_period"}),
        ({"to": "+14155550100", "body": "hi", "from": "ThisIsTooLong"}, {"from"}),
        ({"to": "+14155550100", "body": "hi", "from": "+10000000001"}, {"from"}),
        ({"to": "hello", "body": ""}, {"to", "body"}),
        ({"to": 14155550100, "body": 5}, {"to", "body"}),
        ([1, 2], {"$"}),
        (
            {"to": "x", "body": "", "max_attempts": 9, "zzz": 1},
            {"zzz", "to", "body", "max_attempts"},
        ),
        (
            {"to": "+14155550100", "body": "hi", "validity_period": 10, "reference": "r" * 200},
            {"validity_period", "reference"},
        ),
    ],
)
def test_invalid_bodies_are_422_naming_fields(
    sqlite_gateway: Gateway, body: Any, fields: set[str]
) -> None:
    answer = sqlite_gateway.post_message("tenant-1", "invalid", body)
    assert_problem(answer, 422, *fields)
    assert sqlite_gateway.queue_depth() == 0


def test_validation_messages_are_plain(sqlite_gateway: Gateway) -> None:
    answer = sqlite_gateway.post_message("tenant-1", "plain", {"body": "hi", "colour": "red"})
    messages = {e["field"]: e["message"] for e in answer.body["errors"]}
    assert messages == {"to": "is required", "colour": "unknown field: not part of this API"}


def test_validation_failure_does_not_burn_the_key(sqlite_gateway: Gateway) -> None:
    bad = sqlite_gateway.post_message("tenant-1", "k-fix", {"to": "nope", "body": "hi"})
    assert bad.status == 422
    good = sqlite_gateway.post_message("tenant-1", "k-fix", {"to": "+14155550100", "body": "hi"})
    assert good.status == 202
    assert "idempotent-replayed" not in good.headers


@pytest.mark.parametrize("raw", ['{"to": "+1415', "", "null-ish{"])
def test_malformed_json_is_400(sqlite_gateway: Gateway, raw: str) -> None:
    answer = sqlite_gateway.post_message("tenant-1", "malformed", raw)
    assert_problem(answer, 400)
    assert answer.body["type"].endswith("malformed-json")


def test_missing_tenant_is_401(sqlite_gateway: Gateway) -> None:
    answer = sqlite_gateway.post_message(None, "k", {"to": "+14155550100", "body": "hi"})
    assert_problem(answer, 401)


def test_api_key_mode_ignores_the_tenant_header(
    sqlite_gateway: Gateway, moto_resources: SharedAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deployed, the tenant is the one API key key-abc123 maps to (TenantsTable), whatever
    X-Tenant-ID says."""
    from sms_gateway.adapters.dynamodb_tenants import DynamoDbTenantStore
    from sms_gateway.domain.tenants import KeyRecord, KeyState

    table = moto_resources.resources.table_names["TenantsTable"]
    DynamoDbTenantStore(moto_resources.dynamodb, table).create_key(
        KeyRecord("key-abc123", "acme", KeyState.ACTIVE, sqlite_gateway.clock())
    )
    monkeypatch.setenv("SMS_GATEWAY_AUTH_MODE", "api_key")
    monkeypatch.setenv("SMS_GATEWAY_TENANTS_TABLE", table)
    wiring.reset()
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": "k",
        "X-Tenant-ID": "tenant-1",
    }
    body = json.dumps({"to": "+14155550100", "body": "hi"})
    spoofed = sqlite_gateway.api(
        "ingest", api_event("POST", "/v1/messages", body=body, headers=headers)
    )
    assert_problem(spoofed, 401)
    keyed = sqlite_gateway.api(
        "ingest",
        api_event("POST", "/v1/messages", body=body, headers=headers, api_key_id="key-abc123"),
    )
    assert keyed.status == 202
    queued = json.loads(
        sqlite_gateway.sqs.receive_message(QueueUrl=sqlite_gateway.send_queue_url)["Messages"][0][
            "Body"
        ]
    )
    assert queued["tenant_id"] == "acme"


def test_same_key_while_first_in_flight_is_409(
    sqlite_gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = sqlite_gateway
    inner: dict[str, HttpAnswer] = {}
    original = SqsMessageQueue.send

    def send_and_retry(self: SqsMessageQueue, body: str, attributes: Any) -> str:
        if "second" not in inner:  # the client retries while the first request is running
            inner["second"] = gw.post_message(
                "tenant-1", "k-busy", {"to": "+14155550100", "body": "hi"}
            )
        return original(self, body, attributes)

    monkeypatch.setattr(SqsMessageQueue, "send", send_and_retry)
    first = gw.post_message("tenant-1", "k-busy", {"to": "+14155550100", "body": "hi"})
    assert first.status == 202
    assert_problem(inner["second"], 409)
    assert inner["second"].headers["retry-after"] == "1"
    assert gw.queue_depth() == 1


def test_queue_outage_is_503_and_the_key_stays_usable(
    sqlite_gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import EndpointConnectionError

    def down(self: SqsMessageQueue, body: str, attributes: Any) -> str:
        raise EndpointConnectionError(endpoint_url="https://sqs.us-east-1.amazonaws.com")

    with monkeypatch.context() as patch:
        patch.setattr(SqsMessageQueue, "send", down)
        failed = sqlite_gateway.post_message(
            "tenant-1", "k-outage", {"to": "+14155550100", "body": "hi"}
        )
    assert_problem(failed, 503)
    assert failed.headers["retry-after"] == "5"
    retried = sqlite_gateway.post_message(
        "tenant-1", "k-outage", {"to": "+14155550100", "body": "hi"}
    )
    assert retried.status == 202
    assert "idempotent-replayed" not in retried.headers
    assert sqlite_gateway.queue_depth() == 1


def test_crash_after_queueing_before_the_answer_is_stored_sends_once(
    sqlite_gateway: Gateway,
) -> None:
    """Ingest queued the message, then died before its idempotency record was completed; the
    client's retry (after the in-progress record expired) queues it again. Both copies carry
    the same derived message id, so the sender sends it once."""
    gw = sqlite_gateway
    container = wiring.ingest()
    container.idempotency.register_lambda_context(FakeLambdaContext("ingest"))
    service = container.service
    request = {
        "tenant_id": "tenant-3",
        "idempotency_key": "k-crash",
        "payload": {"to": "+14155550100", "body": "hi"},
        "message": {
            "to": "+14155550100",
            "sender_id": None,
            "body": "hi",
            "encoding": "GSM-7",
            "segments": 1,
            "max_attempts": 3,
            "reference": None,
            "validity_period": None,
        },
    }
    first = service._enqueue(request)  # the crashed invocation (its answer never stored)
    retried = gw.post_message("tenant-3", "k-crash", {"to": "+14155550100", "body": "hi"})
    assert retried.body["message_id"] == first["message_id"]
    assert gw.queue_depth() == 2
    gw.run_until_idle()
    assert len(gw.sends(first["message_id"])) == 1
    assert gw.get_message("tenant-3", first["message_id"]).body["status"] == "sent"
    assert gw.queue_depth() == 0


def test_concurrent_identical_requests_queue_once(sqlite_gateway: Gateway) -> None:
    gw = sqlite_gateway
    answers: list[int] = []
    barrier = threading.Barrier(4)

    container = wiring.ingest()
    container.idempotency.register_lambda_context(FakeLambdaContext("ingest"))
    service = container.service
    payload = {"to": "+14155550100", "body": "hi"}
    message = validate_send_request(payload, max_segments=10, max_attempts_limit=3)

    def post() -> None:
        # four containers at once: the service (not the handler, whose Powertools metrics are
        # per-process state that one container never shares between threads)
        barrier.wait()
        try:
            service.accept("tenant-1", "k-race", message, payload)
            answers.append(202)
        except IdempotencyInProgress:
            answers.append(409)

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(answers) == 4
    assert set(answers) <= {202, 409} and 202 in answers
    # DynamoDB's conditional put admits one of them; moto's in-process table is not atomic
    # across threads and may admit two. Either way every queued copy is the same message
    # (same derived id), and the sender sends it once.
    copies = gw.sqs.receive_message(
        QueueUrl=gw.send_queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0
    )["Messages"]
    assert len({json.loads(c["Body"])["message_id"] for c in copies}) == 1
    gw.run_until_idle()
    message_id = json.loads(copies[0]["Body"])["message_id"]
    assert len([c for c in gw.sends(message_id) if c.attempt == 2]) == 1  # provider-a: 1 fails
    assert [a.outcome for a in gw.repo.attempts(message_id)] == ["transient_error", "sent"]


@pytest.mark.parametrize(
    ("body", "base64"),
    [("!!!not base64!!!", True), ("//79", True), ('{"max_attempts": ' + "9" * 5000 + "}", False)],
)
def test_unreadable_bodies_are_400_not_500(
    sqlite_gateway: Gateway, body: str, base64: bool
) -> None:
    event = api_event(
        "POST",
        "/v1/messages",
        body=body,
        headers={"X-Tenant-ID": "tenant-1", "Idempotency-Key": "k-unreadable"},
    )
    event["isBase64Encoded"] = base64
    answer = sqlite_gateway.api("ingest", event)
    assert_problem(answer, 400)
    assert sqlite_gateway.queue_depth() == 0
