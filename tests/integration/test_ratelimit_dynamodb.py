"""The DynamoDB bucket store (sms_gateway.adapters.dynamodb_ratelimit), with the table built
from template.yaml's RateLimitTable.

1. One contract suite that the in-memory fake and the DynamoDB store (moto, in-process) both
   pass: the same conditions, the same answers.
2. Concurrency over real HTTP: many threads, each a separate "container" (own boto3 client,
   own limiter), take from one bucket through a moto server on 127.0.0.1. The guarantee rests
   on DynamoDB applying a conditional write to one item atomically. moto does not: its server
   handles requests on threads and checks a condition and writes the item as separate Python
   steps, so two racing UpdateItems could both pass. The test server therefore serialises
   DynamoDB writes (as the local stack's journal front does), which reproduces DynamoDB's
   per-item guarantee while reads, plans and retries of the threads still interleave freely.
   What this proves is the limiter's side: planning from stale views, failed conditions,
   retries and the arithmetic never grant more than the bucket holds, and never lose a take.
"""

from __future__ import annotations

import random
import threading
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

from sms_gateway.adapters.dynamodb_ratelimit import KEY, VALUE, DynamoDbBucketStore
from sms_gateway.domain.ratelimit import ConditionalTake, SendRate, plan_take
from sms_gateway.local.template import SamTemplate
from sms_gateway.services.ports import BucketStore
from sms_gateway.services.ratelimit import BucketRateLimiter, InMemoryBucketStore, epoch_ns
from tests.support import REPO_ROOT, serving_thread

REGION = "us-east-1"
TABLE = "sms-gateway-RateLimitTable"
T0 = datetime(2025, 1, 1, tzinfo=UTC)
NOW = epoch_ns(T0)
RATE = SendRate.of(10, 20)  # interval 0.1 s, tolerance 2 s


def create_table(client: Any) -> None:
    """RateLimitTable as template.yaml declares it."""
    props = SamTemplate.from_file(REPO_ROOT / "template.yaml").resources["RateLimitTable"][
        "Properties"
    ]
    client.create_table(
        TableName=TABLE,
        AttributeDefinitions=props["AttributeDefinitions"],
        KeySchema=props["KeySchema"],
        BillingMode=props["BillingMode"],
    )


@pytest.fixture(params=["memory", "dynamodb"])
def store(request: pytest.FixtureRequest, aws_env: None) -> Iterator[BucketStore]:
    if request.param == "memory":
        yield InMemoryBucketStore()
        return
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_table(client)
        yield DynamoDbBucketStore(client, TABLE)


def take_of(state: int | None, segments: int, now: int = NOW) -> ConditionalTake:
    plan = plan_take(RATE, state, now, [segments])
    assert plan.take is not None
    return plan.take


def test_contract_first_take_creates_a_full_bucket_less_its_cost(store: BucketStore) -> None:
    applied, value = store.take("provider-a", take_of(None, 5))
    assert applied
    assert value == NOW - 2 * 10**9 + 5 * 10**8  # full (now - 2 s), minus 5 x 0.1 s
    # Guessing "full" again is wrong now: the condition fails and the stored value comes back.
    applied, seen = store.take("provider-a", take_of(None, 5))
    assert (applied, seen) == (False, value)


def test_contract_partial_take_adds_to_what_is_stored(store: BucketStore) -> None:
    _, value = store.take("provider-a", take_of(None, 15))  # 5 left
    assert value is not None
    take = take_of(value, 3)
    assert not take.from_full
    assert store.take("provider-a", take) == (True, value + 3 * 10**8)  # 2 left
    # The same plan again (a stale view): 3 no longer fit.
    assert store.take("provider-a", take) == (False, value + 3 * 10**8)
    # Another provider's bucket is its own.
    assert store.take("provider-b", take_of(None, 20))[0]


def test_contract_hold_only_ever_extends(store: BucketStore) -> None:
    store.hold("provider-a", NOW + 10**9)
    assert store.take("provider-a", take_of(None, 1)) == (False, NOW + 10**9)
    store.hold("provider-a", NOW)  # shorter: no change, no error
    assert store.take("provider-a", take_of(None, 1)) == (False, NOW + 10**9)
    store.hold("provider-a", NOW + 3 * 10**9)
    assert store.take("provider-a", take_of(None, 1)) == (False, NOW + 3 * 10**9)
    later = NOW + 3 * 10**9 + 10**8  # one segment refilled after the hold
    assert store.take("provider-a", take_of(NOW + 3 * 10**9, 1, later)) == (
        True,
        NOW + 3 * 10**9 + 10**8,
    )


def test_dynamodb_item_shape_and_one_update_item_per_batch(aws_env: None) -> None:
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_table(client)
        calls: list[str] = []
        client.meta.events.register(
            "before-call.dynamodb.*", lambda model, **_: calls.append(model.name)
        )
        limiter = BucketRateLimiter(
            DynamoDbBucketStore(client, TABLE), {"provider-a": RATE}, lambda: T0
        )
        assert limiter.acquire("provider-a", [3, 3, 3]).segments == 9
        assert limiter.acquire("provider-a", [3, 3, 3, 3]).segments == 9  # 11 left: 3 fit
        assert limiter.acquire("provider-b", [10] * 10).segments == 100  # unlimited
        limiter.throttled("provider-a")
        assert calls == ["UpdateItem", "UpdateItem", "UpdateItem"]
        item = client.get_item(TableName=TABLE, Key={KEY: {"S": "provider-a"}})["Item"]
        assert item == {KEY: {"S": "provider-a"}, VALUE: {"N": str(NOW + 10**9)}}


class _SerialisedWrites:
    """WSGI front for moto: one DynamoDB write at a time (DynamoDB's per-item atomicity)."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target.endswith((".UpdateItem", ".PutItem")):
            with self.lock:
                return list(self.app(environ, start_response))
        return self.app(environ, start_response)


@pytest.fixture
def moto_server() -> Iterator[str]:
    app = _SerialisedWrites(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = serving_thread(server)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_port}"
    try:
        yield endpoint
    finally:
        # moto's backends are process-global: leave no table for a later test (a local stack
        # started in this process provisions the same names).
        reset = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(reset, timeout=10):
            pass
        server.shutdown()
        thread.join()


def _client(endpoint: str) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_concurrent_containers_never_exceed_the_bucket(moto_server: str) -> None:
    create_table(_client(moto_server))
    rate = SendRate.of(50, 60)
    threads, rounds = 8, 12
    granted = [0] * threads
    start = threading.Barrier(threads)

    def container(index: int) -> None:
        # Its own client and limiter: a separate Lambda container. The clock stands still,
        # so the budget is exactly the burst (no refill).
        limiter = BucketRateLimiter(
            DynamoDbBucketStore(_client(moto_server), TABLE), {"provider-a": rate}, lambda: T0
        )
        rng = random.Random(index)
        start.wait()
        for _ in range(rounds):
            grant = limiter.acquire("provider-a", [rng.randint(1, 3) for _ in range(4)])
            granted[index] += grant.segments

    workers = [threading.Thread(target=container, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    total = sum(granted)
    assert total <= rate.burst
    # Every granted segment is in the stored bucket (no lost take), and nothing else is.
    item = _client(moto_server).get_item(TableName=TABLE, Key={KEY: {"S": "provider-a"}})["Item"]
    assert int(item[VALUE]["N"]) == NOW - rate.tolerance_ns + total * rate.interval_ns
    # 8 x 12 requests of at least 4 segments want far more than 60: most of it was granted
    # (a container gives up only after MAX_ATTEMPTS lost races, so a little may be left).
    assert total >= rate.burst - 3 * threads
