"""The local stack's transport pieces, without the gateway's own handlers.

- template.yaml -> table and queues created in moto with the template's own settings;
- HTTP request -> API Gateway REST proxy event -> handler answer -> HTTP;
- SQS poller: Lambda's SQS event shape, partial batch response (successes deleted, failures
  left for redelivery), whole-batch failure, and moto's redrive to the dead-letter queue.

Handlers here are tiny throwaway modules written under tmp_path, so these tests do not depend
on the real functions.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from sms_gateway.local.http_front import (
    HttpRequest,
    InvalidProxyResponse,
    build_api_event,
    proxy_response_to_http,
)
from sms_gateway.local.journal import JOURNAL_FILE
from sms_gateway.local.pollers import SqsPoller, failed_message_ids, sqs_event_record
from sms_gateway.local.resources import provision
from sms_gateway.local.runtime import function_environment
from sms_gateway.local.stack import DataDirInUse, LocalStack, lock_data_dir
from sms_gateway.local.template import ApiRoute, Resolver, SamTemplate

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield


# -- template -> moto ------------------------------------------------------------------------


def test_real_template_creates_table_and_queues_as_declared(aws: None) -> None:
    template = SamTemplate.from_file(ROOT / "template.yaml")
    resolver = Resolver(
        template,
        pseudo_parameters={
            "AWS::Region": REGION,
            "AWS::AccountId": "123456789012",
            "AWS::Partition": "aws",
            "AWS::StackName": "sms-gateway",
        },
    )
    sqs = boto3.client("sqs", region_name=REGION)
    dynamodb = boto3.client("dynamodb", region_name=REGION)

    created = provision(template, resolver, sqs=sqs, dynamodb=dynamodb, stack_name="sms-gateway")

    send_url = created.queue_urls["SendQueue"]
    dead_arn = created.queue_arns["DeadLetterQueue"]
    send = sqs.get_queue_attributes(QueueUrl=send_url, AttributeNames=["All"])["Attributes"]
    assert send_url.endswith("/123456789012/sms-gateway-send")
    assert send["VisibilityTimeout"] == "180"
    assert send["MessageRetentionPeriod"] == str(4 * 86_400)
    assert json.loads(send["RedrivePolicy"]) == {
        "deadLetterTargetArn": dead_arn,
        "maxReceiveCount": 3,
    }
    dead = sqs.get_queue_attributes(
        QueueUrl=created.queue_urls["DeadLetterQueue"], AttributeNames=["All"]
    )["Attributes"]
    assert dead["MessageRetentionPeriod"] == str(14 * 86_400)
    # Sent to moto as declared; moto 5.2 accepts RedriveAllowPolicy but neither stores nor
    # enforces it, so only check it when it comes back.
    if "RedriveAllowPolicy" in dead:
        assert json.loads(dead["RedriveAllowPolicy"]) == {
            "redrivePermission": "byQueue",
            "sourceQueueArns": [created.queue_arns["SendQueue"]],
        }

    table_name = created.table_names["IdempotencyTable"]
    assert table_name == "sms-gateway-IdempotencyTable"
    table = dynamodb.describe_table(TableName=table_name)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = dynamodb.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiration"}
    rate_table = created.table_names["RateLimitTable"]
    assert rate_table == "sms-gateway-RateLimitTable"
    buckets = dynamodb.describe_table(TableName=rate_table)["Table"]
    assert buckets["KeySchema"] == [{"AttributeName": "provider", "KeyType": "HASH"}]
    assert buckets["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"

    # Each function's environment (Globals + its own) points at exactly these resources.
    envs = {spec.logical_id: function_environment(spec, resolver) for spec in template.functions()}
    assert envs["IngestFunction"]["SMS_GATEWAY_IDEMPOTENCY_TABLE"] == table_name
    assert envs["IngestFunction"]["SMS_GATEWAY_SEND_QUEUE_URL"] == send_url
    sender = envs["SenderFunction"]
    assert sender["SMS_GATEWAY_SEND_QUEUE_URL"] == send_url
    assert sender["SMS_GATEWAY_DEAD_LETTER_QUEUE_URL"] == created.queue_urls["DeadLetterQueue"]
    assert sender["SMS_GATEWAY_LEASE_SECONDS"] == "30"
    assert sender["SMS_GATEWAY_RATE_LIMIT_TABLE"] == rate_table
    assert {env["SMS_GATEWAY_MAX_RECEIVE_COUNT"] for env in envs.values()} == {"3"}
    # ... and only its own: the ingest function has no database, the others no idempotency.
    assert "SMS_GATEWAY_MESSAGE_DSN" not in envs["IngestFunction"]
    assert "SMS_GATEWAY_LEASE_SECONDS" not in envs["StatusFunction"]
    with_table = {name for name, env in envs.items() if "SMS_GATEWAY_IDEMPOTENCY_TABLE" in env}
    assert with_table == {"IngestFunction"}
    with_buckets = {name for name, env in envs.items() if "SMS_GATEWAY_RATE_LIMIT_TABLE" in env}
    assert with_buckets == {"SenderFunction"}


# -- HTTP -> API Gateway event -> HTTP -------------------------------------------------------

ROUTE = ApiRoute(function="F", event="Get", method="GET", path="/v1/messages/{message_id}")


def test_api_event_has_the_rest_api_proxy_shape() -> None:
    request = HttpRequest(
        method="GET",
        target="/v1/messages/abc%20123?page=2&tag=a&tag=b&empty=",
        headers=[
            ("Host", "127.0.0.1:3000"),
            ("X-Tenant-ID", "tenant-1"),
            ("Accept", "text/plain"),
            ("Accept", "application/json"),
            ("User-Agent", "curl/8"),
        ],
        body=b"",
        source_ip="127.0.0.9",
    )
    event = build_api_event(
        request, ROUTE, {"message_id": "abc 123"}, stage="dev", request_id="rid", now_ms=1_000
    )
    assert event["resource"] == "/v1/messages/{message_id}"
    assert event["path"] == "/v1/messages/abc 123"
    assert event["httpMethod"] == "GET"
    assert event["headers"]["X-Tenant-ID"] == "tenant-1"
    assert event["headers"]["Accept"] == "application/json"  # last value, as API Gateway
    assert event["multiValueHeaders"]["Accept"] == ["text/plain", "application/json"]
    assert event["headers"]["X-Forwarded-For"] == "127.0.0.9"
    assert event["headers"]["X-Forwarded-Port"] == "3000"
    assert event["queryStringParameters"] == {"page": "2", "tag": "b", "empty": ""}
    assert event["multiValueQueryStringParameters"] == {
        "page": ["2"],
        "tag": ["a", "b"],
        "empty": [""],
    }
    assert event["pathParameters"] == {"message_id": "abc 123"}
    assert event["stageVariables"] is None
    assert event["body"] is None
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["requestId"] == "rid"
    assert context["stage"] == "dev"
    assert context["resourcePath"] == "/v1/messages/{message_id}"
    assert context["httpMethod"] == "GET"
    assert context["path"] == "/dev/v1/messages/abc 123"
    assert context["requestTimeEpoch"] == 1_000
    assert context["identity"]["sourceIp"] == "127.0.0.9"
    assert context["identity"]["apiKeyId"] is None
    assert context["identity"]["userAgent"] == "curl/8"


def test_api_event_without_query_or_params_uses_none_and_keeps_text_body() -> None:
    route = ApiRoute(function="F", event="Post", method="POST", path="/v1/messages")
    request = HttpRequest("POST", "/v1/messages", [("Host", "h")], '{"b":"é"}'.encode())
    event = build_api_event(request, route, {}, stage="dev")
    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None
    assert event["pathParameters"] is None
    assert event["body"] == '{"b":"é"}'
    assert uuid.UUID(event["requestContext"]["requestId"])
    binary = build_api_event(
        HttpRequest("POST", "/v1/messages", [], b"\xff\x00"), route, {}, stage="dev"
    )
    assert binary["isBase64Encoded"] is True
    assert base64.b64decode(binary["body"]) == b"\xff\x00"


def test_route_matching_prefers_literal_segments() -> None:
    greedy = ApiRoute("F", "E", "ANY", "/v1/{proxy+}")
    assert ROUTE.match("GET", "/v1/messages/m-1") == {"message_id": "m-1"}
    assert ROUTE.match("POST", "/v1/messages/m-1") is None
    assert ROUTE.match("GET", "/v1/messages") is None
    assert ROUTE.match("GET", "/v1/messages/m-1/x") is None
    assert greedy.match("DELETE", "/v1/a/b") == {"proxy": "a/b"}
    assert ROUTE.specificity > greedy.specificity


@pytest.mark.parametrize(
    "path", ["/v1//messages/abc", "//v1/messages/abc", "/v1/messages//abc", "v1/messages/abc"]
)
def test_a_path_with_an_empty_segment_matches_no_route(path: str) -> None:
    # No API Gateway resource has an empty path part: 403 Missing Authentication Token.
    greedy = ApiRoute("F", "E", "ANY", "/v1/{proxy+}")
    assert ROUTE.match("GET", path) is None
    assert greedy.match("GET", path.replace("messages/abc", "a//b")) is None
    assert ROUTE.match("GET", "/v1/messages/abc") == {"message_id": "abc"}


def test_proxy_response_becomes_http() -> None:
    response = proxy_response_to_http(
        {
            "statusCode": 202,
            "headers": {"Location": "/v1/messages/1", "X-One": "a"},
            "multiValueHeaders": {"X-One": ["a", "b"], "Set-Cookie": ["c=1", "d=2"]},
            "body": '{"ok":true}',
        },
        request_id="rid",
    )
    assert response.status == 202
    assert response.body == b'{"ok":true}'
    assert response.headers.count(("X-One", "a")) == 1
    assert ("X-One", "b") in response.headers
    assert ("Set-Cookie", "d=2") in response.headers
    assert ("Content-Type", "application/json") in response.headers  # REST API default
    assert ("x-amzn-RequestId", "rid") in response.headers
    binary = proxy_response_to_http(
        {"statusCode": 200, "body": base64.b64encode(b"\x00\x01").decode(), "isBase64Encoded": True}
    )
    assert binary.body == b"\x00\x01"
    for malformed in (None, {"body": "x"}, {"statusCode": "abc"}, {"statusCode": 200, "body": 1}):
        with pytest.raises(InvalidProxyResponse):
            proxy_response_to_http(malformed)


@pytest.mark.parametrize(
    "answer",
    [
        {"statusCode": 100},  # an interim status is no final answer
        {"statusCode": 101},
        {"statusCode": 199},
        {"statusCode": 600},
        {"statusCode": 200, "headers": {"X:Y": "v"}},  # names are RFC 9110 tokens
        {"statusCode": 200, "headers": {"X Y": "v"}},
        {"statusCode": 200, "headers": {"X(Y)": "v"}},
        {"statusCode": 200, "headers": {"X-A": None}},  # null is no value
        {"statusCode": 200, "multiValueHeaders": {"X-A": ["a", None]}},
        {"statusCode": 200, "headers": {"X-A": {"nested": 1}}},
        {"statusCode": 200, "headers": {"X-A": "a\x01b"}},  # control characters
        {"statusCode": 200, "headers": {"X-A": "a\x7fb"}},
        {"statusCode": 200, "headers": {"X-A": "\u65e5"}},  # not Latin-1
    ],
)
def test_a_malformed_proxy_response_is_refused_as_api_gateway_refuses_it(
    answer: dict[str, Any],
) -> None:
    with pytest.raises(InvalidProxyResponse):
        proxy_response_to_http(answer)


def test_header_values_api_gateway_passes_through() -> None:
    response = proxy_response_to_http(
        {
            "statusCode": 599,
            "headers": {"X-Tab": "a\tb c", "X-Num": 3, "X-Bool": True, "X-Latin": "caf\u00e9"},
        }
    )
    assert ("X-Tab", "a\tb c") in response.headers
    assert ("X-Num", "3") in response.headers
    assert ("X-Bool", "true") in response.headers
    assert ("X-Latin", "caf\u00e9") in response.headers
    assert proxy_response_to_http({"statusCode": 200}).status == 200


# -- SQS event shape and partial batch response ----------------------------------------------


def test_partial_batch_response_rules() -> None:
    ids = ["a", "b"]
    assert failed_message_ids(None, ids) == set()
    assert failed_message_ids({}, ids) == set()
    assert failed_message_ids({"batchItemFailures": []}, ids) == set()
    assert failed_message_ids({"batchItemFailures": [{"itemIdentifier": "b"}]}, ids) == {"b"}
    # Lambda fails the whole batch for these.
    assert failed_message_ids({"batchItemFailures": [{"itemIdentifier": ""}]}, ids) is None
    assert failed_message_ids({"batchItemFailures": [{"itemIdentifier": "zz"}]}, ids) is None
    assert failed_message_ids({"batchItemFailures": [{"id": "a"}]}, ids) is None
    assert failed_message_ids(["a"], ids) is None


def make_queue(sqs: Any, name: str, **attributes: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return url, arn


def queue_depth(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def test_sqs_event_record_has_lambda_shape(aws: None) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    url, arn = make_queue(sqs, "shape")
    sent = sqs.send_message(
        QueueUrl=url,
        MessageBody='{"message_id":"m-1"}',
        MessageAttributes={
            "tenant": {"DataType": "String", "StringValue": "tenant-1"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x01\x02"},
        },
    )
    events: list[dict[str, Any]] = []

    def handler(event: dict[str, Any]) -> dict[str, Any]:
        events.append(event)
        return {"batchItemFailures": []}

    poller = SqsPoller(sqs=sqs, queue_url=url, queue_arn=arn, invoke=handler, region=REGION)
    outcome = poller.poll_once()

    assert outcome.deleted == [sent["MessageId"]]
    (record,) = events[0]["Records"]
    assert record["messageId"] == sent["MessageId"]
    assert record["body"] == '{"message_id":"m-1"}'
    assert record["md5OfBody"] == hashlib.md5(b'{"message_id":"m-1"}').hexdigest()  # noqa: S324
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == arn
    assert record["awsRegion"] == REGION
    assert record["receiptHandle"]
    attributes = record["attributes"]
    assert attributes["ApproximateReceiveCount"] == "1"
    assert {"SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"} <= set(attributes)
    assert record["messageAttributes"]["tenant"] == {
        "stringValue": "tenant-1",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    assert (
        record["messageAttributes"]["blob"]["binaryValue"] == base64.b64encode(b"\x01\x02").decode()
    )
    assert record["md5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    # The record a poller builds is the same function the stack uses.
    assert (
        sqs_event_record(
            {"MessageId": "x", "ReceiptHandle": "r", "Body": "b", "MD5OfBody": "m"},
            queue_arn=arn,
            region=REGION,
        )["attributes"]
        == {}
    )


def failing_bodies(*bodies: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A handler reporting the records with these bodies as failed."""

    def handler(event: dict[str, Any]) -> dict[str, Any]:
        return {
            "batchItemFailures": [
                {"itemIdentifier": record["messageId"]}
                for record in event["Records"]
                if record["body"] in bodies
            ]
        }

    return handler


def test_poller_deletes_successes_and_leaves_failures(aws: None) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    url, arn = make_queue(sqs, "work", VisibilityTimeout="30")
    ids = {
        body: sqs.send_message(QueueUrl=url, MessageBody=body)["MessageId"]
        for body in ("ok-1", "fail-1", "ok-2")
    }
    seen: list[dict[str, Any]] = []
    report = failing_bodies("fail-1")

    def handler(event: dict[str, Any]) -> dict[str, Any]:
        seen.extend(event["Records"])
        return report(event)

    poller = SqsPoller(sqs=sqs, queue_url=url, queue_arn=arn, invoke=handler, region=REGION)

    outcome = poller.poll_once()

    assert sorted(outcome.received) == sorted(ids.values())
    assert sorted(outcome.deleted) == sorted([ids["ok-1"], ids["ok-2"]])
    assert outcome.retained == [ids["fail-1"]]
    assert queue_depth(sqs, url) == 1  # the failure is in flight until its visibility ends
    assert poller.poll_once().received == []  # ... so it is not redelivered yet

    # The handler may shorten a failure's visibility (the sender's backoff does): it comes back.
    (failed,) = [record for record in seen if record["body"] == "fail-1"]
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=failed["receiptHandle"], VisibilityTimeout=0
    )
    report = failing_bodies()
    again = poller.poll_once()
    assert again.deleted == [ids["fail-1"]]
    assert seen[-1]["attributes"]["ApproximateReceiveCount"] == "2"
    assert queue_depth(sqs, url) == 0


def test_poller_deletes_nothing_when_the_handler_raises_or_answers_badly(aws: None) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    url, arn = make_queue(sqs, "boom", VisibilityTimeout="0")
    sqs.send_message(QueueUrl=url, MessageBody="a")
    sqs.send_message(QueueUrl=url, MessageBody="b")

    def boom(event: dict[str, Any]) -> None:
        raise RuntimeError("handler crashed")

    raising = SqsPoller(sqs=sqs, queue_url=url, queue_arn=arn, invoke=boom, region=REGION)
    outcome = raising.poll_once()
    assert len(outcome.received) == 2
    assert outcome.deleted == []
    assert outcome.error == "RuntimeError('handler crashed')"
    assert queue_depth(sqs, url) == 2

    unknown_id = SqsPoller(
        sqs=sqs,
        queue_url=url,
        queue_arn=arn,
        invoke=lambda event: {"batchItemFailures": [{"itemIdentifier": "not-in-batch"}]},
        region=REGION,
    )
    assert unknown_id.poll_once().deleted == []
    assert queue_depth(sqs, url) == 2

    # Without ReportBatchItemFailures the answer is ignored: returning means success.
    ignoring = SqsPoller(
        sqs=sqs,
        queue_url=url,
        queue_arn=arn,
        invoke=failing_bodies("a", "b"),
        report_batch_item_failures=False,
        region=REGION,
    )
    assert len(ignoring.poll_once().deleted) == 2
    assert queue_depth(sqs, url) == 0


def test_moto_redrives_on_the_receive_after_max_receive_count(aws: None) -> None:
    """What moto does (and SQS documents): a message received maxReceiveCount times and not
    deleted is moved to the dead-letter queue by the next ReceiveMessage on the source queue,
    which does not return it. It keeps its message id; moto also keeps counting its receives
    (the first receive from the DLQ shows maxReceiveCount + 1)."""
    sqs = boto3.client("sqs", region_name=REGION)
    dead_url, dead_arn = make_queue(sqs, "dead")
    url, arn = make_queue(
        sqs,
        "source",
        VisibilityTimeout="0",
        RedrivePolicy=json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": "2"}),
    )
    message_id = sqs.send_message(QueueUrl=url, MessageBody="fail")["MessageId"]
    counts: list[str] = []

    def always_fail(event: dict[str, Any]) -> dict[str, Any]:
        counts.extend(
            record["attributes"]["ApproximateReceiveCount"] for record in event["Records"]
        )
        return failing_bodies("fail")(event)

    poller = SqsPoller(
        sqs=sqs, queue_url=url, queue_arn=arn, invoke=always_fail, wait_time_seconds=0
    )
    assert poller.poll_once().retained == [message_id]
    assert poller.poll_once().retained == [message_id]
    assert poller.poll_once().received == []  # third receive: moved, not delivered
    assert counts == ["1", "2"]

    dead_events: list[dict[str, Any]] = []
    dead_poller = SqsPoller(
        sqs=sqs,
        queue_url=dead_url,
        queue_arn=dead_arn,
        invoke=lambda event: dead_events.append(event),
        wait_time_seconds=0,
    )
    assert dead_poller.poll_once().deleted == [message_id]
    (record,) = dead_events[0]["Records"]
    assert record["body"] == "fail"
    assert record["eventSourceARN"] == dead_arn
    assert record["attributes"]["ApproximateReceiveCount"] == "3"


def test_batching_window_never_outlasts_the_visibility_timeout(aws: None) -> None:
    # A queue whose visibility timeout (0 s) is shorter than the batching window (2 s): a
    # batch that kept filling for the whole window would receive the same message again and
    # again. The window is capped at half the visibility timeout, so the batch holds it once.
    sqs = boto3.client("sqs", region_name=REGION)
    url, arn = make_queue(sqs, "short-visibility", VisibilityTimeout="0")
    message_id = sqs.send_message(QueueUrl=url, MessageBody="once")["MessageId"]
    events: list[dict[str, Any]] = []
    poller = SqsPoller(
        sqs=sqs,
        queue_url=url,
        queue_arn=arn,
        invoke=events.append,
        batching_window_seconds=2,
        wait_time_seconds=0,
    )
    assert poller.poll_once().deleted == [message_id]
    assert [record["messageId"] for record in events[0]["Records"]] == [message_id]
    assert queue_depth(sqs, url) == 0
    assert poller.filling_seconds() == 0

    _, honest_arn = make_queue(sqs, "honest", VisibilityTimeout="30")
    honest = SqsPoller(
        sqs=sqs,
        queue_url=sqs.get_queue_url(QueueName="honest")["QueueUrl"],
        queue_arn=honest_arn,
        invoke=events.append,
        batching_window_seconds=3,
    )
    assert honest.filling_seconds() == 3  # within half of 30 s: the window as declared


def test_a_message_that_comes_back_while_the_batch_fills_is_in_it_once(aws: None) -> None:
    # However the batch is timed, a message whose visibility ends while the batch fills (here
    # ended at once after each receive, as a slow machine would) is one record, with the
    # newest receipt handle (so its delete succeeds).
    sqs = boto3.client("sqs", region_name=REGION)
    url, arn = make_queue(sqs, "comes-back", VisibilityTimeout="30")
    message_id = sqs.send_message(QueueUrl=url, MessageBody="once")["MessageId"]
    receives: list[str] = []

    class SlowMachinePoller(SqsPoller):
        def _receive(self, count: int, wait_seconds: int) -> list[Any]:
            messages = super()._receive(count, wait_seconds)
            for message in messages:
                receives.append(message["Attributes"]["ApproximateReceiveCount"])
                sqs.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            return messages

    events: list[dict[str, Any]] = []
    poller = SlowMachinePoller(
        sqs=sqs,
        queue_url=url,
        queue_arn=arn,
        invoke=events.append,
        batching_window_seconds=1,
        wait_time_seconds=0,
    )
    outcome = poller.poll_once()
    assert len(receives) >= 2  # it did come back during the window
    assert outcome.received == outcome.deleted == [message_id]
    (record,) = events[0]["Records"]
    assert record["attributes"]["ApproximateReceiveCount"] == receives[-1]
    assert queue_depth(sqs, url) == 0


# -- the whole local stack on a throwaway template -------------------------------------------

THROWAWAY_TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage:
    Type: String
    Default: test
  MaxReceiveCount:
    Type: Number
    Default: 2
Globals:
  Function:
    Runtime: python3.12
    Handler: app.lambda_handler
    Timeout: 5
    Environment:
      Variables:
        RECORD_DIR: "{record_dir}"
        STACK_REGION: !Sub "${{AWS::Region}}-${{Stage}}"
        SMS_GATEWAY_AUTH_MODE: api_key
Resources:
  Api:
    Type: AWS::Serverless::Api
    Properties:
      StageName: !Ref Stage
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: echo/
      Environment:
        Variables:
          WORK_QUEUE_URL: !Ref WorkQueue
          TABLE_NAME: !Ref Table
      Events:
        Create:
          Type: Api
          Properties: {{RestApiId: !Ref Api, Path: /v1/items, Method: post}}
        Read:
          Type: Api
          Properties: {{RestApiId: !Ref Api, Path: "/v1/items/{{item_id}}", Method: get}}
        Boom:
          Type: Api
          Properties: {{RestApiId: !Ref Api, Path: /v1/boom, Method: get}}
  SlowFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: slow/
      Timeout: 1
      Events:
        Slow:
          Type: Api
          Properties: {{RestApiId: !Ref Api, Path: /v1/slow, Method: get}}
  WorkerFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: worker/
      Environment:
        Variables:
          WORK_QUEUE_URL: !Ref WorkQueue
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt WorkQueue.Arn
            BatchSize: 10
            MaximumBatchingWindowInSeconds: 1
            FunctionResponseTypes: [ReportBatchItemFailures]
  DeadFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: dead/
      Events:
        Dead:
          Type: SQS
          Properties:
            Queue: !GetAtt DeadQueue.Arn
            BatchSize: 10
            FunctionResponseTypes: [ReportBatchItemFailures]
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      AttributeDefinitions: [{{AttributeName: id, AttributeType: S}}]
      KeySchema: [{{AttributeName: id, KeyType: HASH}}]
      BillingMode: PAY_PER_REQUEST
      TimeToLiveSpecification: {{AttributeName: expiration, Enabled: true}}
  WorkQueue:
    Type: AWS::SQS::Queue
    Properties:
      # 6 x the function timeout, as AWS recommends (and more than the batching window):
      # a message received for a batch stays hidden until the batch is done.
      VisibilityTimeout: 30
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt DeadQueue.Arn
        maxReceiveCount: !Ref MaxReceiveCount
  DeadQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 30
"""

ECHO_HANDLER = """\
import json
import os


def lambda_handler(event, context):
    if event["resource"] == "/v1/boom":
        raise RuntimeError("boom")
    env = {key: os.environ.get(key) for key in (
        "WORK_QUEUE_URL", "TABLE_NAME", "STACK_REGION", "SMS_GATEWAY_AUTH_MODE",
        "SMS_GATEWAY_MESSAGE_DSN", "SMS_GATEWAY_RETRY_BASE_SECONDS", "AWS_ENDPOINT_URL",
        "POWERTOOLS_TRACE_DISABLED", "SMS_GATEWAY_DEMO_PROVIDERS", "SMS_GATEWAY_PROVIDERS",
    )}
    context_seen = {
        "function_name": context.function_name,
        "aws_request_id": context.aws_request_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "memory": context.memory_limit_in_mb,
    }
    return {
        "statusCode": 201 if event["httpMethod"] == "POST" else 200,
        "headers": {"Content-Type": "application/json", "X-Echo": "1"},
        "multiValueHeaders": {"X-Multi": ["a", "b"]},
        "body": json.dumps({"event": event, "env": env, "context": context_seen}),
    }
"""

WORKER_HANDLER = """\
import json
import os
from pathlib import Path

import boto3


def lambda_handler(event, context):
    failures = []
    with (Path(os.environ["RECORD_DIR"]) / "worker.jsonl").open("a") as log:
        for record in event["Records"]:
            log.write(json.dumps({
                "body": record["body"],
                "count": record["attributes"]["ApproximateReceiveCount"],
                "batch": len(event["Records"]),
            }) + "\\n")
            if record["body"].startswith("fail"):
                failures.append({"itemIdentifier": record["messageId"]})
                # retry now rather than after the 30 s visibility (the sender's backoff does
                # the same with its own delay)
                boto3.client("sqs").change_message_visibility(
                    QueueUrl=os.environ["WORK_QUEUE_URL"],
                    ReceiptHandle=record["receiptHandle"],
                    VisibilityTimeout=0,
                )
    return {"batchItemFailures": failures}
"""

SLOW_HANDLER = """\
import json
import os
import time


def lambda_handler(event, context):
    print("slow handler starts")
    if not event["queryStringParameters"]:
        time.sleep(30)
    return {"statusCode": 200, "body": json.dumps({"pid": os.getpid()})}
"""

DEAD_HANDLER = """\
import json
import os
from pathlib import Path


def lambda_handler(event, context):
    with (Path(os.environ["RECORD_DIR"]) / "dead.jsonl").open("a") as log:
        for record in event["Records"]:
            log.write(json.dumps({"body": record["body"], "id": record["messageId"]}) + "\\n")
    return {"batchItemFailures": []}
"""


@pytest.fixture
def throwaway_root(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    records = tmp_path / "records"
    records.mkdir()
    for name, source in (
        ("echo", ECHO_HANDLER),
        ("worker", WORKER_HANDLER),
        ("dead", DEAD_HANDLER),
        ("slow", SLOW_HANDLER),
    ):
        (root / name).mkdir(parents=True)
        (root / name / "app.py").write_text(textwrap.dedent(source), encoding="utf-8")
    (root / "template.yaml").write_text(
        THROWAWAY_TEMPLATE.format(record_dir=records), encoding="utf-8"
    )
    return root


def call(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, bytes, list[tuple[str, str]]]:
    """One request over http.client, which keeps header names as sent (urllib does not).

    The headers come back both as a case-insensitive mapping (the server may write names in
    its own case, as HTTP allows) and as the (name, value) pairs received, repeats kept."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        pairs = response.getheaders()
        return response.status, response.headers, response.read(), pairs
    finally:
        connection.close()


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_local_stack_end_to_end_on_a_throwaway_template(
    throwaway_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SMS_GATEWAY_RETRY_BASE_SECONDS", raising=False)
    loopback = (
        '{"agg": {"type": "http", "url": "http://127.0.0.1:8085/send", "signing_secret": "ssm:/a"}}'
    )
    monkeypatch.setenv("SMS_GATEWAY_PROVIDERS", loopback)
    before = dict(os.environ)
    records = tmp_path / "records"
    dsn = f"sqlite:///{tmp_path / 'x.db'}"
    with LocalStack(
        throwaway_root, port=0, dsn=dsn, data_dir=tmp_path, prepare_database=False
    ) as stack:
        assert stack.url.startswith("http://127.0.0.1:")
        assert stack.stage == "test"

        # POST with a query string: the echo handler returns the event it got.
        status, headers, body, pairs = call(
            "POST",
            f"{stack.url}/v1/items?x=1&x=2",
            b'{"name":"one"}',
            {"Content-Type": "application/json", "X-Tenant-ID": "tenant-1"},
        )
        assert status == 201
        assert headers["X-Echo"] == "1"
        assert [value for key, value in pairs if key == "X-Multi"] == ["a", "b"]
        answer = json.loads(body)
        event = answer["event"]
        assert event["resource"] == "/v1/items"
        assert event["httpMethod"] == "POST"
        assert event["body"] == '{"name":"one"}'
        assert event["headers"]["X-Tenant-ID"] == "tenant-1"
        assert event["queryStringParameters"] == {"x": "2"}
        assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"]}
        assert event["pathParameters"] is None
        assert event["requestContext"]["stage"] == "test"
        assert event["requestContext"]["requestId"] == headers["x-amzn-RequestId"]
        assert answer["context"]["function_name"] == "sms-gateway-EchoFunction"
        assert 0 < answer["context"]["remaining_ms"] <= 5_000
        env = answer["env"]
        assert env["WORK_QUEUE_URL"] == stack.resources.queue_urls["WorkQueue"]
        assert env["WORK_QUEUE_URL"].startswith(stack.moto_endpoint)
        assert env["TABLE_NAME"] == "sms-gateway-Table"
        assert env["STACK_REGION"] == "us-east-1-test"
        assert env["SMS_GATEWAY_AUTH_MODE"] == "local"  # local mode beats the template
        assert env["SMS_GATEWAY_MESSAGE_DSN"] == dsn
        assert env["SMS_GATEWAY_RETRY_BASE_SECONDS"] == "1"
        # the demo simulators are wired locally, and a loopback provider can be named
        assert env["SMS_GATEWAY_DEMO_PROVIDERS"] == "true"
        assert env["SMS_GATEWAY_PROVIDERS"] == loopback
        assert env["AWS_ENDPOINT_URL"] == stack.moto_endpoint
        assert env["POWERTOOLS_TRACE_DISABLED"] == "true"

        # Path parameters are matched from the route template.
        status, _, body, _ = call("GET", f"{stack.url}/v1/items/it%2D1")
        assert status == 200
        assert json.loads(body)["event"]["pathParameters"] == {"item_id": "it-1"}
        assert json.loads(body)["event"]["resource"] == "/v1/items/{item_id}"

        # API Gateway's own answers.
        status, _, body, _ = call("GET", f"{stack.url}/v1/nope")
        assert (status, json.loads(body)) == (403, {"message": "Missing Authentication Token"})
        status, headers, body, _ = call("DELETE", f"{stack.url}/v1/items")
        assert (status, json.loads(body)) == (403, {"message": "Missing Authentication Token"})
        assert headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
        status, _, body, _ = call("GET", f"{stack.url}/v1/boom")
        assert (status, json.loads(body)) == (502, {"message": "Internal server error"})

        # SQS: successes deleted, the failure redelivered, then redriven to the DLQ consumer.
        sqs = boto3.client(
            "sqs",
            endpoint_url=stack.moto_endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        work_url = stack.resources.queue_urls["WorkQueue"]
        for body_text in ("ok-1", "fail-1", "ok-2"):
            sqs.send_message(QueueUrl=work_url, MessageBody=body_text)
        wait_for(lambda: len(read_lines(records / "dead.jsonl")) >= 1)
        dead = read_lines(records / "dead.jsonl")
        assert [line["body"] for line in dead] == ["fail-1"]
        seen = read_lines(records / "worker.jsonl")
        assert sorted(line["body"] for line in seen if line["body"].startswith("ok")) == [
            "ok-1",
            "ok-2",
        ]
        assert [line["count"] for line in seen if line["body"] == "fail-1"] == ["1", "2"]
        wait_for(lambda: queue_depth(sqs, work_url) == 0)
        dead_url = stack.resources.queue_urls["DeadQueue"]
        wait_for(lambda: queue_depth(sqs, dead_url) == 0)

    # Stopped: environment restored, port closed.
    assert dict(os.environ) == before
    with pytest.raises(RuntimeError):
        _ = stack.url


def test_a_function_past_its_timeout_answers_502_and_gets_a_new_environment(
    throwaway_root: Path, tmp_path: Path
) -> None:
    lines: list[tuple[str, str]] = []
    dsn = f"sqlite:///{tmp_path / 'x.db'}"
    with LocalStack(
        throwaway_root,
        port=0,
        dsn=dsn,
        data_dir=tmp_path / "data",
        prepare_database=False,
        environments=1,
        prewarm=0,
        log_sink=lambda function, line: lines.append((function, line)),
    ) as stack:
        status, _, body, _ = call("GET", f"{stack.url}/v1/slow?fast=1")
        assert status == 200
        first_pid = json.loads(body)["pid"]

        started = time.monotonic()
        status, _, body, _ = call("GET", f"{stack.url}/v1/slow")
        # API Gateway's answer to a Lambda timeout, after the function's Timeout of 1 s.
        assert (status, json.loads(body)) == (502, {"message": "Internal server error"})
        assert time.monotonic() - started < 5
        timed_out = [line for function, line in lines if function == "SlowFunction"]
        assert any(line.endswith(" Task timed out after 1.00 seconds") for line in timed_out)
        assert "slow handler starts" in timed_out  # the function's stdout is its log

        status, _, body, _ = call("GET", f"{stack.url}/v1/slow?fast=1")
        assert status == 200
        assert json.loads(body)["pid"] != first_pid  # the environment was replaced
        assert stack.functions["SlowFunction"].cold_starts == 2
        # Environments are per function and on demand: this one was never needed.
        assert stack.functions["EchoFunction"].cold_starts == 0


def test_a_second_stack_in_the_same_process_starts_clean(
    throwaway_root: Path, tmp_path: Path
) -> None:
    dsn = f"sqlite:///{tmp_path / 'x.db'}"
    overrides = {"MaxReceiveCount": "5"}
    # Separate data dirs: the same one would bring the queued message back (the journal).
    with LocalStack(
        throwaway_root,
        port=0,
        dsn=dsn,
        data_dir=tmp_path / "first",
        prepare_database=False,
        parameter_overrides=overrides,
    ) as first:
        sqs = boto3.client(
            "sqs",
            endpoint_url=first.moto_endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        dead_url = first.resources.queue_urls["DeadQueue"]
        # The dead-letter consumer would take it; stop its poller first to leave it queued.
        first.pollers["DeadFunction.Dead"].stop(timeout=10)
        sqs.send_message(QueueUrl=dead_url, MessageBody="left behind")
        work = sqs.get_queue_attributes(
            QueueUrl=first.resources.queue_urls["WorkQueue"], AttributeNames=["RedrivePolicy"]
        )["Attributes"]
        assert json.loads(work["RedrivePolicy"])["maxReceiveCount"] == 5
        first_endpoint = first.moto_endpoint
    with LocalStack(
        throwaway_root, port=0, dsn=dsn, data_dir=tmp_path / "second", prepare_database=False
    ) as second:
        assert second.moto_endpoint != first_endpoint
        sqs = boto3.client(
            "sqs",
            endpoint_url=second.moto_endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        assert queue_depth(sqs, second.resources.queue_urls["DeadQueue"]) == 0
        status, _, _, _ = call("GET", f"{second.url}/v1/items/x")
        assert status == 200


def test_cli_prints_ready_line_and_exits_0_on_sigterm(throwaway_root: Path, tmp_path: Path) -> None:
    env = {**os.environ, "SMS_GATEWAY_MESSAGE_DSN": f"sqlite:///{tmp_path / 'cli.db'}"}
    env.pop("AWS_ENDPOINT_URL", None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from sms_gateway.local.cli import main; sys.exit(main())",
            "local",
            "--port",
            "0",
            "--root",
            str(throwaway_root),
            "--data-dir",
            str(tmp_path / "data"),
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        # The CLI always migrates and seeds (into the throwaway SQLite file of the env).
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if line.startswith("Local stack ready on "):
                break
        ready = lines[-1] if lines else ""
        assert re.fullmatch(r"Local stack ready on http://127\.0\.0\.1:\d+", ready), lines
        url = ready.removeprefix("Local stack ready on ")
        port = url.rsplit(":", 1)[1]
        assert any(f"curl -sS -X POST {url}/v1/receipts" in line for line in lines)
        assert any("AWS (moto)" in line for line in lines)
        status, _, _, _ = call("GET", f"{url}/v1/items/x")
        assert status == 200
        assert port != "0"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from sms_gateway.local.cli import main; sys.exit(main())",
            "local",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or {**os.environ},
    )


def test_a_second_stack_on_the_same_data_dir_is_refused_before_it_touches_anything(
    throwaway_root: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    dsn = f"sqlite:///{data / 'sms-gateway.db'}"
    with LocalStack(
        throwaway_root, port=0, dsn=dsn, data_dir=data, prepare_database=False
    ) as first:
        journal = data / JOURNAL_FILE
        before = (journal.stat().st_ino, journal.read_bytes())
        (data / "sms-gateway.db").write_bytes(b"kept")
        # In this process (flock conflicts between two opens of the file, too): --reset
        # would delete the running stack's journal and database.
        second = LocalStack(throwaway_root, port=0, data_dir=data, reset=True)
        with pytest.raises(DataDirInUse, match=re.escape(str(data))):
            second.start()
        # The CLI: one line, exit 1, at once (no moto, no migration), even with --reset.
        env = {**os.environ, "SMS_GATEWAY_MESSAGE_DSN": dsn}
        process = _cli(
            "--port",
            "0",
            "--root",
            str(throwaway_root),
            "--data-dir",
            str(data),
            "--reset",
            env=env,
        )
        try:
            _, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == 1
        assert err.strip().count("\n") == 0, err
        assert str(data) in err and "in use" in err and "Traceback" not in err
        assert (journal.stat().st_ino, journal.read_bytes()) == before
        assert (data / "sms-gateway.db").read_bytes() == b"kept"
        status, _, _, _ = call("GET", f"{first.url}/v1/items/x")
        assert status == 200
    os.close(lock_data_dir(data))  # stopped: the lock is free again


def test_a_stack_whose_port_is_taken_leaves_the_data_dir_alone(
    throwaway_root: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    journal = data / JOURNAL_FILE
    journal.write_text('{"k":"sqs.purge","region":"us-east-1","queue":"q","at":1}\n')
    (data / "sms-gateway.db").write_bytes(b"kept")
    before = (journal.stat().st_ino, journal.read_bytes())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        stack = LocalStack(throwaway_root, port=port, data_dir=data, reset=True)
        with pytest.raises(OSError) as raised:
            stack.start()
        assert raised.value.errno == errno.EADDRINUSE
    assert (journal.stat().st_ino, journal.read_bytes()) == before
    assert (data / "sms-gateway.db").read_bytes() == b"kept"
    os.close(lock_data_dir(data))  # a failed start frees the lock


def test_a_corrupt_journal_stops_the_cli_with_one_line_naming_each_remedy(
    throwaway_root: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / JOURNAL_FILE).write_text('{"k":"sqs.purge","re{"k":"ddb"}\n{"k":"sqs.purge"}\n')
    env = {**os.environ, "SMS_GATEWAY_MESSAGE_DSN": f"sqlite:///{tmp_path / 'cli.db'}"}
    process = _cli("--port", "0", "--root", str(throwaway_root), "--data-dir", str(data), env=env)
    try:
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 1
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert "line 1 is not a JSON object" in line
    assert "--reset-journal" in line and "--reset " in line


def test_the_stack_is_ready_with_one_warm_environment_per_function(
    throwaway_root: Path, tmp_path: Path
) -> None:
    # Lambda's provisioned concurrency: the first request meets a warm handler, not a cold
    # start that takes seconds on a busy machine.
    dsn = f"sqlite:///{tmp_path / 'x.db'}"
    with LocalStack(
        throwaway_root, port=0, dsn=dsn, data_dir=tmp_path / "data", prepare_database=False
    ) as stack:
        warm = {name: function.cold_starts for name, function in stack.functions.items()}
        assert warm == dict.fromkeys(stack.functions, 1)
        assert all(function.environment_count == 1 for function in stack.functions.values())
        status, _, _, _ = call("GET", f"{stack.url}/v1/items/x")
        assert status == 200
        assert stack.functions["EchoFunction"].cold_starts == 1  # served warm


SLOW_BATCH_TEMPLATE = """\
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.12
    Handler: app.lambda_handler
    Timeout: 120
    Environment:
      Variables:
        RECORD_DIR: {record_dir}
Resources:
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: echo/
      Events:
        Get:
          Type: Api
          Properties:
            Path: /v1/items/{{item_id}}
            Method: get
  SlowFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: slow/
      Events:
        Work:
          Type: SQS
          Properties: {{Queue: !GetAtt WorkQueue.Arn, BatchSize: 1}}
  WorkQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 720
"""

SLOW_BATCH_HANDLER = """\
import os
import time
from pathlib import Path


def lambda_handler(event, context):
    (Path(os.environ["RECORD_DIR"]) / "started").write_text(str(os.getpid()))
    time.sleep(100)
    return {"batchItemFailures": []}
"""


def test_ctrl_c_closes_the_front_first_and_a_second_one_forces_the_stop(tmp_path: Path) -> None:
    root, records = tmp_path / "repo", tmp_path / "records"
    records.mkdir()
    for name, source in (("echo", ECHO_HANDLER), ("slow", SLOW_BATCH_HANDLER)):
        (root / name).mkdir(parents=True)
        (root / name / "app.py").write_text(source, encoding="utf-8")
    (root / "template.yaml").write_text(
        SLOW_BATCH_TEMPLATE.format(record_dir=records), encoding="utf-8"
    )
    env = {**os.environ, "SMS_GATEWAY_MESSAGE_DSN": f"sqlite:///{tmp_path / 'cli.db'}"}
    env.pop("AWS_ENDPOINT_URL", None)
    process = subprocess.Popen(
        [
            *(
                sys.executable,
                "-c",
                "import sys; from sms_gateway.local.cli import main; sys.exit(main())",
                "local",
                "--port",
                "0",
                "--quiet",
            ),
            *("--root", str(root), "--data-dir", str(tmp_path / "data")),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if line.startswith("Local stack ready on "):
                break
        assert lines and lines[-1].startswith("Local stack ready on "), lines
        url = lines[-1].removeprefix("Local stack ready on ")
        port = int(url.rsplit(":", 1)[1])
        moto = next(line.split()[-1] for line in lines if "AWS (moto)" in line)
        queue = next(line.split()[-1] for line in lines if line.strip().startswith("queue "))
        sqs = boto3.client(
            "sqs",
            endpoint_url=moto,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        sqs.send_message(QueueUrl=queue, MessageBody="slow")
        wait_for(lambda: (records / "started").exists(), timeout=60)
        worker = int((records / "started").read_text())

        process.send_signal(signal.SIGINT)

        # The front closes first, while the batch still runs (it would for 100 s).
        def refused() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                return True
            return False

        wait_for(refused, timeout=15)
        assert process.poll() is None
        # A second Ctrl-C does not wait for the batch: its environment is killed.
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert wait_for_gone(worker)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def wait_for_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


# -- sam local: the --env-vars file, moto on another address, SQS -> start-lambda --------------


def test_the_sam_env_vars_file_holds_each_functions_declared_variables_with_local_values(
    throwaway_root: Path, tmp_path: Path
) -> None:
    env_vars = tmp_path / "sam" / "env.json"
    dsn = f"sqlite:///{tmp_path / 'x.db'}"
    with LocalStack(
        throwaway_root,
        port=0,
        dsn=dsn,
        data_dir=tmp_path / "data",
        prepare_database=False,
        prewarm=0,
        aws_host="127.0.0.2",  # another loopback address: moto listens where it is told
        sam_env_vars=env_vars,
    ) as stack:
        assert stack.moto_endpoint.startswith("http://127.0.0.2:")
        document = json.loads(env_vars.read_text(encoding="utf-8"))
        assert env_vars.stat().st_mode & 0o777 == 0o600  # a DSN may carry a password
        work_url = stack.resources.queue_urls["WorkQueue"]
        assert work_url.startswith(stack.moto_endpoint)
        shared = {
            "RECORD_DIR": str(tmp_path / "records"),
            "STACK_REGION": "us-east-1-test",
            "SMS_GATEWAY_AUTH_MODE": "local",  # the template says api_key; local mode wins
        }
        # Only what the template declares (SAM passes nothing else): no AWS_ENDPOINT_URL
        # here, since this template does not declare it; no DSN, no retry settings.
        assert document == {
            "EchoFunction": {
                **shared,
                "WORK_QUEUE_URL": work_url,
                "TABLE_NAME": "sms-gateway-Table",
            },
            "SlowFunction": shared,
            "WorkerFunction": {**shared, "WORK_QUEUE_URL": work_url},
            "DeadFunction": shared,
        }
        assert document == stack.sam_env_vars()


def test_the_real_templates_env_vars_point_every_function_at_the_local_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("SMS_GATEWAY_RETRY_BASE_SECONDS", "SMS_GATEWAY_RETRY_MAX_SECONDS"):
        monkeypatch.delenv(key, raising=False)
    env_vars = tmp_path / "env.json"
    # a server the functions' containers reach (never connected to here: prepare_database off)
    dsn = "postgresql+pg8000://gateway:s3cret@172.22.0.1:5433/sms"
    with LocalStack(
        ROOT,
        port=0,
        dsn=dsn,
        data_dir=tmp_path,
        prewarm=0,
        sam_env_vars=env_vars,
        prepare_database=False,
    ) as stack:
        document = json.loads(env_vars.read_text(encoding="utf-8"))
        queues = stack.resources.queue_urls
        secrets = boto3.client(
            "secretsmanager",
            endpoint_url=stack.moto_endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        arn = document["SenderFunction"]["SMS_GATEWAY_DB_SECRET_ARN"]
        secret = json.loads(secrets.get_secret_value(SecretId=arn)["SecretString"])
    assert secret == {"username": "gateway", "password": "s3cret"}
    assert sorted(document) == [
        "AdminFunction",
        "DlqFunction",
        "EumEventsFunction",
        "IngestFunction",
        "MigrateFunction",
        "RetentionFunction",
        "SenderFunction",
        "StatusFunction",
    ]
    for variables in document.values():
        assert variables["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
        assert variables["SMS_GATEWAY_AUTH_MODE"] == "local"
    ingest, sender = document["IngestFunction"], document["SenderFunction"]
    assert ingest["SMS_GATEWAY_SEND_QUEUE_URL"] == queues["SendQueue"]
    assert ingest["SMS_GATEWAY_IDEMPOTENCY_TABLE"] == "sms-gateway-IdempotencyTable"
    assert not any(k.startswith("SMS_GATEWAY_DB_") for k in ingest)  # ingest has no database
    assert sender["SMS_GATEWAY_DEAD_LETTER_QUEUE_URL"] == queues["DeadLetterQueue"]
    assert sender["SMS_GATEWAY_RATE_LIMIT_TABLE"] == "sms-gateway-RateLimitTable"
    # the local stack's short retries (no override in this process's environment)
    retries = (sender["SMS_GATEWAY_RETRY_BASE_SECONDS"], sender["SMS_GATEWAY_RETRY_MAX_SECONDS"])
    assert retries == ("1", "5")
    # the SQL functions reach the database as deployed: its address, and the credentials in a
    # secret of the stack's moto; no DSN (the template declares none)
    for name in ("SenderFunction", "DlqFunction", "StatusFunction", "MigrateFunction"):
        database = {k: v for k, v in document[name].items() if k.startswith("SMS_GATEWAY_DB_")}
        assert database == {
            "SMS_GATEWAY_DB_ENGINE": "postgresql",
            "SMS_GATEWAY_DB_HOST": "172.22.0.1",
            "SMS_GATEWAY_DB_PORT": "5433",
            "SMS_GATEWAY_DB_NAME": "sms",
            "SMS_GATEWAY_DB_SECRET_ARN": arn,
            "SMS_GATEWAY_DB_SECRET_MAX_AGE_SECONDS": "300",
            "SMS_GATEWAY_DB_TLS": "false",
        }
        assert "SMS_GATEWAY_MESSAGE_DSN" not in document[name]


class FakeLambdaApi:
    """The Lambda Invoke API as ``sam local start-lambda`` serves it, on loopback: records
    each (function name, event) and answers ``answers[name]`` (a status, headers, body)."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.answers: dict[str, tuple[int, dict[str, str], bytes]] = {}
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                match = re.fullmatch(r"/2015-03-31/functions/([^/]+)/invocations", self.path)
                assert match, self.path
                length = int(self.headers["Content-Length"])
                fake.calls.append((match[1], json.loads(self.rfile.read(length))))
                status, headers, body = fake.answers.get(match[1], (200, {}, b"null"))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_lambda() -> Iterator[FakeLambdaApi]:
    fake = FakeLambdaApi()
    yield fake
    fake.close()


def test_lambda_invoker_returns_the_payload_and_raises_on_a_function_error(
    fake_lambda: FakeLambdaApi,
) -> None:
    from sms_gateway.local.stack import LambdaInvokeError, lambda_invoker

    fake_lambda.answers["SenderFunction"] = (
        200,
        {},
        b'{"batchItemFailures": [{"itemIdentifier": "m-2"}]}',
    )
    event = {"Records": [{"messageId": "m-1"}, {"messageId": "m-2"}]}
    answer = lambda_invoker(fake_lambda.url, "SenderFunction")(event)
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m-2"}]}
    assert fake_lambda.calls == [("SenderFunction", event)]

    fake_lambda.answers["DlqFunction"] = (
        200,
        {"X-Amz-Function-Error": "Unhandled"},
        b'{"errorType": "RuntimeError", "errorMessage": "boom"}',
    )
    with pytest.raises(LambdaInvokeError, match=r"DlqFunction: Unhandled.*boom"):
        lambda_invoker(fake_lambda.url, "DlqFunction")({"Records": []})


def test_with_a_lambda_endpoint_the_pollers_invoke_through_it(
    throwaway_root: Path, tmp_path: Path, fake_lambda: FakeLambdaApi
) -> None:
    dsn = f"sqlite:///{tmp_path / 'x.db'}"
    with LocalStack(
        throwaway_root,
        port=0,
        dsn=dsn,
        data_dir=tmp_path / "data",
        prepare_database=False,
        prewarm=1,
        lambda_endpoint=fake_lambda.url + "/",
    ) as stack:
        # Only the API functions were prewarmed here; the SQS ones run behind the endpoint.
        assert stack.functions["EchoFunction"].environment_count == 1
        assert stack.functions["WorkerFunction"].environment_count == 0
        sqs = boto3.client(
            "sqs",
            endpoint_url=stack.moto_endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        work_url = stack.resources.queue_urls["WorkQueue"]
        sent = sqs.send_message(QueueUrl=work_url, MessageBody="via-start-lambda")
        wait_for(lambda: bool(fake_lambda.calls))
        wait_for(lambda: queue_depth(sqs, work_url) == 0)  # answered null: all succeeded
    name, event = fake_lambda.calls[0]
    assert name == "WorkerFunction"
    (record,) = event["Records"]
    assert (record["messageId"], record["body"]) == (sent["MessageId"], "via-start-lambda")
    assert record["eventSourceARN"].endswith(":sms-gateway-WorkQueue")
    assert not (tmp_path / "records" / "worker.jsonl").exists()  # not run in this process
