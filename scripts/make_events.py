"""Regenerate ``events/`` from ``sam local generate-event`` output (run: ``make events``).

Each sample starts as SAM's own event shape and gets the gateway's headers, path parameters
and bodies. API samples carry both ``X-Tenant-ID`` (local mode) and ``identity.apiKeyId``
(api_key mode), so ``sam local invoke`` works with either ``AuthMode``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"


def simulator_message_id(provider: str, message_id: str, attempt: int) -> str:
    """The provider message id a demo simulator answers for ``message_id``'s ``attempt``
    (sms_gateway.providers.simulator: a UUIDv5 of the three)."""
    import uuid

    from sms_gateway.providers.simulator import _ID_NAMESPACE

    return f"{provider}-{uuid.uuid5(_ID_NAMESPACE, f'{provider}/{message_id}/{attempt}')}"


def eum_event(document: dict[str, Any]) -> dict[str, Any]:
    """SAM's SNS notification carrying one End User Messaging SMS event document (set after
    generation: SAM pastes --message into its JSON template unescaped)."""
    event = sam_event("sns", "notification", "--topic", "sms-gateway-EndUserMessagingEventTopic")
    event["Records"][0]["Sns"]["Message"] = json.dumps(document)
    event["Records"][0]["Sns"]["Subject"] = None
    return event


def sam_event(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        ["sam", "local", "generate-event", *args], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out)


def api_event(
    method: str,
    path: str,
    resource: str,
    body: dict[str, Any] | None,
    headers: dict[str, str],
    path_parameters: dict[str, str] | None = None,
    tenant: str | None = "tenant-1",
) -> dict[str, Any]:
    event = sam_event(
        "apigateway",
        "aws-proxy",
        "--method",
        method,
        "--path",
        path.lstrip("/"),
        "--resource",
        resource,
        "--stage",
        "dev",
        "--body",
        "",
    )
    event["body"] = json.dumps(body) if body is not None else None
    event["isBase64Encoded"] = False
    event["queryStringParameters"] = None
    event["multiValueQueryStringParameters"] = None
    event["stageVariables"] = None
    event["pathParameters"] = path_parameters
    all_headers = {"Content-Type": "application/json", **headers}
    if tenant:
        all_headers["X-Tenant-ID"] = tenant
    event["headers"].update(all_headers)
    event["multiValueHeaders"].update({k: [v] for k, v in all_headers.items()})
    event["requestContext"]["identity"]["apiKeyId"] = tenant
    event["requestContext"]["identity"]["apiKey"] = None
    return event


def queued(message_id: str, tenant: str, to: str, body: str, max_attempts: int) -> str:
    return json.dumps(
        {
            "message_id": message_id,
            "tenant_id": tenant,
            "to": to,
            "sender_id": None,
            "body": body,
            "encoding": "GSM-7",
            "segments": 1,
            "max_attempts": max_attempts,
            "reference": None,
            "idempotency_key": f"sample-{message_id[:8]}",
            "created_at": "2026-11-30T12:00:00Z",
            "expires_at": None,
        }
    )


def sqs_event(queue: str, bodies: list[tuple[str, str]]) -> dict[str, Any]:
    base = sam_event("sqs", "receive-message", "--queue-name", queue, "--body", "x")
    template = base["Records"][0]
    records = []
    for sqs_id, body in bodies:
        record = json.loads(json.dumps(template))
        record["messageId"] = sqs_id
        record["receiptHandle"] = f"receipt-{sqs_id}"
        record["body"] = body
        record["md5OfBody"] = hashlib.md5(body.encode()).hexdigest()  # noqa: S324 - SQS's own checksum
        records.append(record)
    return {"Records": records}


def main() -> None:
    EVENTS.mkdir(exist_ok=True)
    samples: dict[str, dict[str, Any]] = {
        "ingest-post-message.json": api_event(
            "POST",
            "/v1/messages",
            "/v1/messages",
            {"to": "+12025550143", "body": "hello"},
            {"Idempotency-Key": "sample-demo-1"},
        ),
        "ingest-post-message-failing-tenant.json": api_event(
            "POST",
            "/v1/messages",
            "/v1/messages",
            {"to": "+12025550144", "body": "fail", "max_attempts": 2},
            {"Idempotency-Key": "sample-demo-2"},
            tenant="tenant-2",
        ),
        "ingest-post-message-invalid.json": api_event(
            "POST",
            "/v1/messages",
            "/v1/messages",
            {"to": "hello", "body": ""},
            {"Idempotency-Key": "sample-invalid"},
        ),
        "ingest-post-messages-batch.json": api_event(
            "POST",
            "/v1/messages/batch",
            "/v1/messages/batch",
            {
                "messages": [
                    {"to": "+12025550143", "body": "hello"},
                    {"to": "+12025550199", "body": "Grüße, €5", "reference": "order-7"},
                    {"to": "hello", "body": "rejected alone: not a phone number"},
                ]
            },
            {"Idempotency-Key": "sample-bulk-1"},
            tenant="tenant-3",
        ),
        "status-get-message.json": api_event(
            "GET",
            "/v1/messages/4f7f2a8e-0000-5000-8000-000000000001",
            "/v1/messages/{message_id}",
            None,
            {},
            {"message_id": "4f7f2a8e-0000-5000-8000-000000000001"},
            tenant="tenant-3",
        ),
        # names the sender sample's third message, recorded queued (not sent) by its test
        "status-cancel-message.json": api_event(
            "POST",
            "/v1/messages/4f7f2a8e-0000-5000-8000-000000000003/cancel",
            "/v1/messages/{message_id}/cancel",
            None,
            {},
            {"message_id": "4f7f2a8e-0000-5000-8000-000000000003"},
            tenant="tenant-3",
        ),
        "status-post-receipt.json": api_event(
            "POST",
            "/v1/receipts",
            "/v1/receipts",
            {
                "message_id": "4f7f2a8e-0000-5000-8000-000000000001",
                "delivered_at": "2026-11-30T12:00:05Z",
            },
            {},
            tenant=None,
        ),
        "sender-batch.json": sqs_event(
            "sms-gateway-SendQueue",
            [
                (
                    "b1a1c0de-0000-4000-8000-000000000001",
                    queued(
                        "4f7f2a8e-0000-5000-8000-000000000001",
                        "tenant-3",
                        "+12025550143",
                        "hello",
                        3,
                    ),
                ),
                ("b1a1c0de-0000-4000-8000-000000000002", '{"to":"+1415'),
                (
                    "b1a1c0de-0000-4000-8000-000000000003",
                    queued(
                        "4f7f2a8e-0000-5000-8000-000000000003", "tenant-3", "+14155550100", "hi", 3
                    ),
                ),
            ],
        ),
        "dlq-batch.json": sqs_event(
            "sms-gateway-DeadLetterQueue",
            [
                (
                    "d1a1c0de-0000-4000-8000-000000000001",
                    queued(
                        "4f7f2a8e-0000-5000-8000-000000000002",
                        "tenant-2",
                        "+12025550144",
                        "fail",
                        2,
                    ),
                ),
                ("d1a1c0de-0000-4000-8000-000000000002", '{"to":"+1415'),
            ],
        ),
        # AdminFunction commands (sam remote invoke --event): plain JSON, no AWS envelope
        "admin-replay.json": {
            "command": "replay",
            "tenant_id": "tenant-2",
            "reason": "dead_letter",
        },
        "admin-stuck.json": {"command": "stuck", "state": "queued", "older_than": "15m"},
        # RetentionFunction: the schedule's Input (template: RetentionRun), not read
        "retention-schedule.json": {"source": "sms-gateway retention schedule"},
        # EumEventsFunction: an End User Messaging SMS event (configuration set -> SNS) for the
        # message sender-batch.json sends, matched by the Context the sender set
        "eum_events-delivered.json": eum_event(
            {
                "eventType": "TEXT_DELIVERED",
                "eventVersion": "1.0",
                "eventTimestamp": 1796040005000,  # 2026-11-30T12:00:05Z
                "isFinal": True,
                "originationPhoneNumber": "+12065550152",
                "destinationPhoneNumber": "+12025550143",
                "isoCountryCode": "US",
                # the id provider-b (tenant-3's demo route) gave that message's first attempt:
                # End User Messaging names the send it reports on
                "messageId": simulator_message_id(
                    "provider-b", "4f7f2a8e-0000-5000-8000-000000000001", 1
                ),
                "messageRequestTimestamp": 1796040001000,
                "messageEncoding": "GSM",
                "messageType": "TRANSACTIONAL",
                "messageStatus": "DELIVERED",
                "messageStatusDescription": "Message has been accepted by phone",
                "totalMessageParts": 1,
                "totalMessagePrice": 0.00581,
                "totalCarrierFee": 0.00767,
                "context": {
                    "message_id": "4f7f2a8e-0000-5000-8000-000000000001",
                    "tenant_id": "tenant-3",
                },
            }
        ),
    }
    for name, event in samples.items():
        (EVENTS / name).write_text(json.dumps(event, indent=2) + "\n", encoding="utf-8")
        print(f"wrote events/{name}")


if __name__ == "__main__":
    main()
