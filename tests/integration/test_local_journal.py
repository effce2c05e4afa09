"""The journaled moto server over loopback: what one run accepted comes back in the next
(sms_gateway.local.journal). Each "run" is a fresh moto (its backends reset) with the real
template's table and queues, as the local stack makes them; between runs nothing is shut
down cleanly, the journal file is all that is kept, as after ``kill -9``.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from sms_gateway.local.journal import JournaledMotoServer, RestoreReport, read_journal
from sms_gateway.local.resources import LocalResources, provision
from sms_gateway.local.template import Resolver, SamTemplate

pytestmark = pytest.mark.local_stack

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
TABLE = "sms-gateway-IdempotencyTable"
DAY_MS = 86_400_000


@dataclass
class Run:
    endpoint: str
    sqs: Any
    dynamodb: Any
    resources: LocalResources
    report: RestoreReport
    server: JournaledMotoServer

    @property
    def send_url(self) -> str:
        return self.resources.queue_urls["SendQueue"]

    @property
    def dead_url(self) -> str:
        return self.resources.queue_urls["DeadLetterQueue"]


@contextmanager
def run(journal: Path, now_ms: int | None = None) -> Iterator[Run]:
    server = JournaledMotoServer(journal)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    clients = {
        name: boto3.client(
            name,  # type: ignore[call-overload]
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        for name in ("sqs", "dynamodb")
    }
    try:
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
        resources = provision(
            template,
            resolver,
            sqs=clients["sqs"],
            dynamodb=clients["dynamodb"],
            stack_name="sms-gateway",
        )
        report = server.restore(now_ms=now_ms)
        yield Run(endpoint, clients["sqs"], clients["dynamodb"], resources, report, server)
    finally:
        reset = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(reset, timeout=5):
            pass
        server.stop()


def item(key: str, expiration: int) -> dict[str, Any]:
    return {"id": {"S": key}, "status": {"S": "INPROGRESS"}, "expiration": {"N": str(expiration)}}


def receive(sqs: Any, url: str, visibility: int = 0) -> list[dict[str, Any]]:
    answer = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        VisibilityTimeout=visibility,
        MessageSystemAttributeNames=["All"],
        MessageAttributeNames=["All"],
    )
    return list(answer.get("Messages", []))


def test_items_and_undeleted_messages_come_back_and_the_journal_is_compacted(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "aws-journal.jsonl"
    now = int(time.time())
    with run(journal) as first:
        assert first.report.entries_before == 0
        db = first.dynamodb
        db.put_item(TableName=TABLE, Item=item("kept", now + 3600))
        db.update_item(
            TableName=TABLE,
            Key={"id": {"S": "kept"}},
            UpdateExpression="SET #s = :done",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":done": {"S": "COMPLETED"}},
        )
        db.put_item(TableName=TABLE, Item=item("expired", now - 1))
        db.put_item(TableName=TABLE, Item=item("deleted", now + 3600))
        db.delete_item(TableName=TABLE, Key={"id": {"S": "deleted"}})
        with pytest.raises(db.exceptions.ConditionalCheckFailedException):
            db.put_item(
                TableName=TABLE,
                Item=item("kept", now + 7200),
                ConditionExpression="attribute_not_exists(id)",
            )

        sqs = first.sqs
        done = sqs.send_message(QueueUrl=first.send_url, MessageBody="done")["MessageId"]
        batch = sqs.send_message_batch(
            QueueUrl=first.send_url,
            Entries=[
                {
                    "Id": "0",
                    "MessageBody": "in flight",
                    "MessageAttributes": {
                        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
                        "n": {"DataType": "String", "StringValue": "1"},
                    },
                },
                {"Id": "1", "MessageBody": "never received"},
            ],
        )
        ids = {entry["Id"]: entry["MessageId"] for entry in batch["Successful"]}
        later = sqs.send_message(QueueUrl=first.send_url, MessageBody="later", DelaySeconds=600)
        got = {m["Body"]: m for m in receive(sqs, first.send_url, visibility=60)}
        assert set(got) == {"done", "in flight", "never received"}
        sqs.delete_message(QueueUrl=first.send_url, ReceiptHandle=got["done"]["ReceiptHandle"])
        sqs.change_message_visibility(
            QueueUrl=first.send_url,
            ReceiptHandle=got["never received"]["ReceiptHandle"],
            VisibilityTimeout=0,
        )

    with run(journal) as second:
        report = second.report
        assert (report.items, report.items_expired) == (1, 1)
        assert (report.messages, report.messages_expired) == (3, 0)
        assert report.writes_refused == 0
        # one PutItem per live item + one entry per live message
        assert report.entries_after == 4
        assert len(read_journal(journal)) == 4

        scan = second.dynamodb.scan(TableName=TABLE)["Items"]
        assert [(i["id"]["S"], i["status"]["S"]) for i in scan] == [("kept", "COMPLETED")]

        back = {m["Body"]: m for m in receive(second.sqs, second.send_url)}
        assert set(back) == {"in flight", "never received"}  # "later" is still delayed
        in_flight = back["in flight"]
        assert in_flight["MessageId"] == ids["0"]
        assert in_flight["Attributes"]["ApproximateReceiveCount"] == "2"
        assert in_flight["MessageAttributes"]["blob"]["BinaryValue"] == b"\x00\x01"
        assert in_flight["MessageAttributes"]["n"]["StringValue"] == "1"
        assert back["never received"]["MessageId"] == ids["1"]
        assert done not in {m["MessageId"] for m in back.values()}
        depth = second.sqs.get_queue_attributes(
            QueueUrl=second.send_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
        )["Attributes"]
        assert depth["ApproximateNumberOfMessagesDelayed"] == "1"
        assert later["MessageId"] not in back


def test_retention_and_ttl_are_judged_at_restart_and_redrive_keeps_the_message_id(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "aws-journal.jsonl"
    now = int(time.time())
    with run(journal) as first:
        first.dynamodb.put_item(TableName=TABLE, Item=item("a day", now + 86_400))
        first.dynamodb.put_item(TableName=TABLE, Item=item("a week", now + 7 * 86_400))
        sqs = first.sqs
        sqs.send_message(QueueUrl=first.send_url, MessageBody="retention 4 days")
        sqs.send_message(QueueUrl=first.dead_url, MessageBody="retention 14 days")
        poison = sqs.send_message(QueueUrl=first.send_url, MessageBody="poison")["MessageId"]
        # maxReceiveCount 3: three receives, then moto's redrive moves it on the fourth
        for _ in range(3):
            assert poison in {m["MessageId"] for m in receive(sqs, first.send_url)}

    # "Restart" five days later.
    with run(journal, now_ms=int(time.time() * 1000) + 5 * DAY_MS) as second:
        assert (second.report.items, second.report.items_expired) == (1, 1)
        assert (second.report.messages, second.report.messages_expired) == (1, 2)
        assert [i["id"]["S"] for i in second.dynamodb.scan(TableName=TABLE)["Items"]] == ["a week"]
        assert [m["Body"] for m in receive(second.sqs, second.dead_url)] == ["retention 14 days"]

    # And a restart now instead: the poison message is redriven on its next receive.
    journal.unlink()
    with run(journal) as first:
        poison = first.sqs.send_message(QueueUrl=first.send_url, MessageBody="poison")
        for _ in range(3):
            receive(first.sqs, first.send_url)
    with run(journal) as second:
        assert receive(second.sqs, second.send_url) == []
        (dead,) = receive(second.sqs, second.dead_url)
        assert dead["MessageId"] == poison["MessageId"]
        assert dead["Attributes"]["ApproximateReceiveCount"] == "4"
    with run(journal) as third:  # received from the DLQ: it lives there now
        (dead,) = receive(third.sqs, third.dead_url)
        assert dead["MessageId"] == poison["MessageId"]


def test_sqs_writes_in_the_query_protocol_are_refused_not_silently_unjournaled(
    tmp_path: Path,
) -> None:
    with run(tmp_path / "aws-journal.jsonl") as stack:
        body = f"Action=SendMessage&QueueUrl={stack.send_url}&MessageBody=x".encode()
        request = urllib.request.Request(
            stack.endpoint,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sqs/"
                "aws4_request, SignedHeaders=host, Signature=0",
            },
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 400
        assert b"UnsupportedProtocol" in refused.value.read()
        assert receive(stack.sqs, stack.send_url) == []
        # reads in the query protocol pass through
        listed = urllib.request.Request(
            stack.endpoint,
            data=b"Action=ListQueues",
            method="POST",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sqs/"
                "aws4_request, SignedHeaders=host, Signature=0",
            },
        )
        with urllib.request.urlopen(listed, timeout=5) as answer:
            assert b"sms-gateway-send" in answer.read()
    assert read_journal(tmp_path / "aws-journal.jsonl") == []  # nothing was written


def test_reset_wipes_the_journal_and_the_default_sqlite_file_but_never_another_dsn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sms_gateway.local.stack import LocalStack

    monkeypatch.delenv("SMS_GATEWAY_MESSAGE_DSN", raising=False)
    kept = tmp_path / "elsewhere.db"
    names = ("aws-journal.jsonl", "sms-gateway.db", "sms-gateway.db-wal", "other.txt")
    for name in (*names, kept.name):
        (tmp_path / name).write_text("x")
    LocalStack(ROOT, data_dir=tmp_path, dsn=f"sqlite:///{kept}", reset=True)._wipe()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "elsewhere.db",
        "other.txt",
        "sms-gateway.db",
        "sms-gateway.db-wal",
    ]
    LocalStack(ROOT, data_dir=tmp_path, reset=True)._wipe()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere.db", "other.txt"]


def test_a_call_that_cannot_be_journaled_is_answered_500_and_leaves_moto_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = tmp_path / "aws-journal.jsonl"
    with run(journal) as stack:
        once = Config(retries={"mode": "standard", "max_attempts": 1})
        options = {
            "endpoint_url": stack.endpoint,
            "region_name": REGION,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "config": once,
        }
        dynamodb = boto3.client("dynamodb", **options)  # type: ignore[call-overload]
        sqs = boto3.client("sqs", **options)  # type: ignore[call-overload]

        def disk_full(entries: Any) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(stack.server.journal, "append", disk_full)
        with pytest.raises(ClientError) as put:
            dynamodb.put_item(TableName=TABLE, Item=item("k-1", 2_000_000_000))
        assert put.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        with pytest.raises(ClientError) as sent:
            sqs.send_message(QueueUrl=stack.send_url, MessageBody="lost")
        assert sent.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        # Nothing the client was told failed is in moto: a retry is a first try again
        # (not a ConditionalCheckFailed on its own earlier, unjournaled attempt).
        assert "Item" not in dynamodb.get_item(TableName=TABLE, Key={"id": {"S": "k-1"}})
        assert receive(sqs, stack.send_url) == []
        monkeypatch.undo()
        dynamodb.put_item(
            TableName=TABLE,
            Item=item("k-1", 2_000_000_000),
            ConditionExpression="attribute_not_exists(id)",
        )
        # A write moto refuses is marked so, and not replayed at the next start.
        with pytest.raises(ClientError):
            dynamodb.put_item(
                TableName=TABLE,
                Item=item("k-1", 2_000_000_001),
                ConditionExpression="attribute_not_exists(id)",
            )
    with run(journal) as stack:
        assert stack.report.writes_refused == 0
        got = stack.dynamodb.get_item(TableName=TABLE, Key={"id": {"S": "k-1"}})["Item"]
        assert got["expiration"] == {"N": "2000000000"}
        assert receive(stack.sqs, stack.send_url) == []


def test_reset_journal_deletes_the_journal_only(tmp_path: Path) -> None:
    from sms_gateway.local.stack import LocalStack

    for name in ("aws-journal.jsonl", "aws-journal.jsonl.tmp", "sms-gateway.db", "other.txt"):
        (tmp_path / name).write_text("x")
    LocalStack(ROOT, data_dir=tmp_path, reset_journal=True)._wipe()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.txt", "sms-gateway.db"]
