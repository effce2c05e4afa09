"""A Twilio status callback with ``ErrorCode`` 21610 (unsubscribed recipient) records the
number as opted out, the same record a send's 21610 answer makes (tenant, number, sender ID,
message, provider), on SQLite, PostgreSQL and MariaDB (issue 7, item 6)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

import pytest

from sms_gateway.local.cli import main
from tests.integration import test_provider_outcomes as outcomes
from tests.integration.test_provider_outcomes import _callback
from tests.support import Gateway

real = outcomes.real  # a Twilio provider ``tw`` (loopback fake) and tenant ``t-tw``

NUMBER = "+12025550188"


def _send(gw: Gateway, key: str) -> str:
    answer = gw.post_message("t-tw", key, {"to": NUMBER, "body": "hi"})
    assert answer.status == 202, answer.body
    return str(answer.body["message_id"])


def test_a_21610_callback_records_the_opt_out_and_later_sends_stop(
    real: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    gw: Gateway = real["gateway"]
    first = _send(gw, "optout-cb-1")
    gw.run_until_idle()
    sid = gw.get_message("t-tw", first).body["provider_message_id"]
    form = [("MessageSid", sid), ("MessageStatus", "undelivered"), ("ErrorCode", "21610")]
    assert _callback(gw, first, form).status == 200
    view = gw.get_message("t-tw", first).body
    assert (view["status"], view["reason_code"]) == ("failed", "opted_out")

    capsys.readouterr()
    assert main(["optout", "list", "--tenant", "t-tw", "--dsn", gw.dsn]) == 0
    [entry] = json.loads(capsys.readouterr().out)["opt_outs"]
    assert {
        k: entry[k] for k in ("tenant_id", "number", "sender_id", "message_id", "provider")
    } == {
        "tenant_id": "t-tw",
        "number": NUMBER,
        "sender_id": None,
        "message_id": first,
        "provider": "tw",
    }

    second = _send(gw, "optout-cb-2")
    gw.run_until_idle()
    view = gw.get_message("t-tw", second).body
    assert (view["status"], view["reason_code"], view["attempts"]) == ("failed", "opted_out", 0)
    tos = [dict(parse_qsl(r.body.decode()))["To"] for r in real["tw"].requests]
    assert tos == [NUMBER]  # only the first send reached Twilio


def test_another_failed_callback_records_no_opt_out(
    real: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    gw: Gateway = real["gateway"]
    first = _send(gw, "optout-cb-other")
    gw.run_until_idle()
    sid = gw.get_message("t-tw", first).body["provider_message_id"]
    form = [("MessageSid", sid), ("MessageStatus", "undelivered"), ("ErrorCode", "30003")]
    assert _callback(gw, first, form).status == 200
    capsys.readouterr()
    assert main(["optout", "list", "--dsn", gw.dsn]) == 0
    assert json.loads(capsys.readouterr().out) == {"opt_outs": []}
