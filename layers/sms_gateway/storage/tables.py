"""The gateway's tables, defined once (SQLAlchemy Core). Alembic's history mirrors them.

Works on PostgreSQL (pg8000), MySQL/MariaDB (pymysql) and SQLite. Times are stored as UTC
without a zone and read back as aware UTC (:class:`UTCDateTime`), with microseconds on MySQL.
Text columns are utf8mb4 on MySQL so that emoji bodies round-trip.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

# utf8mb4_bin: ids, keys and tenant ids compare byte for byte, as on PostgreSQL and SQLite
# (MySQL's default *_ci collations would match "TENANT-1" to "tenant-1").
MYSQL_TABLE_ARGS: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mysql_engine": "InnoDB",
}

# An auto-increment id that is BIGINT where it matters and INTEGER on SQLite (rowid alias).
BigId = BigInteger().with_variant(Integer(), "sqlite")
LongText = Text().with_variant(mysql.MEDIUMTEXT(), "mysql")


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC ``datetime`` in Python; a zone-less UTC timestamp in the database."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


messages = Table(
    "messages",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(128), nullable=False),
    Column("to_number", String(16), nullable=False),
    Column("sender_id", String(16)),
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason_code", String(32)),
    Column("reason_detail", Text),
    Column("provider", String(64)),
    Column("provider_message_id", String(255)),
    Column("encoding", String(8), nullable=False),
    Column("segments", Integer, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False),
    Column("idempotency_key", String(255), nullable=False),
    Column("reference", String(128)),
    Column("version", Integer, nullable=False, default=1),
    Column("lease_expires_at", UTCDateTime()),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime()),
    Column("delivered_at", UTCDateTime()),
    Column("expires_at", UTCDateTime()),
    # set when a receipt is parked (pending) for this message, cleared when the kept receipts
    # are applied: the sender learns from the row it updates whether to look, instead of
    # querying the receipts of every message it sends (issue 6)
    Column("receipt_waiting", Boolean, nullable=False, default=False, server_default=false()),
    # the replay generation the message is on (0 until an operator replays its dead letter;
    # each replay starts the next): a SendQueue record of an older generation is a stale
    # copy the sender acknowledges without effect (issue 11; migration 0004). A server
    # default only: the PostgreSQL intake's INSERT ... SELECT names its own columns.
    Column("generation", Integer, nullable=False, server_default="0"),
    Index("ix_messages_tenant_created", "tenant_id", "created_at"),
    Index("ix_messages_provider_message_id", "provider_message_id"),
    Index("ix_messages_status", "status"),
    **MYSQL_TABLE_ARGS,
)

message_attempts = Table(
    "message_attempts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("message_id", String(64), ForeignKey("messages.id"), nullable=False),
    Column("attempt_number", Integer, nullable=False),
    Column("provider", String(64), nullable=False),
    # in_flight (claim recorded before the provider call), sent, transient_error, permanent_error,
    # unknown (the request left, no answer came: issue 7)
    Column("outcome", String(32), nullable=False),
    Column("reason_code", String(32)),
    Column("error_code", String(64)),
    Column("error_detail", Text),
    Column("latency_ms", Integer),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime()),
    UniqueConstraint("message_id", "attempt_number", name="uq_message_attempts_message_attempt"),
    **MYSQL_TABLE_ARGS,
)

message_events = Table(
    "message_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    # no foreign key: the audit trail outlives its message (retention deletes the message
    # after DeleteAfterDays, its events after AuditAfterDays; migration 0004)
    Column("message_id", String(64), nullable=False),
    # written when the message is deleted (until then the message row names the tenant)
    Column("tenant_id", String(128)),
    Column("from_status", String(16)),
    Column("to_status", String(16), nullable=False),
    Column("reason_code", String(32)),
    Column("detail", Text),
    Column("at", UTCDateTime(), nullable=False),
    Index("ix_message_events_message", "message_id", "id"),
    Index("ix_message_events_at", "at"),
    **MYSQL_TABLE_ARGS,
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    # the SQS message id of the dead letter: recording the same dead letter twice is a no-op
    Column("sqs_message_id", String(128), nullable=False, unique=True),
    Column("message_id", String(64)),
    Column("tenant_id", String(128)),
    Column("receive_count", Integer, nullable=False),
    Column("reason", String(32), nullable=False),
    Column("detail", Text),
    Column("raw_payload", LongText, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("replayed_at", UTCDateTime()),
    # one dead letter per message and replay generation (0 until an operator replays it):
    # two copies of a message dead-lettered at once make one row (NULL ids stay distinct)
    Column("generation", Integer, nullable=False, default=0),
    UniqueConstraint("message_id", "generation", name="uq_dead_letters_message_generation"),
    **MYSQL_TABLE_ARGS,
)

tenant_route_policies = Table(
    "tenant_route_policies",
    metadata,
    Column("tenant_id", String(128), primary_key=True),
    Column("strategy", String(16), nullable=False),
    Column("payload", Text, nullable=False),
    Column("version", Integer, nullable=False, default=1),
    Column("updated_at", UTCDateTime(), nullable=False),
    **MYSQL_TABLE_ARGS,
)

receipts = Table(
    "receipts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("message_id", String(64)),
    Column("provider_message_id", String(255)),
    # the provider that signed the receipt (None: unsigned, local mode)
    Column("provider", String(64)),
    # for a pending receipt: the attempt that was in flight when it arrived
    Column("attempt", Integer),
    Column("status", String(16), nullable=False),
    Column("error_code", String(64)),
    Column("delivered_at", UTCDateTime()),
    Column("raw", Text, nullable=False),
    # applied, pending (message not sent yet), stale (would move backwards), unmatched
    Column("outcome", String(16), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("applied_at", UTCDateTime()),
    Index("ix_receipts_message", "message_id"),
    Index("ix_receipts_provider_message_id", "provider_message_id"),
    **MYSQL_TABLE_ARGS,
)

opt_outs = Table(
    "opt_outs",
    metadata,
    # a number that answered "opted out" (STOP) for this tenant and sender ID: later sends to
    # it fail at once with reason opted_out, without a provider call, until an operator clears
    # it (issue 7). sender_id is '' for messages sent without one (the provider's default).
    Column("tenant_id", String(128), primary_key=True),
    Column("number", String(16), primary_key=True),
    Column("sender_id", String(16), primary_key=True),
    # the message and provider whose answer recorded it
    Column("message_id", String(64)),
    Column("provider", String(64)),
    Column("created_at", UTCDateTime(), nullable=False),
    **MYSQL_TABLE_ARGS,
)
