"""The ``SharedPlanKeysAdoption`` custom resource (template.yaml, served by AdminFunction): on
Create and Update it adopts each key of the stack's shared usage plan that has no tenant
record, so an upgraded stack's keys keep working without ``tenant adopt``. CloudFormation's
side: the request in, the response PUT to the pre-signed ResponseURL (an HTTP server on
loopback); AWS's: moto's API Gateway and the TenantsTable from template.yaml.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from sms_gateway import wiring
from sms_gateway.adapters.apigateway_plans import ApiGatewayUsagePlans
from sms_gateway.adapters.aws import dynamodb_client
from sms_gateway.adapters.dynamodb_tenants import DynamoDbTenantStore
from sms_gateway.domain.tenants import KeyRecord, Tenant
from tests.conftest import SharedAws
from tests.integration.test_tenants import HELLO, STAGE, Deployed, _deployed
from tests.support import FakeLambdaContext, Gateway, ResponseCatcher, sample


@pytest.fixture
def sqlite_deployed(
    sqlite_gateway: Gateway, moto_resources: SharedAws, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Deployed]:
    """api_key mode on SQLite (the adoption writes no SQL)."""
    yield _deployed(sqlite_gateway, moto_resources, monkeypatch)
    wiring.reset()


@pytest.fixture
def catcher() -> Iterator[ResponseCatcher]:
    with ResponseCatcher().serving() as running:
        yield running


def _request(catcher: ResponseCatcher, kind: str, plan_id: str | None) -> dict[str, Any]:
    event = copy.deepcopy(sample("migrate-create.json"))
    event["RequestType"] = kind
    event["ResponseURL"] = f"{catcher.url}/response?X-Amz-Signature=abc"
    event["LogicalResourceId"] = "SharedPlanKeysAdoption"
    event["ResourceType"] = "Custom::SharedPlanKeysAdoption"
    properties = event["ResourceProperties"]
    properties["ServiceToken"] = "arn:aws:lambda:us-east-1:123456789012:function:admin"
    if plan_id is not None:
        properties["UsagePlanId"] = plan_id
    if kind != "Create":
        event["PhysicalResourceId"] = "sms-gateway-shared-plan-keys-adoption"
    return event


def _shared_plan(d: Deployed, *names: str) -> tuple[str, list[str]]:
    """The stack's shared plan (as SAM makes it: the API's stage, a throttle, no quota) with
    one key per name."""
    plan = d.apigw.create_usage_plan(
        name="sms-gateway-SmsApiUsagePlan",
        apiStages=[{"apiId": d.api_id, "stage": STAGE}],
        throttle={"rateLimit": 100.0, "burstLimit": 200},
    )["id"]
    keys = []
    for name in names:
        key_id = d.apigw.create_api_key(name=name, enabled=True)["id"]
        d.apigw.create_usage_plan_key(usagePlanId=plan, keyId=key_id, keyType="API_KEY")
        keys.append(key_id)
    return str(plan), keys


def _answer(catcher: ResponseCatcher) -> dict[str, Any]:
    assert len(catcher.requests) == 1
    put = catcher.requests.pop()
    assert put["path"] == "/response?X-Amz-Signature=abc"
    assert put["headers"].get("Content-Type", "") == ""
    body: dict[str, Any] = put["body"]
    return body


def test_adopts_the_unrecorded_key_only_and_a_second_run_adopts_nothing(
    sqlite_deployed: Deployed, catcher: ResponseCatcher
) -> None:
    """Two keys on the shared plan, one of them adopted then revoked by an operator: the
    resource adopts the other only (the revoked one stays revoked), and it sends at once;
    an Update afterwards finds nothing to do."""
    d = sqlite_deployed
    plan, (revoked, stacks_own) = _shared_plan(d, "operator-key", "sms-gateway-SmsApiApiKey")
    d.admin({"command": "tenant_adopt", "key_id": revoked, "name": "Old"})
    d.admin({"command": "tenant_key_revoke", "tenant_id": revoked, "key_id": revoked})
    assert d.send(stacks_own, "k-before", HELLO).status == 403  # the upgrade's outage

    outcome = d.gw.invoke("admin", _request(catcher, "Create", plan))

    answer = _answer(catcher)
    assert outcome == {"Status": "SUCCESS", "Reason": answer["Reason"]}
    assert answer["Status"] == "SUCCESS"
    assert answer["Data"] == {"Keys": "2", "Adopted": "1", "RecordedBefore": "1"}
    assert answer["PhysicalResourceId"] == "sms-gateway-shared-plan-keys-adoption"
    assert answer["LogicalResourceId"] == "SharedPlanKeysAdoption"
    assert answer["RequestId"] == "7f1b1a7e-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
    tenant = d.admin({"command": "tenant_show", "tenant_id": stacks_own})
    assert (tenant["name"], tenant["usage_plan_id"], tenant["shared_plan"]) == (
        "sms-gateway-SmsApiApiKey",
        plan,
        True,
    )
    assert [(k["key_id"], k["state"]) for k in tenant["keys"]] == [(stacks_own, "active")]
    old = d.admin({"command": "tenant_show", "tenant_id": revoked})
    assert [(k["key_id"], k["state"]) for k in old["keys"]] == [(revoked, "revoked")]
    assert d.send(stacks_own, "k-after", HELLO).status == 202
    assert d.send(revoked, "k-revoked", HELLO).status == 403
    # the key stays in the shared plan: adoption moves nothing
    keys = d.apigw.get_usage_plan_keys(usagePlanId=plan)["items"]
    assert sorted(k["id"] for k in keys) == sorted([revoked, stacks_own])

    again = d.gw.invoke("admin", _request(catcher, "Update", plan))

    assert again["Status"] == "SUCCESS"
    assert _answer(catcher)["Data"] == {"Keys": "2", "Adopted": "0", "RecordedBefore": "2"}
    assert len(d.admin({"command": "tenant_list"})["tenants"]) == 2


def test_an_adoption_cut_short_is_finished_by_the_next_run(
    sqlite_deployed: Deployed, catcher: ResponseCatcher
) -> None:
    """A run stopped between a tenant's record and its key's (the function timed out): the
    tenant exists, its key has no record (403). The next deploy's run writes the key's."""
    d = sqlite_deployed
    plan, (key_id,) = _shared_plan(d, "stack-key")
    store = DynamoDbTenantStore(dynamodb_client(), d.table)
    store.create_tenant(Tenant(key_id, "stack-key", plan, None, d.gw.clock(), shared_plan=True))
    assert d.send(key_id, "k-before", HELLO).status == 403

    d.gw.invoke("admin", _request(catcher, "Update", plan))

    assert _answer(catcher)["Data"] == {"Keys": "1", "Adopted": "1", "RecordedBefore": "0"}
    assert d.send(key_id, "k-after", HELLO).status == 202
    assert len(d.admin({"command": "tenant_list"})["tenants"]) == 1


def test_without_the_plan_id_it_answers_failed_and_adopts_nothing(
    sqlite_deployed: Deployed, catcher: ResponseCatcher
) -> None:
    """CloudFormation fails the resource and rolls the deploy back on FAILED."""
    d = sqlite_deployed
    _shared_plan(d, "stack-key")

    outcome = d.gw.invoke("admin", _request(catcher, "Create", None))

    answer = _answer(catcher)
    assert (outcome["Status"], answer["Status"], answer["Data"]) == ("FAILED", "FAILED", {})
    assert answer["Reason"] == "property UsagePlanId is missing"
    assert d.admin({"command": "tenant_list"}) == {"tenants": []}


def test_a_failure_halfway_answers_failed_and_the_next_run_adopts_the_rest(
    sqlite_deployed: Deployed, catcher: ResponseCatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DynamoDB refuses the second key's record (its tenant's was written): FAILED, the
    deploy rolls back, the first key stays adopted. The next deploy's run (Create again, the
    resource having been rolled back) adopts the second and leaves the first alone."""
    d = sqlite_deployed
    plan, (first, second) = _shared_plan(d, "stack-key", "operator-key")
    real_create_key = DynamoDbTenantStore.create_key

    def throttled(store: DynamoDbTenantStore, key: KeyRecord) -> None:
        if key.key_id == second:
            error = {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}
            raise ClientError({"Error": error}, "PutItem")
        real_create_key(store, key)

    monkeypatch.setattr(DynamoDbTenantStore, "create_key", throttled)
    failed_run = d.gw.invoke("admin", _request(catcher, "Create", plan))
    failed = _answer(catcher)

    assert (failed_run["Status"], failed["Status"], failed["Data"]) == ("FAILED", "FAILED", {})
    assert failed["Reason"] == (
        f"adopting the keys of usage plan {plan} failed: ClientError: An error occurred "
        "(ProvisionedThroughputExceededException) when calling the PutItem operation: slow down"
    )
    assert d.send(first, "k-first", HELLO).status == 202
    assert d.send(second, "k-second", HELLO).status == 403

    monkeypatch.setattr(DynamoDbTenantStore, "create_key", real_create_key)
    assert d.gw.invoke("admin", _request(catcher, "Create", plan))["Status"] == "SUCCESS"
    assert _answer(catcher)["Data"] == {"Keys": "2", "Adopted": "1", "RecordedBefore": "1"}
    assert d.send(second, "k-second-after", HELLO).status == 202
    assert len(d.admin({"command": "tenant_list"})["tenants"]) == 2


class _LastSeconds(FakeLambdaContext):
    """An invocation with 5 s left: less than the function keeps to answer."""

    def get_remaining_time_in_millis(self) -> int:
        return 5_000


def test_out_of_time_it_answers_failed_rather_than_not_at_all(
    sqlite_deployed: Deployed, catcher: ResponseCatcher
) -> None:
    """Without an answer CloudFormation would wait an hour: the function stops adopting when
    its time runs short and answers FAILED; the next deploy adopts the rest."""
    d = sqlite_deployed
    plan, (key_id,) = _shared_plan(d, "stack-key")
    handler = d.gw.handlers["admin"].lambda_handler

    outcome = handler(_request(catcher, "Create", plan), _LastSeconds("admin"))

    answer = _answer(catcher)
    assert (outcome["Status"], answer["Status"]) == ("FAILED", "FAILED")
    assert answer["Reason"] == (
        f"adopting the keys of usage plan {plan} failed: AdoptionIncomplete: out of time after "
        f"adopting 0 of the 1 keys of usage plan {plan}: the next run adopts the rest"
    )
    assert d.admin({"command": "tenant_list"}) == {"tenants": []}
    assert d.gw.invoke("admin", _request(catcher, "Create", plan))["Status"] == "SUCCESS"
    assert _answer(catcher)["Data"]["Adopted"] == "1"
    assert d.send(key_id, "k", HELLO).status == 202


def test_delete_does_nothing(sqlite_deployed: Deployed, catcher: ResponseCatcher) -> None:
    d = sqlite_deployed
    plan, _ = _shared_plan(d, "stack-key")

    outcome = d.gw.invoke("admin", _request(catcher, "Delete", plan))

    assert outcome["Status"] == "SUCCESS"
    assert _answer(catcher)["Status"] == "SUCCESS"
    assert d.admin({"command": "tenant_list"}) == {"tenants": []}


def test_the_plans_keys_are_read_page_by_page() -> None:
    """GetUsagePlanKeys answers a page and a ``position``; every page is read, and the key
    values it carries are not kept."""
    import boto3

    client = boto3.client("apigateway", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_response(
            "get_usage_plan_keys",
            {
                "items": [{"id": "k1", "type": "API_KEY", "value": "secret1", "name": "one"}],
                "position": "p2",
            },
            {"usagePlanId": "plan1"},
        )
        stub.add_response(
            "get_usage_plan_keys",
            {"items": [{"id": "k2", "type": "API_KEY", "value": "secret2"}]},
            {"usagePlanId": "plan1", "position": "p2"},
        )
        keys = ApiGatewayUsagePlans(client, "api1", STAGE).keys_of_plan("plan1")
        stub.assert_no_pending_responses()
    assert keys == [("k1", "one"), ("k2", "")]
