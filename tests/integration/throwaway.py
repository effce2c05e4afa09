"""What the local stack's tests on a throwaway template share (test_local_stack_throwaway,
test_local_cli): the template and its tiny handlers, and small HTTP/SQS helpers."""

from __future__ import annotations

import http.client
import json
import textwrap
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

REGION = "us-east-1"


def queue_depth(sqs: Any, url: str) -> int:
    """Messages in the queue at ``url``, visible or in flight."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


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


def write_throwaway_root(tmp_path: Path) -> Path:
    """THROWAWAY_TEMPLATE and its handlers under ``tmp_path/repo``; what they record goes to
    ``tmp_path/records``. Returns the root (``--root``)."""
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
