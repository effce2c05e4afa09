"""The whole local stack in this process on a throwaway template (tiny handlers written under
tmp_path, so these tests do not depend on the real functions): the API Gateway proxy over
HTTP, SQS pollers with partial batch responses and redrive, function timeouts, prewarmed
environments, a second stack after the first, the data dir's lock and a taken port.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path

import boto3
import pytest

from sms_gateway.local.journal import JOURNAL_FILE
from sms_gateway.local.stack import LocalStack, lock_data_dir
from tests.integration.throwaway import (
    REGION,
    call,
    queue_depth,
    read_lines,
    wait_for,
)

pytestmark = pytest.mark.local_stack


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
