"""Statement parameters (phone numbers, bodies) never appear in a database error's text, on
every dialect: engines are made with ``hide_parameters`` (what SQLAlchemy prints), and the
server's own message is stripped of what quotes values (PostgreSQL's DETAIL ``Key
(phone)=(+1...) already exists``, MySQL's ``Duplicate entry '+1...'``), keeping the SQLSTATE
or error number and the constraint (storage/outages.py ``withhold_values``).
"""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from sms_gateway.storage.engine import make_engine

PHONE = "+14155550199"


def test_a_failing_statement_names_no_parameter(
    database: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(database)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("CREATE TEMPORARY TABLE hidden_p (phone VARCHAR(20) PRIMARY KEY)")
            insert = text("INSERT INTO hidden_p (phone) VALUES (:phone)")
            conn.execute(insert, {"phone": PHONE})
            with pytest.raises(IntegrityError) as caught:
                conn.execute(insert, {"phone": PHONE})
    finally:
        engine.dispose()
    message = str(caught.value)
    assert "[SQL parameters hidden due to hide_parameters=True]" in message
    assert PHONE not in message
    assert PHONE not in caplog.text
    # what locates the fault is kept
    dialect = engine.dialect.name
    if dialect == "postgresql":
        assert caught.value.orig.args[0]["C"] == "23505"  # type: ignore[union-attr]
        assert caught.value.orig.args[0]["n"] == "hidden_p_pkey"  # type: ignore[union-attr]
    elif dialect == "mysql":
        assert caught.value.orig.args[0] == 1062  # type: ignore[union-attr]
    else:
        assert "UNIQUE constraint failed: hidden_p.phone" in message


# SQLite keeps text in an INTEGER column (type affinity) instead of refusing it.
@pytest.mark.parametrize("database", ["postgresql", "mysql"], indirect=True)
def test_a_value_the_column_refuses_is_not_quoted_either(database: str) -> None:
    engine = make_engine(database)
    body = "secret body \u00e9"
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("CREATE TEMPORARY TABLE hidden_n (n INTEGER)")
            with pytest.raises(DBAPIError) as caught:
                conn.execute(text("INSERT INTO hidden_n (n) VALUES (:v)"), {"v": body})
    finally:
        engine.dispose()
    assert "secret body" not in str(caught.value)
    if engine.dialect.name == "postgresql":
        assert caught.value.orig.args[0]["C"] == "22P02"  # type: ignore[union-attr]
    else:
        assert caught.value.orig.args[0] == 1366  # type: ignore[union-attr]
