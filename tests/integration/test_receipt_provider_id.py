"""A receipt that names our message id and another provider message id than the one the
message was sent under is stale (review finding), on every SQL dialect.

With ``at_least_once``, attempt 1 may time out after the provider created SM1 and attempt 2
create SM2; the provider's callback for SM1 (``undelivered``) still carries our
``?message_id=``. It reports on a send that is not the one recorded, so it must not move the
``sent`` message (and make SM2's later ``delivered`` stale): it is answered and stored
``stale``, whether it arrives after the send or is kept ``pending`` during it."""

from __future__ import annotations

from typing import Any

from sms_gateway.providers.base import SendRequest, SendResult
from tests.integration import test_provider_outcomes as outcomes
from tests.integration.test_provider_outcomes import _callback, _sent_via_twilio
from tests.integration.test_receipts_status import sent_message
from tests.support import Gateway, stored_receipts

real = outcomes.real  # the fixture: a Twilio provider ``tw`` and tenant ``t-tw`` routed to it


def test_a_twilio_callback_for_another_sid_does_not_fail_the_sent_message(
    real: dict[str, Any],
) -> None:
    """Twilio posts ``undelivered`` for SM000… (an earlier, timed-out attempt) with our
    ``message_id``: answered 200 ``stale``, the message stays ``sent``; the callback for the
    SID it was sent under then delivers it."""
    gw, message_id, sid = _sent_via_twilio(real, "rv-other-sid")
    other = "SM" + "0" * 32
    assert other != sid
    form = [("MessageSid", other), ("MessageStatus", "undelivered"), ("ErrorCode", "30003")]
    answer = _callback(gw, message_id, form)
    assert (answer.status, answer.body["outcome"], answer.body["status"]) == (
        200,
        "stale",
        "sent",
    )
    assert gw.get_message("t-tw", message_id).body["status"] == "sent"

    form = [("MessageSid", sid), ("MessageStatus", "delivered")]
    assert _callback(gw, message_id, form).status == 200
    assert gw.get_message("t-tw", message_id).body["status"] == "delivered"
    assert stored_receipts(gw, message_id) == [(other, "stale"), (sid, "applied")]


def test_a_receipt_with_a_mismatched_provider_message_id_is_stale(gateway: Gateway) -> None:
    """``POST /v1/receipts`` with both ids, the provider's not the one recorded: 200
    ``stale``, the message stays ``sent`` with no reason; a receipt with the right pair
    applies."""
    message_id = sent_message(gateway)
    row = gateway.repo.get(message_id)
    assert row is not None and row.provider_message_id
    pmid = row.provider_message_id
    answer = gateway.post_receipt(
        {"message_id": message_id, "provider_message_id": f"not-{pmid}", "status": "failed"}
    )
    assert (answer.status, answer.body["outcome"]) == (200, "stale"), answer.body
    row = gateway.repo.get(message_id)
    assert row is not None
    assert (row.status.value, row.reason_code) == ("sent", None)

    right = gateway.post_receipt(
        {"message_id": message_id, "provider_message_id": pmid, "status": "failed"}
    )
    assert (right.status, right.body["outcome"], right.body["status"]) == (
        200,
        "applied",
        "failed",
    )
    assert stored_receipts(gateway, message_id) == [(f"not-{pmid}", "stale"), (pmid, "applied")]


def test_a_pending_receipt_for_another_provider_message_id_is_closed_stale(
    gateway: Gateway,
) -> None:
    """A receipt naming another provider message id arrives while the attempt is in flight
    (kept ``pending``); the send completes under the provider's own id: the receipt is closed
    ``stale`` instead of failing the sent message."""
    provider = gateway.providers["provider-b"]
    healthy = provider.inner
    early: dict[str, Any] = {}

    class ReportsOnAnotherSend:
        name = "provider-b"

        def send(self, request: SendRequest) -> SendResult:
            early["answer"] = gateway.post_receipt(
                {
                    "message_id": request.message_id,
                    "provider_message_id": "earlier-attempt-id",
                    "status": "undelivered",
                }
            )
            result: SendResult = healthy.send(request)
            early["sent_as"] = result.provider_message_id
            return result

    provider.inner = ReportsOnAnotherSend()
    posted = gateway.post_message("tenant-3", "pending-other", {"to": "+14155550100", "body": "hi"})
    gateway.run_until_idle()
    message_id = posted.body["message_id"]
    assert (early["answer"].status, early["answer"].body["outcome"]) == (202, "pending")
    assert early["sent_as"] and early["sent_as"] != "earlier-attempt-id"
    view = gateway.get_message("tenant-3", message_id).body
    assert (view["status"], view["provider_message_id"]) == ("sent", early["sent_as"])
    assert stored_receipts(gateway, message_id) == [("earlier-attempt-id", "stale")]
