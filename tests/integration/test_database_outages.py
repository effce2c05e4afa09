"""Database outages against real, throwaway PostgreSQL and MariaDB servers on loopback
(tests/throwaway.py): a terminated backend, a rotated password, a full server, a server
shutting down or stopped.

Two levels:

- the classification (``sms_gateway.storage.outages``) of what each driver really raises in
  each case: SQLSTATE class 08 / 28 / 53 / 57 and the MySQL error numbers standing for them;
- the deployed path end to end: the functions reach the server by host, port and name with
  only the credentials from a Secrets Manager secret (moto), fetched through Powertools; an
  outage puts the sender's records back as fresh copies (no SQS receive spent) and keeps the
  DLQ's records on the DLQ; a rotated password is fetched again on the refused login.

The servers are started once per session (a few seconds each) and stopped at its end.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from types import ModuleType
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from sqlalchemy import Connection, Engine, create_engine, delete, text
from sqlalchemy.pool import NullPool

from sms_gateway import wiring
from sms_gateway.storage.outages import OutageClass, mysql_errno, outage_class, sqlstate
from sms_gateway.storage.schema import run_migrations
from sms_gateway.storage.tables import metadata
from tests.conftest import SharedAws, _gateway
from tests.support import Gateway, sample
from tests.throwaway import APP_USER, DATABASE, Server, start_mariadb, start_postgres

KINDS = ["postgresql", "mysql"]
FIRST_PASSWORD = "first-password"
MAX_HOGS = 20  # bounded: more than either server's slots for the application user


@pytest.fixture(scope="session")
def throwaway_servers() -> Iterator[dict[str, Server]]:
    """Both servers, started and migrated once; stopped and removed at the end."""
    servers: dict[str, Server] = {}
    try:
        for kind, start in (("postgresql", start_postgres), ("mysql", start_mariadb)):
            servers[kind] = start()
            run_migrations(servers[kind].app_url().render_as_string(hide_password=False))
        yield servers
    finally:
        for server in servers.values():
            server.destroy()


def _admin(server: Server) -> Engine:
    return create_engine(server.admin_url(), isolation_level="AUTOCOMMIT", poolclass=NullPool)


def _set_password(server: Server, password: str) -> None:
    admin = _admin(server)
    with admin.connect() as conn:
        if server.kind == "postgresql":
            conn.execute(text(f"ALTER ROLE {APP_USER} PASSWORD '{password}'"))
        else:
            conn.execute(text(f"ALTER USER '{APP_USER}'@'127.0.0.1' IDENTIFIED BY '{password}'"))
    admin.dispose()
    server.password = password


def _app_backends(conn: Connection, kind: str) -> list[int]:
    if kind == "postgresql":
        query = "SELECT pid FROM pg_stat_activity WHERE usename = :user"
    else:
        query = "SELECT id FROM information_schema.processlist WHERE user = :user"
    return [int(row[0]) for row in conn.execute(text(query), {"user": APP_USER})]


def _end_app_connections(server: Server) -> int:
    """Terminate (PostgreSQL) / KILL (MariaDB) every connection of the application user;
    how many there were."""
    admin = _admin(server)
    with admin.connect() as conn:
        backends = _app_backends(conn, server.kind)
        for backend in backends:
            if server.kind == "postgresql":
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
            else:
                conn.execute(text(f"KILL {int(backend)}"))
    admin.dispose()
    return len(backends)


def _fill_slots(server: Server, stack: ExitStack) -> Exception:
    """Open application connections until the server refuses one; that refusal."""
    engine = create_engine(server.app_url(), poolclass=NullPool)
    stack.callback(engine.dispose)
    for _ in range(MAX_HOGS):
        try:
            stack.enter_context(engine.connect())
        except Exception as exc:
            return exc
    raise AssertionError(f"{server.kind} accepted {MAX_HOGS} connections")


def _error_of(action: Callable[[], Any]) -> Exception:
    try:
        action()
    except Exception as exc:
        return exc
    raise AssertionError("no error")


# ---- what each driver raises, classified ------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_each_outage_class_as_the_real_server_reports_it(
    throwaway_servers: dict[str, Server], kind: str
) -> None:
    server = throwaway_servers[kind]
    _set_password(server, FIRST_PASSWORD)
    app = create_engine(server.app_url(), poolclass=NullPool)

    # a backend the server ended (pg_terminate_backend / KILL): the connection is lost
    conn = app.connect()
    conn.exec_driver_sql("SELECT 1")
    assert _end_app_connections(server) == 1
    lost = _error_of(lambda: conn.exec_driver_sql("SELECT 1"))
    with suppress(Exception):  # closing a dead socket may fail too
        conn.close()
    assert outage_class(lost) is OutageClass.CONNECTION

    # a password the server no longer accepts (rotated)
    refused = _error_of(lambda: create_engine(server.app_url("not-it")).connect())
    assert outage_class(refused) is OutageClass.AUTHORIZATION
    assert (sqlstate(refused), mysql_errno(refused)) == (
        ("28P01", None) if kind == "postgresql" else ("", 1045)
    )

    # max_connections reached: PostgreSQL 53300, MariaDB 1040
    with ExitStack() as stack:
        full = _fill_slots(server, stack)
    assert outage_class(full) is OutageClass.RESOURCES
    assert (sqlstate(full), mysql_errno(full)) == (
        ("53300", None) if kind == "postgresql" else ("", 1040)
    )

    # operator intervention: PostgreSQL refusing new sessions while it shuts down (57P03),
    # MariaDB made read-only for a failover (1290)
    admin = _admin(server)
    if kind == "postgresql":
        with admin.connect() as holder:  # a smart shutdown waits for this session to end
            holder.exec_driver_sql("SELECT 1")
            subprocess.run(
                ["runuser", "-u", "postgres", "--", "pg_ctl", "-D", str(server.data),
                 "-m", "smart", "-W", "stop"]
                if _root() else ["pg_ctl", "-D", str(server.data), "-m", "smart", "-W", "stop"],
                check=True, timeout=60, capture_output=True,
            )  # fmt: skip
            operator = _wait_for_error(lambda: app.connect().close())
        _wait_stopped(server)
        server.start()
    else:
        with admin.connect() as conn:
            conn.exec_driver_sql("SET GLOBAL read_only = 1")
        try:
            with app.connect() as conn:
                operator = _error_of(
                    lambda: conn.execute(delete(metadata.tables["message_events"]))
                )
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql("SET GLOBAL read_only = 0")
    admin.dispose()
    assert outage_class(operator) is OutageClass.OPERATOR
    assert (sqlstate(operator), mysql_errno(operator)) == (
        ("57P03", None) if kind == "postgresql" else ("", 1290)
    )

    # the server stopped: the connection is refused
    server.stop()
    try:
        stopped = _error_of(lambda: app.connect())
    finally:
        server.start()
    assert outage_class(stopped) is OutageClass.CONNECTION
    app.dispose()


def _root() -> bool:
    import os

    return os.geteuid() == 0


def _wait_for_error(action: Callable[[], Any], seconds: float = 30) -> Exception:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            action()
        except Exception as exc:
            return exc
        time.sleep(0.1)
    raise AssertionError(f"no error within {seconds} s")


def _wait_stopped(server: Server, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while (server.data / "postmaster.pid").exists():
        if time.monotonic() > deadline:
            raise AssertionError("PostgreSQL did not stop")
        time.sleep(0.1)


# ---- the deployed path through the handlers ---------------------------------------------


class SecretCounter:
    """Counts Powertools' fetches of the database secret (cached and forced)."""

    def __init__(self) -> None:
        self.calls: list[bool] = []

    def wrap(self, real: Callable[..., Any]) -> Callable[..., Any]:
        def get(provider: Any, *args: Any, **kwargs: Any) -> Any:
            self.calls.append(bool(kwargs.get("force_fetch")))
            return real(provider, *args, **kwargs)

        return get


@pytest.fixture
def deployed(
    request: pytest.FixtureRequest,
    throwaway_servers: dict[str, Server],
    moto_resources: SharedAws,
    handler_modules: dict[str, ModuleType],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Gateway, Server, str, SecretCounter]]:
    """The gateway whose SQL functions are configured as deployed: SMS_GATEWAY_DB_HOST /
    PORT / NAME / ENGINE and a secret ``{"username", "password"}`` (the RDS-managed shape)
    in moto's Secrets Manager. The harness itself reads and writes as the superuser."""
    server = throwaway_servers[request.param]
    _set_password(server, FIRST_PASSWORD)
    admin = _admin(server)
    with admin.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(delete(table))
    admin.dispose()
    secrets = boto3.client("secretsmanager")
    name = f"sms-gateway/db/{request.node.name}"
    arn = secrets.create_secret(
        Name=name, SecretString=json.dumps({"username": APP_USER, "password": FIRST_PASSWORD})
    )["ARN"]
    parameters.clear_caches()
    counter = SecretCounter()
    monkeypatch.setattr(
        parameters.SecretsProvider, "get", counter.wrap(parameters.SecretsProvider.get)
    )
    harness_dsn = server.admin_url().render_as_string(hide_password=False)
    for gateway in _gateway(harness_dsn, moto_resources, handler_modules, monkeypatch):
        for key, value in {
            "SMS_GATEWAY_DB_HOST": "127.0.0.1",
            "SMS_GATEWAY_DB_PORT": str(server.port),
            "SMS_GATEWAY_DB_NAME": DATABASE,
            "SMS_GATEWAY_DB_ENGINE": server.kind,
            "SMS_GATEWAY_DB_SECRET_ARN": arn,
            # the DSN is not what the functions use once a host is set
            "SMS_GATEWAY_MESSAGE_DSN": "sqlite:////nonexistent/never-used.db",
            "SMS_GATEWAY_OUTAGE_REQUEUE_LIMIT": "3",
        }.items():
            monkeypatch.setenv(key, value)
        wiring.reset()
        try:
            yield gateway, server, arn, counter
        finally:
            wiring.reset()
            secrets.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
            parameters.clear_caches()


def post(gateway: Gateway, key: str, body: str = "hi") -> str:
    answer = gateway.post_message("tenant-3", key, {"to": "+14155550100", "body": body})
    assert answer.status == 202, answer.body
    return str(answer.body["message_id"])


def _copies(gateway: Gateway) -> list[dict[str, Any]]:
    """Every message on the SendQueue, received once each (visibility 0) with its receive
    count, without consuming them."""
    return list(
        gateway.sqs.receive_message(
            QueueUrl=gateway.send_queue_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=0,
            MessageAttributeNames=["All"],
            AttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
    )


def _assert_requeued_without_spent_receives(gateway: Gateway, ids: list[str]) -> None:
    """The sender put each record back as a fresh copy: one copy per message, counting one
    outage requeue, whose first receive is the peek here (the outage spent none)."""
    outcome = gateway.poller("sender").poll_once()
    assert len(outcome.received) == len(ids)
    assert outcome.retained == []  # nothing reported as a batch item failure
    copies = _copies(gateway)
    assert sorted(json.loads(c["Body"])["message_id"] for c in copies) == sorted(ids)
    assert [c["MessageAttributes"]["outage_requeues"]["StringValue"] for c in copies] == [
        "1"
    ] * len(ids)
    assert [c["Attributes"]["ApproximateReceiveCount"] for c in copies] == ["1"] * len(ids)
    assert sum(len(p.calls) for p in gateway.providers.values()) == 0


def _assert_dlq_keeps_its_records(gateway: Gateway) -> None:
    event = sample("dlq-batch.json")
    answer = gateway.invoke("dlq", event)
    assert sorted(f["itemIdentifier"] for f in answer["batchItemFailures"]) == sorted(
        r["messageId"] for r in event["Records"]
    )


def _assert_sent_once(gateway: Gateway, ids: list[str]) -> None:
    gateway.run_until_idle()
    for message_id in ids:
        assert gateway.get_message("tenant-3", message_id).body["status"] == "sent"
        assert len(gateway.sends(message_id)) == 1
    assert gateway.queue_depth("send") == gateway.queue_depth("dlq") == 0


@pytest.mark.parametrize("deployed", KINDS, indirect=True)
def test_functions_log_in_as_the_secrets_user_not_the_dsns(
    deployed: tuple[Gateway, Server, str, SecretCounter],
) -> None:
    gateway, server, _arn, counter = deployed
    engine = wiring.sql().engine
    assert engine.url.username is None and engine.url.password is None
    assert (engine.url.host, engine.url.port, engine.url.database) == (
        "127.0.0.1",
        server.port,
        DATABASE,
    )
    with engine.connect() as conn:
        user = conn.exec_driver_sql(
            "SELECT current_user" if server.kind == "postgresql" else "SELECT CURRENT_USER()"
        ).scalar_one()
    assert str(user).split("@")[0] == APP_USER
    assert counter.calls == [False]  # one fetch, from Powertools' cache afterwards
    assert engine.pool.size() == 1  # type: ignore[attr-defined]
    _assert_sent_once(gateway, [post(gateway, "login")])


@pytest.mark.parametrize("deployed", KINDS, indirect=True)
def test_a_rotated_password_is_fetched_again_on_the_refused_login(
    deployed: tuple[Gateway, Server, str, SecretCounter],
) -> None:
    gateway, server, arn, counter = deployed
    first = post(gateway, "before")
    gateway.run_until_idle()
    # the rotation: a new password on the server and in the secret; the container still holds
    # the old one (cached for SMS_GATEWAY_DB_SECRET_MAX_AGE_SECONDS), and its pooled
    # connection is gone (terminated)
    _set_password(server, "second-password")
    boto3.client("secretsmanager").put_secret_value(
        SecretId=arn,
        SecretString=json.dumps({"username": APP_USER, "password": "second-password"}),
    )
    assert _end_app_connections(server) == 1
    second = post(gateway, "after")
    outcomes = gateway.pump("sender")
    assert [o.retained for o in outcomes] == [[]]
    assert _copies(gateway) == []  # sent at once, not requeued
    assert counter.calls == [False, False, True]  # cached, cached (refused), forced
    _assert_sent_once(gateway, [first, second])


@pytest.mark.parametrize("deployed", KINDS, indirect=True)
def test_a_password_changed_before_its_secret_is_an_outage_that_spends_no_receives(
    deployed: tuple[Gateway, Server, str, SecretCounter],
) -> None:
    gateway, server, arn, _counter = deployed
    wiring.sql()  # a warm container
    _set_password(server, "rotated-on-the-server-only")
    ids = [post(gateway, f"mid-rotation-{i}") for i in range(2)]
    _assert_requeued_without_spent_receives(gateway, ids)
    _assert_dlq_keeps_its_records(gateway)
    status = gateway.get_message("tenant-3", ids[0])
    assert status.status == 503
    # the rotation finishes: the secret gets the password the server has
    boto3.client("secretsmanager").put_secret_value(
        SecretId=arn,
        SecretString=json.dumps({"username": APP_USER, "password": "rotated-on-the-server-only"}),
    )
    _assert_sent_once(gateway, ids)


@pytest.mark.parametrize("deployed", KINDS, indirect=True)
def test_max_connections_reached_is_an_outage_that_spends_no_receives(
    deployed: tuple[Gateway, Server, str, SecretCounter],
) -> None:
    gateway, server, _arn, _counter = deployed
    ids = [post(gateway, f"full-{i}") for i in range(3)]
    with ExitStack() as hogs:
        refused = _fill_slots(server, hogs)
        assert outage_class(refused) is OutageClass.RESOURCES
        _assert_requeued_without_spent_receives(gateway, ids)
        _assert_dlq_keeps_its_records(gateway)
    _assert_sent_once(gateway, ids)


@pytest.mark.parametrize("deployed", KINDS, indirect=True)
def test_a_stopped_server_is_an_outage_that_spends_no_receives(
    deployed: tuple[Gateway, Server, str, SecretCounter],
) -> None:
    gateway, server, _arn, _counter = deployed
    wiring.sql()
    ids = [post(gateway, f"stopped-{i}") for i in range(2)]
    server.stop()
    try:
        _assert_requeued_without_spent_receives(gateway, ids)
        _assert_dlq_keeps_its_records(gateway)
        assert gateway.get_message("tenant-3", ids[0]).status == 503
    finally:
        server.start()
    _assert_sent_once(gateway, ids)


@pytest.mark.parametrize("deployed", KINDS, indirect=True)
def test_a_terminated_connection_is_retried_at_once(
    deployed: tuple[Gateway, Server, str, SecretCounter],
) -> None:
    gateway, server, _arn, counter = deployed
    first = post(gateway, "warm")
    gateway.run_until_idle()
    assert _end_app_connections(server) == 1
    second = post(gateway, "after-kill")
    outcomes = gateway.pump("sender")
    assert [o.retained for o in outcomes] == [[]]
    assert _copies(gateway) == []
    assert True not in counter.calls  # the password was right: never fetched by force
    _assert_sent_once(gateway, [first, second])


@pytest.mark.parametrize("deployed", ["postgresql"], indirect=True)
def test_credentials_that_cannot_be_fetched_are_an_outage_too(
    deployed: tuple[Gateway, Server, str, SecretCounter], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Secrets Manager refusing or unreachable (no VPC endpoint, a deleted secret): the
    sender's records wait without spending receives, as in a database outage."""
    gateway, _server, arn, _counter = deployed
    monkeypatch.setenv("SMS_GATEWAY_DB_SECRET_ARN", arn + "-deleted")
    wiring.reset()
    ids = [post(gateway, "no-secret")]
    _assert_requeued_without_spent_receives(gateway, ids)
    _assert_dlq_keeps_its_records(gateway)
    monkeypatch.setenv("SMS_GATEWAY_DB_SECRET_ARN", arn)
    wiring.reset()
    _assert_sent_once(gateway, ids)
