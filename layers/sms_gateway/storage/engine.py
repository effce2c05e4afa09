"""Engine creation: one per container, small pool, recycled under the RDS Proxy idle timeout,
no per-checkout ping (a dropped connection is retried once by
:class:`sms_gateway.storage.sql.Database`); PostgreSQL in autocommit so that a one-statement
unit costs one statement on the server; SQLite tuned for several threads of the local stack."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError

from sms_gateway.storage.errors import StorageUnavailable
from sms_gateway.storage.kinds import DatabaseEngine
from sms_gateway.storage.outages import is_auth_failure, withhold_values

SUPPORTED_DRIVERS = ("sqlite", "postgresql+pg8000", "mysql+pymysql")
RDS_CA_BUNDLE = Path(__file__).with_name("certs") / "rds-ca-bundle.pem"
"""Every Amazon RDS CA and the Amazon Root CAs of RDS Proxy (``scripts/rds_ca_bundle.py``)."""


class UnsupportedDsn(ValueError):
    """A DSN whose driver is not one of :data:`SUPPORTED_DRIVERS`."""


def database_url(engine: DatabaseEngine, host: str, port: int, name: str) -> URL:
    """The URL of a deployed database, without credentials (the connect hook of
    :func:`make_engine` adds them). ``port`` 0 means the engine's default."""
    return URL.create(engine.driver, host=host, port=port or engine.default_port, database=name)


@dataclass(frozen=True, slots=True)
class Credentials:
    """A database user name and password (``repr`` hides the password)."""

    username: str
    password: str = field(repr=False)


class CredentialSource(Protocol):
    """Where connections get their credentials: called for every new connection, with
    ``refresh=True`` after the server refused the last ones (a rotation).

    Raises:
        StorageUnavailable: the credentials cannot be had now.
    """

    def __call__(self, *, refresh: bool = False) -> Credentials: ...


class SecretCredentials:
    """Credentials from a Secrets Manager secret, through Powertools Parameters.

    The secret is JSON with at least ``{"username": str, "password": str}``: the shape of an
    RDS-managed master user secret (``ManageMasterUserPassword``), which holds only those two;
    any other keys (an RDS-shaped secret's host, port, dbname, engine) are ignored, the
    database's address comes from the settings. Powertools caches the value for
    ``max_age_seconds`` per container; ``refresh=True`` fetches it again at once, so a
    rotation costs one failed login, not a cold start.
    """

    def __init__(self, secret_id: str, max_age_seconds: int) -> None:
        self.secret_id = secret_id
        self.max_age_seconds = max_age_seconds
        self._provider: Any = None

    def __call__(self, *, refresh: bool = False) -> Credentials:
        """The secret's credentials (see the class docstring).

        Raises:
            StorageUnavailable: the secret could not be fetched (Secrets Manager unreachable or
                refusing), or is not a JSON object with string ``username`` and ``password``.
        """
        try:
            if self._provider is None:
                # the client with the functions' short timeouts and bounded retries
                from aws_lambda_powertools.utilities.parameters import SecretsProvider

                from sms_gateway.adapters.aws import secretsmanager_client

                self._provider = SecretsProvider(boto3_client=secretsmanager_client())
            value = self._provider.get(
                self.secret_id,
                transform="json",
                max_age=self.max_age_seconds,
                force_fetch=refresh,
            )
        except Exception as exc:  # GetParameterError, TransformParameterError, botocore's
            raise StorageUnavailable(
                f"database credentials unavailable: {type(exc).__name__} "
                "(SMS_GATEWAY_DB_SECRET_ARN)"
            ) from exc
        if not (
            isinstance(value, dict)
            and isinstance(value.get("username"), str)
            and isinstance(value.get("password"), str)
        ):
            raise StorageUnavailable(
                "database credentials unavailable: the secret (SMS_GATEWAY_DB_SECRET_ARN) is "
                'not a JSON object with string "username" and "password"'
            )
        return Credentials(value["username"], value["password"])


def tls_context(ca_file: str | Path | None = None) -> ssl.SSLContext:
    """A client TLS context that verifies the server: ``CERT_REQUIRED``, host name checked,
    TLS 1.2 or later, trusting only ``ca_file`` (default: :data:`RDS_CA_BUNDLE`).

    Raises:
        OSError: ``ca_file`` cannot be read; ssl.SSLError: it holds no certificate.
    """
    context = ssl.create_default_context(cafile=str(ca_file or RDS_CA_BUNDLE))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def make_engine(
    dsn: str | URL,
    *,
    pool_recycle_seconds: int = 240,
    credentials: CredentialSource | None = None,
    tls: ssl.SSLContext | None = None,
    pool_size: int = 1,
    max_overflow: int = 0,
) -> Engine:
    """An engine for ``dsn`` (``sqlite:///file``, ``postgresql+pg8000://``, ``mysql+pymysql://``).

    Deployed, one container runs one invocation at a time and holds **one** connection
    (``pool_size`` 1, no overflow), so a function's reserved concurrency or its queue's
    maximum concurrency bounds the connections the stack opens. Statement parameters never
    appear in the engine's errors or logs (``hide_parameters``: they hold phone numbers and
    message bodies), nor does a server message that quotes them
    (:func:`~sms_gateway.storage.outages.withhold_values`).

    ``credentials``: called for each new connection (user name and password); after the
    server refused them (SQLSTATE class 28, MySQL 1045) it is called once more with
    ``refresh=True`` and the connection tried again, so a rotated password is picked up by
    the next connection. None: the DSN's own.
    ``tls``: a verifying context (:func:`tls_context`) every server connection must use.

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
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            hide_parameters=True,
        )

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
    connect_args: dict[str, Any] = {}
    if name == "postgresql+pg8000":
        # BEGIN/COMMIT are sent by Database.tx where a unit has several statements
        extra["isolation_level"] = "AUTOCOMMIT"
        if tls is not None:
            connect_args["ssl_context"] = tls
    elif tls is not None:
        connect_args["ssl"] = tls
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_recycle=pool_recycle_seconds,
        pool_timeout=10,
        hide_parameters=True,
        connect_args=connect_args,
        **extra,
    )
    if credentials is not None:
        _connect_with(engine, credentials)

    @event.listens_for(engine, "handle_error")
    def _withhold(context: Any) -> None:
        orig = context.original_exception
        if not withhold_values(orig):
            return
        wrapped = context.sqlalchemy_exception
        if isinstance(wrapped, DBAPIError) and wrapped.orig is orig:
            # the wrapper formatted the driver's message when it was made: again, withheld
            module, name = type(orig).__module__, type(orig).__name__
            wrapped.args = (f"({module}.{name}) {orig}",)

    return engine


def _connect_with(engine: Engine, credentials: CredentialSource) -> None:
    """Give every new connection of ``engine`` the current credentials; fetch them again
    once when the server refuses them."""

    @event.listens_for(engine, "do_connect")
    def _login(dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        current = credentials()
        cparams.update(user=current.username, password=current.password)
        try:
            return dialect.connect(*cargs, **cparams)
        except Exception as exc:
            if not is_auth_failure(exc):
                raise
            fresh = credentials(refresh=True)
            if fresh == current:
                raise
            from sms_gateway.observability import logger  # not at import: see observability

            logger.info("database refused the cached credentials: using the refreshed secret")
            cparams.update(user=fresh.username, password=fresh.password)
            return dialect.connect(*cargs, **cparams)
