"""``sms-gateway local`` as a command on a throwaway template (see test_local_stack_throwaway):
the ready line and exit 0 on SIGTERM, one-line refusals (a data dir in use, a corrupt
journal), and Ctrl-C closing the front first, a second Ctrl-C forcing the stop.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from sms_gateway.local.journal import JOURNAL_FILE
from sms_gateway.local.stack import DataDirInUse, LocalStack, lock_data_dir
from tests.integration.throwaway import (
    ECHO_HANDLER,
    REGION,
    call,
    wait_for,
)
from tests.local_cli import local_stack

pytestmark = pytest.mark.local_stack


def test_cli_prints_ready_line_and_exits_0_on_sigterm(throwaway_root: Path, tmp_path: Path) -> None:
    # The CLI always migrates and seeds (into the throwaway SQLite file of the env).
    env = {"SMS_GATEWAY_MESSAGE_DSN": f"sqlite:///{tmp_path / 'cli.db'}"}
    args = ["--root", str(throwaway_root), "--quiet"]
    with local_stack(tmp_path / "data", env=env, args=args) as (process, stack, _):
        lines = [line.rstrip("\n") for line in stack.startup]
        ready = lines[-1]
        assert re.fullmatch(r"Local stack ready on http://127\.0\.0\.1:\d+", ready), lines
        url = ready.removeprefix("Local stack ready on ")
        assert url == stack.url
        assert url.rsplit(":", 1)[1] != "0"
        assert any(f"curl -sS -X POST {url}/v1/receipts" in line for line in lines)
        assert any("AWS (moto)" in line for line in lines)
        status, _, _, _ = call("GET", f"{url}/v1/items/x")
        assert status == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


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
    env = {"SMS_GATEWAY_MESSAGE_DSN": f"sqlite:///{tmp_path / 'cli.db'}"}
    args = ["--quiet", "--root", str(root)]
    with local_stack(tmp_path / "data", env=env, args=args) as (process, stack, _):
        port = int(stack.url.rsplit(":", 1)[1])
        queue = next(
            line.split()[-1] for line in stack.startup if line.strip().startswith("queue ")
        )
        sqs = boto3.client(
            "sqs",
            endpoint_url=stack.moto_url,
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


def wait_for_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False
