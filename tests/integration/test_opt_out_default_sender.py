"""Adversarial review of issue 7: opt-outs are keyed on (tenant, number, sender ID), and a
message without ``from`` goes out with its policy's ``default_sender_id``. A recipient who
answered STOP to that default (a send refused with Twilio 21610) has opted out of *that*
sender ID: the tenant's next message naming it explicitly in ``from`` must fail at the
intake without a provider call, as one without ``from`` does. On SQLite, PostgreSQL and
MariaDB.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from sms_gateway.storage.engine import make_engine
from sms_gateway.storage.repository import RoutePolicyRepository
from tests.integration import test_provider_outcomes as outcomes
from tests.support import Gateway

real = outcomes.real  # a Twilio provider ``tw`` (loopback fake)

NUMBER = "+12025550177"
SENDER = "+12025550100"


def test_an_opt_out_from_the_default_sender_id_stops_an_explicit_from_of_it(
    real: dict[str, Any],
) -> None:
    gw: Gateway = real["gateway"]
    engine = make_engine(gw.dsn)
    try:
        RoutePolicyRepository(engine).put(
            "t-sid",
            "direct",
            {"default_provider": "tw", "sender_ids": [SENDER], "default_sender_id": SENDER},
            datetime.now(UTC),
        )
    finally:
        engine.dispose()
    real["tw"].refuse(
        NUMBER, 400, {"code": 21610, "message": "unsubscribed recipient", "status": 400}
    )
    first = gw.post_message("t-sid", "dflt-1", {"to": NUMBER, "body": "hi"})
    assert first.status == 202, first.body
    gw.run_until_idle()
    view = gw.get_message("t-sid", str(first.body["message_id"])).body
    assert (view["status"], view["reason_code"], view["attempts"]) == ("failed", "opted_out", 1)
    [request] = real["tw"].requests
    assert dict(parse_qsl(request.body.decode()))["From"] == SENDER  # the default went out

    for key, fields in (("dflt-2", {}), ("dflt-3", {"from": SENDER})):
        again = gw.post_message("t-sid", key, {"to": NUMBER, "body": "hi", **fields})
        assert again.status == 202, again.body
        gw.run_until_idle()
        view = gw.get_message("t-sid", str(again.body["message_id"])).body
        assert (view["status"], view["reason_code"], view["attempts"]) == (
            "failed",
            "opted_out",
            0,
        ), key
    assert len(real["tw"].requests) == 1  # only the first send reached Twilio
