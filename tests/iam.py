"""IAM that matches the code: the AWS calls each function makes in the tests, against what
its execution role in ``template.yaml`` allows, as SAM's translator turns it into
CloudFormation (``samtranslator``, shipped with aws-sam-cli).

Recording: :class:`CallRecorder` is a botocore ``before-parameter-build`` handler (it gets the
    call's API parameters) on the tests' shared
boto3 session (every client the handlers build comes from it, through
``sms_gateway.adapters.aws``). It records ``(function, "service:Action", resource)`` for calls
made while a handler runs (:func:`running`, a context variable set by the ``handler_modules``
fixture's wrappers); fixtures' own calls are not recorded. Each process (each pytest-xdist
worker) writes its set to one JSON file; the controller checks them all at session end
(tests/conftest.py) with :func:`problems`.

Resources are logical ids of ``template.yaml`` (``SendQueue``, ``IdempotencyTable``) or
parameter names (``DatabaseSecretArn``), on both sides. API Gateway's management API is
authorised by HTTP method on a resource path ("Control access to the API Gateway management
API" in its Developer Guide): a call to it is recorded as ``apigateway:<METHOD>`` on
``arn:aws:apigateway:us-east-1::<its request path>`` (from the botocore operation model), and
the role's ARN patterns (``.../usageplans/*/keys``) are matched as patterns.
"""

from __future__ import annotations

import contextvars
import copy
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sms_gateway.local.template import NO_VALUE, Resolver, SamTemplate, load_template

Call = tuple[str, str, str]  # (function logical id, "service:Action", resource)

_function: contextvars.ContextVar[str | None] = contextvars.ContextVar("function", default=None)

# A batch call is authorised by its single-message action (SQS Developer Guide, "Amazon SQS
# API permissions: Actions and resource reference").
_AUTHORISED_BY: Final = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}

# What a role may allow beyond the calls the tests record, each with its reason.
ALLOWLIST: Final[Mapping[tuple[str, str], str]] = {
    ("logs:CreateLogStream", "*LogGroup"): "the Lambda service writes the function's logs",
    ("logs:PutLogEvents", "*LogGroup"): "the Lambda service writes the function's logs",
    ("xray:PutTraceSegments", "*"): "the X-Ray daemon (Tracing: Active); no resource ARNs",
    ("xray:PutTelemetryRecords", "*"): "the X-Ray daemon (Tracing: Active); no resource ARNs",
    ("xray:GetSamplingRules", "*"): "the X-Ray SDK's sampling (Tracing: Active)",
    ("xray:GetSamplingTargets", "*"): "the X-Ray SDK's sampling (Tracing: Active)",
    ("ec2:*", "*"): "Lambda manages the function's VPC network interfaces with its role",
    ("sqs:ReceiveMessage", "*Queue"): "the SQS trigger (event source mapping) polls as the role",
    ("sqs:DeleteMessage", "*Queue"): "the SQS trigger deletes the records the function handled",
    ("sqs:GetQueueAttributes", "*Queue"): "the SQS trigger reads the queue's attributes",
    ("dynamodb:GetItem", "IdempotencyTable"): (
        "Powertools idempotency reads the record with GetItem when a conditional PutItem fails "
        "without returning the old item (base.py: `exc.old_data_record or "
        "self._get_idempotency_record()`); DynamoDB and moto return it, so no test gets there"
    ),
    ("sqs:SendMessage", "EumEventsFailedQueue"): (
        "Lambda sends an End User Messaging event that failed every retry to the function's "
        "on-failure destination (EventInvokeConfig) with the function's role"
    ),
    ("secretsmanager:GetSecretValue", "DatabaseSecretArn"): (
        "the database credentials (sms_gateway.storage.engine.SecretCredentials): only the "
        "outage tests read them through a handler; a run without those tests does not"
    ),
}


def _allowlisted(action: str, resource: str) -> str | None:
    from fnmatch import fnmatchcase

    for (pattern_action, pattern_resource), reason in ALLOWLIST.items():
        if fnmatchcase(action, pattern_action) and fnmatchcase(resource, pattern_resource):
            return reason
    return None


@contextmanager
def running(function: str) -> Iterator[None]:
    """Attribute the AWS calls made inside to ``function`` (a template logical id)."""
    token = _function.set(function)
    try:
        yield
    finally:
        _function.reset(token)


def wrap_handler(function: str, handler: Callable[..., Any]) -> Callable[..., Any]:
    """``handler`` recording its AWS calls as ``function``'s."""

    def recorded(event: Any, context: Any) -> Any:
        with running(function):
            return handler(event, context)

    recorded.__wrapped__ = handler  # type: ignore[attr-defined]
    return recorded


@dataclass
class CallRecorder:
    """botocore ``before-parameter-build`` handler (it gets the
    call's API parameters); ``resource_of`` maps a call's parameters to a
    template logical id (or returns ``None`` for "unknown")."""

    resource_of: Callable[[str, Mapping[str, Any]], str | None]
    calls: set[Call]

    def __call__(self, *, model: Any, params: Mapping[str, Any], **_: Any) -> None:
        function = _function.get()
        if function is None:
            return
        service = model.service_model.signing_name
        if service == "apigateway":
            method = model.http["method"]
            self.calls.add((function, f"apigateway:{method}", apigateway_arn(model, params)))
            return
        action = f"{service}:{model.name}"
        action = _AUTHORISED_BY.get(action, action)
        resource = self.resource_of(service, params) or f"?{_identifier(params)}"
        self.calls.add((function, action, resource))


def apigateway_arn(model: Any, params: Mapping[str, Any]) -> str:
    """The IAM resource of an API Gateway management call: its operation model's request
    path (``/usageplans/{usageplanId}/keys``, query string dropped) with each ``{name}``
    filled from the call's parameter bound to it (the input shape's ``location: uri``)."""
    import re

    members = model.input_shape.members if model.input_shape else {}
    by_uri_name = {
        shape.serialization.get("name", member): str(params.get(member, "?"))
        for member, shape in members.items()
        if shape.serialization.get("location") == "uri"
    }
    path = model.http["requestUri"].split("?", 1)[0]
    filled = re.sub(r"\{([^}+]+)\+?\}", lambda m: by_uri_name.get(m.group(1), "?"), path)
    return "arn:aws:apigateway:us-east-1::" + filled


def _identifier(params: Mapping[str, Any]) -> str:
    for key in ("QueueUrl", "TableName", "SecretId"):
        if key in params:
            return str(params[key])
    return "*"


def write(calls: Iterable[Call], directory: Path, name: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.json").write_text(json.dumps(sorted(calls)), encoding="utf-8")


def read(directory: Path) -> set[Call]:
    calls: set[Call] = set()
    for path in sorted(directory.glob("*.json")):
        calls |= {(f, a, r) for f, a, r in json.loads(path.read_text(encoding="utf-8"))}
    return calls


# Parameters with every optional permission switched on (a database secret, a VPC); resource
# parameters resolve to their own names, like the recorded calls' resources.
DEPLOYED: Final = {
    "DatabaseSecretArn": "DatabaseSecretArn",
    "VpcSubnetIds": "subnet-1",
    "VpcSecurityGroupIds": "sg-1",
}


# --- the translated template -------------------------------------------------------------


class _NoManagedPolicies:
    """The translator's managed-policy loader, offline: the template names none (each role
    is written out), so an attempt to look one up is a test failure, not an IAM call."""

    def load(self) -> dict[str, str]:
        raise AssertionError("template.yaml uses an AWS managed policy; write the statements out")


def translate(template_path: Path, parameters: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``template_path`` as CloudFormation sees it after the SAM transform, local code
    paths replaced by S3 URIs (as ``sam package`` would)."""
    from samtranslator.translator.transform import transform

    document = copy.deepcopy(load_template(template_path))
    for resource in document["Resources"].values():
        props = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str):
                props[key] = f"s3://bucket/{props[key].strip('/')}.zip"
    old = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = old or "us-east-1"
    try:
        return transform(document, dict(parameters or {}), _NoManagedPolicies())  # type: ignore[arg-type]
    finally:
        if old is None:
            del os.environ["AWS_DEFAULT_REGION"]


def role_permissions(
    template_path: Path, parameters: Mapping[str, str] = DEPLOYED
) -> dict[str, set[tuple[str, str]]]:
    """Function logical id -> the ``(action, resource)`` pairs its role allows (every
    statement is ``Allow``; resources as logical ids / parameter names, ``*`` as is)."""
    translated = translate(template_path, parameters)
    template = SamTemplate(translated)
    resolver = Resolver(
        template,
        parameter_overrides=dict(parameters),
        pseudo_parameters={
            "AWS::Region": "us-east-1",
            "AWS::AccountId": "123456789012",
            "AWS::Partition": "aws",
            "AWS::StackName": "sms-gateway",
        },
    )
    resources = translated["Resources"]
    for logical_id in resources:
        resolver.attributes[(logical_id, "Arn")] = logical_id
        resolver.refs[logical_id] = logical_id
    permissions: dict[str, set[tuple[str, str]]] = {}
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        role_ref = resource["Properties"]["Role"]
        assert "Fn::GetAtt" in role_ref, f"{logical_id}: a role from outside the template"
        role = resources[role_ref["Fn::GetAtt"][0]]["Properties"]
        assert not role.get("ManagedPolicyArns"), f"{logical_id}: managed policies on its role"
        pairs: set[tuple[str, str]] = set()
        for policy in role.get("Policies", []):
            for statement in resolver.resolve(policy["PolicyDocument"]["Statement"]):
                if statement is NO_VALUE:
                    continue
                assert statement["Effect"] == "Allow"
                actions = statement["Action"]
                targets = statement["Resource"]
                for action in [actions] if isinstance(actions, str) else actions:
                    for target in [targets] if isinstance(targets, str) else targets:
                        pairs.add((action, target))
        permissions[logical_id] = pairs
    return permissions


def _allows(pairs: set[tuple[str, str]], action: str, resource: str) -> bool:
    from fnmatch import fnmatchcase

    return any(
        fnmatchcase(action, allowed_action) and (allowed == "*" or fnmatchcase(resource, allowed))
        for allowed_action, allowed in pairs
    )


def _pattern_used(used: set[Call], function: str, action: str, pattern: str) -> bool:
    from fnmatch import fnmatchcase

    return any(f == function and a == action and fnmatchcase(r, pattern) for f, a, r in used)


def problems(
    recorded: set[Call],
    permissions: Mapping[str, set[tuple[str, str]]],
    *,
    complete: bool,
) -> list[str]:
    """What is wrong, one line each:

    - a recorded call its function's role does not allow (always checked);
    - when ``complete`` (the whole suite ran), a permission no recorded call used and no
      :data:`ALLOWLIST` entry explains.
    """
    found: list[str] = []
    for function, action, resource in sorted(recorded):
        if function not in permissions:
            found.append(f"{function}: not a function of template.yaml")
        elif not _allows(permissions[function], action, resource):
            found.append(f"{function} calls {action} on {resource}: its role does not allow it")
    if complete:
        used = {(f, a, r) for f, a, r in recorded}
        for function, pairs in sorted(permissions.items()):
            for action, resource in sorted(pairs):
                if (function, action, resource) in used or _allowlisted(action, resource):
                    continue
                # an ARN pattern (API Gateway's /usageplans/*/keys) is used by a call it matches
                if (
                    resource != "*"
                    and "*" in resource
                    and _pattern_used(used, function, action, resource)
                ):
                    continue
                found.append(
                    f"{function} may {action} on {resource}, which no test calls and "
                    "tests/iam.py's ALLOWLIST does not explain"
                )
    return found
