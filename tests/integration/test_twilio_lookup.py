"""Twilio's Messages list settles an attempt whose outcome is unknown before the sender
decides (issue 7, item 4), on SQLite, PostgreSQL and MariaDB: found -> the attempt is
``sent`` with that SID and nothing is sent again; not found or the lookup failing -> the
outcome stays unknown and the tenant's policy decides (at most once here: failed).

The loopback fake keeps the messages it created and serves the list as Twilio does
(``tests/provider_fakes.py``); ``reset(..., created=True)`` is the lost answer of a message
Twilio did create.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sms_gateway.providers.twilio import TRIAL_PREFIX, match_sid
from tests.integration import test_provider_outcomes as outcomes
from tests.support import Gateway

real = outcomes.real  # a Twilio provider ``tw`` (loopback fake) and tenant ``t-tw``


def _send(gw: Gateway, to: str, key: str) -> str:
    answer = gw.post_message("t-tw", key, {"to": to, "body": f"code {key}"})
    assert answer.status == 202, answer.body
    return str(answer.body["message_id"])


def test_a_message_twilio_created_is_found_and_not_sent_again(real: dict[str, Any]) -> None:
    gw: Gateway = real["gateway"]
    to = "+12025550231"
    real["tw"].reset(to, times=1, created=True)
    message_id = _send(gw, to, "lookup-found")
    gw.run_until_idle()
    [created] = real["tw"].created
    view = gw.get_message("t-tw", message_id).body
    assert (view["status"], view["provider_message_id"], view["attempts"]) == (
        "sent",
        created["sid"],
        1,
    )
    [attempt] = gw.repo.attempts(message_id)
    assert attempt.outcome == "sent"
    assert attempt.error_detail is not None
    assert attempt.error_detail.endswith("found by the provider's lookup")
    assert [r.method for r in real["tw"].requests] == ["POST", "GET"]
    query = dict(parse_qsl(urlsplit(real["tw"].requests[1].path).query))
    assert query == {"To": to, "From": "+12025550100", "PageSize": "20"}


def test_a_message_twilio_did_not_create_stays_unknown(real: dict[str, Any]) -> None:
    gw: Gateway = real["gateway"]
    to = "+12025550232"
    real["tw"].reset(to, times=1)
    message_id = _send(gw, to, "lookup-missing")
    gw.run_until_idle()
    view = gw.get_message("t-tw", message_id).body
    assert (view["status"], view["reason_code"]) == ("failed", "outcome_unknown")
    assert [a.outcome for a in gw.repo.attempts(message_id)] == ["unknown"]
    assert [r.method for r in real["tw"].requests] == ["POST", "GET"]


def test_a_failed_lookup_leaves_the_outcome_unknown(real: dict[str, Any]) -> None:
    gw: Gateway = real["gateway"]
    to = "+12025550233"
    real["tw"].reset(to, times=1, created=True)
    real["tw"].script.list_status = 500
    message_id = _send(gw, to, "lookup-broken")
    gw.run_until_idle()
    view = gw.get_message("t-tw", message_id).body
    assert (view["status"], view["reason_code"]) == ("failed", "outcome_unknown")
    assert [r.method for r in real["tw"].requests] == ["POST", "GET"]


# ---- the match itself (pure) -----------------------------------------------------------------

START = datetime(2026, 11, 30, 12, 0, 0, 400_000, tzinfo=UTC)


def _listed(sid: str, body: str, created: datetime) -> dict[str, Any]:
    return {"sid": sid, "body": body, "date_created": format_datetime(created, usegmt=True)}


def test_match_takes_the_one_message_with_the_body_created_since_the_start() -> None:
    listed = [
        _listed("SM3", "other text", START + timedelta(seconds=1)),
        _listed("SM2", "hello", START.replace(microsecond=0)),  # the same second, floored
        _listed("SM1", "hello", START - timedelta(seconds=30)),  # an earlier identical SMS
    ]
    assert match_sid(listed, "hello", START) == "SM2"


def test_match_accepts_the_trial_prefix_and_refuses_ambiguity() -> None:
    trial = [_listed("SM9", TRIAL_PREFIX + "hello", START + timedelta(seconds=1))]
    assert match_sid(trial, "hello", START) == "SM9"
    twice = [
        _listed("SM5", "hello", START + timedelta(seconds=1)),
        _listed("SM4", "hello", START + timedelta(seconds=2)),
    ]
    assert match_sid(twice, "hello", START) is None  # which one is ours is unknown
    assert match_sid([], "hello", START) is None
    assert match_sid([{"sid": "SM1", "body": "hello", "date_created": "?"}], "hello", START) is None
