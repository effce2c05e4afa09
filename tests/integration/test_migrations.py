"""The one Alembic history on each dialect: it builds exactly the tables the code defines."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from sms_gateway.storage.engine import make_engine
from sms_gateway.storage.schema import alembic_config
from sms_gateway.storage.tables import metadata

TABLES = {
    "messages",
    "message_attempts",
    "message_events",
    "dead_letters",
    "tenant_route_policies",
    "receipts",
    "alembic_version",
}


def test_history_matches_the_table_definitions(database: str) -> None:
    engine = make_engine(database)
    try:
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
            assert set(inspect(conn).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_downgrade_and_upgrade_again(sqlite_database: str) -> None:
    from alembic import command

    config = alembic_config(sqlite_database)
    command.downgrade(config, "base")
    engine = make_engine(sqlite_database)
    try:
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
        command.upgrade(config, "head")
        assert set(inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()
