"""No per-checkout ping: a pooled connection the server dropped between invocations costs one
retry on a fresh connection, not a failed invocation (PostgreSQL and MariaDB)."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
from sqlalchemy import create_engine, text

from sms_gateway import wiring
from tests.support import Gateway


def _pooled_backends(gateway: Gateway) -> list[int]:
    """The server-side ids of every connection in the sender's pool (checked out together,
    so each is a different one)."""
    engine = wiring.sql().engine
    dialect = engine.dialect.name
    query = "SELECT pg_backend_pid()" if dialect == "postgresql" else "SELECT CONNECTION_ID()"
    ids = []
    with ExitStack() as stack:
        for _ in range(engine.pool.checkedin()):
            conn = stack.enter_context(engine.connect())
            ids.append(int(conn.exec_driver_sql(query).scalar_one()))
    return ids


# SQLite has no server that could drop a connection: the server dialects only.
@pytest.mark.parametrize("database", ["postgresql", "mysql"], indirect=True)
def test_a_connection_dropped_between_invocations_is_retried(gateway: Gateway) -> None:
    first = gateway.post_message("tenant-3", "drop-1", {"to": "+14155550100", "body": "a"})
    gateway.run_until_idle()
    backends = _pooled_backends(gateway)
    assert backends
    killer = create_engine(gateway.dsn)
    with killer.connect() as conn:
        for backend in backends:
            if gateway.dsn.startswith("postgresql"):
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
            else:
                conn.execute(text(f"KILL {int(backend)}"))
    killer.dispose()
    second = gateway.post_message("tenant-3", "drop-2", {"to": "+14155550100", "body": "b"})
    outcomes = gateway.pump("sender")
    assert [o.retained for o in outcomes] == [[]]
    for answer in (first, second):
        message_id = answer.body["message_id"]
        assert gateway.get_message("tenant-3", message_id).body["status"] == "sent"
        assert len(gateway.sends(message_id)) == 1
    assert gateway.queue_depth("send") == 0
