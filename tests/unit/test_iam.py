"""The execution roles, as SAM's translator turns template.yaml into CloudFormation, and the
check that holds them to the AWS calls the functions make (tests/iam.py; the suite records
the calls and runs the check at session end, tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import iam
from tests.support import ALL_FUNCTIONS, REPO_ROOT

TEMPLATE = REPO_ROOT / "template.yaml"
DATA_PLANE = ("sqs:", "dynamodb:", "secretsmanager:")
APIGW = "arn:aws:apigateway:us-east-1::"


@pytest.fixture(scope="module")
def permissions() -> dict[str, set[tuple[str, str]]]:
    return iam.role_permissions(TEMPLATE)


def test_every_function_has_its_own_role_without_managed_policies(
    permissions: dict[str, set[tuple[str, str]]],
) -> None:
    """SAM's generated roles get AWSLambdaSQSQueueExecutionRole from an SQS event (sqs:* on
    Resource "*"); role_permissions refuses a role with any managed policy."""
    assert set(permissions) == ALL_FUNCTIONS
    translated = iam.translate(TEMPLATE, iam.DEPLOYED)["Resources"]
    roles = {
        r["Properties"]["Role"]["Fn::GetAtt"][0]
        for r in translated.values()
        if r["Type"] == "AWS::Lambda::Function"
    }
    assert len(roles) == 8  # one each
    assert not [r for r in translated.values() if r["Type"] == "AWS::IAM::ManagedPolicy"]


def test_no_data_plane_action_on_every_resource(
    permissions: dict[str, set[tuple[str, str]]],
) -> None:
    for function, pairs in permissions.items():
        wildcard = sorted(a for a, r in pairs if r == "*" and a.startswith(DATA_PLANE))
        assert wildcard == [], function
        # the rest of "*" are X-Ray and EC2 network interfaces: no resource-level permissions
        assert {a.split(":")[0] for a, r in pairs if r == "*"} <= {"xray", "ec2"}


def test_data_plane_permissions_per_function(
    permissions: dict[str, set[tuple[str, str]]],
) -> None:
    def data(function: str) -> set[tuple[str, str]]:
        return {(a, r) for a, r in permissions[function] if a.startswith(DATA_PLANE)}

    secret = ("secretsmanager:GetSecretValue", "DatabaseSecretArn")
    assert data("IngestFunction") == {
        ("dynamodb:GetItem", "IdempotencyTable"),
        ("dynamodb:PutItem", "IdempotencyTable"),
        ("dynamodb:UpdateItem", "IdempotencyTable"),
        ("dynamodb:DeleteItem", "IdempotencyTable"),
        ("sqs:SendMessage", "SendQueue"),
        ("dynamodb:GetItem", "TenantsTable"),  # API key id -> tenant id
    }
    assert data("SenderFunction") == {
        ("sqs:ReceiveMessage", "SendQueue"),
        ("sqs:DeleteMessage", "SendQueue"),
        ("sqs:GetQueueAttributes", "SendQueue"),
        ("sqs:ChangeMessageVisibility", "SendQueue"),
        ("sqs:SendMessage", "SendQueue"),  # outage requeue, rate deferral
        ("sqs:SendMessage", "DeadLetterQueue"),
        ("dynamodb:UpdateItem", "RateLimitTable"),
        secret,
    }
    assert data("DlqFunction") == {
        ("sqs:ReceiveMessage", "DeadLetterQueue"),
        ("sqs:DeleteMessage", "DeadLetterQueue"),
        ("sqs:GetQueueAttributes", "DeadLetterQueue"),
        secret,
    }
    assert data("StatusFunction") == {secret, ("dynamodb:GetItem", "TenantsTable")}
    assert data("MigrateFunction") == {secret}
    assert data("AdminFunction") == {
        ("sqs:SendMessage", "SendQueue"),  # a replay
        secret,
        # the tenant commands' records
        ("dynamodb:GetItem", "TenantsTable"),
        ("dynamodb:PutItem", "TenantsTable"),
        ("dynamodb:UpdateItem", "TenantsTable"),
        ("dynamodb:Scan", "TenantsTable"),
    }
    assert data("RetentionFunction") == {secret}
    # SNS invokes it: no polling permissions; Lambda's on-failure destination sends as it
    assert data("EumEventsFunction") == {("sqs:SendMessage", "EumEventsFailedQueue"), secret}


def test_secret_and_vpc_permissions_only_when_configured() -> None:
    bare = iam.role_permissions(TEMPLATE, {})
    for function, pairs in bare.items():
        assert not {a for a, _ in pairs if a.startswith(("secretsmanager:", "ec2:"))}, function


def test_logs_go_to_the_functions_own_log_group(
    permissions: dict[str, set[tuple[str, str]]],
) -> None:
    for function, pairs in permissions.items():
        group = function.removesuffix("Function") + "LogGroup"
        assert {r for a, r in pairs if a.startswith("logs:")} == {group}


def test_a_recorded_call_the_role_does_not_allow_is_found(tmp_path: Path) -> None:
    """Without the sender's sqs:SendMessage on SendQueue (main before the fix), the outage
    requeue's recorded call is reported; with it, nothing is."""
    requeue = ("SenderFunction", "sqs:SendMessage", "SendQueue")
    assert iam.problems({requeue}, iam.role_permissions(TEMPLATE), complete=False) == []

    text = TEMPLATE.read_text(encoding="utf-8")
    old = "Action: [sqs:ChangeMessageVisibility, sqs:SendMessage]"
    assert text.count(old) == 1
    broken = tmp_path / "template.yaml"
    broken.write_text(text.replace(old, "Action: [sqs:ChangeMessageVisibility]"), encoding="utf-8")
    assert iam.problems({requeue}, iam.role_permissions(broken), complete=False) == [
        "SenderFunction calls sqs:SendMessage on SendQueue: its role does not allow it"
    ]


def test_an_unused_permission_is_found_only_in_a_whole_run(
    permissions: dict[str, set[tuple[str, str]]],
) -> None:
    recorded: set[iam.Call] = {
        ("IngestFunction", "dynamodb:GetItem", "IdempotencyTable"),
        ("IngestFunction", "dynamodb:PutItem", "IdempotencyTable"),
        ("IngestFunction", "dynamodb:UpdateItem", "IdempotencyTable"),
        ("IngestFunction", "dynamodb:DeleteItem", "IdempotencyTable"),
        ("IngestFunction", "dynamodb:GetItem", "TenantsTable"),
    }
    only_ingest = {"IngestFunction": permissions["IngestFunction"]}
    assert iam.problems(recorded, only_ingest, complete=False) == []
    assert iam.problems(recorded, only_ingest, complete=True) == [
        "IngestFunction may sqs:SendMessage on SendQueue, which no test calls and "
        "tests/iam.py's ALLOWLIST does not explain"
    ]


def test_batch_calls_need_the_single_message_action() -> None:
    calls: set[iam.Call] = set()

    class Model:
        name = "SendMessageBatch"

        class service_model:  # noqa: N801 - botocore's attribute name
            signing_name = "sqs"

    recorder = iam.CallRecorder(lambda service, params: "SendQueue", calls)
    recorder(model=Model(), params={"QueueUrl": "u"})
    assert calls == set()  # outside a handler: a fixture's call
    with iam.running("IngestFunction"):
        recorder(model=Model(), params={"QueueUrl": "u"})
    assert calls == {("IngestFunction", "sqs:SendMessage", "SendQueue")}


def test_no_function_has_policies_sam_would_ignore() -> None:
    """With ``Role`` set, SAM drops a function's ``Policies`` without a word: a statement added
    there would silently not exist. Statements go into the function's role."""
    from sms_gateway.local.template import SamTemplate

    template = SamTemplate.from_file(TEMPLATE)
    for logical_id, resource in template.resources_of_type("AWS::Serverless::Function").items():
        assert "Role" in resource["Properties"], logical_id
        assert "Policies" not in resource["Properties"], logical_id
    assert "Policies" not in template.function_globals


def test_only_the_admin_function_manages_usage_plans_and_keys(
    permissions: dict[str, set[tuple[str, str]]],
) -> None:
    """The tenant commands' API Gateway calls, each method on the resource paths it needs
    (no ``*`` resource, no other API Gateway resource: not the API's own definition)."""
    for function, pairs in permissions.items():
        managed = {(a, r) for a, r in pairs if a.startswith("apigateway:")}
        if function != "AdminFunction":
            assert managed == set(), function
            continue
        assert managed == {
            ("apigateway:POST", f"{APIGW}/usageplans"),
            ("apigateway:POST", f"{APIGW}/apikeys"),
            ("apigateway:POST", f"{APIGW}/usageplans/*/keys"),
            ("apigateway:PATCH", f"{APIGW}/usageplans/*"),
            ("apigateway:PATCH", f"{APIGW}/apikeys/*"),
            ("apigateway:GET", f"{APIGW}/usageplans"),
            # SharedPlanKeysAdoption lists the shared plan's keys (GetUsagePlanKeys)
            ("apigateway:GET", f"{APIGW}/usageplans/*/keys"),
            ("apigateway:DELETE", f"{APIGW}/usageplans/*/keys/*"),
        }


def test_api_gateway_calls_are_recorded_by_method_and_path(
    permissions: dict[str, set[tuple[str, str]]],
) -> None:
    """botocore's operation model gives the method and path; the path's members come from
    the call's parameters. The role's ARN patterns allow them; another path is refused."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("apigateway")
    calls: set[iam.Call] = set()
    recorder = iam.CallRecorder(lambda service, params: None, calls)
    with iam.running("AdminFunction"):
        recorder(
            model=model.operation_model("DeleteUsagePlanKey"),
            params={"usagePlanId": "plan1", "keyId": "key1"},
        )
        recorder(
            model=model.operation_model("UpdateApiKey"),
            params={"apiKey": "key1", "patchOperations": []},
        )
        recorder(model=model.operation_model("CreateUsagePlan"), params={"name": "p"})
        recorder(model=model.operation_model("GetUsagePlanKeys"), params={"usagePlanId": "plan1"})
    assert calls == {
        ("AdminFunction", "apigateway:GET", f"{APIGW}/usageplans/plan1/keys"),
        ("AdminFunction", "apigateway:DELETE", f"{APIGW}/usageplans/plan1/keys/key1"),
        ("AdminFunction", "apigateway:PATCH", f"{APIGW}/apikeys/key1"),
        ("AdminFunction", "apigateway:POST", f"{APIGW}/usageplans"),
    }
    assert iam.problems(calls, permissions, complete=False) == []
    deleting_the_api = ("AdminFunction", "apigateway:DELETE", f"{APIGW}/restapis/api1")
    assert iam.problems({deleting_the_api}, permissions, complete=False) == [
        f"AdminFunction calls apigateway:DELETE on {APIGW}/restapis/api1: "
        "its role does not allow it"
    ]
