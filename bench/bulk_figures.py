"""Bulk-send figures of issue 6 (item 8): AWS requests per SMS and infrastructure cost per 1M SMS.

Two runs through the real handlers, in-process, over moto and SQLite (``tests.conftest``'s
harness, as :mod:`bench.bench`):

- **single**: ``--singles`` (default 100) ``POST /v1/messages`` for tenant-3 (provider-b
  sends at once), one request per SMS;
- **bulk**: one ``POST /v1/messages/batch`` of 100 SMS for tenant-3;

each then drained by Lambda's SQS event source mapping for the SenderFunction (the local
stack's :class:`~sms_gateway.local.pollers.SqsPoller`: ``ReceiveMessage`` of up to 10,
one invocation per batch, ``DeleteMessageBatch`` of what succeeded), until a receive comes
back empty. A warm-up request and drain run first and are not counted (the figures are for
warm functions).

Counted (botocore hooks, on every client the run uses):

- AWS requests by function and operation: ``before-send`` (one per HTTP request sent, so
  boto3 retries would count too). The ingest function's and the sender's own clients come
  from the default boto3 session; the queue trigger's from a session of its own, so each
  request is put on the party that makes it (ingest / trigger / sender);
- SQS billed requests: each request is billed per 64 KB chunk of its payload (SQS pricing:
  "each 64 KB chunk of a payload is billed as 1 request"); payload = the larger of the
  request and response bodies;
- DynamoDB write units (on-demand, "Item sizes and formats" in the DynamoDB developer guide):
  one WRU per started 1 KB of the item written (PutItem: the item sent; UpdateItem: the larger
  of the item before and after, i.e. the stored item after completion); read units: one RRU
  per started 4 KB for a strongly consistent GetItem (Powertools' idempotency reads none on
  the normal path);
- Lambda duration: wall time of each handler invocation, billed rounded up to the next 1 ms
  (Lambda's granularity since December 2020), times the function's ``MemorySize`` from
  ``template.yaml``, in GB-s.

Not counted: X-Ray traces, CloudWatch Logs and EMF metrics ingestion, the data transfer,
the database (RDS / RDS Proxy) and the queue trigger's idle long polls (Lambda's pollers poll
an empty queue continuously whatever the traffic: a fixed monthly cost, not per SMS; the one
empty receive that ends each drain here *is* counted). Durations are in-process with moto
and SQLite standing in for AWS and PostgreSQL: an estimate of Lambda's billed time, not a
measurement of it.

Each run is repeated (``--repeat``, default 5): the counts must be equal in every run, and
each party's duration is the median (the machines this runs on are shared; one run's timing
is noise-prone).

Usage (from the repository root): ``python -m bench.bulk_figures [--singles N] [--repeat R]``;
``make bench`` runs it after :mod:`bench.bench`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import math
import os
import statistics
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3

from sms_gateway import wiring
from sms_gateway.local.pollers import SqsPoller
from sms_gateway.local.template import SamTemplate
from tests.support import Gateway

ROOT = Path(__file__).resolve().parents[1]
BULK_SIZE = 100
SMS_PER_MILLION = 1_000_000

# Prices: us-east-1 (N. Virginia), public list prices of the AWS pricing pages, first usage
# tier, x86, no free tier, in USD; DynamoDB on-demand after its 2024-11-01 price cut. These
# are the figures issue 6 quotes; they were not re-read online from this machine (2026-11-30).
PRICE_REGION_DATE = "us-east-1 list prices (AWS pricing pages; DynamoDB after the 2024-11-01 cut)"
API_GATEWAY_REST_PER_REQUEST = Decimal("3.50") / SMS_PER_MILLION  # first 333M requests/month
LAMBDA_PER_REQUEST = Decimal("0.20") / SMS_PER_MILLION
LAMBDA_PER_GB_SECOND = Decimal("0.0000166667")  # x86, first 6 billion GB-s/month
SQS_PER_REQUEST = Decimal("0.40") / SMS_PER_MILLION  # standard queue, per 64 KB chunk
SQS_CHUNK_BYTES = 64 * 1024
DYNAMODB_PER_WRITE_UNIT = Decimal("0.625") / SMS_PER_MILLION  # on-demand WRU
DYNAMODB_PER_READ_UNIT = Decimal("0.125") / SMS_PER_MILLION  # on-demand RRU

# Goals of issue 6's table.
GOAL_REQUESTS_PER_SMS_BULK = 0.35
GOAL_COST_BULK = Decimal("0.50")
GOAL_COST_SINGLE = Decimal("7.0")

WRITE_OPERATIONS = {"PutItem", "UpdateItem", "DeleteItem"}


def attribute_value_bytes(value: Mapping[str, Any]) -> int:
    """The size DynamoDB bills for one attribute value (low-level JSON form, ``{"S": ...}``).

    Strings and binaries are their UTF-8 / raw length; a number is about one byte per two
    significant digits plus one; booleans and nulls one byte; lists and maps 3 bytes plus
    their elements (DynamoDB developer guide, "Item sizes and formats").
    """
    (kind, raw), *_ = value.items()
    if kind == "S":
        return len(str(raw).encode())
    if kind == "N":
        digits = str(raw).lstrip("-").replace(".", "").lstrip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind == "B":
        return len(raw) if isinstance(raw, bytes | bytearray) else len(str(raw).encode())
    if kind in {"BOOL", "NULL"}:
        return 1
    if kind == "L":
        return 3 + sum(1 + attribute_value_bytes(v) for v in raw)
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + attribute_value_bytes(v) for k, v in raw.items())
    return len(json.dumps(raw).encode())  # sets: close enough for these items (none here)


def item_bytes(item: Mapping[str, Any]) -> int:
    """An item's billed size: attribute names plus values, bytes."""
    return sum(len(name.encode()) + attribute_value_bytes(v) for name, v in item.items())


def write_units(size_bytes: int) -> int:
    """On-demand write request units for writing an item of ``size_bytes``: 1 per started KB."""
    return max(1, math.ceil(size_bytes / 1024))


@dataclass
class Party:
    """What one party (ingest, trigger or sender) asked of AWS and how long it ran."""

    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    sqs_billed: int = 0
    write_units: int = 0
    read_units: int = 0
    invocations: int = 0
    billed_ms: int = 0
    aws_ms: float = 0.0  # of which inside AWS calls (here: moto, in-process)


@dataclass
class Meter:
    """botocore hooks that put each AWS request on the party currently speaking."""

    parties: dict[str, Party] = field(default_factory=dict)
    speaking: str = "ingest"
    counting: bool = False
    written_ids: list[str] = field(default_factory=list)
    updates: list[str] = field(default_factory=list)

    def party(self, name: str | None = None) -> Party:
        """The party ``name`` (default: the one speaking now)."""
        return self.parties.setdefault(name or self.speaking, Party())

    def start(self) -> None:
        """Forget everything so far (the warm-up) and count from now on."""
        self.parties = {name: Party() for name in ("ingest", "trigger", "sender")}
        self.written_ids, self.updates = [], []
        self.counting = True

    def hooks(self, fixed: str | None = None) -> list[tuple[str, Callable[..., None]]]:
        """The hooks for one event system; ``fixed``: always book on that party."""

        def before_send(event_name: str, **kwargs: Any) -> None:
            if not self.counting:
                return
            service, operation = event_name.split(".", 2)[1:]
            self.party(fixed).requests[(service, operation)] += 1

        def before_call(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
            context["bench_request_bytes"] = len(params.get("body") or b"")
            context["bench_started"] = time.perf_counter()

        def params(event_name: str, params: dict[str, Any], **_: Any) -> None:
            if not self.counting:
                return
            operation = event_name.rsplit(".", 1)[1]
            if operation == "PutItem":
                self.party(fixed).write_units += write_units(item_bytes(params["Item"]))
                self.written_ids.append(params["Item"]["id"]["S"])
            elif operation == "UpdateItem":
                self.updates.append(self.speaking)  # units from the stored item, later
            elif operation == "GetItem":
                self.party(fixed).read_units += 1  # items here are under 4 KB

        def after_call(
            event_name: str, http_response: Any, context: dict[str, Any], **_: Any
        ) -> None:
            if not self.counting:
                return
            if "bench_started" in context and fixed is None:
                self.party().aws_ms += (time.perf_counter() - context["bench_started"]) * 1000
            if not event_name.startswith("after-call.sqs."):
                return
            size = max(context.get("bench_request_bytes", 0), len(http_response.content or b""))
            self.party(fixed).sqs_billed += max(1, math.ceil(size / SQS_CHUNK_BYTES))

        return [
            ("before-send", before_send),
            ("before-call", before_call),
            ("provide-client-params.dynamodb", params),
            ("after-call", after_call),
        ]


@contextlib.contextmanager
def metered_gateway(tmp: Path, meter: Meter) -> Iterator[tuple[Gateway, Any]]:
    """The in-process gateway with the meter's hooks on the functions' clients; also yields
    the queue trigger's SQS client (a boto3 session of its own, booked as ``trigger``)."""
    from bench.bench import gateway

    with gateway(tmp) as gw:
        session = boto3.DEFAULT_SESSION
        assert session is not None
        registered = meter.hooks()
        for name, hook in registered:
            session.events.register(name, hook)
        wiring.reset()  # the functions' clients are made anew, on the metered session
        trigger_session = boto3.session.Session()
        for name, hook in meter.hooks(fixed="trigger"):
            trigger_session.events.register(name, hook)
        try:
            yield gw, trigger_session.client("sqs")
        finally:  # the default session outlives this run
            for name, hook in registered:
                session.events.unregister(name, hook)


def timed(meter: Meter, party: str, call: Callable[[], Any]) -> Any:
    """Run one handler invocation as ``party`` and book its billed duration (ms, rounded up)."""
    meter.speaking = party
    started = time.perf_counter()
    try:
        return call()
    finally:
        elapsed_ms = (time.perf_counter() - started) * 1000
        booked = meter.party(party)
        booked.invocations += 1
        booked.billed_ms += math.ceil(elapsed_ms)


def drain(gw: Gateway, trigger_sqs: Any, meter: Meter) -> None:
    """Lambda's event source mapping for the SenderFunction: batches of 10 until empty."""
    poller = SqsPoller(
        sqs=trigger_sqs,
        queue_url=gw.send_queue_url,
        queue_arn=gw.send_queue_arn,
        invoke=lambda event: timed(meter, "sender", lambda: gw.invoke("sender", event)),
        batch_size=10,
        wait_time_seconds=0,
        name="sender",
    )
    for _ in range(1000):
        if not poller.poll_once().received:
            return
    raise AssertionError("the SendQueue did not drain")


def book_updates(meter: Meter) -> None:
    """Write units of the idempotency records' completing UpdateItems: the stored items."""
    dynamodb = boto3.client("dynamodb")
    table = os.environ["SMS_GATEWAY_IDEMPOTENCY_TABLE"]
    items = dynamodb.scan(TableName=table)["Items"]
    by_id = {item["id"]["S"]: item for item in items}
    # the ids of the records written, in order; each was completed by one UpdateItem
    for record_id, party in zip(meter.written_ids, meter.updates, strict=True):
        meter.party(party).write_units += write_units(item_bytes(by_id[record_id]))


@dataclass(frozen=True)
class Run:
    """One counted run: its parties and how many SMS and API requests it carried."""

    name: str
    sms: int
    api_requests: int
    parties: dict[str, Party]
    memory_mb: dict[str, int]
    repeats: int = 1


def median_run(runs: list[Run]) -> Run:
    """One :class:`Run` from repeats of it: the counts (the same in every run, checked) and
    each party's median duration (this machine is shared: single timings are noisy)."""
    first = runs[0]
    for other in runs[1:]:
        for name, party in first.parties.items():
            theirs = other.parties[name]
            assert (party.requests, party.sqs_billed, party.write_units, party.invocations) == (
                theirs.requests,
                theirs.sqs_billed,
                theirs.write_units,
                theirs.invocations,
            ), f"{first.name}: counts differ between runs"
    parties = {
        name: replace(
            party,
            billed_ms=int(statistics.median(r.parties[name].billed_ms for r in runs)),
            aws_ms=statistics.median(r.parties[name].aws_ms for r in runs),
        )
        for name, party in first.parties.items()
    }
    return replace(first, parties=parties, repeats=len(runs))


def run(kind: str, singles: int) -> Run:
    """Warm up, then count one run (``kind``: single or bulk)."""
    memory = {
        f.logical_id: f.memory_size
        for f in SamTemplate.from_file(ROOT / "template.yaml").functions()
    }
    meter = Meter()
    with (
        contextlib.redirect_stdout(io.StringIO()),  # the functions' EMF lines and logs
        tempfile.TemporaryDirectory() as tmp,
        metered_gateway(Path(tmp), meter) as (gw, trigger_sqs),
    ):
        # warm-up: the first invocations import and connect; not counted
        warm_up = {"to": "+14155550100", "body": "warm"}
        gw.post_batch("tenant-3", "warm-bulk", {"messages": [warm_up]})
        gw.post_message("tenant-3", "warm-single", warm_up)
        drain(gw, trigger_sqs, meter)
        meter.start()
        if kind == "single":
            for i in range(singles):
                post = functools.partial(
                    gw.post_message,
                    "tenant-3",
                    f"single-{i}",
                    {"to": "+14155550100", "body": f"single {i}"},
                )
                answer = timed(meter, "ingest", post)
                assert answer.status == 202, answer.body
            sms, api_requests = singles, singles
        else:
            messages = [
                {"to": f"+1415555{100 + i:04d}", "body": f"bulk {i}"} for i in range(BULK_SIZE)
            ]
            answer = timed(
                meter, "ingest", lambda: gw.post_batch("tenant-3", "bulk", {"messages": messages})
            )
            assert answer.status == 202 and answer.body["accepted"] == BULK_SIZE, answer.body
            sms, api_requests = BULK_SIZE, 1
        drain(gw, trigger_sqs, meter)
        meter.counting = False
        book_updates(meter)
        sent = [c for c in gw.providers["provider-b"].calls if c.body != "warm"]
        assert len(sent) == sms, f"{len(sent)} provider sends for {sms} SMS"
    return Run(
        kind,
        sms,
        api_requests,
        meter.parties,
        {"ingest": memory["IngestFunction"], "sender": memory["SenderFunction"]},
    )


def money(value: Decimal) -> str:
    return f"${value:.4f}"


def report_run(result: Run) -> tuple[float, Decimal]:
    """Print one run's requests and cost arithmetic; returns (AWS requests per SMS, cost per
    1M SMS in USD)."""
    n = result.sms
    print(f"\n-- {result.name}: {n} SMS in {result.api_requests} API request(s), tenant-3")
    print(f"{'party':8} {'service':9} {'operation':22} {'requests':>8} {'per SMS':>8}")
    total = 0
    for party_name in ("ingest", "trigger", "sender"):
        party = result.parties.get(party_name, Party())
        for (service, operation), count in sorted(party.requests.items()):
            total += count
            print(f"{party_name:8} {service:9} {operation:22} {count:8d} {count / n:8.3f}")
        if not party.requests:
            print(f"{party_name:8} {'-':9} {'(no AWS request)':22} {0:8d} {0:8.3f}")
    per_sms = total / n
    print(f"{'all':8} {'':9} {'AWS requests':22} {total:8d} {per_sms:8.3f}")

    ingest, sender = result.parties["ingest"], result.parties["sender"]
    sqs_billed = sum(p.sqs_billed for p in result.parties.values())
    wru = sum(p.write_units for p in result.parties.values())
    rru = sum(p.read_units for p in result.parties.values())
    m = Decimal(SMS_PER_MILLION) / n  # runs of this size in 1M SMS
    gb_s = {
        "ingest": Decimal(ingest.billed_ms) / 1000 * Decimal(result.memory_mb["ingest"]) / 1024,
        "sender": Decimal(sender.billed_ms) / 1000 * Decimal(result.memory_mb["sender"]) / 1024,
    }
    lines = [
        (
            "API Gateway REST",
            f"{result.api_requests} req x {m:.0f} x $3.50/M",
            result.api_requests * m * API_GATEWAY_REST_PER_REQUEST,
        ),
        (
            "Lambda requests",
            f"({ingest.invocations} ingest + {sender.invocations} sender) x {m:.0f} x $0.20/M",
            (ingest.invocations + sender.invocations) * m * LAMBDA_PER_REQUEST,
        ),
        (
            "Lambda ingest GB-s",
            f"{ingest.billed_ms} ms x {result.memory_mb['ingest']} MB = {gb_s['ingest']:.4f} GB-s"
            f" x {m:.0f} x $0.0000166667",
            gb_s["ingest"] * m * LAMBDA_PER_GB_SECOND,
        ),
        (
            "Lambda sender GB-s",
            f"{sender.billed_ms} ms x {result.memory_mb['sender']} MB = {gb_s['sender']:.4f} GB-s"
            f" x {m:.0f} x $0.0000166667",
            gb_s["sender"] * m * LAMBDA_PER_GB_SECOND,
        ),
        (
            "SQS",
            f"{sqs_billed} billed req (64 KB chunks) x {m:.0f} x $0.40/M",
            sqs_billed * m * SQS_PER_REQUEST,
        ),
        (
            "DynamoDB writes",
            f"{wru} WRU x {m:.0f} x $0.625/M",
            wru * m * DYNAMODB_PER_WRITE_UNIT,
        ),
        ("DynamoDB reads", f"{rru} RRU x {m:.0f} x $0.125/M", rru * m * DYNAMODB_PER_READ_UNIT),
    ]
    print(f"cost per 1M SMS ({PRICE_REGION_DATE}):")
    for name, arithmetic, cost in lines:
        print(f"  {name:20} {arithmetic:62} = {money(cost)}")
    cost = sum((c for _, _, c in lines), Decimal(0))
    print(f"  {'total':20} {'':62} = {money(cost)}")
    timed_cost = sum((c for name, _, c in lines if name.endswith("GB-s")), Decimal(0))
    print(
        f"  of which from counted requests and units {money(cost - timed_cost)}, "
        f"from measured durations {money(timed_cost)}"
    )
    print(
        f"  durations: median of {result.repeats} runs; ingest "
        f"{ingest.billed_ms / max(ingest.invocations, 1):.1f} ms per invocation "
        f"({ingest.aws_ms / max(ingest.invocations, 1):.1f} ms of it inside moto), sender "
        f"{sender.billed_ms / max(sender.invocations, 1):.1f} ms per batch of up to 10 "
        f"({sender.aws_ms / max(sender.invocations, 1):.1f} ms inside moto); in-process, "
        "moto + SQLite"
    )
    return per_sms, cost


def report(singles: int = 100, repeat: int = 5) -> None:
    """Run both (``repeat`` times each: durations are medians) and print the figures with their
    goals (issue 6's table)."""
    print("\n== bulk send figures (bench/bulk_figures.py): warm, in-process, moto + SQLite")
    # Powertools warns when an invocation published no business metric (the warm replays)
    warnings.filterwarnings("ignore", "No application metrics to publish")
    single = median_run([run("single", singles) for _ in range(repeat)])
    bulk = median_run([run("bulk", singles) for _ in range(repeat)])
    single_requests, single_cost = report_run(single)
    bulk_requests, bulk_cost = report_run(bulk)

    def verdict(ok: bool) -> str:
        return "meets goal" if ok else "MISSES goal"

    print("\nfigure                                          now        goal")
    print(
        f"AWS requests per SMS, bulk of 100               {bulk_requests:<10.3f} "
        f"<= {GOAL_REQUESTS_PER_SMS_BULK}  {verdict(bulk_requests <= GOAL_REQUESTS_PER_SMS_BULK)}"
    )
    print(f"AWS requests per SMS, single (for reference)    {single_requests:<10.3f} -")
    print(
        f"cost per 1M SMS, bulk of 100                    {money(bulk_cost):<10} "
        f"<= ${GOAL_COST_BULK}  {verdict(bulk_cost <= GOAL_COST_BULK)}"
    )
    print(
        f"cost per 1M SMS, single                         {money(single_cost):<10} "
        f"<= ${GOAL_COST_SINGLE}  {verdict(single_cost <= GOAL_COST_SINGLE)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--singles", type=int, default=100, help="single requests to count")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each (median durations)")
    args = parser.parse_args()
    report(args.singles, args.repeat)


if __name__ == "__main__":
    main()
