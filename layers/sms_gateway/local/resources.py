"""Create the template's DynamoDB tables and SQS queues in a (moto) AWS endpoint.

The definitions come from ``template.yaml`` itself (key schema, TTL, visibility timeout,
retention, RedrivePolicy, RedriveAllowPolicy), so there is no second hand-written copy to drift.
Physical names: the resource's own ``QueueName``/``TableName`` when the template sets one, else
``<stack name>-<logical id>`` (CloudFormation would add a random suffix; locally one stack
exists at a time).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from sms_gateway.local.template import Resolver, SamTemplate, TemplateError, UnresolvableError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

__all__ = ["LocalResources", "provision"]

logger = logging.getLogger(__name__)

# CloudFormation AWS::SQS::Queue property -> SQS queue attribute (values are strings).
_SQS_ATTRIBUTES: Final = (
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "DelaySeconds",
    "FifoQueue",
    "FifoThroughputLimit",
    "KmsDataKeyReusePeriodSeconds",
    "KmsMasterKeyId",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "SqsManagedSseEnabled",
    "VisibilityTimeout",
)
_SQS_JSON_ATTRIBUTES: Final = ("RedrivePolicy", "RedriveAllowPolicy")

_QUEUE: Final = "AWS::SQS::Queue"
_TABLE: Final = "AWS::DynamoDB::Table"


@dataclass
class LocalResources:
    """What :func:`provision` created, by logical id.

    ``queue_urls`` / ``queue_arns`` / ``table_names`` map logical ids to physical values;
    ``queue_url_by_arn`` lets an event source's ``Queue`` ARN find its URL.
    """

    queue_urls: dict[str, str] = field(default_factory=dict)
    queue_arns: dict[str, str] = field(default_factory=dict)
    table_names: dict[str, str] = field(default_factory=dict)

    @property
    def queue_url_by_arn(self) -> dict[str, str]:
        """Queue ARN -> queue URL."""
        return {self.queue_arns[key]: url for key, url in self.queue_urls.items()}


def provision(
    template: SamTemplate,
    resolver: Resolver,
    *,
    sqs: SQSClient,
    dynamodb: DynamoDBClient,
    stack_name: str,
) -> LocalResources:
    """Create every ``AWS::SQS::Queue`` and ``AWS::DynamoDB::Table`` of ``template``.

    Resources are created in dependency order: one whose properties reference a resource not
    created yet (a RedrivePolicy naming its dead-letter queue's ARN) waits for the next round.
    Each created resource's ``Ref`` and ``GetAtt`` values (``Arn``, ``QueueName``, ``QueueUrl``,
    ``StreamArn``) are recorded in ``resolver`` so later references resolve.

    Raises:
        TemplateError: a resource's properties cannot be resolved even after every other
            resource exists (a cycle or an unsupported reference).
        botocore.exceptions.ClientError: the endpoint refused a call.
    """
    created = LocalResources()
    pending = {**template.resources_of_type(_QUEUE), **template.resources_of_type(_TABLE)}
    while pending:
        progressed = False
        errors: dict[str, str] = {}
        for logical_id, resource in list(pending.items()):
            if "Condition" in resource and not resolver.condition(str(resource["Condition"])):
                del pending[logical_id]
                progressed = True
                continue
            try:
                properties = resolver.resolve(resource.get("Properties") or {})
            except UnresolvableError as error:
                errors[logical_id] = str(error)
                continue
            if resource["Type"] == _QUEUE:
                _create_queue(logical_id, properties, sqs, resolver, created, stack_name)
            else:
                _create_table(logical_id, properties, dynamodb, resolver, created, stack_name)
            del pending[logical_id]
            progressed = True
        if not progressed:
            detail = "; ".join(f"{key}: {reason}" for key, reason in errors.items())
            raise TemplateError(f"cannot create {', '.join(pending)} locally ({detail})")
    return created


def _create_queue(
    logical_id: str,
    properties: Mapping[str, Any],
    sqs: SQSClient,
    resolver: Resolver,
    created: LocalResources,
    stack_name: str,
) -> None:
    name = str(properties.get("QueueName") or f"{stack_name}-{logical_id}")
    if properties.get("FifoQueue") and not name.endswith(".fifo"):
        name += ".fifo"
    attributes: dict[str, str] = {}
    for key in _SQS_ATTRIBUTES:
        if key in properties:
            value = properties[key]
            attributes[key] = (
                ("true" if value else "false") if isinstance(value, bool) else str(value)
            )
    for key in _SQS_JSON_ATTRIBUTES:
        if key in properties:
            value = properties[key]
            attributes[key] = value if isinstance(value, str) else json.dumps(value)
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]  # type: ignore[arg-type]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    created.queue_urls[logical_id] = url
    created.queue_arns[logical_id] = arn
    resolver.refs[logical_id] = url
    resolver.attributes[(logical_id, "Arn")] = arn
    resolver.attributes[(logical_id, "QueueName")] = name
    resolver.attributes[(logical_id, "QueueUrl")] = url
    logger.info("created queue %s (%s) %s", logical_id, name, attributes)


def _create_table(
    logical_id: str,
    properties: Mapping[str, Any],
    dynamodb: DynamoDBClient,
    resolver: Resolver,
    created: LocalResources,
    stack_name: str,
) -> None:
    name = str(properties.get("TableName") or f"{stack_name}-{logical_id}")
    request: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "KeySchema": properties["KeySchema"],
        "BillingMode": properties.get("BillingMode", "PROVISIONED"),
    }
    for key in (
        "ProvisionedThroughput",
        "GlobalSecondaryIndexes",
        "LocalSecondaryIndexes",
        "StreamSpecification",
        "TableClass",
    ):
        if key in properties:
            request[key] = properties[key]
    sse = properties.get("SSESpecification")
    if sse:
        # CloudFormation spells it SSEEnabled, the DynamoDB API Enabled.
        request["SSESpecification"] = {
            "Enabled": bool(sse.get("SSEEnabled", False)),
            **{key: sse[key] for key in ("SSEType", "KMSMasterKeyId") if key in sse},
        }
    description = dynamodb.create_table(**request)["TableDescription"]
    ttl = properties.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
        )
    pitr = properties.get("PointInTimeRecoverySpecification") or {}
    if pitr.get("PointInTimeRecoveryEnabled"):
        dynamodb.update_continuous_backups(
            TableName=name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
    created.table_names[logical_id] = name
    resolver.refs[logical_id] = name
    resolver.attributes[(logical_id, "Arn")] = description["TableArn"]
    if "LatestStreamArn" in description:
        resolver.attributes[(logical_id, "StreamArn")] = description["LatestStreamArn"]
    logger.info("created table %s (%s), TTL %s", logical_id, name, ttl)
