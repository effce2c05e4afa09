"""A dead-letter replay sends a message again only when its failure IS that dead letter
(review finding; issue 11, item 2), on every SQL dialect.

The DLQ function records a dead letter even while a live sender holds the message (it leaves
the message to that sender). If the sender then sends it and a receipt fails it
(``sent -> failed``, undelivered), or the provider refuses it for good (opted out), the old
dead letter stays unreplayed; an operator's replay by tenant or time range must not pick it
up and send the message a second time (to an opted-out number, too)."""

from __future__ import annotations

from datetime import timedelta

from sms_gateway import wiring
from sms_gateway.domain.operations import ReplaySelection
from sms_gateway.domain.reasons import ReasonCode
from sms_gateway.domain.states import MessageStatus
from sms_gateway.services.dead_letter import DeadLetter
from sms_gateway.storage.records import AttemptResult
from tests.integration.test_operations import _queued, _status
from tests.support import Gateway


def _dead_lettered_while_sending(gateway: Gateway, message_id: str, sqs_id: str) -> None:
    """Queue ``message_id`` (tenant-3), claim its attempt 1 for provider-b, then let the DLQ
    function record a dead letter for it while that claim is live: the message stays
    ``sending``, the dead letter unreplayed."""
    now = gateway.clock()
    msg = _queued(message_id, "tenant-3", now)
    assert gateway.repo.record_queued(msg, now)
    assert gateway.repo.claim(message_id, 1, 1, "provider-b", now + timedelta(seconds=30), now)
    assert wiring.sql().dead_letters.process(DeadLetter(sqs_id, msg.model_dump_json(), 3))
    assert _status(gateway, message_id) is MessageStatus.SENDING
    (letter,) = gateway.repo.dead_letters_for(message_id)
    assert (letter["generation"], letter["replayed_at"]) == (0, None)


def test_replay_never_resends_a_sent_message_failed_by_a_receipt(gateway: Gateway) -> None:
    """The live sender sends the message, then an ``undelivered`` receipt fails it
    (``sent -> failed``): a replay of tenant-3's dead letters replays nothing and the provider
    is not called again."""
    message_id = "4f7f2a8e-0000-5000-8000-0000000000e1"
    _dead_lettered_while_sending(gateway, message_id, "sqs-e1")
    now = gateway.clock()
    assert gateway.repo.finish_attempt(
        message_id, 1, AttemptResult("sent", 5, "pm-e1"), MessageStatus.SENT, now
    )
    answer = gateway.post_receipt({"message_id": message_id, "status": "undelivered"})
    assert answer.status == 200, answer.body
    row = gateway.repo.get(message_id)
    assert row is not None
    assert (row.status, row.reason_code) == (MessageStatus.FAILED, "provider_permanent")

    report = wiring.operations().replay(ReplaySelection(tenant_id="tenant-3"))
    gateway.run_until_idle()
    assert report.as_dict()["replayed"] == 0
    assert gateway.sends(message_id) == []
    assert gateway.queue_depth("send") == 0
    assert _status(gateway, message_id) is MessageStatus.FAILED
    assert gateway.repo.dead_letters_for(message_id)[0]["replayed_at"] is None


def test_replay_never_resends_to_an_opted_out_number(gateway: Gateway) -> None:
    """The live sender's attempt ends with the provider's opted-out refusal (Twilio 21610):
    the message is ``failed`` (``opted_out``), and a replay by tenant sends nothing."""
    message_id = "4f7f2a8e-0000-5000-8000-0000000000e2"
    _dead_lettered_while_sending(gateway, message_id, "sqs-e2")
    result = AttemptResult(
        "permanent_error",
        5,
        reason_code=ReasonCode.OPTED_OUT,
        error_code="21610",
        error_detail="unsubscribed recipient",
    )
    assert gateway.repo.finish_attempt(message_id, 1, result, MessageStatus.FAILED, gateway.clock())

    report = wiring.operations().replay(ReplaySelection(tenant_id="tenant-3"))
    gateway.run_until_idle()
    assert report.as_dict()["replayed"] == 0
    assert gateway.sends(message_id) == []
    row = gateway.repo.get(message_id)
    assert row is not None
    assert (row.status, row.reason_code) == (MessageStatus.FAILED, "opted_out")


def test_dead_letters_failed_otherwise_do_not_use_up_the_replay_limit(gateway: Gateway) -> None:
    """A dead letter whose message failed by something else is left out of the selection
    (``failed`` leaves only by a replay, so it can never be replayed): with ``limit=1`` the
    replay by tenant reaches the one real dead letter recorded after it."""
    message_id = "4f7f2a8e-0000-5000-8000-0000000000e3"
    _dead_lettered_while_sending(gateway, message_id, "sqs-e3")
    result = AttemptResult("permanent_error", 5, reason_code=ReasonCode.OPTED_OUT)
    assert gateway.repo.finish_attempt(message_id, 1, result, MessageStatus.FAILED, gateway.clock())
    gateway.clock.advance(60)
    real = "4f7f2a8e-0000-5000-8000-0000000000e5"
    queued = _queued(real, "tenant-3", gateway.clock())
    assert gateway.repo.record_queued(queued, gateway.clock())
    assert wiring.sql().dead_letters.process(DeadLetter("sqs-e5", queued.model_dump_json(), 3))
    assert _status(gateway, real) is MessageStatus.FAILED

    report = wiring.operations().replay(ReplaySelection(tenant_id="tenant-3", limit=1))
    assert (report.replayed, report.skipped) == ([real], {})
    assert _status(gateway, real) is MessageStatus.QUEUED
    assert _status(gateway, message_id) is MessageStatus.FAILED


def test_a_dead_letter_recorded_during_a_send_is_replayed_once_it_fails_the_message(
    gateway: Gateway,
) -> None:
    """The dead letter recorded while the sender held the message becomes its failure when a
    later copy of the same generation fails it (``queued -> failed``, reason ``dead_letter``;
    the copy stores no second row): that dead letter is then replayed, once."""
    message_id = "4f7f2a8e-0000-5000-8000-0000000000e4"
    _dead_lettered_while_sending(gateway, message_id, "sqs-e4")
    now = gateway.clock()
    back = AttemptResult("transient_error", 5, reason_code=ReasonCode.PROVIDER_TRANSIENT)
    assert gateway.repo.finish_attempt(message_id, 1, back, MessageStatus.QUEUED, now)
    (letter,) = gateway.repo.dead_letters_for(message_id)
    assert not wiring.sql().dead_letters.process(DeadLetter("sqs-e4b", letter["raw_payload"], 3))
    row = gateway.repo.get(message_id)
    assert row is not None
    assert (row.status, row.reason_code) == (MessageStatus.FAILED, "dead_letter")

    report = wiring.operations().replay(ReplaySelection(tenant_id="tenant-3"))
    assert report.replayed == [message_id]
    assert _status(gateway, message_id) is MessageStatus.QUEUED
    assert gateway.queue_depth("send") == 1
