"""The deployed database configuration: host / port / name / engine settings with only the
credentials from a Secrets Manager secret, the engine they build (one pooled connection,
hidden parameters, verified TLS with the shipped RDS CA bundle), and the outage table."""

from __future__ import annotations

import json
import os
import re
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pymysql.constants.CR as CR
import pymysql.constants.ER as ER
import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from sms_gateway import wiring
from sms_gateway.settings import Settings
from sms_gateway.storage.engine import (
    RDS_CA_BUNDLE,
    Credentials,
    SecretCredentials,
    database_url,
    make_engine,
    tls_context,
)
from sms_gateway.storage.errors import StorageUnavailable
from sms_gateway.storage.kinds import DatabaseEngine
from sms_gateway.storage.outages import MYSQL_ERRNO_CLASS, OutageClass, outage_class

ROOT = Path(__file__).resolve().parents[2]
DEPLOYED = {
    "SMS_GATEWAY_DB_HOST": "gateway.proxy-abc.eu-west-1.rds.amazonaws.com",
    "SMS_GATEWAY_DB_NAME": "sms",
    "SMS_GATEWAY_DB_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:111122223333:secret:db",
}


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No SMS_GATEWAY_* variable set; the wiring's caches forgotten before and after."""
    for name in list(os.environ):
        if name.upper().startswith("SMS_GATEWAY_"):
            monkeypatch.delenv(name)
    wiring.reset()
    yield monkeypatch
    wiring.reset()


def test_local_default_is_the_dsn_without_tls(environ: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert (settings.db_host, settings.db_secret_arn, settings.db_tls) == ("", "", False)
    assert settings.message_dsn == "sqlite:///sms-gateway.db"
    assert settings.db_engine is DatabaseEngine.POSTGRESQL


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({"SMS_GATEWAY_DB_HOST": "db"}, "SMS_GATEWAY_DB_NAME, SMS_GATEWAY_DB_SECRET_ARN"),
        ({"SMS_GATEWAY_DB_SECRET_ARN": "arn"}, "SMS_GATEWAY_DB_HOST, SMS_GATEWAY_DB_NAME"),
        ({"SMS_GATEWAY_DB_HOST": "db", "SMS_GATEWAY_DB_NAME": "sms"}, "SMS_GATEWAY_DB_SECRET_ARN"),
    ],
)
def test_a_host_needs_a_name_and_a_secret(
    environ: pytest.MonkeyPatch, given: dict[str, str], missing: str
) -> None:
    for name, value in given.items():
        environ.setenv(name, value)
    with pytest.raises(wiring.SettingsError, match=re.escape(missing)):
        wiring.settings()


@pytest.mark.parametrize("engine", ["oracle", "postgres", ""])
def test_engine_is_postgresql_or_mysql(environ: pytest.MonkeyPatch, engine: str) -> None:
    environ.setenv("SMS_GATEWAY_DB_ENGINE", engine)
    with pytest.raises(wiring.SettingsError, match="SMS_GATEWAY_DB_ENGINE"):
        wiring.settings()


@pytest.mark.parametrize(
    ("engine", "port", "url"),
    [
        ("postgresql", "", "postgresql+pg8000://db.example:5432/sms"),
        ("mysql", "", "mysql+pymysql://db.example:3306/sms?charset=utf8mb4"),
        ("mysql", "3307", "mysql+pymysql://db.example:3307/sms?charset=utf8mb4"),
    ],
)
def test_deployed_engine_url_has_no_credentials(
    environ: pytest.MonkeyPatch, engine: str, port: str, url: str
) -> None:
    for name, value in {
        **DEPLOYED,
        "SMS_GATEWAY_DB_HOST": "db.example",
        "SMS_GATEWAY_DB_ENGINE": engine,
        "SMS_GATEWAY_DB_PORT": port or "0",
    }.items():
        environ.setenv(name, value)
    built = wiring.database_engine(wiring.settings())
    assert built.url.render_as_string(hide_password=False) == url
    assert built.pool.size() == 1  # type: ignore[attr-defined]
    assert built.pool._max_overflow == 0  # type: ignore[attr-defined]
    assert built.hide_parameters is True


def test_database_url_defaults_the_port_by_engine() -> None:
    assert database_url(DatabaseEngine.POSTGRESQL, "h", 0, "n").port == 5432
    assert database_url(DatabaseEngine.MYSQL, "h", 0, "n").port == 3306
    assert database_url(DatabaseEngine.MYSQL, "h", 13306, "n").port == 13306


# ---- credentials from the secret --------------------------------------------------------


@pytest.fixture
def secrets(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        parameters.clear_caches()
        parameters.base.DEFAULT_PROVIDERS.clear()
        yield boto3.client("secretsmanager")
        parameters.clear_caches()
        parameters.base.DEFAULT_PROVIDERS.clear()


@pytest.mark.parametrize(
    "value",
    [
        # what RDS keeps for ManageMasterUserPassword: the user name and password only
        {"username": "postgres", "password": "pw-1"},
        # the older, RDS-shaped secret: the address keys are ignored (the settings give it)
        {
            "engine": "postgres",
            "host": "elsewhere",
            "port": 1,
            "dbname": "x",
            "username": "postgres",
            "password": "pw-1",
        },
    ],
)
def test_secret_credentials_read_username_and_password(secrets: Any, value: Any) -> None:
    arn = secrets.create_secret(Name="db", SecretString=json.dumps(value))["ARN"]
    source = SecretCredentials(arn, max_age_seconds=300)
    assert source() == Credentials("postgres", "pw-1")
    secrets.put_secret_value(SecretId=arn, SecretString=json.dumps({**value, "password": "pw-2"}))
    assert source() == Credentials("postgres", "pw-1")  # cached for max_age
    assert source(refresh=True) == Credentials("postgres", "pw-2")
    assert "pw-2" not in repr(source(refresh=False))


@pytest.mark.parametrize(
    "secret_string",
    ['{"username": "u"}', '"just text"', "not json", '{"username": 1, "password": "p"}'],
)
def test_a_secret_of_another_shape_is_unavailable_naming_no_value(
    secrets: Any, secret_string: str
) -> None:
    arn = secrets.create_secret(Name="db", SecretString=secret_string)["ARN"]
    with pytest.raises(StorageUnavailable, match="SMS_GATEWAY_DB_SECRET_ARN") as caught:
        SecretCredentials(arn, max_age_seconds=300)()
    assert "just text" not in str(caught.value)


def test_a_missing_secret_is_an_outage_not_a_crash(secrets: Any) -> None:
    with pytest.raises(StorageUnavailable, match="credentials unavailable"):
        SecretCredentials("arn:aws:secretsmanager:us-east-1:123456789012:secret:none", 300)()


# ---- TLS ------------------------------------------------------------------------------


def _connect_params(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the driver's connect() gets (credentials included), captured instead of
    connecting."""
    seen: dict[str, Any] = {}

    class Captured(Exception):
        pass

    def capture(*_cargs: Any, **cparams: Any) -> Any:
        seen.update(cparams)
        raise Captured

    monkeypatch.setattr(engine.dialect, "connect", capture)
    with pytest.raises(Captured):
        engine.connect()
    return seen


def _deployed_secret(secrets: Any, environ: pytest.MonkeyPatch, **extra: str) -> None:
    arn = secrets.create_secret(
        Name="db", SecretString=json.dumps({"username": "app", "password": "pw"})
    )["ARN"]
    for name, value in {**DEPLOYED, "SMS_GATEWAY_DB_SECRET_ARN": arn, **extra}.items():
        environ.setenv(name, value)


@pytest.mark.parametrize(("engine", "key"), [("postgresql", "ssl_context"), ("mysql", "ssl")])
def test_tls_on_gives_the_driver_a_verifying_context_with_the_rds_cas(
    environ: pytest.MonkeyPatch, secrets: Any, engine: str, key: str
) -> None:
    _deployed_secret(secrets, environ, SMS_GATEWAY_DB_ENGINE=engine, SMS_GATEWAY_DB_TLS="true")
    params = _connect_params(wiring.database_engine(wiring.settings()), environ)
    assert (params["user"], params["password"]) == ("app", "pw")  # from the secret
    context = params[key]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    issuers = {
        dict(item[0] for item in ca["subject"])["commonName"] for ca in context.get_ca_certs()
    }
    assert "Amazon RDS eu-west-1 Root CA RSA2048 G1" in issuers  # an RDS instance's chain
    assert "Amazon Root CA 1" in issuers  # RDS Proxy's chain


@pytest.mark.parametrize("engine", ["postgresql", "mysql"])
def test_tls_off_passes_no_context(environ: pytest.MonkeyPatch, secrets: Any, engine: str) -> None:
    _deployed_secret(secrets, environ, SMS_GATEWAY_DB_ENGINE=engine)
    params = _connect_params(wiring.database_engine(wiring.settings()), environ)
    assert "ssl_context" not in params and "ssl" not in params


def test_an_unreadable_ca_file_names_the_variable(environ: pytest.MonkeyPatch) -> None:
    for name, value in {
        **DEPLOYED,
        "SMS_GATEWAY_DB_TLS": "true",
        "SMS_GATEWAY_DB_TLS_CA_FILE": "/nonexistent/ca.pem",
    }.items():
        environ.setenv(name, value)
    with pytest.raises(wiring.SettingsError, match="SMS_GATEWAY_DB_TLS_CA_FILE"):
        wiring.database_engine(wiring.settings())


def test_the_shipped_bundle_is_every_rds_ca_and_the_amazon_roots() -> None:
    text_ = RDS_CA_BUNDLE.read_text(encoding="ascii")
    assert text_.count("-----BEGIN CERTIFICATE-----") == 120
    cas = tls_context().get_ca_certs()
    assert len(cas) == 120
    names = [dict(item[0] for item in ca["subject"])["commonName"] for ca in cas]
    assert sum(name.startswith("Amazon RDS") for name in names) == 115
    assert {f"Amazon Root CA {n}" for n in range(1, 5)} <= set(names)
    # the layer ships the package directory as it is (layers/Makefile: cp -R sms_gateway)
    assert RDS_CA_BUNDLE.is_relative_to(ROOT / "layers" / "sms_gateway")
    from scripts import rds_ca_bundle

    assert text_.startswith(rds_ca_bundle.HEADER)


# ---- parameters never in errors -------------------------------------------------------


def test_a_failing_statement_does_not_carry_its_parameters(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (phone TEXT PRIMARY KEY)"))
        conn.execute(text("INSERT INTO t VALUES (:p)"), {"p": "+14155550100"})
    with pytest.raises(IntegrityError) as caught, engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (:p)"), {"p": "+14155550100"})
    assert "+14155550100" not in str(caught.value)
    assert "hidden due to hide_parameters" in str(caught.value)


# ---- the outage table -----------------------------------------------------------------


def test_mysql_numbers_map_to_the_class_their_name_says() -> None:
    expected = {
        ER.CON_COUNT_ERROR: OutageClass.RESOURCES,
        ER.TOO_MANY_USER_CONNECTIONS: OutageClass.RESOURCES,
        ER.ACCESS_DENIED_ERROR: OutageClass.AUTHORIZATION,
        ER.SERVER_SHUTDOWN: OutageClass.OPERATOR,
        ER.NORMAL_SHUTDOWN: OutageClass.OPERATOR,
        ER.OPTION_PREVENTS_STATEMENT: OutageClass.OPERATOR,
        CR.CR_CONN_HOST_ERROR: OutageClass.CONNECTION,
        CR.CR_SERVER_GONE_ERROR: OutageClass.CONNECTION,
        CR.CR_SERVER_LOST: OutageClass.CONNECTION,
        ER.LOCK_DEADLOCK: OutageClass.TRANSACTION,
        1927: OutageClass.OPERATOR,  # MariaDB ER_CONNECTION_KILLED (not in PyMySQL's table)
    }
    for errno, kind in expected.items():
        assert MYSQL_ERRNO_CLASS[errno] is kind, errno
    for statement_fault in (ER.DUP_ENTRY, ER.PARSE_ERROR, ER.NO_SUCH_TABLE, ER.DATA_TOO_LONG):
        assert statement_fault not in MYSQL_ERRNO_CLASS


def test_driver_errors_are_classified_by_code_not_text() -> None:
    import pg8000.dbapi
    import pymysql.err

    def pg(code: str) -> Exception:
        return pg8000.dbapi.ProgrammingError({"S": "FATAL", "C": code, "M": "too many"})

    assert outage_class(pg("53300")) is OutageClass.RESOURCES
    assert outage_class(pg("57P03")) is OutageClass.OPERATOR
    assert outage_class(pg("25006")) is OutageClass.OPERATOR  # a reader after a failover
    assert outage_class(pg("25P02")) is None  # in a failed transaction: the unit's own fault
    assert outage_class(pg("28000")) is OutageClass.AUTHORIZATION
    assert outage_class(pg("08006")) is OutageClass.CONNECTION
    assert outage_class(pg("23505")) is None  # unique violation: the statement's fault
    assert outage_class(pymysql.err.OperationalError(1040, "x")) is OutageClass.RESOURCES
    assert outage_class(pymysql.err.OperationalError(1062, "too many connections")) is None
    assert outage_class(ConnectionResetError()) is OutageClass.CONNECTION
