"""The local stack's transport pieces, without the gateway's own handlers.

- template.yaml -> table and queues created in moto with the template's own settings;
- HTTP request -> API Gateway REST proxy event -> handler answer -> HTTP;
- SQS poller: Lambda's SQS event shape, partial batch response (successes deleted, failures
  left for redelivery), whole-batch failure, and moto's redrive to the dead-letter queue.

Handlers here are Python callables, so these tests do not depend on the real functions. The
whole stack on a throwaway template: test_local_stack_throwaway.py and test_local_cli.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
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
from sms_gateway.local.pollers import SqsPoller, failed_message_ids, sqs_event_record
from sms_gateway.local.resources import provision
from sms_gateway.local.runtime import function_environment
from sms_gateway.local.template import ApiRoute, Resolver, SamTemplate
from tests.integration.throwaway import queue_depth

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


class HeldSqs:
    """The SQS client a poller gets, with its ``ReceiveMessage`` (the long poll) held open
    until ``release`` is set; ``log`` records the deletes, for ordering."""

    def __init__(self, sqs: Any, log: list[str]) -> None:
        self._sqs = sqs
        self.log = log
        self.polling = threading.Event()
        self.release = threading.Event()

    def receive_message(self, **params: Any) -> Any:
        self.polling.set()
        assert self.release.wait(30), "the test never released the long poll"
        return self._sqs.receive_message(**params)

    def delete_message_batch(self, **params: Any) -> Any:
        self.log.append("deleted")
        return self._sqs.delete_message_batch(**params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)


def _poller_thread(poller: SqsPoller) -> threading.Thread:
    (thread,) = [t for t in threading.enumerate() if t.name == poller.name]
    return thread


def test_a_stop_during_the_long_poll_returns_at_once_and_hands_its_batch_to_nobody(
    aws: None,
) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    url, arn = make_queue(sqs, "stopping", VisibilityTimeout="30")
    held = HeldSqs(sqs, [])
    invoked: list[dict[str, Any]] = []
    poller = SqsPoller(
        sqs=held, queue_url=url, queue_arn=arn, invoke=invoked.append, region=REGION,
        name=f"poller-{uuid.uuid4().hex[:6]}",
    )  # fmt: skip
    poller.start()
    thread = _poller_thread(poller)
    assert held.polling.wait(30)
    sqs.send_message(QueueUrl=url, MessageBody="arrives while stopping")

    # The stop does not wait for the held receive: it ends while the receive cannot.
    stopper = threading.Thread(target=poller.stop, kwargs={"timeout": 60})
    stopper.start()
    stopper.join(30)
    assert not stopper.is_alive()
    assert not poller.running

    held.release.set()  # the receive now gets the message ...
    thread.join(30)
    assert not thread.is_alive()
    assert invoked == []  # ... which no function gets, and which is not deleted: in flight
    assert held.log == []
    counts = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert counts == {
        "ApproximateNumberOfMessages": "0",
        "ApproximateNumberOfMessagesNotVisible": "1",
    }


def test_a_stop_during_a_batch_waits_for_its_invocation_and_deletes(aws: None) -> None:
    sqs = boto3.client("sqs", region_name=REGION)
    url, arn = make_queue(sqs, "finishing", VisibilityTimeout="30")
    log: list[str] = []
    held = HeldSqs(sqs, log)
    held.release.set()  # receives are not held here
    in_handler = threading.Event()
    finish = threading.Event()

    def handler(event: dict[str, Any]) -> dict[str, Any]:
        in_handler.set()
        assert finish.wait(30)
        log.append("invoked")
        return {"batchItemFailures": []}

    sqs.send_message(QueueUrl=url, MessageBody="in progress")
    poller = SqsPoller(
        sqs=held, queue_url=url, queue_arn=arn, invoke=handler, region=REGION,
        name=f"poller-{uuid.uuid4().hex[:6]}",
    )  # fmt: skip
    poller.start()
    assert in_handler.wait(30)
    stopper = threading.Thread(
        target=lambda: (poller.stop(timeout=60), log.append("stopped")), name="stopper"
    )
    stopper.start()
    finish.set()
    stopper.join(60)
    assert log == ["invoked", "deleted", "stopped"]
    assert queue_depth(sqs, url) == 0


def test_a_poller_started_again_after_a_stop_polls_on_one_thread(aws: None) -> None:
    """stop() returns while its thread still waits on the long poll; a start() right after
    must not leave that thread polling beside the new one (it would hand batches to the
    function too: two batches at once for one event source mapping)."""
    sqs = boto3.client("sqs", region_name=REGION)
    url, arn = make_queue(sqs, "restarted", VisibilityTimeout="30")
    held = HeldSqs(sqs, [])
    poller = SqsPoller(
        sqs=held, queue_url=url, queue_arn=arn, invoke=lambda event: None, region=REGION,
        name=f"poller-{uuid.uuid4().hex[:6]}",
    )  # fmt: skip
    poller.start()
    assert held.polling.wait(30)
    poller.stop(timeout=60)  # returns at once: the receive is held
    releaser = threading.Timer(0.5, held.release.set)
    releaser.start()
    poller.start()
    try:
        held.release.wait(30)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            alive = [t for t in threading.enumerate() if t.name == poller.name]
            if len(alive) > 1:
                break
            time.sleep(0.05)
        assert len(alive) == 1
        assert poller.running
    finally:
        releaser.cancel()
        held.release.set()
        poller.stop(timeout=60)
