"""Adversarial review of the Twilio lookup (issue 7): the Messages list is filtered by ``To``
and ``From`` only, so an identical SMS that *another* gateway message put there (another
tenant's, on the same account and configured number, or the same tenant's twin) matches an
attempt Twilio never received. Taking that SID records the attempt ``sent``: the message is
dropped (never sent, shown sent) and two messages answer to one provider message id.

The lookup must not take a SID the store (or the same batch) already gives another message:
the outcome stays unknown and the tenant's guarantee decides. On SQLite, PostgreSQL and
MariaDB.
"""

from __future__ import annotations

from email.utils import formatdate
from typing import Any

from tests.integration import test_provider_outcomes as outcomes
from tests.support import Gateway

real = outcomes.real  # Twilio ``tw`` / ``tw-short`` on one account, one configured From


def test_lookup_never_takes_another_tenants_message(real: dict[str, Any]) -> None:
    gw: Gateway = real["gateway"]
    tw = real["tw"]
    to = "+12025550291"
    body = {"to": to, "body": "Your parcel arrives today"}
    # tenant t-tw-short sends it first, normally: Twilio's SID is on that message
    other = gw.post_message("t-tw-short", "foreign-1", body)
    assert other.status == 202, other.body
    gw.run_until_idle()
    [theirs] = tw.created
    other_view = gw.get_message("t-tw-short", str(other.body["message_id"])).body
    assert (other_view["status"], other_view["provider_message_id"]) == ("sent", theirs["sid"])

    def concurrent() -> None:
        # no clock in the test: the other SMS is listed as created while ours is in flight
        # (another sender instance sent it a moment after ours began)
        theirs["date_created"] = formatdate(usegmt=True)

    # t-tw's identical SMS: the request arrives, Twilio creates nothing, no answer comes back
    tw.during(to, concurrent)
    tw.reset(to, times=1)
    mine = gw.post_message("t-tw", "foreign-2", body)
    assert mine.status == 202, mine.body
    gw.run_until_idle()

    assert len(tw.created) == 1  # Twilio holds one SMS: t-tw-short's
    view = gw.get_message("t-tw", str(mine.body["message_id"])).body
    # at most once, and nobody knows whether ours left: failed/outcome_unknown, no SID
    assert (view["status"], view["reason_code"], view["provider_message_id"]) == (
        "failed",
        "outcome_unknown",
        None,
    )
    assert [a.outcome for a in gw.repo.attempts(str(mine.body["message_id"]))] == ["unknown"]
    owner = gw.repo.find_by_provider_message_id(theirs["sid"], "tw-short")
    assert owner is not None and owner.id == other.body["message_id"]
