"""Engine creation: one per container, small pool, recycled under the RDS Proxy idle timeout,
no per-checkout ping (a dropped connection is retried once by
:class:`sms_gateway.storage.sql.Database`); PostgreSQL in autocommit so that a one-statement
unit costs one statement on the server; SQLite tuned for several threads of the local stack."""

from __future__ import annotations

from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, make_url

SUPPORTED_DRIVERS = ("sqlite", "postgresql+pg8000", "mysql+pymysql")


class UnsupportedDsn(ValueError):
    """A DSN whose driver is not one of :data:`SUPPORTED_DRIVERS`."""


def dsn_from_secret(secret: dict[str, Any]) -> str:
    """A SQLAlchemy URL from an RDS-shaped Secrets Manager secret.

    ``secret``: ``{"engine": "postgres"|"mysql"|"mariadb", "host", "port", "username",
    "password", "dbname"}`` (the shape RDS-managed secrets have).

    Raises:
        UnsupportedDsn: an engine other than postgres, mysql or mariadb.
        KeyError: a missing host, username or password.
    """
    kind = str(secret.get("engine", "postgres")).lower()
    if kind.startswith("postgres") or kind == "aurora-postgresql":
        driver, port = "postgresql+pg8000", 5432
    elif kind in ("mysql", "mariadb", "aurora-mysql", "aurora"):
        driver, port = "mysql+pymysql", 3306
    else:
        raise UnsupportedDsn(f"unsupported database engine in secret: {kind!r}")
    url = URL.create(
        driver,
        username=secret["username"],
        password=secret["password"],
        host=secret["host"],
        port=int(secret.get("port", port)),
        database=secret.get("dbname"),
    )
    return url.render_as_string(hide_password=False)


def make_engine(dsn: str, *, pool_recycle_seconds: int = 240) -> Engine:
    """An engine for ``dsn`` (``sqlite:///file``, ``postgresql+pg8000://``, ``mysql+pymysql://``).

    PostgreSQL connections are in autocommit: use :class:`~sms_gateway.storage.sql.Database`
    for transactions. MySQL connections get ``charset=utf8mb4``; SQLite gets WAL and a 30 s
    busy timeout so the local stack's HTTP and poller threads can share one file.

    Raises:
        UnsupportedDsn: any other driver.
    """
    url = make_url(dsn)
    name = url.drivername
    if name not in SUPPORTED_DRIVERS:
        raise UnsupportedDsn(
            f"SMS_GATEWAY_MESSAGE_DSN driver {name!r} is not one of {', '.join(SUPPORTED_DRIVERS)}"
        )
    if name == "sqlite":
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            if url.database not in (None, "", ":memory:"):
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    if name == "mysql+pymysql" and "charset" not in url.query:
        url = url.update_query_dict({"charset": "utf8mb4"})
    extra: dict[str, Any] = {}
    if name == "postgresql+pg8000":
        # BEGIN/COMMIT are sent by Database.tx where a unit has several statements
        extra["isolation_level"] = "AUTOCOMMIT"
    return create_engine(
        url,
        pool_size=2,
        max_overflow=2,
        pool_recycle=pool_recycle_seconds,
        pool_timeout=10,
        **extra,
    )
