"""template.yaml for a deployment: parameter Rules, the migrations and key-adoption custom
resources, one log group per function, the optional VPC endpoints (read as parsed data,
resolved the way CloudFormation would)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from sms_gateway.local.template import Resolver, SamTemplate
from tests import cfn_rules, iam
from tests.cfn_rules import DEPLOYABLE
from tests.support import REPO_ROOT, SQL_FUNCTIONS

TEMPLATE = REPO_ROOT / "template.yaml"
VPC = {"VpcSubnetIds": "subnet-1,subnet-2", "VpcSecurityGroupIds": "sg-1,sg-2"}
ENDPOINTS = {
    **VPC,
    "CreateVpcEndpoints": "true",
    "VpcId": "vpc-1",
    "VpcRouteTableIds": "rtb-1",
}


@pytest.fixture(scope="module")
def template() -> SamTemplate:
    return SamTemplate.from_file(TEMPLATE)


def props(template: SamTemplate, logical_id: str) -> Mapping[str, Any]:
    return template.resources[logical_id]["Properties"]


# --- Rules ---------------------------------------------------------------------------------


def rule_failures(template: SamTemplate, **overrides: str) -> list[str]:
    """The failing assertions' messages for a deployable stack with these overrides."""
    return cfn_rules.rule_failures(template, {**DEPLOYABLE, **overrides})


def test_local_auth_mode_is_refused_in_a_deployment(template: SamTemplate) -> None:
    assert rule_failures(template) == []  # a stack with its database deploys
    assert rule_failures(template, AuthMode="api_key") == []
    [failure] = rule_failures(template, AuthMode="local")
    assert "X-Tenant-ID" in failure and "AuthMode=api_key" in failure
    # sam local (which evaluates no Rules) still accepts it, as the README shows
    assert "local" in template.parameters["AuthMode"]["AllowedValues"]


def test_vpc_endpoints_need_the_vpc_and_its_route_tables(template: SamTemplate) -> None:
    assert rule_failures(template, **ENDPOINTS) == []
    assert rule_failures(template, **VPC) == []  # no endpoints asked for: nothing needed
    missing = rule_failures(template, CreateVpcEndpoints="true")
    assert [m.split(" (")[0].split(".")[0] for m in missing] == [
        "CreateVpcEndpoints=true needs VpcId",
        "CreateVpcEndpoints=true needs VpcRouteTableIds",
    ]
    no_network = {**DEPLOYABLE, **ENDPOINTS, "VpcSubnetIds": "", "VpcSecurityGroupIds": ""}
    assert cfn_rules.broken_rules(template, no_network) == [
        "DatabaseHasNetwork",
        "VpcEndpointsNeedTheirNetwork",
    ]


# --- migrations ----------------------------------------------------------------------------


def test_migrations_run_before_the_sql_functions(template: SamTemplate) -> None:
    resource = template.resources["SchemaMigrations"]
    assert resource["Type"] == "Custom::SchemaMigrations"
    assert resource["Properties"]["ServiceToken"] == {"Fn::GetAtt": ["MigrateFunction", "Arn"]}
    # a new layer version (code or migrations changed) is a property change: an Update
    assert resource["Properties"]["Layer"] == {"Ref": "DependenciesLayer"}
    for function in ("StatusFunction", "SenderFunction", "DlqFunction"):
        assert template.resources[function]["DependsOn"] == "SchemaMigrations"
    assert "DependsOn" not in template.resources["IngestFunction"]  # no SQL


def test_the_shared_plans_keys_are_adopted_at_deploy(template: SamTemplate) -> None:
    """SharedPlanKeysAdoption: AdminFunction answers it, for the API's own usage plan (SAM's
    ``<api>UsagePlan`` of ``CreateUsagePlan: PER_API``), after SAM's key is in it; a new layer
    version re-runs it. Nothing may wait for it: the functions are in the API's deployment,
    which the stage, hence the plan, waits for (a cycle)."""
    resource = template.resources["SharedPlanKeysAdoption"]
    assert resource["Type"] == "Custom::SharedPlanKeysAdoption"
    assert resource["Properties"] == {
        "ServiceToken": {"Fn::GetAtt": ["AdminFunction", "Arn"]},
        "UsagePlanId": {"Ref": "SmsApiUsagePlan"},
        "Layer": {"Ref": "DependenciesLayer"},
    }
    assert resource["DependsOn"] == "SmsApiUsagePlanKey"
    auth = props(template, "SmsApi")["Auth"]
    assert auth["UsagePlan"]["CreateUsagePlan"] == "PER_API"  # SAM names it SmsApiUsagePlan
    assert auth["ApiKeyRequired"] is True
    for logical_id, other in template.resources.items():
        assert "SharedPlanKeysAdoption" not in str(other.get("DependsOn", "")), logical_id


def test_the_migrate_function_reaches_the_database_like_the_others(
    template: SamTemplate,
) -> None:
    migrate = props(template, "MigrateFunction")
    sender = props(template, "SenderFunction")
    assert migrate["VpcConfig"] == sender["VpcConfig"]
    sender_db = {
        k: v
        for k, v in sender["Environment"]["Variables"].items()
        if k.startswith("SMS_GATEWAY_DB_")
    }
    assert len(sender_db) == 7
    assert {
        k: v
        for k, v in migrate["Environment"]["Variables"].items()
        if k.startswith("SMS_GATEWAY_DB_")
    } == sender_db
    assert migrate["CodeUri"] == "functions/migrate/"
    assert migrate["Timeout"] == 300  # CloudFormation waits up to an hour for the answer
    assert template.resources["MigrateFunction"]["Metadata"]["BuildMethod"] == "makefile"


def test_the_layer_ships_the_migrations() -> None:
    """sam build copies layers/sms_gateway (layers/Makefile); the history must be inside."""
    from sms_gateway.storage import schema

    history = schema.MIGRATIONS
    assert history.is_relative_to(REPO_ROOT / "layers" / "sms_gateway")
    assert (history / "env.py").is_file()
    assert sorted(p.name for p in (history / "versions").glob("*.py")) == [
        "0001_initial_schema.py",
        "0002_receipt_waiting_flag.py",
        "0003_opt_outs.py",
        "0004_audit_trail.py",
    ]
    # the top-level migrations/ is a link to it, not a second history
    assert (REPO_ROOT / "migrations").resolve() == history


# --- logs ----------------------------------------------------------------------------------


def test_each_function_logs_to_its_own_group_with_the_retention_parameter(
    template: SamTemplate,
) -> None:
    declared = template.parameters["LogRetentionDays"]
    assert declared["Default"] == 30
    assert {1, 7, 30, 365, 3653} <= set(declared["AllowedValues"])
    resolver = Resolver(template, pseudo_parameters={"AWS::StackName": "sms"})
    functions = template.resources_of_type("AWS::Serverless::Function")
    groups = template.resources_of_type("AWS::Logs::LogGroup")
    assert len(groups) == len(functions) == 8
    for logical_id, function in functions.items():
        group_id = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        group = groups[group_id]["Properties"]
        assert resolver.resolve(group["LogGroupName"]) == f"/aws/lambda/sms-{logical_id}"
        assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}


# --- network -------------------------------------------------------------------------------


def _endpoint_services(template: SamTemplate, resolver: Resolver) -> dict[str, str]:
    services = {}
    for logical_id, resource in template.resources_of_type("AWS::EC2::VPCEndpoint").items():
        assert resource["Condition"] == "CreateEndpoints", logical_id
        p = resource["Properties"]
        services[resolver.resolve(p["ServiceName"]).rsplit(".", 1)[1]] = p["VpcEndpointType"]
    return services


def test_endpoints_cover_what_the_vpc_functions_call(template: SamTemplate) -> None:
    resolver = Resolver(
        template, parameter_overrides=ENDPOINTS, pseudo_parameters={"AWS::Region": "eu-west-1"}
    )
    assert resolver.condition("CreateEndpoints") is True
    assert Resolver(template, parameter_overrides=VPC).condition("CreateEndpoints") is False
    assert (
        Resolver(template, parameter_overrides={"CreateVpcEndpoints": "true"}).condition(
            "CreateEndpoints"
        )
        is False
    )  # no VPC, nothing to reach
    services = _endpoint_services(template, resolver)
    # what the roles of the functions in the VPC allow them to call (tests/iam.py)
    in_vpc = [
        f
        for f, r in template.resources_of_type("AWS::Serverless::Function").items()
        if "VpcConfig" in r["Properties"]
    ]
    assert sorted(in_vpc) == sorted(SQL_FUNCTIONS)
    permissions = iam.role_permissions(TEMPLATE)
    called = {
        action.split(":")[0]
        for function in in_vpc
        for action, _ in permissions[function]
        if not action.startswith(("logs:", "ec2:"))  # the Lambda service's, outside the VPC
    }
    # the SQS trigger polls from the Lambda service, but the sender sends from the VPC
    # (apigateway: the AdminFunction's tenant commands, API Gateway's management API)
    assert called == {"sqs", "dynamodb", "secretsmanager", "xray", "apigateway"}
    assert called <= set(services)
    # and the MigrateFunction PUTs its answer to an S3 pre-signed URL
    assert services == {
        "sqs": "Interface",
        "secretsmanager": "Interface",
        "xray": "Interface",
        "apigateway": "Interface",
        "dynamodb": "Gateway",
        "s3": "Gateway",
    }


def test_interface_endpoints_admit_https_from_the_functions(template: SamTemplate) -> None:
    resolver = Resolver(template, parameter_overrides=ENDPOINTS)
    group = resolver.resolve(dict(props(template, "EndpointSecurityGroup")))
    assert group["VpcId"] == "vpc-1"
    [rule] = group["SecurityGroupIngress"]
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 443, 443)
    assert rule["SourceSecurityGroupId"] == "sg-1"
    for logical_id, resource in template.resources_of_type("AWS::EC2::VPCEndpoint").items():
        p = resource["Properties"]
        if p["VpcEndpointType"] == "Interface":
            assert p["SecurityGroupIds"] == [{"Ref": "EndpointSecurityGroup"}], logical_id
            assert p["PrivateDnsEnabled"] is True
            assert resolver.resolve(p["SubnetIds"]) == ["subnet-1", "subnet-2"]
        else:
            assert resolver.resolve(p["RouteTableIds"]) == ["rtb-1"]
