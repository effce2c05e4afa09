"""The MigrateFunction (functions/migrate) as CloudFormation drives it: a custom resource
request in, the response PUT to the pre-signed ResponseURL (here an HTTP server on loopback),
on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from sms_gateway import wiring
from sms_gateway.adapters.custom_resource import (
    RESPONSE_LIMIT_BYTES,
    CustomResourceRequest,
    InvalidRequest,
    response_body,
    send_response,
)
from sms_gateway.storage.engine import make_engine
from sms_gateway.storage.schema import alembic_config, run_migrations
from sms_gateway.storage.tables import metadata
from tests.support import FakeLambdaContext, ResponseCatcher, sample

HEAD = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


@pytest.fixture
def catcher() -> Iterator[ResponseCatcher]:
    with ResponseCatcher().serving() as running:
        yield running


@pytest.fixture
def migrate(
    handler_modules: dict[str, ModuleType], database: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ModuleType]:
    """The handler, configured for ``database``; the database is migrated again afterwards
    whatever the test did to it (PostgreSQL and MariaDB are shared by a worker's tests)."""
    monkeypatch.setenv("SMS_GATEWAY_MESSAGE_DSN", database)
    monkeypatch.delenv("SMS_GATEWAY_DB_SECRET_ARN", raising=False)
    wiring.reset()
    try:
        yield handler_modules["migrate"]
    finally:
        wiring.reset()
        empty(database)
        run_migrations(database)


def request(catcher: ResponseCatcher, kind: str, **extra: Any) -> dict[str, Any]:
    event = copy.deepcopy(sample("migrate-create.json"))
    event["RequestType"] = kind
    event["ResponseURL"] = f"{catcher.url}/response?X-Amz-Signature=abc"
    if kind != "Create":
        event["PhysicalResourceId"] = "sms-gateway-schema"
    event.update(extra)
    return event


def empty(dsn: str) -> None:
    """Drop every table (not Alembic's downgrade: 0001's fails on MariaDB, whose foreign keys
    need the index it drops first)."""
    engine = make_engine(dsn)
    with engine.begin() as conn:
        metadata.drop_all(conn)
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()


def revision(dsn: str) -> str | None:
    engine = make_engine(dsn)
    try:
        with engine.connect() as conn:
            if "alembic_version" not in inspect(conn).get_table_names():
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def tables(dsn: str) -> set[str]:
    engine = make_engine(dsn)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_create_migrates_an_empty_database_and_answers_success(
    migrate: ModuleType, database: str, catcher: ResponseCatcher
) -> None:
    empty(database)
    assert revision(database) is None
    event = request(catcher, "Create")
    answer = migrate.lambda_handler(event, FakeLambdaContext("MigrateFunction"))
    assert answer["Status"] == "SUCCESS"
    assert revision(database) == HEAD == "0004"
    assert {"messages", "receipts", "dead_letters", "opt_outs"} <= tables(database)
    [put] = catcher.requests
    assert put["method"] == "PUT"
    assert put["path"] == "/response?X-Amz-Signature=abc"
    assert put["headers"]["Content-Type"] == ""  # the pre-signed URL is signed without one
    assert put["body"] == {
        "Status": "SUCCESS",
        "Reason": "migrated from an empty database to 0004",
        "PhysicalResourceId": "sms-gateway-schema",
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": "SchemaMigrations",
        "NoEcho": False,
        "Data": {"Revision": "0004"},
    }


def test_update_from_the_previous_revision(
    migrate: ModuleType, database: str, catcher: ResponseCatcher
) -> None:
    command.downgrade(alembic_config(database), "0002")
    migrate.lambda_handler(request(catcher, "Update"), FakeLambdaContext("MigrateFunction"))
    assert revision(database) == "0004"
    [put] = catcher.requests
    assert (put["body"]["Status"], put["body"]["Reason"]) == (
        "SUCCESS",
        "migrated from 0002 to 0004",
    )
    assert put["body"]["PhysicalResourceId"] == "sms-gateway-schema"  # unchanged: no replace


def test_a_failed_migration_answers_failed(
    migrate: ModuleType, database: str, catcher: ResponseCatcher
) -> None:
    """0001 creates ``messages``; a table of that name already there makes it fail."""
    empty(database)
    engine = make_engine(database)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE messages (x INTEGER)"))
    engine.dispose()
    try:
        answer = migrate.lambda_handler(
            request(catcher, "Create"), FakeLambdaContext("MigrateFunction")
        )
    finally:
        engine = make_engine(database)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE messages"))
        engine.dispose()
    # (PostgreSQL rolls the revision's DDL back; MariaDB and SQLite keep what ran before the
    # failing statement: docs/migrations.md)
    assert answer["Status"] == "FAILED"
    [put] = catcher.requests
    body = put["body"]
    assert body["Status"] == "FAILED"
    assert body["Reason"].startswith("migration failed: ")
    assert "messages" in body["Reason"]  # the driver's message names the table
    assert body["PhysicalResourceId"] == "sms-gateway-schema"
    assert body["Data"] == {}
    assert revision(database) is None  # 0001 was not recorded as applied


def test_a_database_ahead_of_this_release_is_left_alone(
    migrate: ModuleType, database: str, catcher: ResponseCatcher
) -> None:
    """A rollback sends the previous release's function an Update against the newer schema."""
    engine = make_engine(database)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    migrate.lambda_handler(request(catcher, "Update"), FakeLambdaContext("MigrateFunction"))
    [put] = catcher.requests
    assert put["body"]["Status"] == "SUCCESS"
    assert put["body"]["Reason"] == "database at 0099, newer than this release: nothing run"
    assert put["body"]["Data"] == {"Revision": "0099"}
    assert revision(database) == "0099"


def test_delete_is_a_no_op_success(
    migrate: ModuleType, database: str, catcher: ResponseCatcher
) -> None:
    migrate.lambda_handler(request(catcher, "Delete"), FakeLambdaContext("MigrateFunction"))
    [put] = catcher.requests
    assert put["body"]["Status"] == "SUCCESS"
    assert put["body"]["PhysicalResourceId"] == "sms-gateway-schema"
    assert revision(database) == "0004"
    assert "messages" in tables(database)


def test_request_shape_is_checked() -> None:
    event = sample("migrate-create.json")
    del event["ResponseURL"]
    with pytest.raises(InvalidRequest, match="ResponseURL"):
        CustomResourceRequest.from_event(event)
    with pytest.raises(InvalidRequest, match="Replace"):
        CustomResourceRequest.from_event(
            {**sample("migrate-create.json"), "RequestType": "Replace"}
        )


def test_a_long_reason_is_cut_to_the_4096_byte_limit() -> None:
    parsed = CustomResourceRequest.from_event(sample("migrate-create.json"))
    body = response_body(parsed, success=False, reason="x" * 10_000, physical_resource_id="p")
    assert len(body) <= RESPONSE_LIMIT_BYTES
    assert len(body) > RESPONSE_LIMIT_BYTES - 10
    assert body.decode().count("x") > 3_000


def test_only_https_or_loopback_response_urls() -> None:
    event = {**sample("migrate-create.json"), "ResponseURL": "http://example.com/x"}
    parsed = CustomResourceRequest.from_event(event)
    with pytest.raises(ValueError, match="https"):
        send_response(parsed, b"{}")
