"""Tenants as records (issue 11, item 1): a tenant id that survives key rotation, per-tenant
usage plans, and the admin commands, through the functions' own handlers (deployed
``api_key`` mode: API Gateway-shaped events carrying ``requestContext.identity.apiKeyId``)
over moto (DynamoDB's TenantsTable from template.yaml, API Gateway's usage plans) and SQL
on SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from sms_gateway import wiring
from sms_gateway.domain.states import MessageStatus
from sms_gateway.local.cli import main
from sms_gateway.storage.engine import make_engine
from sms_gateway.storage.repository import RoutePolicyRepository
from tests.conftest import SharedAws
from tests.integration.test_ingest import assert_problem
from tests.support import Gateway, HttpAnswer, api_event

STAGE = "dev"


@dataclass
class Deployed:
    """The gateway in api_key mode, with its REST API and stage in moto's API Gateway."""

    gw: Gateway
    apigw: Any
    api_id: str
    table: str

    def admin(self, command: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = self.gw.invoke("admin", command)
        return answer

    def send(self, key_id: str, idempotency_key: str, body: dict[str, Any]) -> HttpAnswer:
        headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key}
        event = api_event(
            "POST", "/v1/messages", body=json.dumps(body), headers=headers, api_key_id=key_id
        )
        return self.gw.api("ingest", event)

    def read(self, key_id: str, message_id: str) -> HttpAnswer:
        event = api_event(
            "GET",
            f"/v1/messages/{message_id}",
            path_parameters={"message_id": message_id},
            api_key_id=key_id,
        )
        return self.gw.api("status", event)


def _rest_api(apigw: Any) -> str:
    """A REST API with a deployed stage (a usage plan's apiStages must name one)."""
    api_id = str(apigw.create_rest_api(name="sms-gateway")["id"])
    root = apigw.get_resources(restApiId=api_id)["items"][0]["id"]
    apigw.put_method(restApiId=api_id, resourceId=root, httpMethod="GET", authorizationType="NONE")
    apigw.put_integration(restApiId=api_id, resourceId=root, httpMethod="GET", type="MOCK")
    apigw.create_deployment(restApiId=api_id, stageName=STAGE)
    return api_id


def _deployed(gw: Gateway, aws: SharedAws, monkeypatch: pytest.MonkeyPatch) -> Deployed:
    apigw = aws.session.client("apigateway")
    api_id = _rest_api(apigw)
    table = aws.resources.table_names["TenantsTable"]
    for name, value in {
        "SMS_GATEWAY_AUTH_MODE": "api_key",
        "SMS_GATEWAY_TENANTS_TABLE": table,
        "SMS_GATEWAY_TENANT_CACHE_TTL_SECONDS": "0",  # a revoke is seen by the next request
        "SMS_GATEWAY_API_ID": api_id,
        "SMS_GATEWAY_API_STAGE": STAGE,
    }.items():
        monkeypatch.setenv(name, value)
    wiring.reset()
    return Deployed(gw, apigw, api_id, table)


@pytest.fixture
def deployed(
    gateway: Gateway, moto_resources: SharedAws, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Deployed]:
    """api_key mode on each SQL dialect."""
    yield _deployed(gateway, moto_resources, monkeypatch)
    wiring.reset()


@pytest.fixture
def sqlite_deployed(
    sqlite_gateway: Gateway, moto_resources: SharedAws, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Deployed]:
    """api_key mode on SQLite only."""
    yield _deployed(sqlite_gateway, moto_resources, monkeypatch)
    wiring.reset()


HELLO = {"to": "+12025550143", "body": "hello"}


def test_key_rotation_keeps_the_tenants_messages_and_policy(deployed: Deployed) -> None:
    """Create a tenant, send with key 1, add key 2, revoke key 1: key 2 reads the old message
    and sends under the same route policy; key 1 is refused (403)."""
    d = deployed
    created = d.admin({"command": "tenant_create", "name": "Acme", "daily_quota": 500})
    tenant_id = created["tenant"]["tenant_id"]
    key1 = created["api_key"]["key_id"]
    assert created["api_key"]["value"]  # the secret, shown this once
    policy = {"default_provider": "provider-b"}
    answer = d.admin(
        {
            "command": "tenant_policy",
            "tenant_id": tenant_id,
            "strategy": "direct",
            "payload": policy,
        }
    )
    assert answer == {"tenant_id": tenant_id, "strategy": "direct", "version": 1}

    first = d.send(key1, "k-1", HELLO)
    assert first.status == 202, first.body
    d.gw.pump("sender")
    old_id = first.body["message_id"]

    key2 = d.admin({"command": "tenant_key_add", "tenant_id": tenant_id})["api_key"]["key_id"]
    assert key2 != key1
    revoked = d.admin({"command": "tenant_key_revoke", "tenant_id": tenant_id, "key_id": key1})
    assert (revoked["key_id"], revoked["state"]) == (key1, "revoked")

    old = d.read(key2, old_id)
    assert old.status == 200, old.body
    assert (old.body["status"], old.body["provider"]) == ("sent", "provider-b")

    second = d.send(key2, "k-2", {"to": "+12025550144", "body": "again"})
    assert second.status == 202, second.body
    d.gw.pump("sender")
    new = d.read(key2, second.body["message_id"])
    assert (new.body["status"], new.body["provider"]) == ("sent", "provider-b")
    # both rows are the tenant's, whichever key sent them
    for message_id in (old_id, second.body["message_id"]):
        stored = d.gw.repo.get(message_id)
        assert stored is not None
        assert stored.tenant_id == tenant_id
        assert stored.status is MessageStatus.SENT
    # provider-b got exactly the two messages
    assert [r.to for r in d.gw.providers["provider-b"].calls] == [
        "+12025550143",
        "+12025550144",
    ]

    for refused in (d.send(key1, "k-3", HELLO), d.read(key1, old_id)):
        assert_problem(refused, 403)
        assert refused.body["type"].endswith("api-key-not-active")
    # API Gateway refuses the revoked key too, and the new key is in the tenant's plan
    assert d.apigw.get_api_key(apiKey=key1)["enabled"] is False
    plan_id = created["tenant"]["usage_plan_id"]
    in_plan = {k["id"] for k in d.apigw.get_usage_plan_keys(usagePlanId=plan_id)["items"]}
    assert in_plan == {key1, key2}


def test_a_tenants_usage_plan_has_its_throttle_and_daily_quota(
    sqlite_deployed: Deployed,
) -> None:
    d = sqlite_deployed
    created = d.admin(
        {
            "command": "tenant_create",
            "name": "Beta",
            "tenant_id": "beta",
            "rate_limit": 5,
            "burst_limit": 10,
            "daily_quota": 1000,
        }
    )
    assert created["tenant"]["tenant_id"] == "beta"
    plan = d.apigw.get_usage_plan(usagePlanId=created["tenant"]["usage_plan_id"])
    assert plan["apiStages"] == [{"apiId": d.api_id, "stage": STAGE}]
    assert plan["throttle"] == {"rateLimit": 5.0, "burstLimit": 10}
    assert plan["quota"]["limit"] == 1000
    assert plan["quota"]["period"] == "DAY"

    shown = d.admin(
        {
            "command": "tenant_quota",
            "tenant_id": "beta",
            "rate_limit": 2,
            "burst_limit": 4,
            "daily_quota": 50,
        }
    )
    assert (shown["rate_limit"], shown["burst_limit"], shown["daily_quota"]) == (2.0, 4, 50)
    plan = d.apigw.get_usage_plan(usagePlanId=created["tenant"]["usage_plan_id"])
    assert plan["throttle"] == {"rateLimit": 2.0, "burstLimit": 4}
    assert plan["quota"]["limit"] == 50

    listed = d.admin({"command": "tenant_list"})["tenants"]
    assert [(t["tenant_id"], t["name"], t["daily_quota"]) for t in listed] == [("beta", "Beta", 50)]
    show = d.admin({"command": "tenant_show", "tenant_id": "beta"})
    assert [(k["key_id"], k["state"]) for k in show["keys"]] == [
        (created["api_key"]["key_id"], "active")
    ]


@pytest.mark.parametrize(
    ("command", "error"),
    [
        ({"command": "tenant_create", "name": "X", "tenant_id": "bad id"}, "tenant_id"),
        ({"command": "tenant_create", "name": "X", "rate_limit": 50, "burst_limit": 10}, "burst"),
        ({"command": "tenant_key_add", "tenant_id": "nobody"}, "no tenant nobody"),
        (
            {"command": "tenant_quota", "tenant_id": "beta", "rate_limit": 1},
            "burst_limit, daily_quota: required",
        ),
        (
            {"command": "tenant_key_revoke", "tenant_id": "beta", "key_id": "another"},
            "tenant beta has no API key another",
        ),
        (
            {
                "command": "tenant_policy",
                "tenant_id": "beta",
                "strategy": "direct",
                "payload": {"default_provider": "nope"},
            },
            "unknown provider(s) nope",
        ),
    ],
)
def test_a_bad_tenant_command_is_refused_and_changes_nothing(
    sqlite_deployed: Deployed, command: dict[str, Any], error: str
) -> None:
    d = sqlite_deployed
    d.admin({"command": "tenant_create", "name": "Beta", "tenant_id": "beta"})
    plans = d.apigw.get_usage_plans()["items"]
    keys = d.apigw.get_api_keys()["items"]
    answer = d.admin(command)
    assert set(answer) == {"error"}
    assert error in answer["error"]
    assert d.apigw.get_usage_plans()["items"] == plans
    assert len(d.apigw.get_api_keys()["items"]) == len(keys)
    engine = make_engine(d.gw.dsn)
    try:
        assert RoutePolicyRepository(engine).get("beta") is None
    finally:
        engine.dispose()


def test_an_unregistered_key_is_403_and_a_missing_key_401(sqlite_deployed: Deployed) -> None:
    d = sqlite_deployed
    unknown = d.send("not-a-tenant-key", "k", HELLO)
    assert_problem(unknown, 403)
    assert unknown.body["type"].endswith("api-key-not-active")
    assert_problem(d.send(None, "k", HELLO), 401)  # type: ignore[arg-type]
    assert d.gw.sqs.receive_message(QueueUrl=d.gw.send_queue_url).get("Messages") is None


def test_adopting_the_stacks_key_keeps_its_messages_and_policy(
    deployed: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An existing deployment: its tenant was the key id. Adopting the key makes a tenant with
    that id, so the messages and the policy recorded under it stay its own; giving it a quota
    moves its key from the stack's shared plan to a plan of its own."""
    d = deployed
    shared = d.apigw.create_usage_plan(
        name="stack-plan", apiStages=[{"apiId": d.api_id, "stage": STAGE}]
    )["id"]
    key_id = d.apigw.create_api_key(name="stack-key", enabled=True)["id"]
    d.apigw.create_usage_plan_key(usagePlanId=shared, keyId=key_id, keyType="API_KEY")
    engine = make_engine(d.gw.dsn)
    try:
        RoutePolicyRepository(engine).put(
            key_id, "direct", {"default_provider": "provider-b"}, d.gw.clock()
        )
    finally:
        engine.dispose()
    # before: the gateway of the last release, where a tenant id was the key id
    monkeypatch.setenv("SMS_GATEWAY_AUTH_MODE", "local")
    wiring.reset()
    before = d.gw.post_message(key_id, "k-old", HELLO)
    assert before.status == 202
    d.gw.pump("sender")
    monkeypatch.setenv("SMS_GATEWAY_AUTH_MODE", "api_key")
    wiring.reset()
    assert_problem(d.read(key_id, before.body["message_id"]), 403)  # not adopted yet

    adopted = d.admin({"command": "tenant_adopt", "key_id": key_id, "name": "First"})
    assert (adopted["tenant_id"], adopted["usage_plan_id"], adopted["shared_plan"]) == (
        key_id,
        shared,
        True,
    )
    old = d.read(key_id, before.body["message_id"])
    assert (old.status, old.body["status"], old.body["provider"]) == (200, "sent", "provider-b")
    after = d.send(key_id, "k-new", {"to": "+12025550144", "body": "after"})
    d.gw.pump("sender")
    assert d.read(key_id, after.body["message_id"]).body["provider"] == "provider-b"

    limited = d.admin(
        {
            "command": "tenant_quota",
            "tenant_id": key_id,
            "rate_limit": 1,
            "burst_limit": 2,
            "daily_quota": 100,
        }
    )
    assert limited["shared_plan"] is False
    own = limited["usage_plan_id"]
    assert own != shared
    assert d.apigw.get_usage_plans(keyId=key_id)["items"][0]["id"] == own
    assert d.apigw.get_usage_plan_keys(usagePlanId=shared)["items"] == []
    assert d.apigw.get_usage_plan(usagePlanId=own)["quota"]["limit"] == 100
    assert d.admin({"command": "tenant_adopt", "key_id": key_id, "name": "Again"}) == {
        "error": f"API key {key_id} is registered already"
    }


def test_adopting_with_limits_moves_the_key_at_once(sqlite_deployed: Deployed) -> None:
    d = sqlite_deployed
    shared = d.apigw.create_usage_plan(
        name="stack-plan", apiStages=[{"apiId": d.api_id, "stage": STAGE}]
    )["id"]
    key_id = d.apigw.create_api_key(name="stack-key", enabled=True)["id"]
    d.apigw.create_usage_plan_key(usagePlanId=shared, keyId=key_id, keyType="API_KEY")
    adopted = d.admin(
        {
            "command": "tenant_adopt",
            "key_id": key_id,
            "name": "First",
            "rate_limit": 3,
            "burst_limit": 6,
            "daily_quota": 300,
        }
    )
    assert adopted["shared_plan"] is False
    assert [p["id"] for p in d.apigw.get_usage_plans(keyId=key_id)["items"]] == [
        adopted["usage_plan_id"]
    ]
    lonely = d.apigw.create_api_key(name="in-no-plan", enabled=True)["id"]
    refused = d.admin({"command": "tenant_adopt", "key_id": lonely, "name": "Lonely"})
    assert "is in no usage plan of this stage" in refused["error"]


def test_the_readme_commands(
    sqlite_deployed: Deployed, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator's month in the README: onboard a tenant, set its policy and quota, rotate
    its key, with ``sms-gateway admin tenant ...`` (the same code as the AdminFunction)."""
    d = sqlite_deployed
    monkeypatch.setenv("SMS_GATEWAY_MESSAGE_DSN", d.gw.dsn)
    monkeypatch.setenv("AWS_REGION", "us-east-1")

    def run(*argv: str) -> dict[str, Any]:
        capsys.readouterr()  # the handlers' log lines so far
        assert main(list(argv)) == 0
        out: dict[str, Any] = json.loads(capsys.readouterr().out)
        return out

    created = run(
        "admin", "tenant", "create", "Acme", "--tenant-id", "acme", "--rate", "10",
        "--burst", "20", "--quota", "10000",
    )  # fmt: skip
    old_key = created["api_key"]["key_id"]
    policy = run(
        "admin", "tenant", "policy", "acme", "direct", '{"default_provider": "provider-b"}'
    )
    assert policy["version"] == 1
    quota = run(
        "admin", "tenant", "quota", "acme", "--rate", "5", "--burst", "10", "--quota", "2000"
    )
    assert quota["daily_quota"] == 2000
    new_key = run("admin", "tenant", "key", "add", "acme")["api_key"]["key_id"]
    assert run("admin", "tenant", "key", "revoke", "acme", old_key)["state"] == "revoked"
    shown = run("admin", "tenant", "show", "acme")
    assert {k["key_id"]: k["state"] for k in shown["keys"]} == {
        old_key: "revoked",
        new_key: "active",
    }
    sent = d.send(new_key, "k", HELLO)
    assert sent.status == 202
    d.gw.pump("sender")
    assert d.read(new_key, sent.body["message_id"]).body["provider"] == "provider-b"
    assert_problem(d.send(old_key, "k2", HELLO), 403)
    assert [t["tenant_id"] for t in run("admin", "tenant", "list")["tenants"]] == ["acme"]
    # an existing deployment's key (the stack's, in its original plan) adopted
    shared = d.apigw.create_usage_plan(
        name="stack-plan", apiStages=[{"apiId": d.api_id, "stage": STAGE}]
    )["id"]
    stack_key = d.apigw.create_api_key(name="stack-key", enabled=True)["id"]
    d.apigw.create_usage_plan_key(usagePlanId=shared, keyId=stack_key, keyType="API_KEY")
    adopted = run("admin", "tenant", "adopt", stack_key, "First tenant")
    assert (adopted["tenant_id"], adopted["shared_plan"]) == (stack_key, True)
    # bad input: exit 2, a message on stderr, nothing done
    assert main(["admin", "tenant", "key", "revoke", "acme", "nope"]) == 2
    assert "tenant acme has no API key nope" in capsys.readouterr().err


def test_without_the_tenant_settings_the_admin_function_says_which(
    sqlite_gateway: Gateway, moto_resources: SharedAws
) -> None:
    assert sqlite_gateway.invoke("admin", {"command": "tenant_list"}) == {
        "error": "SMS_GATEWAY_TENANTS_TABLE, SMS_GATEWAY_API_ID, SMS_GATEWAY_API_STAGE must be "
        "set for the tenant commands"
    }


def test_an_unreadable_tenants_table_is_503_not_403(
    sqlite_deployed: Deployed, moto_resources: SharedAws
) -> None:
    """DynamoDB refusing the key lookup is the gateway's outage, not the caller's fault: 503
    with Retry-After (the client retries with the same Idempotency-Key); nothing is queued."""
    d = sqlite_deployed
    key = d.admin({"command": "tenant_create", "name": "Acme"})["api_key"]["key_id"]
    dynamodb = moto_resources.dynamodb
    described = dynamodb.describe_table(TableName=d.table)["Table"]
    dynamodb.delete_table(TableName=d.table)  # ResourceNotFoundException from now on
    try:
        answer = d.send(key, "k", HELLO)
    finally:
        dynamodb.create_table(
            TableName=d.table,
            KeySchema=described["KeySchema"],
            AttributeDefinitions=described["AttributeDefinitions"],
            BillingMode="PAY_PER_REQUEST",
        )
    assert_problem(answer, 503)
    assert answer.body["type"].endswith("dependency-unavailable")
    assert answer.headers["retry-after"] == "5"
    assert d.gw.sqs.receive_message(QueueUrl=d.gw.send_queue_url).get("Messages") is None
