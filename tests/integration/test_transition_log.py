"""Every message state transition logs one ``transition`` line (DESIGN section 11), written by
the service after its conditional update succeeded, with no phone number and no body."""

from __future__ import annotations

import json
from typing import Any

from tests.support import Gateway, powertools_log

NUMBER = "+14155550123"
BODY = "confidential-body-7Qx"


def records(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def transitions(lines: list[dict[str, Any]], message_id: str) -> list[tuple[Any, ...]]:
    keys = ("from_status", "to_status", "attempt", "provider", "reason_code")
    return [
        tuple(line.get(key) for key in keys)
        for line in lines
        if line["message"] == "transition" and line["message_id"] == message_id
    ]


def test_a_send_retried_then_delivered_logs_each_transition_once(sqlite_gateway: Gateway) -> None:
    gw = sqlite_gateway
    with powertools_log() as log:
        answer = gw.post_message("tenant-1", "t-1", {"to": NUMBER, "body": BODY})
        message_id = answer.body["message_id"]
        gw.run_until_idle()  # provider-a fails every message's first attempt (transient)
        assert gw.post_receipt({"message_id": message_id}).status == 200
    lines = records(log.getvalue())

    accepted = [line for line in lines if line["message"] == "accepted"]
    assert [
        (a["message_id"], a["tenant_id"], a["segments"], a["encoding"], a["level"])
        for a in accepted
    ] == [(message_id, "tenant-1", 1, "GSM-7", "INFO")]
    assert transitions(lines, message_id) == [
        ("accepted", "queued", None, None, None),
        ("queued", "sending", 1, "provider-a", None),
        ("sending", "queued", 1, "provider-a", "provider_transient"),
        ("queued", "sending", 2, "provider-a", None),
        ("sending", "sent", 2, "provider-a", None),
        ("sent", "delivered", 2, "provider-a", None),
    ]
    by_target = {
        line["to_status"]: line
        for line in lines
        if line["message"] == "transition" and line["message_id"] == message_id
    }
    assert by_target["sent"]["tenant_id"] == "tenant-1"
    assert isinstance(by_target["sent"]["latency_ms"], int)
    assert "latency_ms" not in by_target["delivered"]
    assert {line["level"] for line in lines if line["message"] == "transition"} == {"INFO"}
    text = log.getvalue()
    assert NUMBER not in text and NUMBER[2:] not in text
    assert BODY not in text


def test_a_dead_letter_logs_its_move_to_failed(sqlite_gateway: Gateway) -> None:
    gw = sqlite_gateway
    with powertools_log() as log:
        answer = gw.post_message("tenant-2", "t-2", {"to": NUMBER, "body": BODY, "max_attempts": 2})
        message_id = answer.body["message_id"]
        gw.run_until_idle()  # provider-fail: transient every time
    lines = records(log.getvalue())
    assert transitions(lines, message_id) == [
        ("accepted", "queued", None, None, None),
        ("queued", "sending", 1, "provider-fail", None),
        ("sending", "queued", 1, "provider-fail", "provider_transient"),
        ("queued", "sending", 2, "provider-fail", None),
        ("sending", "queued", 2, "provider-fail", "provider_transient"),
        ("queued", "failed", None, None, "dead_letter"),
    ]
    assert gw.get_message("tenant-2", message_id).body["status"] == "failed"
