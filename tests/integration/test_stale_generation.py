"""A stale SendQueue copy of an older replay generation (issue 11), on every SQL dialect.

After an operator replays a dead letter, the message is on generation ``n + 1`` with a raised
``max_attempts`` and a new SendQueue record. A copy of generation ``n`` may still reach the
sender (SQS delivers at least once; a record put back during an outage). It carries the old
``max_attempts``: before, it was claimed, spent an attempt of the new generation and could
dead-letter it early. Now it is acknowledged with no effect, and only the new record counts.
"""

from __future__ import annotations

import json

from sms_gateway import wiring
from sms_gateway.domain.operations import ReplaySelection
from sms_gateway.domain.states import MessageStatus
from tests.integration.test_operations import _dead_letter, _route
from tests.support import Gateway


def _replay_and_hold(gateway: Gateway, message_id: str, budget: int) -> tuple[str, str]:
    """Replay ``message_id`` (dead-lettered on generation 0) and take the new record off the
    SendQueue; the (old, new) record bodies."""
    (letter,) = gateway.repo.dead_letters_for(message_id)
    report = wiring.operations().replay(ReplaySelection(message_id=message_id), budget=budget)
    assert report.replayed == [message_id]
    (new,) = gateway.sqs.receive_message(QueueUrl=gateway.send_queue_url, MaxNumberOfMessages=10)[
        "Messages"
    ]
    gateway.sqs.delete_message(QueueUrl=gateway.send_queue_url, ReceiptHandle=new["ReceiptHandle"])
    assert gateway.queue_depth("send") == 0
    old_body, new_body = letter["raw_payload"], new["Body"]
    assert (json.loads(old_body)["generation"], json.loads(new_body)["generation"]) == (0, 1)
    assert (json.loads(old_body)["max_attempts"], json.loads(new_body)["max_attempts"]) == (
        2,
        2 + budget,
    )
    return old_body, new_body


def _deliver(gateway: Gateway, body: str) -> None:
    gateway.sqs.send_message(QueueUrl=gateway.send_queue_url, MessageBody=body)
    gateway.pump("sender")


def test_the_old_copy_is_acknowledged_and_the_new_one_sends_once(gateway: Gateway) -> None:
    message_id = _dead_letter(gateway, "tenant-2", "stale-1")  # attempts 1, 2 failed
    _route(gateway, "tenant-2", "provider-b")
    old, new = _replay_and_hold(gateway, message_id, budget=1)

    _deliver(gateway, old)
    row = gateway.repo.get(message_id)
    assert row is not None
    assert (row.status, row.attempts, row.max_attempts, row.generation) == (
        MessageStatus.QUEUED,
        2,
        3,
        1,
    )
    assert gateway.sends(message_id) == [] or all(c.attempt <= 2 for c in gateway.sends(message_id))
    assert gateway.providers["provider-b"].calls == []
    assert gateway.queue_depth("send") == 0 and gateway.queue_depth("dlq") == 0

    _deliver(gateway, new)
    gateway.run_until_idle()
    row = gateway.repo.get(message_id)
    assert row is not None
    assert (row.status, row.attempts, row.provider) == (MessageStatus.SENT, 3, "provider-b")
    assert [c.attempt for c in gateway.providers["provider-b"].calls] == [3]

    _deliver(gateway, old)  # once more after the send: still nothing
    assert [c.attempt for c in gateway.providers["provider-b"].calls] == [3]


def test_the_old_copy_cannot_dead_letter_the_new_generation_early(gateway: Gateway) -> None:
    """The new generation (max_attempts 4) still fails at the provider: it gets its attempts 3
    and 4, then its own dead letter (generation 1). The old copy (max_attempts 2) counted no
    attempt and recorded no dead letter."""
    message_id = _dead_letter(gateway, "tenant-2", "stale-2")  # provider-fail: attempts 1, 2
    old, new = _replay_and_hold(gateway, message_id, budget=2)

    _deliver(gateway, old)
    gateway.run_until_idle()
    assert [c.attempt for c in gateway.providers["provider-fail"].calls] == [1, 2]
    row = gateway.repo.get(message_id)
    assert row is not None
    assert (row.status, row.attempts) == (MessageStatus.QUEUED, 2)
    assert len(gateway.repo.dead_letters_for(message_id)) == 1

    _deliver(gateway, new)
    gateway.run_until_idle()
    assert [c.attempt for c in gateway.providers["provider-fail"].calls] == [1, 2, 3, 4]
    row = gateway.repo.get(message_id)
    assert row is not None
    assert (row.status, row.reason_code, row.attempts, row.max_attempts) == (
        MessageStatus.FAILED,
        "dead_letter",
        4,
        4,
    )
    letters = gateway.repo.dead_letters_for(message_id)
    assert [(d["generation"], d["replayed_at"] is None) for d in letters] == [
        (0, False),
        (1, True),
    ]


def test_in_one_batch_the_copy_of_the_newest_generation_is_handled(gateway: Gateway) -> None:
    """Both copies in one SQS batch, the old one first: the new one is handled (before, the
    first copy was, and the other acknowledged as its duplicate: the message stayed queued)."""
    message_id = _dead_letter(gateway, "tenant-2", "stale-3")
    _route(gateway, "tenant-2", "provider-b")
    old, new = _replay_and_hold(gateway, message_id, budget=1)
    gateway.sqs.send_message_batch(
        QueueUrl=gateway.send_queue_url,
        Entries=[{"Id": "old", "MessageBody": old}, {"Id": "new", "MessageBody": new}],
    )
    outcomes = gateway.pump("sender")
    assert [len(o.received) for o in outcomes] == [2]  # one batch
    row = gateway.repo.get(message_id)
    assert row is not None
    assert (row.status, row.attempts) == (MessageStatus.SENT, 3)
    assert [c.attempt for c in gateway.providers["provider-b"].calls] == [3]
    assert gateway.queue_depth("send") == 0
