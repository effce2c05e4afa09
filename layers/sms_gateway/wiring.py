"""Dependency wiring, once per Lambda container: the only module that reads settings.

Two containers, built lazily on first use and reused by warm invocations:

- :func:`ingest`: SQS + DynamoDB idempotency (no SQL: importing it does not import SQLAlchemy);
- :func:`sql`: engine, repositories, route cache, providers, sender / receipts / dead letters;
- :func:`rate_limiter`: per-provider send rates (DynamoDB buckets; none without rates).

Tests call :func:`reset` after changing the environment.

Cold start: importing this module costs nothing beyond the standard library. boto3, pydantic,
SQLAlchemy and the services are imported by the builders below, on a container's first
request, and only by the function that needs them; X-Ray patches exactly the libraries the
container calls through (:func:`sms_gateway.observability.trace_libraries`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig
    from sqlalchemy import Engine

    from sms_gateway.adapters.sqs import SqsMessageQueue
    from sms_gateway.services.dead_letter import DeadLetterService
    from sms_gateway.services.ingest import IngestService
    from sms_gateway.services.operations import MessageOperations
    from sms_gateway.services.ports import SendRateLimiter
    from sms_gateway.services.receipts import ReceiptService
    from sms_gateway.services.retention import RetentionService
    from sms_gateway.services.sender import SenderService
    from sms_gateway.services.tenants import TenantAdmin, TenantKeyResolver
    from sms_gateway.settings import Settings
    from sms_gateway.storage.dead_letters import SqlDeadLetterStore
    from sms_gateway.storage.receipts import SqlReceiptStore
    from sms_gateway.storage.repository import MessageRepository
    from sms_gateway.storage.schema import MigrationResult
    from sms_gateway.storage.sql import Database


class SettingsError(RuntimeError):
    """Invalid configuration; the message names the environment variables at fault."""


def utc_now() -> datetime:
    """The wall clock, aware UTC."""
    return datetime.now(UTC)


@functools.cache
def settings() -> Settings:
    """The container's settings.

    Raises:
        SettingsError: naming each invalid ``SMS_GATEWAY_*`` variable.
    """
    from pydantic import ValidationError

    from sms_gateway.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        names = ", ".join(
            f"SMS_GATEWAY_{str(e['loc'][0]).upper()}: {e['msg']}" if e["loc"] else e["msg"]
            for e in exc.errors()
        )
        raise SettingsError(f"invalid settings: {names}") from exc


@functools.cache
def _sqs_queue() -> SqsMessageQueue:
    from sms_gateway.adapters.aws import sqs_client
    from sms_gateway.adapters.sqs import SqsMessageQueue
    from sms_gateway.observability import trace_libraries

    trace_libraries("botocore")
    s = settings()
    return SqsMessageQueue(sqs_client(), s.send_queue_url, s.dead_letter_queue_url)


@dataclass(frozen=True)
class IngestContainer:
    """What the ingest function needs."""

    settings: Settings
    service: IngestService
    idempotency: IdempotencyConfig


@functools.cache
def ingest() -> IngestContainer:
    """The ingest container (DynamoDB idempotency + SendQueue)."""
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    from sms_gateway.adapters.aws import dynamodb_client
    from sms_gateway.observability import PowertoolsMetrics
    from sms_gateway.services.ingest import IngestConfig, IngestService, idempotency_config

    s = settings()
    queue = _sqs_queue()
    config = idempotency_config(s.idempotency_ttl_seconds)
    store = DynamoDBPersistenceLayer(table_name=s.idempotency_table, boto3_client=dynamodb_client())
    service = IngestService(
        queue=queue,
        clock=utc_now,
        metrics=PowertoolsMetrics(),
        config=IngestConfig(
            max_segments=s.max_segments,
            max_attempts_limit=s.max_receive_count,
            idempotency_ttl_seconds=s.idempotency_ttl_seconds,
        ),
        persistence_store=store,
        idempotency=config,
    )
    return IngestContainer(settings=s, service=service, idempotency=config)


def database_engine(s: Settings) -> Engine:
    """The container's engine (one pooled connection, see
    :func:`~sms_gateway.storage.engine.make_engine`).

    Deployed (``SMS_GATEWAY_DB_HOST``): the URL from host, port, name and engine, the
    credentials from the secret ``SMS_GATEWAY_DB_SECRET_ARN`` through Powertools Parameters
    (cached ``SMS_GATEWAY_DB_SECRET_MAX_AGE_SECONDS``, fetched again when the server refuses
    them). Otherwise ``SMS_GATEWAY_MESSAGE_DSN`` (the local stack, tests, the CLI).
    ``SMS_GATEWAY_DB_TLS``: every connection verifies the server against
    ``SMS_GATEWAY_DB_TLS_CA_FILE`` (default: the RDS CA bundle shipped in the layer).

    Raises:
        SettingsError: the CA file cannot be read.
    """
    from sqlalchemy import URL

    from sms_gateway.storage.engine import (
        SecretCredentials,
        database_url,
        make_engine,
        tls_context,
    )

    tls = None
    if s.db_tls:
        try:
            tls = tls_context(s.db_tls_ca_file or None)
        except (OSError, ValueError) as exc:
            raise SettingsError(f"SMS_GATEWAY_DB_TLS_CA_FILE: {exc}") from exc
    dsn: str | URL = s.message_dsn
    credentials = None
    if s.db_host:
        dsn = database_url(s.db_engine, s.db_host, s.db_port, s.db_name)
        credentials = SecretCredentials(s.db_secret_arn, s.db_secret_max_age_seconds)
    return make_engine(
        dsn,
        pool_recycle_seconds=s.db_pool_recycle_seconds,
        credentials=credentials,
        tls=tls,
    )


def migration_result() -> MigrationResult:
    """Upgrade the configured database to this release's newest schema revision (the
    MigrateFunction's step; :func:`sms_gateway.storage.schema.upgrade_to_head`).

    Raises:
        SettingsError: invalid settings or secret.
        sqlalchemy.exc.SQLAlchemyError, alembic.util.CommandError: as ``upgrade_to_head``.
    """
    from sms_gateway.storage.schema import upgrade_to_head

    return upgrade_to_head(database_engine(settings()))


@dataclass(frozen=True)
class SqlContainer:
    """What the SQL-backed functions (sender, DLQ, status/receipts) need."""

    settings: Settings
    engine: Engine
    database: Database
    repository: MessageRepository
    receipt_store: SqlReceiptStore
    dead_letter_store: SqlDeadLetterStore
    sender: SenderService
    receipts: ReceiptService
    dead_letters: DeadLetterService


@functools.cache
def sql() -> SqlContainer:
    """The SQL container: one engine, the stores (one per aggregate, sharing the engine), the
    route-policy cache, the services.

    X-Ray traces SQL through SQLAlchemy Core: one subsegment per statement, named by the
    host, with the sanitized query, whatever the dialect. Not through the drivers: patching
    every driver imports all of them, and a driver patch records each ``execute`` without its
    query. The price: aws-xray-sdk's patch also wraps the ORM ``Session``, so with tracing on
    SQLAlchemy's ORM modules load with the first request (``make bench`` shows the cost)."""
    from sms_gateway.observability import PowertoolsMetrics, trace_libraries
    from sms_gateway.providers.config import build_registry
    from sms_gateway.services.dead_letter import DeadLetterService
    from sms_gateway.services.receipts import ReceiptService
    from sms_gateway.services.routing import CachedPolicyResolver
    from sms_gateway.services.sender import SenderConfig, SenderService
    from sms_gateway.storage.policies import SqlPolicyStore
    from sms_gateway.storage.repository import MessageRepository
    from sms_gateway.storage.sql import Database

    trace_libraries("botocore", "sqlalchemy_core")
    s = settings()
    engine = database_engine(s)
    database = Database(engine)
    repository = MessageRepository(database)
    metrics = PowertoolsMetrics()
    receipts = ReceiptService(repository, repository.receipts, metrics, utc_now)
    queue = _sqs_queue()
    sender = SenderService(
        messages=repository,
        policies=CachedPolicyResolver(
            SqlPolicyStore(database),
            ttl_seconds=s.route_cache_ttl_seconds,
            max_size=s.route_cache_size,
            default_provider=s.default_provider,
        ),
        providers=build_registry(s.providers, demo_simulators=s.demo_providers),
        queue=queue,
        receipts=receipts,
        metrics=metrics,
        clock=utc_now,
        config=SenderConfig(
            retry_base_seconds=s.retry_base_seconds,
            retry_max_seconds=s.retry_max_seconds,
            lease_seconds=s.lease_seconds,
            outage_requeue_limit=s.outage_requeue_limit,
        ),
        rate_limiter=rate_limiter(),
    )
    return SqlContainer(
        settings=s,
        engine=engine,
        database=database,
        repository=repository,
        receipt_store=repository.receipts,
        dead_letter_store=repository.dead_letters,
        sender=sender,
        receipts=receipts,
        dead_letters=DeadLetterService(repository, repository.dead_letters, metrics, utc_now),
    )


@functools.cache
def operations() -> MessageOperations:
    """Cancel, dead-letter replay and stuck messages over the SQL container's engine
    (:mod:`sms_gateway.services.operations`). Replays go to ``SMS_GATEWAY_SEND_QUEUE_URL``
    (without it, cancel and stuck work and a replay is refused)."""
    from sms_gateway.observability import PowertoolsMetrics
    from sms_gateway.services.operations import MessageOperations
    from sms_gateway.storage.operations import SqlOperationsStore

    container = sql()
    s = container.settings
    return MessageOperations(
        messages=container.repository,
        operations=SqlOperationsStore(container.database),
        queue=_sqs_queue() if s.send_queue_url else None,
        metrics=PowertoolsMetrics(),
        clock=utc_now,
        max_budget=s.max_receive_count,
    )


@functools.cache
def retention() -> RetentionService:
    """The retention run over the SQL container's engine
    (:mod:`sms_gateway.services.retention`; periods from ``SMS_GATEWAY_REDACT_AFTER_DAYS``,
    ``SMS_GATEWAY_DELETE_AFTER_DAYS``, ``SMS_GATEWAY_AUDIT_AFTER_DAYS`` and each tenant's
    route policy, bounds from ``SMS_GATEWAY_RETENTION_*``)."""
    from sms_gateway.observability import PowertoolsMetrics
    from sms_gateway.services.retention import RetentionPolicy, RetentionService
    from sms_gateway.storage.policies import SqlPolicyStore
    from sms_gateway.storage.retention import SqlRetentionStore

    container = sql()
    s = container.settings
    policy = RetentionPolicy(
        redact_after_days=s.redact_after_days,
        delete_after_days=s.delete_after_days,
        batch_size=s.retention_batch_size,
        max_batches=s.retention_max_batches,
        audit_after_days=s.audit_after_days,
    )
    return RetentionService(
        SqlRetentionStore(container.database),
        policy,
        PowertoolsMetrics(),
        utc_now,
        tenant_periods=SqlPolicyStore(container.database).retention_periods,
    )


@functools.cache
def rate_limiter() -> SendRateLimiter:
    """The container's send-rate limiter (see :mod:`sms_gateway.services.ratelimit` for how
    the sender calls it). Without ``SMS_GATEWAY_PROVIDER_RATES`` it grants everything and
    creates no AWS client; otherwise the buckets live in ``SMS_GATEWAY_RATE_LIMIT_TABLE``.

    Raises:
        SettingsError: invalid settings (see :func:`settings`).
    """
    from sms_gateway.domain.ratelimit import SendRate
    from sms_gateway.services.ratelimit import BucketRateLimiter, UnlimitedRateLimiter

    s = settings()
    if not s.provider_rates:
        return UnlimitedRateLimiter()
    from sms_gateway.adapters.aws import dynamodb_client
    from sms_gateway.adapters.dynamodb_ratelimit import DynamoDbBucketStore

    return BucketRateLimiter(
        DynamoDbBucketStore(dynamodb_client(), s.rate_limit_table),
        {name: SendRate.of(r.rate, r.burst) for name, r in s.provider_rates.items()},
        utc_now,
        penalties={name: r.penalty_seconds for name, r in s.provider_rates.items()},
    )


@functools.cache
def tenant_keys() -> TenantKeyResolver:
    """The container's API key id -> tenant id resolver (``SMS_GATEWAY_TENANTS_TABLE``,
    cached ``SMS_GATEWAY_TENANT_CACHE_TTL_SECONDS``; :mod:`sms_gateway.services.tenants`).

    Raises:
        SettingsError: no tenants table is configured.
    """
    from sms_gateway.adapters.aws import dynamodb_client
    from sms_gateway.adapters.dynamodb_tenants import DynamoDbTenantStore
    from sms_gateway.services.tenants import TenantKeyResolver

    s = settings()
    if not s.tenants_table:
        raise SettingsError(
            "SMS_GATEWAY_TENANTS_TABLE must be set in api_key mode: it maps API keys to tenants"
        )
    return TenantKeyResolver(
        DynamoDbTenantStore(dynamodb_client(), s.tenants_table), s.tenant_cache_ttl_seconds
    )


def tenant_of_key(key_id: str) -> str:
    """The tenant of the API key ``key_id`` (:meth:`TenantKeyResolver.tenant_of`)."""
    return tenant_keys().tenant_of(key_id)


@functools.cache
def tenant_admin() -> TenantAdmin:
    """The tenant commands (AdminFunction): records in ``SMS_GATEWAY_TENANTS_TABLE``, usage
    plans of ``SMS_GATEWAY_API_ID`` / ``SMS_GATEWAY_API_STAGE``, policies in the SQL
    database.

    Raises:
        SettingsError: the table, API or stage is not configured.
    """
    from sms_gateway.adapters.apigateway_plans import ApiGatewayUsagePlans
    from sms_gateway.adapters.aws import apigateway_client, dynamodb_client
    from sms_gateway.adapters.dynamodb_tenants import DynamoDbTenantStore
    from sms_gateway.services.tenants import TenantAdmin
    from sms_gateway.storage.policies import SqlPolicyStore

    s = settings()
    missing = [
        name
        for name, value in (
            ("SMS_GATEWAY_TENANTS_TABLE", s.tenants_table),
            ("SMS_GATEWAY_API_ID", s.api_id),
            ("SMS_GATEWAY_API_STAGE", s.api_stage),
        )
        if not value
    ]
    if missing:
        raise SettingsError(f"{', '.join(missing)} must be set for the tenant commands")
    return TenantAdmin(
        DynamoDbTenantStore(dynamodb_client(), s.tenants_table),
        ApiGatewayUsagePlans(apigateway_client(), s.api_id, s.api_stage),
        utc_now,
        write_policy=SqlPolicyStore(sql().database).put,
        providers=s.provider_names,
    )


def provider_secret(reference: str) -> str:
    """A provider secret (Secrets Manager or SSM, cached by Powertools parameters).

    Raises:
        SecretUnavailable: it cannot be read.
    """
    from sms_gateway.providers.secrets import read_secret

    return read_secret(reference)


def reset() -> None:
    """Forget every cached container (tests, after changing the environment)."""
    if sql.cache_info().currsize:
        sql().engine.dispose()
    for cached in (
        settings,
        _sqs_queue,
        ingest,
        sql,
        operations,
        retention,
        rate_limiter,
        tenant_keys,
        tenant_admin,
    ):
        cached.cache_clear()
