"""Per-tenant sender IDs (issue 7, security), through the whole gateway on SQLite, PostgreSQL
and MariaDB: a ``from`` the tenant's route policy does not list fails with
``sender_id_not_allowed`` and no provider call; a listed one is what the provider gets; a
message without ``from`` gets the policy's default.

Demo policies (``sms_gateway.storage.demo``): ``tenant-3`` lists ``ACME`` and
``+12025550100``; ``tenant-1`` lists ``DEMO1``, its default; ``tenant-2`` lists none.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from sms_gateway.local.cli import main
from sms_gateway.storage.engine import make_engine
from sms_gateway.storage.repository import RoutePolicyRepository
from tests.integration import test_provider_outcomes as outcomes
from tests.support import Gateway

real = outcomes.real  # a Twilio provider ``tw`` on a loopback fake


def _post(gw: Gateway, tenant: str, key: str, **fields: Any) -> str:
    answer = gw.post_message(tenant, key, {"to": "+12025550143", "body": "hi", **fields})
    assert answer.status == 202, answer.body
    return str(answer.body["message_id"])


def _refused(gw: Gateway, tenant: str, message_id: str) -> None:
    view = gw.get_message(tenant, message_id).body
    assert (view["status"], view["reason_code"], view["attempts"]) == (
        "failed",
        "sender_id_not_allowed",
        0,
    )
    assert gw.sends(message_id) == []  # no provider call
    assert gw.repo.attempts(message_id) == []
    assert gw.repo.events(message_id)[-1] == ("queued", "failed", "sender_id_not_allowed")


def test_a_from_without_a_list_is_refused_without_a_provider_call(gateway: Gateway) -> None:
    message_id = _post(gateway, "tenant-2", "sid-none", **{"from": "ACME"})
    gateway.run_until_idle()
    _refused(gateway, "tenant-2", message_id)
    assert gateway.queue_depth("send") == gateway.queue_depth("dlq") == 0


def test_another_tenants_sender_id_is_refused(gateway: Gateway) -> None:
    message_id = _post(gateway, "tenant-3", "sid-foreign", **{"from": "DEMO1"})
    gateway.run_until_idle()
    _refused(gateway, "tenant-3", message_id)


def test_a_listed_sender_id_is_what_the_provider_gets(gateway: Gateway) -> None:
    brand = _post(gateway, "tenant-3", "sid-brand", **{"from": "ACME"})
    number = _post(gateway, "tenant-3", "sid-number", **{"from": "+1 (202) 555-0100"})
    bare = _post(gateway, "tenant-3", "sid-bare")
    gateway.run_until_idle()
    for message_id in (brand, number, bare):
        assert gateway.get_message("tenant-3", message_id).body["status"] == "sent"
    assert [c.sender_id for c in gateway.sends(brand)] == ["ACME"]
    assert [c.sender_id for c in gateway.sends(number)] == ["+12025550100"]
    assert [c.sender_id for c in gateway.sends(bare)] == [None]  # no default: the provider's


def test_a_message_without_from_gets_the_policys_default(gateway: Gateway) -> None:
    message_id = _post(gateway, "tenant-1", "sid-default")
    gateway.run_until_idle()
    view = gateway.get_message("tenant-1", message_id).body
    assert (view["status"], view["attempts"], view["from"]) == ("sent", 2, None)
    assert [c.sender_id for c in gateway.sends(message_id)] == ["DEMO1", "DEMO1"]


def test_twilio_from_is_the_listed_sender_id_and_a_foreign_one_never_reaches_twilio(
    real: dict[str, Any],
) -> None:
    gw: Gateway = real["gateway"]
    engine = make_engine(gw.dsn)
    try:
        RoutePolicyRepository(engine).put(
            "t-tw-ids",
            "direct",
            {"default_provider": "tw", "sender_ids": ["+12025550100"]},
            datetime.now(UTC),
        )
    finally:
        engine.dispose()
    own = _post(gw, "t-tw-ids", "tw-own", **{"from": "+12025550100"})
    foreign = _post(gw, "t-tw-ids", "tw-foreign", **{"from": "+12025550111"})
    gw.run_until_idle()
    assert gw.get_message("t-tw-ids", own).body["status"] == "sent"
    view = gw.get_message("t-tw-ids", foreign).body
    assert (view["status"], view["reason_code"]) == ("failed", "sender_id_not_allowed")
    forms = [dict(parse_qsl(r.body.decode())) for r in real["tw"].requests]
    assert [f["From"] for f in forms] == ["+12025550100"]  # one request: the allowed one


def test_policy_command_names_the_bad_sender_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMS_GATEWAY_DEMO_PROVIDERS", "true")
    dsn = f"sqlite:///{tmp_path / 'ops.db'}"
    assert main(["migrate", "--dsn", dsn]) == 0
    bad = '{"default_provider": "provider-b", "sender_ids": ["ACME", "Not*Valid"]}'
    assert main(["policy", "acme", "direct", bad, "--dsn", dsn]) == 2
    err = capsys.readouterr().err
    assert "invalid policy: 'sender_ids'[1] ('Not*Valid')" in err
    good = '{"default_provider": "provider-b", "sender_ids": ["ACME"], "default_sender_id": "ACME"}'
    assert main(["policy", "acme", "direct", good, "--dsn", dsn]) == 0
