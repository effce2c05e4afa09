"""Which driver errors are a database *outage* (retry later on a fresh connection) and which
are a statement's own fault, by SQLSTATE class (PostgreSQL) and error number (MySQL/MariaDB),
never by an error's text.

The classes (SQL standard / PostgreSQL Appendix A "Error codes"):

- ``08`` connection exception: refused, lost, reset (a failover, a network blip);
- ``28`` invalid authorization specification: a password that was just rotated;
- ``53`` insufficient resources: ``53300`` too many connections, out of memory or disk;
- ``57`` operator intervention: ``57P01`` admin shutdown (``pg_terminate_backend``),
  ``57P02`` crash shutdown, ``57P03`` cannot connect now (the database is starting up),
  ``57014`` a statement cancelled by the operator or a timeout;
- ``40`` transaction rollback (serialization failure, deadlock): not an outage, but the
  unit is safe to run again, so it is retried and then reported like one.

MySQL and MariaDB report numbers instead (PyMySQL ``constants.ER`` / ``constants.CR``); the
table :data:`MYSQL_ERRNO_CLASS` maps each to the class it means. A driver error that reached no
server (PyMySQL's 2003 "can't connect", pg8000's ``InterfaceError``), and a connection
SQLAlchemy invalidated, are class ``08``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError


class OutageClass(StrEnum):
    """Why the database could not run a unit; the value is the SQLSTATE class."""

    CONNECTION = "08"
    AUTHORIZATION = "28"
    RESOURCES = "53"
    OPERATOR = "57"
    TRANSACTION = "40"

    @property
    def label(self) -> str:
        """A few words for logs: ``"08 connection exception"``."""
        return f"{self.value} {_LABELS[self]}"


_LABELS: Final = {
    OutageClass.CONNECTION: "connection exception",
    OutageClass.AUTHORIZATION: "invalid authorization",
    OutageClass.RESOURCES: "insufficient resources",
    OutageClass.OPERATOR: "operator intervention",
    OutageClass.TRANSACTION: "transaction rollback",
}

# MySQL / MariaDB error numbers -> the SQLSTATE class they stand for. Server errors (ER_*,
# 1xxx and MariaDB's 19xx / MySQL's 3xxx-4xxx) and client errors (CR_*, 2xxx).
MYSQL_ERRNO_CLASS: Final[dict[int, OutageClass]] = {
    # 08: the connection could not be made or was lost
    1081: OutageClass.CONNECTION,  # ER_IPSOCK_ERROR
    1152: OutageClass.CONNECTION,  # ER_ABORTING_CONNECTION
    1158: OutageClass.CONNECTION,  # ER_NET_READ_ERROR
    1159: OutageClass.CONNECTION,  # ER_NET_READ_INTERRUPTED
    1160: OutageClass.CONNECTION,  # ER_NET_ERROR_ON_WRITE
    1161: OutageClass.CONNECTION,  # ER_NET_WRITE_INTERRUPTED
    1184: OutageClass.CONNECTION,  # ER_NEW_ABORTING_CONNECTION
    2002: OutageClass.CONNECTION,  # CR_CONNECTION_ERROR
    2003: OutageClass.CONNECTION,  # CR_CONN_HOST_ERROR (refused, unreachable)
    2005: OutageClass.CONNECTION,  # CR_UNKNOWN_HOST (DNS during a failover)
    2006: OutageClass.CONNECTION,  # CR_SERVER_GONE_ERROR
    2013: OutageClass.CONNECTION,  # CR_SERVER_LOST
    2055: OutageClass.CONNECTION,  # CR_SERVER_LOST_EXTENDED
    4031: OutageClass.CONNECTION,  # ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8)
    # 28: the credentials were refused
    1045: OutageClass.AUTHORIZATION,  # ER_ACCESS_DENIED_ERROR
    1698: OutageClass.AUTHORIZATION,  # ER_ACCESS_DENIED_NO_PASSWORD_ERROR
    # 53: the server has no room for another connection or thread
    1040: OutageClass.RESOURCES,  # ER_CON_COUNT_ERROR (too many connections)
    1041: OutageClass.RESOURCES,  # ER_OUT_OF_RESOURCES
    1129: OutageClass.RESOURCES,  # ER_HOST_IS_BLOCKED (too many connection errors)
    1135: OutageClass.RESOURCES,  # ER_CANT_CREATE_THREAD
    1203: OutageClass.RESOURCES,  # ER_TOO_MANY_USER_CONNECTIONS
    1226: OutageClass.RESOURCES,  # ER_USER_LIMIT_REACHED
    # 57: shut down, killed, or read-only while a failover promotes another writer
    1053: OutageClass.OPERATOR,  # ER_SERVER_SHUTDOWN
    1077: OutageClass.OPERATOR,  # ER_NORMAL_SHUTDOWN
    1079: OutageClass.OPERATOR,  # ER_SHUTDOWN_COMPLETE
    1080: OutageClass.OPERATOR,  # ER_FORCING_CLOSE
    1290: OutageClass.OPERATOR,  # ER_OPTION_PREVENTS_STATEMENT (--read-only)
    1836: OutageClass.OPERATOR,  # ER_READ_ONLY_MODE
    1927: OutageClass.OPERATOR,  # ER_CONNECTION_KILLED (MariaDB: KILL)
    3032: OutageClass.OPERATOR,  # ER_SERVER_OFFLINE_MODE (MySQL 8)
    # 40: run the unit again
    1205: OutageClass.TRANSACTION,  # ER_LOCK_WAIT_TIMEOUT
    1213: OutageClass.TRANSACTION,  # ER_LOCK_DEADLOCK
}


# PostgreSQL 25006 read_only_sql_transaction: the endpoint reached a reader, as during an
# Aurora failover before DNS follows the new writer. Class 25 is otherwise a statement's fault.
READ_ONLY_SQL_TRANSACTION: Final = "25006"


def sqlstate(exc: BaseException) -> str:
    """The SQLSTATE a pg8000 error carries in its fields (``{"C": "57P01", ...}``), or ''."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], dict):
        return str(args[0].get("C", ""))
    return ""


def mysql_errno(exc: BaseException) -> int | None:
    """The error number of a PyMySQL error (``args[0]``), or None."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    module = type(orig).__module__
    args = getattr(orig, "args", ())
    if module.startswith("pymysql") and args and isinstance(args[0], int):
        return args[0]
    return None


def outage_class(exc: BaseException) -> OutageClass | None:
    """The outage ``exc`` stands for, or None when it is the statement's own fault (a
    constraint, a syntax error, a value out of range: running it again would fail again).

    ``exc``: an SQLAlchemy ``DBAPIError`` (its ``orig`` is the driver's), a bare driver
    error (raised while connecting), or ``ConnectionError`` / ``TimeoutError``.
    """
    if isinstance(exc, ConnectionError | TimeoutError):
        return OutageClass.CONNECTION
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return OutageClass.CONNECTION
    state = sqlstate(exc)
    if state == READ_ONLY_SQL_TRANSACTION:
        # a writer demoted to a reader (an Aurora or RDS failover): as MySQL's 1290 / 1836
        return OutageClass.OPERATOR
    if state:
        for kind in OutageClass:
            if state.startswith(kind.value):
                return kind
        return None
    errno = mysql_errno(exc)
    if errno is not None:
        return MYSQL_ERRNO_CLASS.get(errno)
    if isinstance(exc, DBAPIError):
        if isinstance(exc, InterfaceError):
            return OutageClass.CONNECTION
        # SQLite: "database is locked", "unable to open database file" (the local stack)
        if isinstance(exc, OperationalError) and exc.orig.__class__.__module__ == "sqlite3":
            return OutageClass.CONNECTION
        return None
    # a driver error raised by a connect attempt, not (yet) wrapped by SQLAlchemy
    if type(exc).__name__ == "InterfaceError" and type(exc).__module__.startswith("pg8000"):
        return OutageClass.CONNECTION
    return None


def is_auth_failure(exc: BaseException) -> bool:
    """Whether the server refused the credentials (class 28: PostgreSQL ``28P01`` / ``28000``,
    MySQL 1045): after a rotation, fetching the secret again may fix it."""
    return outage_class(exc) is OutageClass.AUTHORIZATION


WITHHELD: Final = "(server message withheld: it may quote the statement's values)"
# PostgreSQL error fields kept on a statement error (protocol "ErrorResponse" field codes):
# severity, SQLSTATE, schema, table, column, data type, constraint. The message (M) is kept
# except for data exceptions (22) and integrity violations (23), which quote the values;
# DETAIL (D: "Key (to)=(+1...) already exists"), HINT, WHERE and the query are dropped.
_PG_KEPT_FIELDS: Final = frozenset("SVCstcdnM")
_PG_VALUE_CLASSES: Final = ("22", "23")


def withhold_values(exc: BaseException) -> bool:
    """Strip what may quote a statement's values (phone numbers, bodies) from the server's
    message inside driver error ``exc``, in place, keeping what locates the fault: the
    SQLSTATE, the MySQL error number, the constraint, table and column names. Outages
    (:func:`outage_class`) are left alone: their messages are about the connection.
    Returns whether anything was changed.

    Why: ``hide_parameters`` keeps SQLAlchemy from printing the parameters, but PostgreSQL's
    DETAIL (``Key (phone)=(+1...) already exists``) and MySQL's ``Duplicate entry '+1...'``
    quote them in the server's own message, which an unexpected error's log line would carry.
    """
    if outage_class(exc) is not None:
        return False
    args = getattr(exc, "args", ())
    if not args:
        return False
    if isinstance(args[0], dict):  # pg8000: the ErrorResponse fields
        fields = {k: v for k, v in args[0].items() if k in _PG_KEPT_FIELDS}
        if str(fields.get("C", "")).startswith(_PG_VALUE_CLASSES):
            fields["M"] = WITHHELD
        exc.args = (fields, *args[1:])
        return True
    if mysql_errno(exc) is not None:  # PyMySQL: (errno, message)
        exc.args = (args[0], WITHHELD)
        return True
    return False
