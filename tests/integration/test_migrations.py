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


def test_the_audit_trail_outlives_its_message_from_0004(database: str) -> None:
    """(issue 11) From 0004, deleting a message keeps its events (no foreign key) on
    every dialect; a downgrade to 0003 drops those orphan events and restores the key."""
    from datetime import UTC, datetime

    from alembic import command
    from sqlalchemy import delete, func, insert, select

    from sms_gateway.storage.tables import message_events, messages

    now = datetime(2026, 11, 30, tzinfo=UTC)
    row = {
        "tenant_id": "t",
        "to_number": "",
        "body": "",
        "status": "canceled",
        "encoding": "GSM-7",
        "segments": 1,
        "attempts": 0,
        "max_attempts": 1,
        "idempotency_key": "k",
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }
    engine = make_engine(database)
    try:
        with engine.begin() as conn:
            conn.execute(insert(messages), [{"id": "gone", **row}, {"id": "kept", **row}])
            conn.execute(
                insert(message_events),
                [{"message_id": m, "to_status": "canceled", "at": now} for m in ("gone", "kept")],
            )
            conn.execute(delete(messages).where(messages.c.id == "gone"))
        count = select(func.count()).select_from(message_events)
        with engine.connect() as conn:
            assert conn.execute(count).scalar_one() == 2
        if not database.startswith("sqlite"):
            return  # the downgrade below runs on the throwaway SQLite file only
        config = alembic_config(database)
        command.downgrade(config, "0003")
        with engine.connect() as conn:
            assert conn.execute(select(message_events.c.message_id)).scalars().all() == ["kept"]
            (fk,) = inspect(conn).get_foreign_keys("message_events")
            assert (fk["referred_table"], fk["constrained_columns"]) == ("messages", ["message_id"])
        command.upgrade(config, "head")
        with engine.connect() as conn:
            assert inspect(conn).get_foreign_keys("message_events") == []
    finally:
        engine.dispose()


def test_0004_puts_a_replayed_message_on_its_generation(sqlite_database: str) -> None:
    """A message replayed before 0004 (dead letters of generations 0 and 1 replayed) is on
    generation 2 after it; a message never replayed on 0."""
    from alembic import command
    from sqlalchemy import text

    config = alembic_config(sqlite_database)
    command.downgrade(config, "0003")
    engine = make_engine(sqlite_database)
    try:
        with engine.begin() as conn:
            for message_id in ("replayed", "plain"):
                conn.execute(
                    text(
                        "INSERT INTO messages (id, tenant_id, to_number, body, status, encoding,"
                        " segments, attempts, max_attempts, idempotency_key, version, created_at,"
                        " updated_at) VALUES (:id, 't', '', '', 'queued', 'GSM-7', 1, 0, 1, :id,"
                        " 1, '2026-11-30 00:00:00', '2026-11-30 00:00:00')"
                    ),
                    {"id": message_id},
                )
            stamp = "2026-11-30 00:00:00"
            for generation, replayed in ((0, stamp), (1, stamp), (2, None)):
                conn.execute(
                    text(
                        "INSERT INTO dead_letters (sqs_message_id, message_id, receive_count,"
                        " reason, raw_payload, created_at, replayed_at, generation) VALUES"
                        " (:sqs, 'replayed', 1, 'dead_letter', '', :stamp, :replayed,"
                        " :generation)"
                    ),
                    {
                        "sqs": f"sqs-{generation}",
                        "stamp": stamp,
                        "replayed": replayed,
                        "generation": generation,
                    },
                )
        command.upgrade(config, "head")
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, generation FROM messages ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [("plain", 0), ("replayed", 2)]
    finally:
        engine.dispose()
