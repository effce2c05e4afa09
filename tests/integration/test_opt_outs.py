"""Opt-outs respected (issue 7, item 6), on SQLite, PostgreSQL and MariaDB: a provider's
``opted_out`` answer records the number for the tenant and sender ID; later sends to it fail
at once with reason ``opted_out`` and no provider call, until ``sms-gateway optout clear``.

The provider is the HTTP aggregator type on a loopback fake (``tests/provider_fakes.py``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters

from sms_gateway import wiring
from sms_gateway.local.cli import main
from sms_gateway.storage.engine import make_engine
from sms_gateway.storage.repository import RoutePolicyRepository
from tests.provider_fakes import AGGREGATOR_SECRET, fake_server
from tests.support import Gateway

NUMBER = "+12025550166"
OPTED_OUT = {"error": {"code": "opted_out", "message": "recipient replied STOP"}}


@pytest.fixture
def agg(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An ``agg`` provider (HTTP aggregator fake) for tenants ``t-a`` and ``t-b``."""
    sm = boto3.client("secretsmanager")
    try:
        sm.create_secret(Name="gw/agg", SecretString=AGGREGATOR_SECRET)
    except sm.exceptions.ResourceExistsException:
        sm.put_secret_value(SecretId="gw/agg", SecretString=AGGREGATOR_SECRET)
    parameters.clear_caches()
    with fake_server("http") as fake:
        providers = {
            "agg": {
                "type": "http",
                "url": fake.base_url + "/send",
                "signing_secret": "secretsmanager:gw/agg",
                "read_timeout": 10,
            }
        }
        monkeypatch.setenv("SMS_GATEWAY_PROVIDERS", json.dumps(providers))
        engine = make_engine(gateway.dsn)
        try:
            policies = RoutePolicyRepository(engine)
            for tenant in ("t-a", "t-b"):
                policies.put(tenant, "direct", {"default_provider": "agg"}, datetime.now(UTC))
        finally:
            engine.dispose()
        wiring.reset()
        yield fake
    parameters.clear_caches()


def _send(gw: Gateway, tenant: str, key: str, to: str = NUMBER) -> str:
    answer = gw.post_message(tenant, key, {"to": to, "body": "hi"})
    assert answer.status == 202, answer.body
    return str(answer.body["message_id"])


def _state(gw: Gateway, tenant: str, message_id: str) -> tuple[str, str | None, int]:
    view = gw.get_message(tenant, message_id).body
    return view["status"], view["reason_code"], view["attempts"]


def _optout(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(["optout", *args])
    return code, json.loads(capsys.readouterr().out)


def test_opted_out_answer_is_recorded_and_respected_until_cleared(
    gateway: Gateway, agg: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = gateway
    agg.refuse(NUMBER, 400, OPTED_OUT)
    first = _send(gw, "t-a", "k1")
    gw.run_until_idle()
    assert _state(gw, "t-a", first) == ("failed", "opted_out", 1)
    assert len(agg.requests) == 1

    # recorded for t-a, this number, no sender ID, from that message's answer
    code, listed = _optout(capsys, "list", "--tenant", "t-a", "--dsn", gw.dsn)
    assert code == 0
    [entry] = listed["opt_outs"]
    assert {k: entry[k] for k in ("tenant_id", "number", "sender_id", "message_id")} == {
        "tenant_id": "t-a",
        "number": NUMBER,
        "sender_id": None,
        "message_id": first,
    }
    assert entry["provider"] == "agg"

    # the recipient opted back in at the provider: only our record still stops the sends
    agg.script.refusals.clear()
    # in one batch: two sends to the opted-out number and one to another number
    second = _send(gw, "t-a", "k2")
    third = _send(gw, "t-a", "k3")
    other = _send(gw, "t-a", "k4", to="+12025550167")
    gw.run_until_idle()
    for message_id in (second, third):
        assert _state(gw, "t-a", message_id) == ("failed", "opted_out", 0)
        assert gw.repo.attempts(message_id) == []
        assert gw.repo.events(message_id)[-1] == ("queued", "failed", "opted_out")
    assert _state(gw, "t-a", other) == ("sent", None, 1)
    assert [json.loads(r.body)["to"] for r in agg.requests[1:]] == ["+12025550167"]

    # another tenant's send to the same number is not affected
    foreign = _send(gw, "t-b", "k5")
    gw.run_until_idle()
    assert _state(gw, "t-b", foreign) == ("sent", None, 1)
    assert len(agg.requests) == 3

    # cleared by the operator: sent again, with a provider call
    code, cleared = _optout(capsys, "clear", "t-a", NUMBER, "--dsn", gw.dsn)
    assert (code, cleared["cleared"]) == (0, 1)
    assert _optout(capsys, "list", "--dsn", gw.dsn)[1] == {"opt_outs": []}
    again = _send(gw, "t-a", "k6")
    gw.run_until_idle()
    assert _state(gw, "t-a", again) == ("sent", None, 1)
    assert len(agg.requests) == 4
    # clearing what is not there says so (exit 1)
    assert _optout(capsys, "clear", "t-a", NUMBER, "--dsn", gw.dsn) == (
        1,
        {"tenant_id": "t-a", "number": NUMBER, "cleared": 0},
    )
