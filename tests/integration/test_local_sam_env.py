"""sam local against the local stack: the ``--env-vars`` file (each function's declared
variables with the stack's values), moto on another address, and the pollers handing SQS
batches to a Lambda endpoint (``sam local start-lambda``), here a fake one on loopback."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from sms_gateway.local.stack import LocalStack
from tests.integration.throwaway import REGION, queue_depth, wait_for
from tests.support import serving_thread

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.local_stack


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
    sql_functions = ("Sender", "Dlq", "Status", "Migrate", "Admin", "Retention", "EumEvents")
    for name in (f"{function}Function" for function in sql_functions):
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
        self.thread = serving_thread(self.server)
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
