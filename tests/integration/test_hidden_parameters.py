"""Statement parameters (phone numbers, bodies) never appear in the part of a database error's
text that SQLAlchemy writes, on every dialect: engines are made with ``hide_parameters``
(storage/engine.py).

What hide_parameters cannot hide: the server's own message. PostgreSQL's DETAIL of a unique
violation (``Key (phone)=(+1...) already exists``) and MySQL's ``Duplicate entry '+1...'``
quote the value, and pg8000 / PyMySQL put that message in the exception. Pinned below so that
it is not forgotten (the repositories turn IntegrityError into domain errors; an unexpected
one logged with its stack would carry it).
"""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

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
    assert "[parameters:" not in message
    assert PHONE not in caplog.text
    sqlalchemy_part = message.split("\n", 1)[1]  # after the driver's own first line
    assert PHONE not in sqlalchemy_part
    # the server's message quotes the value on PostgreSQL and MySQL, not on SQLite
    assert (PHONE in message) is (engine.dialect.name != "sqlite")
