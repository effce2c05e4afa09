"""End User Messaging SMS events (its configuration set's SNS event destination) applied as
receipts, on SQLite, PostgreSQL and MariaDB: each event type's resulting state, matching by
our id in ``Context`` or by the provider's ``messageId``, never regressing on a replay."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from sms_gateway import wiring
from sms_gateway.services.eum_events import handle_sns_event
from tests.support import Gateway

# eventType -> the message's status afterwards (AWS's event type descriptions)
EXPECTED = {
    "TEXT_DELIVERED": "delivered",
    "TEXT_SUCCESSFUL": "delivered",
    "TEXT_QUEUED": "sent",
    "TEXT_PENDING": "sent",
    "TEXT_UNKNOWN": "sent",
    "TEXT_TTL_EXPIRED": "expired",
    "TEXT_BLOCKED": "failed",
    "TEXT_CARRIER_BLOCKED": "failed",
    "TEXT_SPAM": "failed",
    "TEXT_PROTECT_BLOCKED": "failed",
    "TEXT_INVALID": "failed",
    "TEXT_UNREACHABLE": "failed",
    "TEXT_CARRIER_UNREACHABLE": "failed",
    "TEXT_INVALID_MESSAGE": "failed",
}


def _sns(documents: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "Records": [
            {"EventSource": "aws:sns", "Sns": {"Message": json.dumps(d), "Type": "Notification"}}
            for d in documents
        ]
    }


def _event(event_type: str, message_id: str | None, pmid: str, stamp_ms: int) -> dict[str, Any]:
    document: dict[str, Any] = {
        "eventType": event_type,
        "eventVersion": "1.0",
        "eventTimestamp": stamp_ms,
        "isFinal": True,
        "destinationPhoneNumber": "+12025550100",
        "messageId": pmid,
        "messageStatus": event_type.removeprefix("TEXT_"),
    }
    if message_id:
        document["context"] = {"message_id": message_id, "tenant_id": "tenant-1"}
    return document


def test_each_event_type_ends_in_its_state(gateway: Gateway) -> None:
    ids = {}
    for event_type in EXPECTED:
        answer = gateway.post_message(
            "tenant-1", f"eum-{event_type}", {"to": "+12025550143", "body": event_type}
        )
        ids[event_type] = answer.body["message_id"]
    by_pmid = gateway.post_message("tenant-1", "eum-pmid", {"to": "+12025550143", "body": "x"})
    gateway.run_until_idle()
    pmid = gateway.get_message("tenant-1", by_pmid.body["message_id"]).body["provider_message_id"]
    # the handset's time: just after the messages were created (a time before a message's
    # creation is refused, beyond the clock skew)
    stamp_ms = int(time.time() * 1000) + 60_000
    # each event's messageId is the MessageId its send returned (it must match the one the
    # message was sent under: a receipt about another send is stale)
    sent_as = {
        t: gateway.get_message("tenant-1", ids[t]).body["provider_message_id"] for t in EXPECTED
    }
    documents = [_event(t, ids[t], sent_as[t], stamp_ms) for t in EXPECTED]
    documents.append(_event("TEXT_DELIVERED", None, pmid, stamp_ms))  # by messageId alone
    documents.append(_event("TEXT_DELIVERED", "no-such-message", "eum-none", stamp_ms))
    documents.append({"eventType": "VOICE_COMPLETED", "messageId": "v-1"})
    receipts = wiring.sql().receipts
    counts = handle_sns_event(_sns(documents), receipts)
    assert counts == {"applied": 12, "stale": 3, "unmatched": 1, "ignored": 1}
    for event_type, message_id in ids.items():
        view = gateway.get_message("tenant-1", message_id).body
        assert view["status"] == EXPECTED[event_type], event_type
    delivered = gateway.get_message("tenant-1", ids["TEXT_DELIVERED"]).body
    assert delivered["delivered_at"].startswith(
        datetime.fromtimestamp(stamp_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    )
    failed = gateway.get_message("tenant-1", ids["TEXT_SPAM"]).body
    assert failed["reason_detail"] == "receipt: failed (eum:TEXT_SPAM)"
    assert gateway.get_message("tenant-1", by_pmid.body["message_id"]).body["status"] == (
        "delivered"
    )
    # the same events again (SNS delivers at least once): nothing moves
    again = handle_sns_event(_sns(documents[:-2]), receipts)
    assert again == {"stale": len(EXPECTED) + 1}
    for event_type, message_id in ids.items():
        assert gateway.get_message("tenant-1", message_id).body["status"] == EXPECTED[event_type]
