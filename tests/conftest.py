"""Fixtures: SQL databases (SQLite always; PostgreSQL and MariaDB when their DSNs are set)
and the in-process gateway under moto.

``SMS_GATEWAY_TEST_POSTGRES_DSN`` / ``SMS_GATEWAY_TEST_MYSQL_DSN`` select the servers (CI sets
both, to the loopback servers, and fails on any skipped SQL test).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from hypothesis import HealthCheck, settings
from moto import mock_aws
from sqlalchemy import Engine, delete, text

from sms_gateway import wiring
from sms_gateway.local.resources import provision
from sms_gateway.local.template import Resolver, SamTemplate
from sms_gateway.providers import simulator
from sms_gateway.storage.demo import DEMO_POLICIES
from sms_gateway.storage.engine import make_engine
from sms_gateway.storage.repository import MessageRepository, RoutePolicyRepository
from sms_gateway.storage.schema import run_migrations
from sms_gateway.storage.tables import metadata
from tests.support import REPO_ROOT, FakeClock, Gateway, RecordingProvider, load_handler

SERVER_DSNS = {
    "postgresql": "SMS_GATEWAY_TEST_POSTGRES_DSN",
    "mysql": "SMS_GATEWAY_TEST_MYSQL_DSN",
}
_migrated: dict[str, Engine] = {}

# A busy machine must not fail a property test: no per-example deadline, no "too slow" check.
settings.register_profile(
    "suite", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))


def _fresh_database(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        dsn = f"sqlite:///{tmp_path / 'gateway.db'}"
        run_migrations(dsn)
        return dsn
    dsn = os.environ.get(SERVER_DSNS[kind], "")
    if not dsn:
        if os.environ.get("SMS_GATEWAY_REQUIRE_SQL_SERVERS"):
            pytest.fail(f"{SERVER_DSNS[kind]} is not set but SQL servers are required")
        pytest.skip(f"{SERVER_DSNS[kind]} is not set: no {kind} server for this run")
    if kind not in _migrated:
        engine = make_engine(dsn)
        with engine.begin() as conn:
            metadata.drop_all(conn)
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        run_migrations(dsn)
        _migrated[kind] = engine
    with _migrated[kind].begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(delete(table))
    return dsn


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database on each dialect; its DSN."""
    return _fresh_database(str(request.param), tmp_path)


@pytest.fixture
def sqlite_database(tmp_path: Path) -> str:
    """A migrated, empty SQLite database (for tests whose subject is not the dialect)."""
    return _fresh_database("sqlite", tmp_path)


AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_SERVICE_NAME": "sms-gateway",
    "POWERTOOLS_METRICS_NAMESPACE": "SmsGateway",
    "POWERTOOLS_DEV": "false",
}

# Powertools' Logger and Metrics read their settings when sms_gateway.observability is first
# imported (in Lambda the environment exists before any import); the services import it, and
# test modules import services at collection, before any fixture has set the environment.
for _key in ("POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"):
    os.environ.setdefault(_key, AWS_TEST_ENV[_key])


def set_aws_test_env(monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
    """Fake AWS credentials and region; no endpoint override (moto intercepts in-process)."""
    for key, value in {**AWS_TEST_ENV, **extra}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """:func:`set_aws_test_env` for one test."""
    set_aws_test_env(monkeypatch)


def _gateway(database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    with mock_aws():
        sqs = boto3.client("sqs")
        template = SamTemplate.from_file(REPO_ROOT / "template.yaml")
        resolver = Resolver(
            template,
            pseudo_parameters={
                "AWS::Region": "us-east-1",
                "AWS::Partition": "aws",
                "AWS::URLSuffix": "amazonaws.com",
                "AWS::AccountId": "123456789012",
                "AWS::StackName": "sms-gateway",
            },
        )
        resources = provision(
            template, resolver, sqs=sqs, dynamodb=boto3.client("dynamodb"), stack_name="sms-gateway"
        )
        env = {
            "SMS_GATEWAY_AUTH_MODE": "local",
            "SMS_GATEWAY_IDEMPOTENCY_TABLE": resources.table_names["IdempotencyTable"],
            "SMS_GATEWAY_SEND_QUEUE_URL": resources.queue_urls["SendQueue"],
            "SMS_GATEWAY_DEAD_LETTER_QUEUE_URL": resources.queue_urls["DeadLetterQueue"],
            "SMS_GATEWAY_MESSAGE_DSN": database,
            "SMS_GATEWAY_MAX_RECEIVE_COUNT": str(resolver.parameter("MaxReceiveCount")),
            "SMS_GATEWAY_RETRY_BASE_SECONDS": "0",
            "SMS_GATEWAY_RETRY_MAX_SECONDS": "0",
            "SMS_GATEWAY_LEASE_SECONDS": "30",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        providers = {p.name: RecordingProvider(p) for p in simulator.demo_providers()}
        monkeypatch.setattr(simulator, "demo_providers", lambda: list(providers.values()))
        clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
        monkeypatch.setattr(wiring, "utc_now", clock)
        engine = make_engine(database)
        now = clock()
        policies = RoutePolicyRepository(engine)
        for tenant_id, (strategy, payload) in DEMO_POLICIES.items():
            policies.put(tenant_id, strategy, payload, now)
        wiring.reset()
        gateway = Gateway(
            sqs=sqs,
            send_queue_url=resources.queue_urls["SendQueue"],
            send_queue_arn=resources.queue_arns["SendQueue"],
            dead_letter_queue_url=resources.queue_urls["DeadLetterQueue"],
            dead_letter_queue_arn=resources.queue_arns["DeadLetterQueue"],
            dsn=database,
            repo=MessageRepository(engine),
            providers=providers,
            handlers={name: load_handler(name) for name in ("ingest", "status", "sender", "dlq")},
            clock=clock,
        )
        try:
            yield gateway
        finally:
            wiring.reset()
            engine.dispose()


@pytest.fixture
def gateway(database: str, aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    """The gateway over moto, on each SQL dialect."""
    yield from _gateway(database, monkeypatch)


@pytest.fixture
def sqlite_gateway(
    sqlite_database: str, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    """The gateway over moto and SQLite only."""
    yield from _gateway(sqlite_database, monkeypatch)
