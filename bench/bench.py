"""Cost figures of the gateway (``make bench``): printed, not asserted.

For N messages through the moto-backed path (real handlers, in-process, SQLite):

- AWS requests per SMS, by service and operation (counted on botocore's ``before-send``);
- DynamoDB write requests and write units per SMS (on-demand WCU = ceil(item KB) per write,
  from the idempotency items' sizes as stored);
- SQL statements per SMS in the sender (counted on SQLAlchemy's ``before_cursor_execute``),
  for a first-attempt success (tenant-3 -> provider-b) and a retried one (tenant-1 ->
  provider-a, which fails each message's first attempt);
- cold-start figures of each function from the ``sam build`` output: :mod:`bench.cold_figures`
  (interleaved pairs beside a baseline import, tracing on and off, median of ``--pairs``).

Usage (from the repository root): ``python -m bench.bench [--messages N] [--pairs P]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from sqlalchemy import event

from bench import bulk_figures, cold_figures, provider_figures
from sms_gateway import wiring
from tests import conftest  # the bench drives the same in-process harness as the tests
from tests.support import Gateway, load_handler

ROOT = Path(__file__).resolve().parents[1]


class AwsCounter:
    """Counts botocore requests by (service, operation)."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()

    def __call__(self, event_name: str, **_: Any) -> None:
        _, service, operation = event_name.split(".", 2)
        self.calls[(service, operation)] += 1


@contextmanager
def gateway(tmp: Path) -> Iterator[Gateway]:
    monkeypatch = pytest.MonkeyPatch()
    try:
        conftest.set_aws_test_env(monkeypatch, POWERTOOLS_LOG_LEVEL="WARNING")
        dsn = f"sqlite:///{tmp / 'bench.db'}"
        from sms_gateway.storage.schema import run_migrations

        run_migrations(dsn)
        # what the tests' fixtures (shared_aws, moto_resources, handler_modules) set up
        aws = conftest.make_shared_aws()
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", aws.session)
        with mock_aws(config=conftest._KEEP_STATE):  # keeps boto3.DEFAULT_SESSION
            aws.provision()
            handlers = {name: load_handler(name) for name in ("ingest", "status", "sender", "dlq")}
            yield from conftest._gateway(dsn, aws, handlers, monkeypatch)
    finally:
        monkeypatch.undo()


def item_wcu(gw: Gateway) -> list[int]:
    """WCU of one write of each stored idempotency item (1 KB units, rounded up)."""
    dynamodb = boto3.client("dynamodb")
    table = os.environ["SMS_GATEWAY_IDEMPOTENCY_TABLE"]
    units = []
    for item in dynamodb.scan(TableName=table)["Items"]:
        size = sum(len(k.encode()) + len(json.dumps(v).encode()) for k, v in item.items())
        units.append(max(1, math.ceil(size / 1024)))
    return units


def run_path(n: int) -> None:
    # the functions print their EMF metrics and logs to stdout: keep them out of the figures
    with (
        contextlib.redirect_stdout(io.StringIO()),
        tempfile.TemporaryDirectory() as tmp,
        gateway(Path(tmp)) as gw,
    ):
        counter = AwsCounter()
        boto3.DEFAULT_SESSION.events.register("before-send", counter)  # type: ignore[union-attr]
        wiring.reset()  # clients are created anew, on the session that counts

        statements = {"count": 0}

        def count_statement(*_: Any) -> None:
            statements["count"] += 1

        started = time.perf_counter()
        for i in range(n):
            answer = gw.post_message(
                "tenant-3", f"bench-{i}", {"to": "+14155550100", "body": f"m{i}"}
            )
            assert answer.status == 202
        ingest_seconds = time.perf_counter() - started
        ingest_calls = Counter(counter.calls)

        event.listen(wiring.sql().engine, "before_cursor_execute", count_statement)
        started = time.perf_counter()
        gw.run_until_idle()
        sender_seconds = time.perf_counter() - started
        sender_statements_ok = statements["count"]
        sender_calls = counter.calls - ingest_calls

        statements["count"] = 0
        retry_n = max(1, n // 10)
        for i in range(retry_n):
            gw.post_message("tenant-1", f"bench-retry-{i}", {"to": "+14155550100", "body": f"r{i}"})
        before_sender = Counter(counter.calls)
        gw.run_until_idle()
        retry_statements = statements["count"]
        retry_calls = counter.calls - before_sender
        wcu = item_wcu(gw)

    print(f"\n== moto-backed path, {n} SMS (tenant-3 -> provider-b, first attempt succeeds)")
    print(f"{'service':10} {'operation':28} {'requests/SMS':>12}")
    for (service, op), count in sorted((ingest_calls + sender_calls).items()):
        print(f"{service:10} {op:28} {count / n:12.2f}")
    by_service: Counter[str] = Counter()
    for (service, _), count in (ingest_calls + sender_calls).items():
        by_service[service] += count
    for service, count in sorted(by_service.items()):
        print(f"{service:10} {'(total)':28} {count / n:12.2f}")
    ddb_writes = sum(
        c
        for (s, op), c in ingest_calls.items()
        if s == "dynamodb" and op in {"PutItem", "UpdateItem", "DeleteItem"}
    )
    print(f"\nDynamoDB write requests per SMS: {ddb_writes / n:.2f}")
    print(
        f"DynamoDB write units per SMS (on-demand, ceil(item KB) per write): "
        f"{ddb_writes / n * statistics.mean(wcu):.2f}  (item sizes -> {sorted(set(wcu))} WCU)"
    )
    print(
        "SQL statements per SMS in the sender, first-attempt success: "
        f"{sender_statements_ok / n:.1f}"
    )
    print(
        f"SQL statements per SMS in the sender, one retry then success (tenant-1 -> provider-a): "
        f"{retry_statements / retry_n:.1f}"
    )
    print(
        "AWS requests per SMS in the sender, one retry: "
        f"{sum(retry_calls.values()) / retry_n:.2f} "
        f"({ {f'{s}.{o}': c / retry_n for (s, o), c in sorted(retry_calls.items())} })"
    )
    print(
        "wall time in-process (moto + SQLite, not a Lambda figure): "
        f"ingest {n / ingest_seconds:.0f} SMS/s, "
        f"sender {n / sender_seconds:.0f} SMS/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=9, help="cold-start pairs (>= 7)")
    args = parser.parse_args()
    run_path(args.messages)
    cold_figures.print_figures(max(7, args.pairs))
    provider_figures.print_figures(max(7, args.pairs))
    bulk_figures.report()
    from bench import sql_figures  # the sender's SQL figures on PostgreSQL (issue 6)

    sql_figures.run_if_configured()


if __name__ == "__main__":
    main()
