"""The handlers' AWS clients that tests/conftest.py keeps from one test to the next
(``_warm_client``) start every test as they were built: what a previous test registered on
one is not seen by the next test. Powertools' user-agent hook is such a registration: every
DynamoDBPersistenceLayer adds one to the client it is given, and the wiring builds one per
ingest container, i.e. per test; kept, they pile up on the one warm client, each run on
every DynamoDB call of every later test (and each appends a User-Agent header).

The test runs twice on purpose: the second run is "the next test" of the first."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

from sms_gateway.adapters import aws
from tests.conftest import SharedAws


def _idempotency_hooks(client: Any) -> int:
    """How many Powertools "idempotency" user-agent hooks a DynamoDB request of ``client``
    runs."""
    emitter = getattr(client.meta.events, "_emitter", client.meta.events)
    handlers = emitter._handlers.prefix_search("request-created.dynamodb.ListTables")
    return sum(
        1
        for handler in handlers
        if getattr(handler, "__name__", "") == "add_powertools_feature"
        and inspect.getclosurevars(handler).nonlocals.get("feature") == "idempotency"
    )


@pytest.mark.parametrize("run", ["first", "next"])
def test_a_clients_hooks_do_not_outlive_the_test_that_added_them(
    run: str, moto_resources: SharedAws
) -> None:
    table = moto_resources.resources.table_names["IdempotencyTable"]
    # what wiring.ingest() does once per container, i.e. once per test
    store = DynamoDBPersistenceLayer(table_name=table, boto3_client=aws.dynamodb_client())
    assert _idempotency_hooks(store.client) == 1
