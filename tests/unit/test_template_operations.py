"""template.yaml: the receipts route's protection (issue 11, item 4) and the retention
schedule (item 5). POST /v1/receipts takes
no API key, so the usage plan's throttling never applies to it: the stage throttles it, and
an optional WAF rate-based rule limits each source IP.

Checked on the template as written and on what SAM's translator makes of it (the Stage's
MethodSettings, the web ACL association's stage ARN), with the route's path taken from the
function's own event, so moving the route without moving its protection fails here.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

from sms_gateway.local.template import Resolver, SamTemplate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def template() -> SamTemplate:
    return SamTemplate.from_file(ROOT / "template.yaml")


def _receipts_route(template: SamTemplate) -> tuple[str, str]:
    (route,) = [
        r for spec in template.functions() for r in spec.api_routes if r.path.endswith("/receipts")
    ]
    return route.method, route.path


def _translated(parameters: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The template after SAM's transform (what CloudFormation deploys)."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    document = yaml_parse((ROOT / "template.yaml").read_text(encoding="utf-8"))
    document = copy.deepcopy(document)
    for resource in document["Resources"].values():  # what sam build/package would put there
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://bucket/function.zip"
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            resource["Properties"]["ContentUri"] = "s3://bucket/layer.zip"

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    translated: dict[str, Any] = transform(document, parameters, NoManagedPolicies())
    return translated


def test_the_stage_throttles_the_receipts_route(
    template: SamTemplate, monkeypatch: pytest.MonkeyPatch
) -> None:
    method, path = _receipts_route(template)
    resources = _translated({}, monkeypatch)["Resources"]
    (stage,) = [r for r in resources.values() if r["Type"] == "AWS::ApiGateway::Stage"]
    settings = stage["Properties"]["MethodSettings"]
    # a MethodSetting names the resource as "/" + its path with each "/" written "~1"
    (receipts,) = [s for s in settings if s["ResourcePath"] == "/" + path.replace("/", "~1")]
    assert receipts == {
        "ResourcePath": "/~1v1~1receipts",
        "HttpMethod": method,
        "ThrottlingRateLimit": {"Ref": "ReceiptsRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "ReceiptsBurstLimit"},
    }
    # every route without an API key (providers' receipts, Twilio's callbacks) is throttled
    keyless = {
        "/" + e["Properties"]["Path"].replace("/", "~1")
        for e in template.resources["StatusFunction"]["Properties"]["Events"].values()
        if e["Properties"].get("Auth") == {"ApiKeyRequired": False}
    }
    assert keyless == {"/~1v1~1receipts", "/~1v1~1receipts~1twilio~1{provider}"}
    throttled = {
        s["ResourcePath"]
        for s in settings
        if s["ThrottlingRateLimit"] == {"Ref": "ReceiptsRateLimit"}
    }
    assert keyless <= throttled
    resolver = Resolver(template)
    rate = int(resolver.resolve({"Ref": "ReceiptsRateLimit"}))
    burst = int(resolver.resolve({"Ref": "ReceiptsBurstLimit"}))
    assert 1 <= rate <= burst
    # the usage plan (tenants' keys) is not what protects it: the route takes no key
    receipt_event = template.resources["StatusFunction"]["Properties"]["Events"]["PostReceipt"]
    assert receipt_event["Properties"]["Auth"] == {"ApiKeyRequired": False}


@pytest.mark.parametrize(("limit", "enabled"), [("0", False), ("200", True)])
def test_the_waf_rule_exists_only_when_asked_for(
    template: SamTemplate, limit: str, enabled: bool
) -> None:
    resolver = Resolver(template, parameter_overrides={"ReceiptsWafRateLimit": limit})
    for logical_id in ("ReceiptsWebAcl", "ReceiptsWebAclAssociation"):
        assert resolver.condition(template.resources[logical_id]["Condition"]) is enabled
    assert resolver.resolve({"Ref": "ReceiptsWafRateLimit"}) == limit


def test_the_waf_rule_limits_receipts_per_ip_and_nothing_else(template: SamTemplate) -> None:
    _method, path = _receipts_route(template)
    acl = template.resources["ReceiptsWebAcl"]["Properties"]
    assert acl["Scope"] == "REGIONAL"
    assert acl["DefaultAction"] == {"Allow": {}}
    (rule,) = acl["Rules"]
    assert rule["Action"] == {"Block": {}}
    rated = rule["Statement"]["RateBasedStatement"]
    assert rated["Limit"] == {"Ref": "ReceiptsWafRateLimit"}
    assert rated["AggregateKeyType"] == "IP"
    match = rated["ScopeDownStatement"]["ByteMatchStatement"]
    assert match["FieldToMatch"] == {"UriPath": {}}
    assert (match["PositionalConstraint"], match["SearchString"]) == ("CONTAINS", path)
    stage = Resolver(template).resolve({"Ref": "Stage"})
    for route in (path, f"{path}/twilio/twilio-us"):  # the receipts and Twilio's callbacks
        assert match["SearchString"] in f"/{stage}{route}"
    for other in ("/v1/messages", "/v1/messages/m-1", "/v1/messages/m-1/cancel"):
        assert match["SearchString"] not in f"/{stage}{other}"


def test_the_web_acl_is_attached_to_the_api_stage(
    template: SamTemplate, monkeypatch: pytest.MonkeyPatch
) -> None:
    resources = _translated({"ReceiptsWafRateLimit": 200}, monkeypatch)["Resources"]
    (stage_id,) = [k for k, r in resources.items() if r["Type"] == "AWS::ApiGateway::Stage"]
    association = resources["ReceiptsWebAclAssociation"]["Properties"]
    assert association["WebACLArn"] == {"Fn::GetAtt": ["ReceiptsWebAcl", "Arn"]}
    assert association["ResourceArn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}::/restapis/${SmsApi}"
        f"/stages/${{{stage_id}}}"
    }


def test_retention_runs_on_an_eventbridge_scheduler_schedule(
    template: SamTemplate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(issue 11, item 5) The RetentionFunction is invoked by EventBridge Scheduler (SAM's
    ScheduleV2), inside the VPC like the other SQL functions, with the template's periods."""
    function = template.resources["RetentionFunction"]["Properties"]
    (event,) = function["Events"].values()
    assert event["Type"] == "ScheduleV2"
    assert event["Properties"]["ScheduleExpression"] == {"Ref": "RetentionSchedule"}
    env = function["Environment"]["Variables"]
    assert env["SMS_GATEWAY_REDACT_AFTER_DAYS"] == {"Ref": "RedactAfterDays"}
    assert env["SMS_GATEWAY_DELETE_AFTER_DAYS"] == {"Ref": "DeleteAfterDays"}
    assert env["SMS_GATEWAY_AUDIT_AFTER_DAYS"] == {"Ref": "AuditAfterDays"}
    assert function["VpcConfig"] == template.resources["SenderFunction"]["Properties"]["VpcConfig"]
    resolver = Resolver(template)
    assert int(resolver.resolve({"Ref": "RedactAfterDays"})) <= int(
        resolver.resolve({"Ref": "DeleteAfterDays"})
    )
    assert int(resolver.resolve({"Ref": "DeleteAfterDays"})) <= int(
        resolver.resolve({"Ref": "AuditAfterDays"})
    )
    # rows outlive the DeadLetterQueue's records: a late dead letter never re-creates a
    # deleted message (body included) as replayable
    dlq_days = template.resources["DeadLetterQueue"]["Properties"]["MessageRetentionPeriod"] / 86400
    assert template.parameters["DeleteAfterDays"]["MinValue"] > dlq_days
    resources = _translated({}, monkeypatch)["Resources"]
    (schedule,) = [r for r in resources.values() if r["Type"] == "AWS::Scheduler::Schedule"]
    target = schedule["Properties"]["Target"]
    assert target["Arn"] == {"Fn::GetAtt": ["RetentionFunction", "Arn"]}
    assert schedule["Properties"]["ScheduleExpression"] == {"Ref": "RetentionSchedule"}
