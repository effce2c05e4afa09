"""template.yaml: the deployment contract (DESIGN sections 2, 3, 9), read as parsed data.

These assert on the template's own values, resolved with its parameter defaults the way
CloudFormation would, so a change that breaks a rule (visibility timeout vs sender timeout, the
redrive count passed to the functions, the ingest path staying out of the VPC) fails here.
"""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

from sms_gateway.local.template import (
    NO_VALUE,
    FunctionSpec,
    Resolver,
    SamTemplate,
    TemplateError,
    UnresolvableError,
    load_template,
)
from tests.cfn_rules import DEPLOYABLE
from tests.support import ALL_FUNCTIONS

ROOT = Path(__file__).resolve().parents[2]
DB_VARIABLES = {
    "SMS_GATEWAY_MESSAGE_DSN",
    "SMS_GATEWAY_DB_ENGINE",
    "SMS_GATEWAY_DB_HOST",
    "SMS_GATEWAY_DB_PORT",
    "SMS_GATEWAY_DB_NAME",
    "SMS_GATEWAY_DB_SECRET_ARN",
    "SMS_GATEWAY_DB_SECRET_MAX_AGE_SECONDS",
    "SMS_GATEWAY_DB_TLS",
}
# A deployable database: an instance endpoint, its secret, subnets and security groups.


@pytest.fixture(scope="module")
def template() -> SamTemplate:
    return SamTemplate.from_file(ROOT / "template.yaml")


@pytest.fixture
def resolver(template: SamTemplate) -> Resolver:
    """Parameter defaults, as CloudFormation would see them in a stack named sms-gateway."""
    resolver = Resolver(
        template,
        pseudo_parameters={
            "AWS::Region": "eu-west-1",
            "AWS::AccountId": "111122223333",
            "AWS::Partition": "aws",
            "AWS::StackName": "sms-gateway",
        },
    )
    arn = "arn:aws:sqs:eu-west-1:111122223333:"
    resolver.attributes[("DeadLetterQueue", "Arn")] = arn + "sms-gateway-dead-letter"
    resolver.attributes[("SendQueue", "Arn")] = arn + "sms-gateway-send"
    return resolver


@pytest.fixture(scope="module")
def functions(template: SamTemplate) -> dict[str, FunctionSpec]:
    return {spec.logical_id: spec for spec in template.functions()}


def props(template: SamTemplate, logical_id: str) -> dict[str, Any]:
    return dict(template.resources[logical_id]["Properties"])


def test_is_a_sam_template_on_python_312(template: SamTemplate) -> None:
    assert template.document["Transform"] == "AWS::Serverless-2016-10-31"
    globals_ = template.function_globals
    assert globals_["Runtime"] == "python3.12"
    assert globals_["Architectures"] == ["x86_64"]
    assert globals_["Tracing"] == "Active"
    assert globals_["MemorySize"] == 512
    assert globals_["Layers"] == [{"Ref": "DependenciesLayer"}]


def test_globals_environment(template: SamTemplate, resolver: Resolver) -> None:
    variables = resolver.resolve(template.function_globals["Environment"]["Variables"])
    assert variables == {
        "POWERTOOLS_SERVICE_NAME": "sms-gateway",
        "POWERTOOLS_METRICS_NAMESPACE": "SmsGateway",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "POWERTOOLS_TRACER_CAPTURE_RESPONSE": "false",
        "SMS_GATEWAY_AUTH_MODE": "api_key",
        "SMS_GATEWAY_MAX_RECEIVE_COUNT": "3",
        "SMS_GATEWAY_PROBLEM_TYPE_BASE": "https://sms-gateway.example/docs/problems.md#",
        "AWS_ENDPOINT_URL": "",
    }
    assert template.parameters["AuthMode"]["AllowedValues"] == ["api_key", "local"]


def test_the_empty_endpoint_override_leaves_boto3_on_aws_endpoints(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The template declares AWS_ENDPOINT_URL="" for every function (so that `sam local
    # --env-vars` can set it); deployed, that empty value must change nothing.
    import boto3.session

    monkeypatch.setenv("AWS_ENDPOINT_URL", "")
    session = boto3.session.Session(
        aws_access_key_id="x",
        aws_secret_access_key="x",
        region_name="eu-west-1",
    )
    assert session.client("sqs").meta.endpoint_url == "https://sqs.eu-west-1.amazonaws.com"
    assert (
        session.client("dynamodb").meta.endpoint_url == "https://dynamodb.eu-west-1.amazonaws.com"
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://172.18.0.1:4566")
    assert session.client("sqs").meta.endpoint_url == "http://172.18.0.1:4566"


def test_redrive_max_receive_count_is_3_and_is_what_the_functions_get(
    template: SamTemplate, resolver: Resolver
) -> None:
    redrive = resolver.resolve(props(template, "SendQueue")["RedrivePolicy"])
    assert redrive["maxReceiveCount"] == "3"
    assert redrive["deadLetterTargetArn"] == resolver.get_att("DeadLetterQueue", "Arn")
    # One parameter drives both, so the sender's max_attempts bound cannot drift from SQS's.
    raw_redrive = props(template, "SendQueue")["RedrivePolicy"]["maxReceiveCount"]
    raw_env = template.function_globals["Environment"]["Variables"]
    assert raw_redrive == raw_env["SMS_GATEWAY_MAX_RECEIVE_COUNT"] == {"Ref": "MaxReceiveCount"}
    overridden = Resolver(template, parameter_overrides={"MaxReceiveCount": "5"})
    env = overridden.resolve(raw_env)
    assert overridden.resolve(raw_redrive) == env["SMS_GATEWAY_MAX_RECEIVE_COUNT"] == "5"


def test_visibility_timeout_is_at_least_6x_the_sender_timeout(
    template: SamTemplate, functions: dict[str, FunctionSpec]
) -> None:
    sender_timeout = functions["SenderFunction"].timeout
    assert sender_timeout == 30
    assert int(props(template, "SendQueue")["VisibilityTimeout"]) >= 6 * sender_timeout
    assert int(props(template, "DeadLetterQueue")["VisibilityTimeout"]) >= (
        6 * functions["DlqFunction"].timeout
    )


def test_queue_retention_and_redrive_allow_policy(
    template: SamTemplate, resolver: Resolver
) -> None:
    send = resolver.resolve(props(template, "SendQueue"))
    dead = resolver.resolve(props(template, "DeadLetterQueue"))
    assert send["MessageRetentionPeriod"] == 4 * 86_400
    assert dead["MessageRetentionPeriod"] == 14 * 86_400
    assert send["SqsManagedSseEnabled"] is True
    assert dead["RedriveAllowPolicy"] == {
        "redrivePermission": "byQueue",
        # The ARN the SendQueue gets from its QueueName, built without a circular reference.
        "sourceQueueArns": [f"arn:aws:sqs:eu-west-1:111122223333:{send['QueueName']}"],
    }


def test_sender_consumes_send_queue_in_batches_of_10_with_partial_failures(
    functions: dict[str, FunctionSpec], resolver: Resolver
) -> None:
    (source,) = functions["SenderFunction"].sqs_sources
    assert resolver.resolve(source.queue) == resolver.get_att("SendQueue", "Arn")
    assert source.batch_size == 10
    assert source.report_batch_item_failures
    (dead,) = functions["DlqFunction"].sqs_sources
    assert resolver.resolve(dead.queue) == resolver.get_att("DeadLetterQueue", "Arn")
    assert dead.batch_size == 10
    assert dead.report_batch_item_failures


def test_sender_environment(functions: dict[str, FunctionSpec], resolver: Resolver) -> None:
    resolver.refs.update(
        {"SendQueue": "https://send", "DeadLetterQueue": "https://dlq", "RateLimitTable": "rl"}
    )
    env = resolver.resolve(dict(functions["SenderFunction"].environment))
    assert env["SMS_GATEWAY_SEND_QUEUE_URL"] == "https://send"
    assert env["SMS_GATEWAY_DEAD_LETTER_QUEUE_URL"] == "https://dlq"
    assert env["SMS_GATEWAY_RETRY_BASE_SECONDS"] == "30"
    assert env["SMS_GATEWAY_RETRY_MAX_SECONDS"] == "900"
    # A claim lease never shorter than one invocation can run.
    assert int(env["SMS_GATEWAY_LEASE_SECONDS"]) == functions["SenderFunction"].timeout


def test_idempotency_table_matches_powertools_defaults(template: SamTemplate) -> None:
    table = props(template, "IdempotencyTable")
    defaults = inspect.signature(DynamoDBPersistenceLayer.__init__).parameters
    key_attr = defaults["key_attr"].default
    expiry_attr = defaults["expiry_attr"].default
    assert table["KeySchema"] == [{"AttributeName": key_attr, "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": key_attr, "AttributeType": "S"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": expiry_attr, "Enabled": True}
    assert (key_attr, expiry_attr) == ("id", "expiration")
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["SSESpecification"] == {"SSEEnabled": True}
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_every_function_code_dir_has_app_with_lambda_handler(
    functions: dict[str, FunctionSpec],
) -> None:
    assert set(functions) == ALL_FUNCTIONS
    for spec in functions.values():
        module, _, name = spec.handler.rpartition(".")
        source = ROOT / spec.code_uri / f"{module}.py"
        assert source.is_file(), f"{spec.logical_id}: {source} missing"
        tree = ast.parse(source.read_text(encoding="utf-8"))
        defined = {
            node.name
            for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        } | {
            target.id
            for node in tree.body
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        assert name == "lambda_handler"
        assert name in defined, f"{spec.logical_id}: no {name} in {source}"
        assert (source.parent / "requirements.txt").is_file()


def test_ingest_has_no_vpc_and_no_database(
    template: SamTemplate, functions: dict[str, FunctionSpec], resolver: Resolver
) -> None:
    ingest = props(template, "IngestFunction")
    assert "VpcConfig" not in ingest
    assert "VpcConfig" not in template.function_globals
    assert not DB_VARIABLES & set(functions["IngestFunction"].environment)
    resolver.refs.update(
        {"IdempotencyTable": "table", "SendQueue": "https://send", "TenantsTable": "tenants"}
    )
    env = resolver.resolve(dict(functions["IngestFunction"].environment))
    assert env["SMS_GATEWAY_IDEMPOTENCY_TABLE"] == "table"
    assert env["SMS_GATEWAY_SEND_QUEUE_URL"] == "https://send"
    # API key id -> tenant id, cached 30 s by default (TenantCacheTtlSeconds)
    assert env["SMS_GATEWAY_TENANTS_TABLE"] == "tenants"
    assert env["SMS_GATEWAY_TENANT_CACHE_TTL_SECONDS"] == "30"


@pytest.mark.parametrize(
    "logical_id", ["StatusFunction", "SenderFunction", "DlqFunction", "MigrateFunction"]
)
@pytest.mark.parametrize(
    ("source", "host"),
    [
        ({"DatabaseHost": "db.example"}, "db.example"),
        ({"DatabaseHost": "", "DatabaseProxyEndpoint": "px.proxy-1.example"}, "px.proxy-1.example"),
    ],
)
def test_database_functions_get_the_database_address_and_only_the_secrets_arn(
    template: SamTemplate,
    functions: dict[str, FunctionSpec],
    logical_id: str,
    source: dict[str, str],
    host: str,
) -> None:
    resolver = Resolver(template, parameter_overrides={**DEPLOYABLE, **source})
    resolver.refs.update(
        {
            "SendQueue": "https://send",
            "DeadLetterQueue": "https://dlq",
            "RateLimitTable": "rl",
            "TenantsTable": "tenants",
            "SmsApi": "api1",
        }
    )
    env = resolver.resolve(dict(functions[logical_id].environment))
    database = {k: v for k, v in env.items() if k in DB_VARIABLES}
    assert database == {
        "SMS_GATEWAY_DB_ENGINE": "postgresql",
        "SMS_GATEWAY_DB_HOST": host,
        "SMS_GATEWAY_DB_PORT": "0",
        "SMS_GATEWAY_DB_NAME": "sms_gateway",
        "SMS_GATEWAY_DB_SECRET_ARN": DEPLOYABLE["DatabaseSecretArn"],
        "SMS_GATEWAY_DB_SECRET_MAX_AGE_SECONDS": "300",
        "SMS_GATEWAY_DB_TLS": "true",  # verified TLS unless turned off on purpose
    }
    # no DSN and no password anywhere in a deployed function's environment
    assert "SMS_GATEWAY_MESSAGE_DSN" not in env
    assert not any("Password" in name or "Dsn" in name for name in template.parameters)
    assert resolver.resolve(props(template, logical_id)["VpcConfig"]) == {
        "SubnetIds": ["subnet-1", "subnet-2"],
        "SecurityGroupIds": ["sg-1"],
    }
    # (the secret's IAM statement: tests/unit/test_iam.py)


def test_api_routes_and_api_key_auth(
    template: SamTemplate, functions: dict[str, FunctionSpec]
) -> None:
    routes = {
        (route.method, route.path, route.function)
        for spec in functions.values()
        for route in spec.api_routes
    }
    assert routes == {
        ("POST", "/v1/messages", "IngestFunction"),
        ("POST", "/v1/messages/batch", "IngestFunction"),
        ("GET", "/v1/messages/{message_id}", "StatusFunction"),
        ("POST", "/v1/messages/{message_id}/cancel", "StatusFunction"),
        ("POST", "/v1/receipts", "StatusFunction"),
        ("POST", "/v1/receipts/twilio/{provider}", "StatusFunction"),
    }
    api = props(template, "SmsApi")
    assert api["StageName"] == {"Ref": "Stage"}
    assert template.parameters["Stage"]["Default"] == "dev"
    assert api["Auth"]["ApiKeyRequired"] is True
    assert api["Auth"]["UsagePlan"]["CreateUsagePlan"] == "PER_API"
    assert api["TracingEnabled"] is True
    # receipts are signed by providers; an API key would make a provider a tenant
    for receipt in ("PostReceipt", "PostTwilioCallback"):
        receipt_event = props(template, "StatusFunction")["Events"][receipt]["Properties"]
        assert receipt_event["Auth"] == {"ApiKeyRequired": False}
    # both ingest routes keep the API's default: an API key is required (it is the tenant)
    for event_name in ("SendMessage", "SendMessageBatch"):
        assert "Auth" not in props(template, "IngestFunction")["Events"][event_name]["Properties"]
    # so does cancel: only the message's tenant may cancel it
    assert "Auth" not in props(template, "StatusFunction")["Events"]["CancelMessage"]["Properties"]


def test_alarms_on_dead_letters_and_sender_errors(template: SamTemplate) -> None:
    alarms = {
        (p["Namespace"], p["MetricName"], p["ComparisonOperator"], p["Threshold"])
        for p in (
            r["Properties"] for r in template.resources_of_type("AWS::CloudWatch::Alarm").values()
        )
        if isinstance(p["Threshold"], int)  # not a parameter's
    }
    # among the others (tests/unit/test_alarms.py)
    assert alarms >= {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "GreaterThanThreshold", 0),
        ("AWS/Lambda", "Errors", "GreaterThanThreshold", 0),
    }


def test_outputs(template: SamTemplate, resolver: Resolver) -> None:
    outputs = template.document["Outputs"]
    assert {"ApiUrl", "SendQueueUrl", "DeadLetterQueueUrl", "IdempotencyTableName"} <= set(outputs)
    resolver.refs["SmsApi"] = "abc123"
    assert resolver.resolve(outputs["ApiUrl"]["Value"]) == (
        "https://abc123.execute-api.eu-west-1.amazonaws.com/dev"
    )


def _names(lines: list[str]) -> set[str]:
    return {
        line.split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip().lower()
        for line in lines
        if line.strip() and not line.strip().startswith("#")
    }


def test_layer_ships_exactly_the_runtime_dependencies() -> None:
    import tomllib

    layer = _names((ROOT / "layers" / "requirements.in").read_text(encoding="utf-8").splitlines())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert layer == _names(project["dependencies"])

    assert "moto" not in layer
    assert "waitress" not in layer  # the local stack's HTTP server, not shipped
    # aws-xray-sdk brings botocore into the layer: boto3 must come with it, as a matched pair
    assert {"boto3", "aws-xray-sdk", "aws-lambda-powertools", "sqlalchemy", "pg8000"} <= layer


def test_short_tags_become_long_forms(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "Resources:\n"
        "  A:\n"
        "    Type: X\n"
        "    Properties:\n"
        "      R: !Ref P\n"
        "      G: !GetAtt Q.Arn\n"
        "      S: !Sub '${AWS::Region}-x'\n"
        "      J: !Join [',', [a, b]]\n"
        "      I: !If [C, 1, 2]\n"
        "      N: !Not [!Equals [a, b]]\n",
        encoding="utf-8",
    )
    document = load_template(path)
    assert document["Resources"]["A"]["Properties"] == {
        "R": {"Ref": "P"},
        "G": {"Fn::GetAtt": ["Q", "Arn"]},
        "S": {"Fn::Sub": "${AWS::Region}-x"},
        "J": {"Fn::Join": [",", ["a", "b"]]},
        "I": {"Fn::If": ["C", 1, 2]},
        "N": {"Fn::Not": [{"Fn::Equals": ["a", "b"]}]},
    }


def test_resolver_sub_variables_literals_and_errors(template: SamTemplate) -> None:
    resolver = Resolver(template, pseudo_parameters={"AWS::Region": "us-east-1"})
    resolver.attributes[("Q", "Arn")] = "arn:q"
    assert resolver.resolve({"Fn::Sub": "${AWS::Region}/${Q.Arn}/${Stage}/${!Literal}"}) == (
        "us-east-1/arn:q/dev/${Literal}"
    )
    assert resolver.resolve({"Fn::Sub": ["${x}-${Stage}", {"x": {"Ref": "AuthMode"}}]}) == (
        "api_key-dev"
    )
    assert resolver.resolve({"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]}) == "b"
    with pytest.raises(UnresolvableError):
        resolver.resolve({"Ref": "NoSuchThing"})
    with pytest.raises(TemplateError):
        resolver.resolve({"Fn::ImportValue": "x"})
    with pytest.raises(TemplateError):
        Resolver(template, parameter_overrides={"AuthMode": "header"}).ref("AuthMode")
    with pytest.raises(TemplateError):
        Resolver(template, parameter_overrides={"Nope": "1"})


def test_condition_defaults(template: SamTemplate) -> None:
    resolver = Resolver(template)
    assert resolver.condition("HasVpc") is False
    assert resolver.condition("HasDbSecret") is False
    assert resolver.condition("HasDbProxy") is False
    secret = Resolver(template, parameter_overrides={"DatabaseSecretArn": "arn:secret"})
    assert secret.condition("HasDbSecret") is True


def test_sam_template_parses_as_json_too(tmp_path: Path) -> None:
    document = load_template(ROOT / "template.yaml")
    path = tmp_path / "template.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    assert load_template(path) == document


def test_tracer_does_not_capture_responses(template: SamTemplate) -> None:
    env = template.function_globals["Environment"]["Variables"]
    assert env["POWERTOOLS_TRACER_CAPTURE_RESPONSE"] == "false"


def test_rate_limit_table_is_on_demand_encrypted_and_keyed_by_provider(
    template: SamTemplate,
) -> None:
    from sms_gateway.adapters.dynamodb_ratelimit import KEY

    table = props(template, "RateLimitTable")
    assert table["KeySchema"] == [{"AttributeName": KEY, "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": KEY, "AttributeType": "S"}]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["SSESpecification"] == {"SSEEnabled": True}
    # Seconds-deep state that starts full again after a loss: no PITR, no TTL (see template).
    assert "PointInTimeRecoverySpecification" not in table
    assert "TimeToLiveSpecification" not in table
    assert template.document["Outputs"]["RateLimitTableName"]["Value"] == {"Ref": "RateLimitTable"}


def test_sender_gets_the_rate_limit_table_and_rates_and_only_it_may_update_it(
    template: SamTemplate, functions: dict[str, FunctionSpec], resolver: Resolver
) -> None:
    resolver.refs.update(
        {"SendQueue": "https://send", "DeadLetterQueue": "https://dlq", "RateLimitTable": "rl"}
    )
    env = resolver.resolve(dict(functions["SenderFunction"].environment))
    assert env["SMS_GATEWAY_RATE_LIMIT_TABLE"] == "rl"
    assert env["SMS_GATEWAY_PROVIDER_RATES"] == "{}"  # no rates: unlimited, no DynamoDB call
    rates = '{"provider-a": {"rate": 10, "burst": 20}}'
    overridden = Resolver(template, parameter_overrides={"ProviderRates": rates})
    overridden.refs.update(resolver.refs)
    overridden_env = overridden.resolve(dict(functions["SenderFunction"].environment))
    assert overridden_env["SMS_GATEWAY_PROVIDER_RATES"] == rates
    for name, spec in functions.items():
        if name != "SenderFunction":
            assert "SMS_GATEWAY_RATE_LIMIT_TABLE" not in spec.environment
            role = props(template, name)["Role"]["Fn::GetAtt"][0]
            assert "RateLimitTable" not in json.dumps(props(template, role))


@pytest.mark.parametrize(
    ("value", "reserved"), [("none", NO_VALUE), ("0", NO_VALUE), ("1", "1"), ("40", "40")]
)
def test_sender_reserved_concurrency_is_a_parameter_none_or_0_unset(
    template: SamTemplate, value: str, reserved: object
) -> None:
    declared = template.parameters["SenderReservedConcurrency"]
    assert declared["Default"] == "none"
    import re

    assert re.fullmatch(declared["AllowedPattern"], value)
    for bad in ("-1", "01", "ten", ""):
        assert not re.fullmatch(declared["AllowedPattern"], bad)
    resolver = Resolver(template, parameter_overrides={"SenderReservedConcurrency": value})
    raw = props(template, "SenderFunction")["ReservedConcurrentExecutions"]
    assert resolver.resolve(raw) == reserved


def test_sender_trigger_maximum_concurrency_is_a_parameter_2_to_1000(
    template: SamTemplate,
) -> None:
    declared = template.parameters["SenderMaxConcurrency"]
    assert (declared["Type"], declared["MinValue"], declared["MaxValue"]) == ("Number", 2, 1000)
    assert declared["Default"] == 50
    event = props(template, "SenderFunction")["Events"]["SendQueueBatch"]["Properties"]
    assert event["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "SenderMaxConcurrency"}}
    resolver = Resolver(template, parameter_overrides={"SenderMaxConcurrency": "7"})
    assert resolver.resolve(event["ScalingConfig"]) == {"MaximumConcurrency": "7"}


@pytest.mark.parametrize(
    ("logical_id", "parameter"),
    [
        ("SenderFunction", "SenderReservedConcurrency"),
        ("DlqFunction", "DlqReservedConcurrency"),
        ("StatusFunction", "StatusReservedConcurrency"),
    ],
)
def test_every_function_holding_a_connection_has_a_reserved_concurrency_parameter(
    template: SamTemplate, logical_id: str, parameter: str
) -> None:
    declared = template.parameters[parameter]
    assert declared["Default"] == "none"
    assert (
        declared["AllowedPattern"]
        == template.parameters["SenderReservedConcurrency"]["AllowedPattern"]
    )
    raw = props(template, logical_id)["ReservedConcurrentExecutions"]
    assert Resolver(template).resolve(raw) is NO_VALUE
    assert Resolver(template, parameter_overrides={parameter: "0"}).resolve(raw) is NO_VALUE
    assert Resolver(template, parameter_overrides={parameter: "12"}).resolve(raw) == "12"
    assert "ReservedConcurrentExecutions" not in props(template, "IngestFunction")


def test_both_queue_triggers_have_a_maximum_concurrency_parameter(template: SamTemplate) -> None:
    declared = template.parameters["DlqMaxConcurrency"]
    assert (declared["Type"], declared["MinValue"], declared["MaxValue"]) == ("Number", 2, 1000)
    assert declared["Default"] == 5
    event = props(template, "DlqFunction")["Events"]["DeadLetterBatch"]["Properties"]
    assert event["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "DlqMaxConcurrency"}}
    resolver = Resolver(template, parameter_overrides={"DlqMaxConcurrency": "3"})
    assert resolver.resolve(event["ScalingConfig"]) == {"MaximumConcurrency": "3"}
