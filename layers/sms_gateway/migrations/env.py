"""Alembic environment: one history for PostgreSQL, MySQL/MariaDB and SQLite.

The database is a connection the caller shares (``config.attributes["connection"]``, set by
``sms_gateway.storage.schema`` for an engine), else the URL of the Alembic config (set by
``sms_gateway.storage.schema`` for a DSN) or, when run by hand, ``SMS_GATEWAY_MESSAGE_DSN``.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection, engine_from_config, pool

from sms_gateway.storage.tables import metadata

config = context.config
target_metadata = metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    env_url = os.environ.get("SMS_GATEWAY_MESSAGE_DSN")
    if not env_url:
        raise RuntimeError("set SMS_GATEWAY_MESSAGE_DSN to the database to migrate")
    return env_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    shared = config.attributes.get("connection")
    if shared is not None:
        # A caller's connection (Alembic's "sharing a connection" recipe): the deployed
        # migrate function's engine, whose credentials come from Secrets Manager.
        _run(shared)
        return
    section = config.get_section(config.config_ini_section, {})
    section["sqlalchemy.url"] = _url()
    # hide_parameters: a failing statement's error never carries its values (DESIGN section 9)
    connectable = engine_from_config(
        section, prefix="sqlalchemy.", poolclass=pool.NullPool, hide_parameters=True
    )
    with connectable.connect() as connection:
        _run(connection)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
