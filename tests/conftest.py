"""Fixtures: SQL databases (SQLite always; PostgreSQL and MariaDB when their DSNs are set)
and the in-process gateway under moto.

``SMS_GATEWAY_TEST_POSTGRES_DSN`` / ``SMS_GATEWAY_TEST_MYSQL_DSN`` select the servers (CI sets
both, to the loopback servers, and fails on any skipped SQL test).

What is built once per session (per xdist worker) and what once per test:

- SQLite: the Alembic history runs once into a template file; each test gets a copy of it.
  PostgreSQL / MariaDB: migrated once, every table emptied before each test; each xdist
  worker uses its own database beside the one named (``<name>_gw0``, ...), created if missing.
- botocore: one data loader for every session (:func:`_shared_loader`), so a service's JSON
  model is parsed once per process, not once per session.
- AWS: moto's state outlives a test; the template's table and queues are provisioned once and
  emptied before each test (provisioned again when something reset moto: a test with its own
  ``mock_aws``, or a local stack stopping). One boto3 session (service models loaded once)
  serves the fixtures and the handlers' own ``boto3.client`` calls.
- The functions' handler modules are loaded once (a warm container); the wiring's containers
  are rebuilt for every test, as before.
- IAM: the AWS calls each handler makes are recorded and, at session end, checked against its
  role in template.yaml (tests/iam.py; the hooks at the end of the AWS section below).
"""

from __future__ import annotations

import atexit
import copy
import os
import shutil
import sqlite3
import sys
import tempfile
import weakref
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, settings
from moto import mock_aws
from sqlalchemy import Engine, create_engine, delete, make_url, text

from sms_gateway import wiring
from sms_gateway.adapters import aws as aws_adapters
from sms_gateway.local.resources import LocalResources, provision
from sms_gateway.local.template import Resolver, SamTemplate
from sms_gateway.providers import simulator
from sms_gateway.storage.demo import DEMO_POLICIES
from sms_gateway.storage.engine import make_engine
from sms_gateway.storage.repository import MessageRepository, RoutePolicyRepository
from sms_gateway.storage.schema import run_migrations
from sms_gateway.storage.tables import metadata
from tests import iam
from tests.support import REPO_ROOT, FakeClock, Gateway, RecordingProvider, load_handler

# A busy machine must not fail a property test: no per-example deadline, no "too slow" check.
settings.register_profile(
    "suite", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))


def _shared_loader(
    search_path_string: str | None = None,
    _loaders: dict[str | None, botocore.loaders.Loader] = {},  # noqa: B006 - the cache
) -> botocore.loaders.Loader:
    """One botocore data loader per search path for the whole test process: every new
    boto3/botocore session (``mock_aws()`` makes one per test, Powertools one per utility)
    reads each service's JSON model once, not once per session. A loader caches what it
    read, models included, as one long-lived session's loader does; nothing else is shared."""
    if search_path_string not in _loaders:
        _loaders[search_path_string] = botocore.loaders.create_loader(search_path_string)
    return _loaders[search_path_string]


botocore.session.create_loader = _shared_loader  # type: ignore[attr-defined]


_build_client = aws_adapters._client
_boto3_client = boto3.client
_warm_clients: weakref.WeakKeyDictionary[boto3.Session, dict[tuple[str, ...], tuple[Any, Any]]] = (
    weakref.WeakKeyDictionary()
)


def _warm_client(service: str) -> Any:
    """The handlers' AWS clients (``sms_gateway.adapters.aws``) kept per boto3 default session,
    service and ``AWS_*`` environment, as a warm container keeps its clients: the wiring's
    containers are rebuilt for every test, and a botocore client costs milliseconds to build.
    A test that swaps ``boto3.client`` gets its own; one that adds event hooks to the session
    calls :func:`forget_clients` (clients copy the session's hooks when they are built)."""
    if boto3.client is not _boto3_client:
        return _build_client(service)
    session = boto3._get_default_session()
    env = tuple(sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith("AWS_")))
    clients = _warm_clients.setdefault(session, {})
    key = (service, *env)
    if key not in clients:
        client = _build_client(service)
        clients[key] = (client, _watch_handlers(_emitter_of(client)))
    return clients[key][0]


def _emitter_of(client: Any) -> Any:
    """The client's own event handlers (behind botocore's ``EventAliaser``)."""
    return getattr(client.meta.events, "_emitter", client.meta.events)


def _watch_handlers(emitter: Any) -> Any:
    """A copy of ``emitter`` as built; ``emitter.changed`` is set by any later (un)register."""
    built = copy.copy(emitter)
    register, unregister = emitter._register_section, emitter.unregister

    def registering(*args: Any, **kwargs: Any) -> Any:
        emitter.changed = True
        return register(*args, **kwargs)

    def unregistering(*args: Any, **kwargs: Any) -> Any:
        emitter.changed = True
        return unregister(*args, **kwargs)

    emitter._register_section, emitter.unregister = registering, unregistering
    emitter.changed = False
    return built


def _rewind_clients() -> None:
    """Each test finds the warm clients' event handlers as they were built: what an earlier
    test registered on one (Powertools adds a user-agent hook to the client of every
    DynamoDBPersistenceLayer, i.e. of every ingest container) is gone."""
    for clients in list(_warm_clients.values()):
        for client, built in clients.values():
            emitter = _emitter_of(client)
            if not emitter.changed:
                continue
            emitter.changed = False
            emitter._handlers = copy.copy(built._handlers)
            emitter._unique_id_handlers = copy.copy(built._unique_id_handlers)
            emitter._lookup_cache = {}


def forget_clients() -> None:
    """Build the handlers' clients anew from now on (after changing the session's hooks)."""
    _warm_clients.clear()


aws_adapters._client = _warm_client

SERVER_DSNS = {
    "postgresql": "SMS_GATEWAY_TEST_POSTGRES_DSN",
    "mysql": "SMS_GATEWAY_TEST_MYSQL_DSN",
}
_migrated: dict[str, tuple[str, Engine]] = {}  # kind -> (DSN, engine), once per process


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file the Alembic history was run into, once per session (copied per test)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "gateway.db"
    run_migrations(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:  # everything in the main file: a plain copy is whole
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path


def _fresh_database(kind: str, tmp_path: Path, sqlite_template: Path) -> str:
    if kind == "sqlite":
        path = tmp_path / "gateway.db"
        shutil.copyfile(sqlite_template, path)
        return f"sqlite:///{path}"
    dsn = os.environ.get(SERVER_DSNS[kind], "")
    if not dsn:
        if os.environ.get("SMS_GATEWAY_REQUIRE_SQL_SERVERS"):
            pytest.fail(f"{SERVER_DSNS[kind]} is not set but SQL servers are required")
        pytest.skip(f"{SERVER_DSNS[kind]} is not set: no {kind} server for this run")
    if kind not in _migrated:
        dsn = _worker_database(dsn)
        engine = make_engine(dsn)
        with engine.begin() as conn:
            metadata.drop_all(conn)
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        run_migrations(dsn)
        _migrated[kind] = (dsn, engine)
    dsn, engine = _migrated[kind]
    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(delete(table))
    return dsn


def _worker_database(dsn: str) -> str:
    """Under pytest-xdist, ``dsn``'s database with the worker's id appended (created when
    missing), so that workers never empty each other's tables; else ``dsn`` itself."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return dsn
    url = make_url(dsn)
    name = f"{url.database}_{worker}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if url.get_backend_name() == "postgresql":
                exists = conn.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
                ).first()
                if not exists:
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
            else:
                conn.execute(text(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4"))
    finally:
        admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def database(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """A migrated, empty database on each dialect; its DSN."""
    return _fresh_database(str(request.param), tmp_path, sqlite_template)


@pytest.fixture
def sqlite_database(tmp_path: Path, sqlite_template: Path) -> str:
    """A migrated, empty SQLite database (for tests whose subject is not the dialect)."""
    return _fresh_database("sqlite", tmp_path, sqlite_template)


AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_SERVICE_NAME": "sms-gateway",
    "POWERTOOLS_METRICS_NAMESPACE": "SmsGateway",
    "POWERTOOLS_DEV": "false",
}

# Powertools' Logger and Metrics read their settings when sms_gateway.observability is first
# imported (in Lambda the environment exists before any import); the services import it, and
# test modules import services at collection, before any fixture has set the environment.
for _key in ("POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"):
    os.environ.setdefault(_key, AWS_TEST_ENV[_key])


def set_aws_test_env(monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
    """Fake AWS credentials and region; no endpoint override (moto intercepts in-process)."""
    for key, value in {**AWS_TEST_ENV, **extra}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """:func:`set_aws_test_env` for one test."""
    set_aws_test_env(monkeypatch)


# Keep moto's state between tests (no reset on start, no removal on stop) and leave
# boto3.DEFAULT_SESSION alone: the fixtures set it to the session's own.
_KEEP_STATE: Any = {
    "core": {
        "mock_credentials": False,
        "passthrough": {"urls": [], "services": []},
        "reset_boto3_session": False,
        "service_whitelist": None,
    }
}
_MISSING = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
MOTO_ACCOUNT = "123456789012"  # moto's default account, the one the tests' credentials get
MOTO_REGION = "us-east-1"


def _resolver(template: SamTemplate) -> Resolver:
    return Resolver(
        template,
        pseudo_parameters={
            "AWS::Region": "us-east-1",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::AccountId": "123456789012",
            "AWS::StackName": "sms-gateway",
        },
    )


@dataclass
class SharedAws:
    """The template's AWS resources in moto, provisioned once and emptied per test."""

    session: boto3.Session
    sqs: Any
    dynamodb: Any
    template: SamTemplate
    resolver: Resolver
    resources: LocalResources = field(default_factory=LocalResources)

    def provision(self) -> None:
        # A fresh resolver: one that remembers the last run's ARNs would create the send queue
        # before the dead-letter queue its RedrivePolicy names.
        self.resolver = _resolver(self.template)
        self.resources = provision(
            self.template,
            self.resolver,
            sqs=self.sqs,
            dynamodb=self.dynamodb,
            stack_name="sms-gateway",
        )

    def empty(self) -> None:
        """Purge every queue and delete every item; provision first if moto was reset.

        Straight in moto's backends (its ``purge_queue``, the table's item map): a dozen API
        calls a test (describe, scan, a delete per item) cost more than most tests' bodies.
        When a moto release moves those internals, the same through the API."""
        if not self.resources.queue_urls:
            self.provision()
            return
        try:
            self._empty_backends()
        except (ImportError, AttributeError, TypeError):
            self._empty_through_the_api()

    def _empty_backends(self) -> None:
        """Empty them in moto's memory; a missing queue or table (moto was reset since) means
        all are provisioned anew."""
        from moto.dynamodb.models import dynamodb_backends
        from moto.sqs.models import sqs_backends

        sqs = sqs_backends[MOTO_ACCOUNT][MOTO_REGION]
        dynamodb = dynamodb_backends[MOTO_ACCOUNT][MOTO_REGION]
        queues = [url.rsplit("/", 1)[1] for url in self.resources.queue_urls.values()]
        tables = list(self.resources.table_names.values())
        if not set(queues) <= set(sqs.queues) or not set(tables) <= set(dynamodb.tables):
            self.provision()
            return
        with pytest.MonkeyPatch.context() as env:
            env.setenv("MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR", "false")
            for name in queues:
                sqs.purge_queue(name)
        for name in tables:
            dynamodb.tables[name].items.clear()

    def _empty_through_the_api(self) -> None:
        try:
            with pytest.MonkeyPatch.context() as env:
                # moto's setting for SQS's "one purge per queue per 60 s"; a test purges often
                env.setenv("MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR", "false")
                for url in self.resources.queue_urls.values():
                    self.sqs.purge_queue(QueueUrl=url)
            for table in self.resources.table_names.values():
                self._clear_table(table)
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code not in _MISSING | {"ResourceNotFoundException"}:
                raise
            self.provision()

    def _clear_table(self, table: str) -> None:
        keys = [
            element["AttributeName"]
            for element in self.dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]
        ]
        pages = self.dynamodb.get_paginator("scan").paginate(
            TableName=table,
            ProjectionExpression=", ".join(f"#k{i}" for i in range(len(keys))),
            ExpressionAttributeNames={f"#k{i}": key for i, key in enumerate(keys)},
        )
        for page in pages:
            for item in page.get("Items", []):
                self.dynamodb.delete_item(TableName=table, Key=item)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that start a local stack (markers ``e2e`` and ``local_stack``: moto's server, a
    process per execution environment, often the CLI in a subprocess; the suite's longest
    files by far) go first, e2e files first of all, and among them the files with the fewest
    tests first (a stable sort: files stay whole).

    Under ``-n N --dist loadfile --no-loadscope-reorder`` (``make test``: N is the cores plus
    one; the option is in pyproject's ``addopts``) xdist hands files to the workers in this
    order, giving a worker its next file while it still has two tests or fewer to run. Here a
    file's length is its stack starts, not its number of tests: the one-test restart file (two
    starts and a kill) is as long as the ten tests sharing the session's stack. Fewest first
    gives each worker one long e2e file and then another, and leaves the many short in-process
    files to even out the end. (xdist's own order, most tests first, handed the e2e files out
    last.) The e2e files mostly wait on their stacks' processes: the extra worker runs
    in-process files meanwhile.
    """
    per_file = Counter(item.nodeid.split("::", 1)[0] for item in items)

    def key(item: pytest.Item) -> tuple[int, int]:
        if item.get_closest_marker("e2e"):
            rank = 0
        elif item.get_closest_marker("local_stack"):
            rank = 1
        else:
            return (2, 0)
        return (rank, per_file[item.nodeid.split("::", 1)[0]])

    items.sort(key=key)


_shared: list[SharedAws] = []  # the session's SharedAws, once built


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test that does not use the shared AWS resources finds moto as a fresh process would
    (empty), as it did when every test had its own ``mock_aws``."""
    _rewind_clients()
    if (
        _shared
        and _shared[0].resources.queue_urls
        and "moto_resources" not in getattr(item, "fixturenames", ())
    ):
        with mock_aws():  # entering and leaving the outermost mock resets moto's state
            pass
        _shared[0].resources = LocalResources()


def make_shared_aws() -> SharedAws:
    """A boto3 session with moto's dummy credentials and the parsed template (nothing
    provisioned yet); the session fixture below and ``bench`` build theirs with it."""
    session = boto3.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        aws_session_token="testing",
        region_name="us-east-1",
    )
    template = SamTemplate.from_file(REPO_ROOT / "template.yaml")
    shared = SharedAws(
        session=session,
        sqs=session.client("sqs"),
        dynamodb=session.client("dynamodb"),
        template=template,
        resolver=_resolver(template),
    )
    return shared


@pytest.fixture(scope="session")
def shared_aws() -> SharedAws:
    """One boto3 session and the parsed template for the whole session (per worker); the AWS
    calls the handlers make through it are recorded (tests/iam.py)."""
    shared = make_shared_aws()
    _shared[:] = [shared]
    shared.session.events.register(
        "before-parameter-build", iam.CallRecorder(_resource_of, AWS_CALLS)
    )
    return shared


# --- IAM that matches the code (tests/iam.py) ---------------------------------------------

AWS_CALLS: set[iam.Call] = set()  # (function, action, resource) made by handlers in this process
_CALLS_DIR = "SMS_GATEWAY_TEST_AWS_CALLS_DIR"
_written: list[int] = [0]


def _resource_of(service: str, params: dict[str, Any]) -> str | None:
    """A call's resource as a template logical id (or parameter name)."""
    resources = _shared[0].resources if _shared else LocalResources()
    if service == "sqs":
        by_url = {url: lid for lid, url in resources.queue_urls.items()}
        return by_url.get(str(params.get("QueueUrl")))
    if service == "dynamodb":
        by_name = {name: lid for lid, name in resources.table_names.items()}
        return by_name.get(str(params.get("TableName")))
    if service == "secretsmanager":
        secret = os.environ.get("SMS_GATEWAY_DB_SECRET_ARN")
        return "DatabaseSecretArn" if secret and params.get("SecretId") == secret else None
    return None


def pytest_configure(config: pytest.Config) -> None:
    """The controller (or the single process) picks the directory the processes write their
    recorded calls to; pytest-xdist workers inherit it through the environment."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ[_CALLS_DIR] = tempfile.mkdtemp(prefix="sms-gateway-aws-calls-")
    else:
        # Registered first, so run last: when a worker's process ends (its results long sent
        # to the controller, every other exit handler run), it skips the interpreter's
        # teardown, a second or two of freeing moto's and the libraries' objects.
        atexit.register(_exit_now)


def _exit_now() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _save_calls() -> None:
    if len(AWS_CALLS) != _written[0] and os.environ.get(_CALLS_DIR):
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        iam.write(AWS_CALLS, Path(os.environ[_CALLS_DIR]), worker)
        _written[0] = len(AWS_CALLS)


def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Each process saves its calls after every test that recorded new ones (a worker may be
    gone before the controller's session ends)."""
    _save_calls()


def _whole_suite(config: pytest.Config) -> bool:
    """Whether this run is the whole suite (every test could record its calls)."""
    option = config.option
    # `make test` leaves out the fuzz tests (-m "not fuzz"): they drive the local stack in a
    # subprocess, whose calls are not recorded anyway, so that run is still the whole suite.
    marks = option.markexpr not in ("", "not fuzz")
    if option.keyword or marks or getattr(option, "lf", False) or option.deselect:
        return False
    root = Path(str(config.rootpath))
    given = {Path(arg.split("::")[0]).resolve() for arg in config.args}
    return given <= {root, root / "tests"} and not any("::" in arg for arg in config.args)


_roles: list[Future[dict[str, set[tuple[str, str]]]]] = []  # the controller's, in a thread


def pytest_sessionstart(session: pytest.Session) -> None:
    """An xdist controller runs no test: it translates the template's roles (samtranslator,
    about a second) in a thread while the workers run, for :func:`pytest_sessionfinish`."""
    if session.config.pluginmanager.has_plugin("dsession"):
        pool = ThreadPoolExecutor(1, thread_name_prefix="iam-roles")
        _roles.append(pool.submit(iam.role_permissions, REPO_ROOT / "template.yaml"))
        pool.shutdown(wait=False)  # the thread finishes its one task, then ends


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In the controller (or the single process): every recorded AWS call must be allowed by
    its function's role; after a whole, green suite, every permission must be used or on
    tests/iam.py's ALLOWLIST. A problem fails the run."""
    _save_calls()
    directory = os.environ.get(_CALLS_DIR)
    if os.environ.get("PYTEST_XDIST_WORKER") or not directory:
        return
    recorded = iam.read(Path(directory))
    shutil.rmtree(directory, ignore_errors=True)
    complete = exitstatus == 0 and _whole_suite(session.config)
    roles = _roles.pop().result() if _roles else iam.role_permissions(REPO_ROOT / "template.yaml")
    found = iam.problems(recorded, roles, complete=complete)
    if found:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = "\n".join(f"  {line}" for line in found)
        message = f"IAM does not match the code (tests/iam.py):\n{lines}\n"
        if reporter is not None:
            reporter.write_line(message, red=True)
        else:
            print(message)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def moto_resources(
    shared_aws: SharedAws, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SharedAws]:
    """moto active for one test, with the template's table and queues empty."""
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", shared_aws.session)
    mock = mock_aws(config=_KEEP_STATE)
    mock.start(reset=False)
    try:
        shared_aws.empty()
        yield shared_aws
    finally:
        mock.stop(remove_data=False)


# functions/<dir> of every function in template.yaml
FUNCTION_IDS = {
    "ingest": "IngestFunction",
    "status": "StatusFunction",
    "sender": "SenderFunction",
    "dlq": "DlqFunction",
    "migrate": "MigrateFunction",
    "admin": "AdminFunction",
    "retention": "RetentionFunction",
    "eum_events": "EumEventsFunction",
}
FUNCTION_DIRS = tuple(FUNCTION_IDS)


@pytest.fixture(scope="session")
def handler_modules() -> dict[str, ModuleType]:
    """The functions' ``app`` modules, loaded once (a warm container's), in the
    functions' environment (Powertools reads its service and namespace at import)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        set_aws_test_env(monkeypatch)
        modules = {name: load_handler(name) for name in FUNCTION_DIRS}
    for name, module in modules.items():  # their AWS calls are recorded as theirs
        module.lambda_handler = iam.wrap_handler(FUNCTION_IDS[name], module.lambda_handler)
    return modules


def _gateway(
    database: str,
    aws: SharedAws,
    handlers: dict[str, ModuleType],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Gateway]:
    resources = aws.resources
    env = {
        "SMS_GATEWAY_AUTH_MODE": "local",
        "SMS_GATEWAY_IDEMPOTENCY_TABLE": resources.table_names["IdempotencyTable"],
        "SMS_GATEWAY_SEND_QUEUE_URL": resources.queue_urls["SendQueue"],
        "SMS_GATEWAY_DEAD_LETTER_QUEUE_URL": resources.queue_urls["DeadLetterQueue"],
        "SMS_GATEWAY_MESSAGE_DSN": database,
        "SMS_GATEWAY_MAX_RECEIVE_COUNT": str(aws.resolver.parameter("MaxReceiveCount")),
        "SMS_GATEWAY_RETRY_BASE_SECONDS": "0",
        "SMS_GATEWAY_RETRY_MAX_SECONDS": "0",
        "SMS_GATEWAY_LEASE_SECONDS": "30",
        "SMS_GATEWAY_DEMO_PROVIDERS": "true",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    providers = {p.name: RecordingProvider(p) for p in simulator.demo_providers()}
    monkeypatch.setattr(simulator, "demo_providers", lambda: list(providers.values()))
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    monkeypatch.setattr(wiring, "utc_now", clock)
    engine = make_engine(database)
    now = clock()
    policies = RoutePolicyRepository(engine)
    for tenant_id, (strategy, payload) in DEMO_POLICIES.items():
        policies.put(tenant_id, strategy, payload, now)
    wiring.reset()
    gateway = Gateway(
        sqs=aws.sqs,
        send_queue_url=resources.queue_urls["SendQueue"],
        send_queue_arn=resources.queue_arns["SendQueue"],
        dead_letter_queue_url=resources.queue_urls["DeadLetterQueue"],
        dead_letter_queue_arn=resources.queue_arns["DeadLetterQueue"],
        dsn=database,
        repo=MessageRepository(engine),
        providers=providers,
        handlers=handlers,
        clock=clock,
    )
    try:
        yield gateway
    finally:
        wiring.reset()
        engine.dispose()


@pytest.fixture
def gateway(
    database: str,
    moto_resources: SharedAws,
    handler_modules: dict[str, ModuleType],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Gateway]:
    """The gateway over moto, on each SQL dialect."""
    yield from _gateway(database, moto_resources, handler_modules, monkeypatch)


@pytest.fixture
def sqlite_gateway(
    sqlite_database: str,
    moto_resources: SharedAws,
    handler_modules: dict[str, ModuleType],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Gateway]:
    """The gateway over moto and SQLite only."""
    yield from _gateway(sqlite_database, moto_resources, handler_modules, monkeypatch)
