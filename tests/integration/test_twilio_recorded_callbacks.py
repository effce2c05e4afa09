"""Recorded Twilio status callbacks (``tests/cases/twilio_callbacks``, personal data
replaced) replayed through ``POST /v1/receipts/twilio/{provider}``, signed as Twilio signs,
on SQLite, PostgreSQL and MariaDB: each ends its message in the state its file's row in that
folder's README says (issue 7, item 7)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from sms_gateway.local.cli import main
from tests.integration import test_provider_outcomes as outcomes
from tests.integration.test_provider_outcomes import _callback
from tests.provider_fakes import TWILIO_SID
from tests.support import Gateway

real = outcomes.real  # a Twilio provider ``tw`` (loopback fake) and tenant ``t-tw``

RECORDED = Path(__file__).resolve().parents[1] / "cases" / "twilio_callbacks"
RECORDED_SID = "SM" + "0" * 32
# file -> (status, reason_code) the message ends in: the folder README's table
EXPECTED: dict[str, tuple[str, str | None]] = {
    "sent.form": ("sent", None),
    "delivered.form": ("delivered", None),
    "undelivered-30003.form": ("failed", "invalid_number"),
    "failed-30007.form": ("failed", "recipient_blacklisted"),
    "undelivered-21610.form": ("failed", "opted_out"),
}


def test_every_recorded_callback_has_its_expectation() -> None:
    assert {p.name for p in RECORDED.glob("*.form")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_recorded_callback_ends_the_message_in_its_state(
    real: dict[str, Any], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    gw: Gateway = real["gateway"]
    raw = (RECORDED / name).read_text(encoding="ascii")
    form = parse_qsl(raw, keep_blank_values=True, strict_parsing=True)
    fields = dict(form)
    assert fields["AccountSid"] == TWILIO_SID and fields["MessageSid"] == RECORDED_SID
    to = fields["To"]
    answer = gw.post_message("t-tw", f"recorded-{name}", {"to": to, "body": "hi"})
    message_id = str(answer.body["message_id"])
    gw.run_until_idle()
    sid = gw.get_message("t-tw", message_id).body["provider_message_id"]
    replayed = [(k, sid if v == RECORDED_SID else v) for k, v in form]

    reply = _callback(gw, message_id, replayed)
    assert reply.status == 200, reply.body
    view = gw.get_message("t-tw", message_id).body
    assert (view["status"], view["reason_code"]) == EXPECTED[name]
    if "ErrorCode" in fields:
        assert view["reason_detail"] == f"receipt: failed (twilio:{fields['ErrorCode']})"
    capsys.readouterr()
    assert main(["optout", "list", "--tenant", "t-tw", "--dsn", gw.dsn]) == 0
    numbers = [e["number"] for e in json.loads(capsys.readouterr().out)["opt_outs"]]
    assert numbers == ([to] if EXPECTED[name][1] == "opted_out" else [])
