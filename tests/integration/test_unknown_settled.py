"""A final receipt settles an attempt whose outcome is unknown (issue 7, exactly-once), on
SQLite, PostgreSQL and MariaDB, through the whole gateway (ingest -> SendQueue -> sender ->
SQL, receipts through the status function).

An attempt whose request left with no answer (the fake provider closes the connection) is
recorded ``unknown``. Each test orders the receipt differently against what follows that
attempt and asserts the exact final state, the attempts' outcomes and how many requests the
provider received (every send is one request to the loopback fake).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from sms_gateway import wiring
from sms_gateway.services.eum_events import handle_sns_event
from sms_gateway.storage.engine import make_engine
from sms_gateway.storage.repository import RoutePolicyRepository
from tests.integration import test_eum_events as eum
from tests.integration import test_provider_outcomes as outcomes
from tests.integration.test_provider_outcomes import _callback
from tests.provider_fakes import TWILIO_SID
from tests.support import Gateway, stored_receipts

real = outcomes.real  # providers ``agg`` (HTTP aggregator) and ``tw`` (Twilio), and tenants


def _send(gw: Gateway, tenant: str, to: str, key: str) -> str:
    answer = gw.post_message(tenant, key, {"to": to, "body": "hi", "max_attempts": 2})
    assert answer.status == 202, answer.body
    return str(answer.body["message_id"])


def _requests_to(fake: Any, to: str) -> int:
    """How many send requests the fake received for ``to``."""
    return sum(1 for r in fake.requests if json.loads(r.body).get("to") == to)


def _view(gw: Gateway, tenant: str, message_id: str) -> tuple[Any, ...]:
    view = gw.get_message(tenant, message_id).body
    return (
        view["status"],
        view["reason_code"],
        view["provider_message_id"],
        view["attempts"],
    )


def _outcomes(gw: Gateway, message_id: str) -> list[str]:
    return [a.outcome for a in gw.repo.attempts(message_id)]


def _receipt(message_id: str, pmid: str, status: str = "delivered") -> dict[str, Any]:
    return {"message_id": message_id, "provider_message_id": pmid, "status": status}


# ---- at_most_once: the message failed with outcome_unknown ----------------------------------


def test_delivered_receipt_after_the_failure_settles_it(real: dict[str, Any]) -> None:
    gw: Gateway = real["gateway"]
    to = "+12025550201"
    real["agg"].reset(to, times=1)
    message_id = _send(gw, "t-agg", to, "settle-amo")
    gw.run_until_idle()
    assert _view(gw, "t-agg", message_id) == ("failed", "outcome_unknown", None, 1)

    answer = gw.post_receipt(_receipt(message_id, "agg-amo-1"))
    assert answer.status == 200, answer.body
    assert answer.body["status"] == "delivered"
    assert _view(gw, "t-agg", message_id) == ("delivered", None, "agg-amo-1", 1)
    assert _outcomes(gw, message_id) == ["sent"]
    assert [e[1] for e in gw.repo.events(message_id)][-3:] == ["failed", "sent", "delivered"]
    gw.run_until_idle()
    assert _requests_to(real["agg"], to) == 1
    assert stored_receipts(gw, message_id) == [("agg-amo-1", "applied")]


def test_undelivered_receipt_after_the_failure_records_the_providers_verdict(
    real: dict[str, Any],
) -> None:
    gw: Gateway = real["gateway"]
    to = "+12025550202"
    real["agg"].reset(to, times=1)
    message_id = _send(gw, "t-agg", to, "settle-amo-undelivered")
    gw.run_until_idle()
    answer = gw.post_receipt(_receipt(message_id, "agg-amo-2", "undelivered"))
    assert answer.status == 200, answer.body
    view = gw.get_message("t-agg", message_id).body
    assert (view["status"], view["reason_code"], view["reason_detail"]) == (
        "failed",
        "provider_permanent",
        "receipt: failed",
    )
    assert view["provider_message_id"] == "agg-amo-2"
    assert _outcomes(gw, message_id) == ["sent"]
    assert _requests_to(real["agg"], to) == 1


def test_duplicate_receipt_changes_nothing_more(real: dict[str, Any]) -> None:
    gw: Gateway = real["gateway"]
    to = "+12025550203"
    real["agg"].reset(to, times=1)
    message_id = _send(gw, "t-agg", to, "settle-dup")
    gw.run_until_idle()
    first = gw.post_receipt(_receipt(message_id, "agg-dup"))
    second = gw.post_receipt(_receipt(message_id, "agg-dup"))
    assert (first.status, second.status) == (200, 200)
    assert _view(gw, "t-agg", message_id) == ("delivered", None, "agg-dup", 1)
    assert stored_receipts(gw, message_id) == [("agg-dup", "applied"), ("agg-dup", "stale")]
    # a later "undelivered" for the same send does not regress a delivered message
    assert gw.post_receipt(_receipt(message_id, "agg-dup", "undelivered")).status == 200
    assert _view(gw, "t-agg", message_id) == ("delivered", None, "agg-dup", 1)
    assert _requests_to(real["agg"], to) == 1


def test_receipt_during_the_unknown_attempt_settles_it_when_it_ends(
    real: dict[str, Any],
) -> None:
    """The receipt arrives while attempt 1 is in flight (parked ``pending``); the call then
    ends with no answer (at_most_once: failed/outcome_unknown), and the parked receipt
    settles it at once."""
    gw: Gateway = real["gateway"]
    to = "+12025550204"
    message_id = _send(gw, "t-agg", to, "settle-during-1")
    answers: list[int] = []
    real["agg"].during(
        to, lambda: answers.append(gw.post_receipt(_receipt(message_id, "agg-early")).status)
    )
    real["agg"].reset(to, times=1)
    gw.run_until_idle()
    assert answers == [202]  # parked (pending), not refused
    assert _view(gw, "t-agg", message_id) == ("delivered", None, "agg-early", 1)
    assert _outcomes(gw, message_id) == ["sent"]
    assert stored_receipts(gw, message_id) == [("agg-early", "applied")]
    assert _requests_to(real["agg"], to) == 1


def test_a_dead_letter_is_not_overturned(real: dict[str, Any]) -> None:
    """``failed`` for another reason than outcome_unknown stays: here an at_least_once
    message whose both attempts went unanswered is dead-lettered; a receipt is then stale."""
    gw: Gateway = real["gateway"]
    to = "+12025550205"
    real["agg"].reset(to, times=2)
    message_id = _send(gw, "t-agg-alo", to, "settle-dead-letter")
    gw.run_until_idle()
    assert _view(gw, "t-agg-alo", message_id)[:2] == ("failed", "dead_letter")
    assert gw.post_receipt(_receipt(message_id, "agg-dl")).status == 200
    assert _view(gw, "t-agg-alo", message_id)[:3] == ("failed", "dead_letter", None)
    assert _outcomes(gw, message_id) == ["unknown", "unknown"]
    assert stored_receipts(gw, message_id) == [("agg-dl", "stale")]


# ---- at_least_once: the retry is pending or in flight ---------------------------------------


def test_receipt_while_queued_for_the_retry_settles_it_and_the_retry_is_never_sent(
    real: dict[str, Any],
) -> None:
    gw: Gateway = real["gateway"]
    to = "+12025550206"
    real["agg"].reset(to, times=1)
    message_id = _send(gw, "t-agg-alo", to, "settle-queued")
    gw.poller("sender").poll_once()  # attempt 1: no answer; queued for its retry
    assert _view(gw, "t-agg-alo", message_id) == ("queued", "outcome_unknown", None, 1)
    assert gw.queue_depth("send") == 1  # the retry's record

    answer = gw.post_receipt(_receipt(message_id, "agg-q"))
    assert answer.status == 200, answer.body  # was 409, and the receipt lost
    gw.run_until_idle()  # the retry's record arrives: acknowledged, no provider call
    assert _view(gw, "t-agg-alo", message_id) == ("delivered", None, "agg-q", 1)
    assert _outcomes(gw, message_id) == ["sent"]
    assert _requests_to(real["agg"], to) == 1
    assert gw.queue_depth("send") == gw.queue_depth("dlq") == 0


def test_receipt_while_the_retry_is_in_flight_and_the_retry_fails_transiently(
    real: dict[str, Any],
) -> None:
    """Attempt 1 unanswered; during attempt 2 the receipt for attempt 1 arrives (parked);
    attempt 2 answers 503: the parked receipt settles attempt 1, and no third send is made."""
    gw: Gateway = real["gateway"]
    to = "+12025550207"
    message_id = _send(gw, "t-agg-alo", to, "settle-inflight-503")
    real["agg"].reset(to, times=1)
    real["agg"].refuse(to, 503, {"error": {"code": "temporarily_unavailable", "message": "x"}})
    answers: list[int] = []
    real["agg"].during(to, lambda: None)  # attempt 1
    real["agg"].during(
        to, lambda: answers.append(gw.post_receipt(_receipt(message_id, "agg-if")).status)
    )
    gw.run_until_idle()
    assert answers == [202]  # parked while attempt 2 is in flight
    assert _view(gw, "t-agg-alo", message_id) == ("delivered", None, "agg-if", 2)
    assert _outcomes(gw, message_id) == ["sent", "transient_error"]
    assert _requests_to(real["agg"], to) == 2
    assert gw.queue_depth("send") == gw.queue_depth("dlq") == 0
    assert stored_receipts(gw, message_id) == [("agg-if", "applied")]


def test_receipt_while_the_last_retry_is_in_flight_and_it_goes_unanswered(
    real: dict[str, Any],
) -> None:
    """Both attempts unanswered (the last one would be dead-lettered); the receipt parked
    during attempt 2 settles it instead: delivered, no dead letter, two sends."""
    gw: Gateway = real["gateway"]
    to = "+12025550208"
    message_id = _send(gw, "t-agg-alo", to, "settle-inflight-unknown")
    real["agg"].reset(to, times=2)
    real["agg"].during(to, lambda: None)
    real["agg"].during(to, lambda: gw.post_receipt(_receipt(message_id, "agg-last")))
    gw.run_until_idle()
    assert _view(gw, "t-agg-alo", message_id) == ("delivered", None, "agg-last", 2)
    assert _outcomes(gw, message_id) == ["unknown", "sent"]  # the latest unknown one
    assert gw.repo.dead_letters_for(message_id) == []
    assert _requests_to(real["agg"], to) == 2
    assert gw.queue_depth("send") == gw.queue_depth("dlq") == 0


def test_receipt_while_the_retry_is_in_flight_and_the_retry_is_accepted(
    real: dict[str, Any],
) -> None:
    """The retry is accepted under another provider message id: the SMS went out twice
    (unavoidable once the retry left). The message is ``sent`` under the retry's id, the
    receipt about attempt 1 is kept ``stale`` (not lost), and nothing is sent a third time."""
    gw: Gateway = real["gateway"]
    to = "+12025550209"
    message_id = _send(gw, "t-agg-alo", to, "settle-inflight-ok")
    real["agg"].reset(to, times=1)
    real["agg"].during(to, lambda: None)
    real["agg"].during(to, lambda: gw.post_receipt(_receipt(message_id, "agg-first")))
    gw.run_until_idle()
    status, reason, pmid, attempts = _view(gw, "t-agg-alo", message_id)
    assert (status, reason, attempts) == ("sent", None, 2)
    assert pmid.startswith("agg-") and pmid != "agg-first"
    assert _outcomes(gw, message_id) == ["unknown", "sent"]
    assert stored_receipts(gw, message_id) == [("agg-first", "stale")]
    assert _requests_to(real["agg"], to) == 2


# ---- Twilio status callback -----------------------------------------------------------------


def test_twilio_callback_settles_an_unknown_attempt(real: dict[str, Any]) -> None:
    """The callback carries our message id (in the callback URL) and Twilio's SID: the
    failed/outcome_unknown message becomes delivered under that SID."""
    gw: Gateway = real["gateway"]
    to = "+12025550210"
    real["tw"].reset(to, times=1)
    answer = gw.post_message("t-tw", "settle-twilio", {"to": to, "body": "hi"})
    message_id = str(answer.body["message_id"])
    gw.run_until_idle()
    assert _view(gw, "t-tw", message_id)[:2] == ("failed", "outcome_unknown")
    sid = "SM" + "5e" * 16
    form = [("MessageSid", sid), ("MessageStatus", "delivered"), ("AccountSid", TWILIO_SID)]
    assert _callback(gw, message_id, form).status == 200
    assert _view(gw, "t-tw", message_id) == ("delivered", None, sid, 1)
    assert _outcomes(gw, message_id) == ["sent"]
    # one send; the lookup (GET) found nothing: the message was not created before the reset
    assert [r.method for r in real["tw"].requests] == ["POST", "GET"]


# ---- End User Messaging events --------------------------------------------------------------


def test_end_user_messaging_events_settle_unknown_attempts(real: dict[str, Any]) -> None:
    """An End User Messaging event names our message id in its ``Context``: TEXT_DELIVERED
    settles one unanswered message as delivered, TEXT_TTL_EXPIRED another as expired (both
    at most once, failed/outcome_unknown before), each under the event's messageId."""
    gw: Gateway = real["gateway"]
    ids = {}
    for event_type, to in (
        ("TEXT_DELIVERED", "+12025550211"),
        ("TEXT_TTL_EXPIRED", "+12025550212"),
    ):
        real["agg"].reset(to, times=1)
        ids[event_type] = _send(gw, "t-agg", to, f"settle-eum-{event_type}")
    gw.run_until_idle()
    stamp_ms = int(time.time() * 1000) + 60_000
    documents = [
        eum._event(event_type, message_id, f"eum-{event_type}", stamp_ms)
        for event_type, message_id in ids.items()
    ]
    counts = handle_sns_event(eum._sns(documents), wiring.sql().receipts)
    assert counts == {"applied": 2}
    assert _view(gw, "t-agg", ids["TEXT_DELIVERED"]) == (
        "delivered",
        None,
        "eum-TEXT_DELIVERED",
        1,
    )
    assert _view(gw, "t-agg", ids["TEXT_TTL_EXPIRED"]) == (
        "expired",
        "provider_permanent",
        "eum-TEXT_TTL_EXPIRED",
        1,
    )
    for message_id in ids.values():
        assert _outcomes(gw, message_id) == ["sent"]


def test_failover_a_signed_callback_for_the_first_providers_unknown_attempt(
    real: dict[str, Any],
) -> None:
    """Failover tw -> agg, at least once: Twilio's attempt goes unanswered (its lookup finds
    nothing), the retry goes to the aggregator, and while it is in flight Twilio's signed
    callback for the first attempt arrives. It is parked (the message's provider is agg now,
    but tw has an unknown attempt on it), and when agg answers 503 it settles the message:
    delivered under Twilio's SID, two sends in all."""
    gw: Gateway = real["gateway"]
    engine = make_engine(gw.dsn)
    try:
        RoutePolicyRepository(engine).put(
            "t-failover",
            "failover",
            {
                "providers": [{"provider": "tw"}, {"provider": "agg"}],
                "delivery": "at_least_once",
            },
            datetime.now(UTC),
        )
    finally:
        engine.dispose()
    to = "+12025550213"
    real["tw"].reset(to, times=1)
    real["agg"].refuse(to, 503, {"error": {"code": "temporarily_unavailable", "message": "x"}})
    message_id = _send(gw, "t-failover", to, "settle-failover")
    sid = "SM" + "7f" * 16
    form = [("MessageSid", sid), ("MessageStatus", "delivered"), ("AccountSid", TWILIO_SID)]
    answers: list[int] = []
    real["agg"].during(to, lambda: answers.append(_callback(gw, message_id, form).status))
    gw.run_until_idle()
    assert answers == [202]  # parked, not 404
    view = gw.get_message("t-failover", message_id).body
    assert (view["status"], view["provider"], view["provider_message_id"]) == (
        "delivered",
        "tw",
        sid,
    )
    assert _outcomes(gw, message_id) == ["sent", "transient_error"]
    assert [r.method for r in real["tw"].requests] == ["POST", "GET"]
    assert _requests_to(real["agg"], to) == 1
    assert gw.queue_depth("send") == gw.queue_depth("dlq") == 0
