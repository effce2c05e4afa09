"""Running units of SQL work: one connection, one transaction scope, one retry on a dropped
connection, driver errors translated.

No per-checkout ping (a round trip each time): connections are recycled under the RDS Proxy
idle timeout (:func:`~sms_gateway.storage.engine.make_engine`), and a unit whose connection
turns out dead is run once more on a fresh one (STYLE.md, SQL). That is safe because a unit
is one transaction: if the connection died, the transaction did not commit (or, in the
window where COMMIT was sent and the answer lost, the guarded statements of the retry find
the rows already moved and change nothing).

PostgreSQL engines run in autocommit (see ``make_engine``): a unit that is one statement
(:meth:`Database.single`) costs exactly that statement on the server, where pg8000 would
otherwise send ``BEGIN`` and ``COMMIT`` around it; a unit of several statements
(:meth:`Database.tx`) sends ``BEGIN``/``COMMIT`` itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Insert, Table, insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, IntegrityError

from sms_gateway.storage.errors import StorageUnavailable
from sms_gateway.storage.outages import OutageClass, outage_class

T = TypeVar("T")

# Outages worth a second try at once, on a fresh connection: a connection the server dropped
# or killed, a deadlock. Refused credentials were already fetched again by the engine's
# connect hook, and a full server is still full a millisecond later.
_RETRY_AT_ONCE = frozenset({OutageClass.CONNECTION, OutageClass.OPERATOR, OutageClass.TRANSACTION})


def is_dropped_connection(exc: BaseException) -> bool:
    """Whether running the unit again at once, on a fresh connection, may succeed: the
    connection (not the statement) failed (see :mod:`sms_gateway.storage.outages`)."""
    return outage_class(exc) in _RETRY_AT_ONCE


def translate(exc: BaseException) -> BaseException:
    """The error callers see for a driver error: :class:`StorageUnavailable` for an outage
    (its ``outage`` says which SQLSTATE class), else ``exc`` itself."""
    if isinstance(exc, IntegrityError):
        return exc
    kind = outage_class(exc)
    if kind is None:
        return exc
    name = type(getattr(exc, "orig", None) or exc).__name__
    return StorageUnavailable(f"database unavailable: {kind.label} ({name})", outage=kind)


class Database:
    """An engine and how units of work run on it (see the module docstring).

    ``dialect``: ``postgresql``, ``mysql`` (MySQL and MariaDB) or ``sqlite``.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        # make_engine opens PostgreSQL connections in autocommit (SQLAlchemy keeps the
        # engine-level isolation level here)
        level = getattr(engine.dialect, "_on_connect_isolation_level", None)
        self._autocommit = self.dialect == "postgresql" and level == "AUTOCOMMIT"

    @property
    def returning(self) -> bool:
        """Whether ``UPDATE ... RETURNING`` exists here (PostgreSQL, SQLite >= 3.35)."""
        return self.dialect in ("postgresql", "sqlite")

    def _run(self, unit: Callable[[Connection], T], transaction: bool) -> T:
        for attempt in (1, 2):
            try:
                with self.engine.connect() as conn:
                    if not transaction:  # autocommit: the statement is its own transaction
                        return unit(conn)
                    if self._autocommit:
                        conn.exec_driver_sql("BEGIN")
                        try:
                            result = unit(conn)
                        except BaseException:
                            if not conn.invalidated:
                                conn.exec_driver_sql("ROLLBACK")
                            raise
                        conn.exec_driver_sql("COMMIT")
                        return result
                    with conn.begin():
                        return unit(conn)
            except (DBAPIError, ConnectionError, TimeoutError) as exc:
                if attempt == 1 and is_dropped_connection(exc):
                    continue
                translated = translate(exc)
                if translated is exc:
                    raise
                raise translated from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def tx(self, unit: Callable[[Connection], T]) -> T:
        """Run ``unit`` in one transaction on one connection; once more on a fresh connection
        if the first one was dropped.

        Raises:
            StorageUnavailable: the database cannot be reached (twice).
            IntegrityError: a constraint refused a write (callers translate it).
        """
        return self._run(unit, transaction=True)

    def single(self, unit: Callable[[Connection], T]) -> T:
        """Run ``unit``, which sends exactly one statement (atomic by itself): on PostgreSQL
        without ``BEGIN``/``COMMIT``. Same retry and errors as :meth:`tx`."""
        return self._run(unit, transaction=not self._autocommit)

    def insert_if_absent(self, table: Table, rows: Sequence[dict[str, Any]]) -> Insert:
        """A multi-row INSERT that skips rows whose key (any unique key) exists, without an
        error on the server: ``ON CONFLICT DO NOTHING`` (PostgreSQL, SQLite) or ``INSERT
        IGNORE`` (MySQL/MariaDB; rows are validated before, so IGNORE only skips duplicates)."""
        if self.dialect == "postgresql":
            return pg_insert(table).values(list(rows)).on_conflict_do_nothing()
        if self.dialect == "sqlite":
            return sqlite_insert(table).values(list(rows)).on_conflict_do_nothing()
        return insert(table).values(list(rows)).prefix_with("IGNORE")


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn operational driver errors into :class:`StorageUnavailable` (integrity errors pass)."""
    try:
        yield
    except (DBAPIError, ConnectionError, TimeoutError) as exc:
        translated = translate(exc)
        if translated is exc:
            raise
        raise translated from exc
