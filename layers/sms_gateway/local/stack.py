"""The local stack: the product on one machine, without Docker (DESIGN section 10).

:class:`LocalStack` wires the transport pieces together; it holds no business rule:

1. moto's server on 127.0.0.1 (a free port) stands in for DynamoDB and SQS, behind a journal in
   the data dir (:mod:`sms_gateway.local.journal`) so that nothing accepted is lost across a
   restart, ``kill -9`` included.
2. The template's table and queues are created from their own resource definitions
   (:mod:`sms_gateway.local.resources`), with the stack's own boto3 clients; then the
   journal's live items and messages are put back and the journal is compacted.
3. Each function's environment is the template's for that function (Globals + its own,
   references resolved to the local table and queue URLs), then the local settings:
   ``AWS_ENDPOINT_URL`` (moto), dummy credentials, ``SMS_GATEWAY_AUTH_MODE=local``, the SQL
   DSN, short retry delays, tracing off. This process's ``os.environ`` is left alone.
4. Migrations run and the demo tenants' route policies are seeded.
5. Each function (``functions/<name>/app.py``) runs in execution environments of its own,
   separate processes (:mod:`sms_gateway.local.runtime`): ``prewarm`` per function are
   started in parallel before the stack is ready, more on demand; an HTTP front
   (:mod:`sms_gateway.local.http_front`) serves their ``Api`` events and one poller per ``SQS``
   event (:mod:`sms_gateway.local.pollers`) feeds the sender and the DLQ consumer.

Before any of that, the stack takes an exclusive lock on its data dir (``flock`` on
``<data_dir>/local-stack.lock``, held until :meth:`LocalStack.stop` or the process's death)
and binds its HTTP port: a second stack on the same data dir, or on a port in use, is refused
before it wipes, restores or migrates anything.

Use it as a context manager, or ``start()``/``stop()``; ``sms-gateway local`` runs it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import threading
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from sms_gateway.local.http_front import ApiFront, Invoker, RequestHook, Router
from sms_gateway.local.journal import JOURNAL_FILE, JournaledMotoServer, RestoreReport
from sms_gateway.local.logview import QUIET_WARNINGS
from sms_gateway.local.pollers import SqsInvoker, SqsPoller
from sms_gateway.local.resources import LocalResources, provision
from sms_gateway.local.runtime import (
    LocalFunction,
    LogSink,
    function_environment,
    prestart_environments,
    print_log_line,
)
from sms_gateway.local.template import FunctionSpec, Resolver, SamTemplate, TemplateError
from sms_gateway.local.throttle import StageThrottle, method_throttles

if TYPE_CHECKING:
    import boto3.session
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

__all__ = [
    "ACCOUNT_ID",
    "DEFAULT_PREWARM",
    "LOCK_FILE",
    "REGION",
    "STACK_NAME",
    "DataDirInUse",
    "LambdaInvokeError",
    "LocalStack",
    "default_dsn",
    "find_root",
    "lambda_invoker",
    "lock_data_dir",
    "mask_dsn",
    "write_sam_env_vars",
]

logger = logging.getLogger(__name__)

REGION: Final = "us-east-1"
ACCOUNT_ID: Final = "123456789012"  # moto's default account
STACK_NAME: Final = "sms-gateway"
TEMPLATE_FILE: Final = "template.yaml"
DSN_VARIABLE: Final = "SMS_GATEWAY_MESSAGE_DSN"
_POLLER_STOP_SECONDS: Final = 60.0
DEFAULT_API_ENVIRONMENTS: Final = 4
DEFAULT_PREWARM: Final = 1
"""Environments started per function before the stack reports ready (see ``prewarm``)."""
LOCK_FILE: Final = "local-stack.lock"
"""In the data dir: ``flock``-ed exclusively by the running stack (it holds that stack's pid)."""


class DataDirInUse(RuntimeError):
    """Another local stack holds the data dir's lock (:data:`LOCK_FILE`); nothing was touched."""


# Settings the local stack forces, whatever the template says (DESIGN section 9: the
# X-Tenant-ID header is honoured only in local mode; there is no X-Ray daemon here).
_LOCAL_FORCED: Final = {
    "SMS_GATEWAY_AUTH_MODE": "local",
    # The database is the DSN's (SMS_GATEWAY_MESSAGE_DSN or SQLite), not the template's
    # host and secret, and a local server has no RDS certificate.
    "SMS_GATEWAY_DB_HOST": "",
    "SMS_GATEWAY_DB_SECRET_ARN": "",
    "SMS_GATEWAY_DB_TLS": "false",
    "POWERTOOLS_TRACE_DISABLED": "true",
    # Handlers started as their own processes read it; in-process, the CLI sets the same filter.
    "PYTHONWARNINGS": QUIET_WARNINGS,
}
# Local defaults that a value already in the process environment overrides: retries come back
# in seconds rather than minutes so the demo flows finish while you watch.
# The demo simulators are wired here (never deployed unless configured); a developer names
# real or loopback providers with SMS_GATEWAY_PROVIDERS (e.g. an "http" provider on 127.0.0.1).
_LOCAL_DEFAULTS: Final = {
    "SMS_GATEWAY_RETRY_BASE_SECONDS": "1",
    "SMS_GATEWAY_RETRY_MAX_SECONDS": "5",
    "SMS_GATEWAY_DEMO_PROVIDERS": "true",
    "SMS_GATEWAY_PROVIDERS": "{}",
}
# Template values that a value already in the process environment overrides.
# Template-set variables a developer may override from the shell for the local stack.
_TUNABLE: Final = (
    "POWERTOOLS_LOG_LEVEL",
    "SMS_GATEWAY_RECEIPT_SECRETS",
    "SMS_GATEWAY_LEASE_SECONDS",
)


def find_root(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` (default: the cwd) holding template.yaml.

    Raises:
        FileNotFoundError: none up to the filesystem root.
    """
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / TEMPLATE_FILE).is_file():
            return candidate
    raise FileNotFoundError(f"no {TEMPLATE_FILE} in {here} or any parent directory")


def default_dsn(data_dir: Path) -> str:
    """The embedded default: a SQLite file ``<data_dir>/sms-gateway.db`` (absolute URL)."""
    return f"sqlite:///{(data_dir / 'sms-gateway.db').resolve()}"


def lock_data_dir(data_dir: Path) -> int:
    """Take the exclusive lock of ``data_dir`` (created if missing) without waiting.

    Returns the lock file's descriptor: the lock lasts until it is closed (or the process
    dies; ``flock`` locks are the open file's, so ``kill -9`` frees it). The file then holds
    this process's pid, for the message a second stack shows.

    Raises:
        DataDirInUse: another process (or another open of the file) holds the lock.
        OSError: the directory or the file cannot be created.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        by = f" (pid {holder})" if holder.isdigit() else ""
        raise DataDirInUse(
            f"data dir {data_dir} is in use by another sms-gateway local{by}; "
            "stop it or pick another --data-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


def mask_dsn(dsn: str) -> str:
    """``dsn`` with its password replaced by ``***``, for printing."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", dsn)


class LocalStack:
    """The gateway on one machine: moto (DynamoDB, SQS) + handlers + HTTP front + pollers.

    Args:
        root: the repository root (holds template.yaml and functions/); default
            :func:`find_root` from the cwd.
        host, port: where the HTTP front listens; port 0 picks a free one (see :attr:`url`).
        dsn: SQLAlchemy URL of the message database. Default: ``$SMS_GATEWAY_MESSAGE_DSN``,
            else :func:`default_dsn` of ``data_dir``.
        data_dir: where the default SQLite file and the AWS journal (``aws-journal.jsonl``)
            live; default ``./.sms-gateway``.
        env_overrides: variables set for the handlers after everything else (last word).
        parameter_overrides: template parameter values in place of their defaults
            (e.g. ``{"MaxReceiveCount": "2"}``).
        prepare_database: run migrations and seed the demo route policies at start
            (``sms_gateway.storage.schema.run_migrations``,
            ``sms_gateway.storage.demo.seed_demo_policies``).
        stack_name: ``AWS::StackName``; the prefix of local physical names.
        log_requests: log one access line per HTTP request (see ``on_request``).
        on_request: called with each answered request's
            :class:`~sms_gateway.local.http_front.RequestLog` (method, path, status, latency,
            request id, tenant) in place of the default access line.
        environments: how many execution environments (processes) a function with ``Api``
            events may have at once, i.e. its concurrent invocations (default
            :data:`DEFAULT_API_ENVIRONMENTS`); a function gets one more per ``SQS`` event
            source (its poller invokes one batch at a time). A mapping gives the total per
            logical id (functions it leaves out get the default).
        log_sink: ``log_sink(function_logical_id, line)`` receives every line the functions
            write (stdout and stderr of their environments), from reader threads; default
            :func:`sms_gateway.local.runtime.print_log_line` (this process's stdout).
        reset: start clean: delete the AWS journal and the default SQLite file (with its
            ``-wal``/``-shm``/``-journal`` companions) in ``data_dir`` first. A database given
            by ``dsn`` or ``$SMS_GATEWAY_MESSAGE_DSN`` is never touched.
        prewarm: environments started per function at start, in parallel, before
            :meth:`start` returns (Lambda's provisioned concurrency): the first requests meet
            warm handlers instead of cold starts that take seconds on a busy machine. At most
            the function's environment count; 0 starts none (every first invocation is a cold
            start). An init that fails is logged and left to the first invocation.
        reset_journal: delete the AWS journal only (queued messages and idempotency records
            are lost; every SQL database is kept), e.g. after a
            :class:`~sms_gateway.local.journal.JournalError`.
        aws_host: the address moto's server listens on (default 127.0.0.1). For ``sam local``,
            the gateway address of the Docker network its containers join (e.g. 172.18.0.1),
            which both this machine and the containers reach.
        sam_env_vars: write the ``sam local ... --env-vars`` file here at start (see
            :meth:`sam_env_vars`); mode 0600, since the DSN may carry a password.
        throttle: emulate the stage's method throttling (the template's ``MethodSettings``:
            ``ReceiptsRateLimit``/``ReceiptsBurstLimit`` on the receipts routes, or their
            ``parameter_overrides``): a request over it is answered 429 without invoking the
            function (:mod:`sms_gateway.local.throttle`). False: no throttling.
        lambda_endpoint: the URL of ``sam local start-lambda`` (e.g. ``http://127.0.0.1:3001``):
            the pollers then invoke the SQS functions there (boto3 ``lambda.invoke``, one
            container per batch, as Lambda's event source mapping does) instead of in
            execution environments of this process.

    One stack per process at a time: moto's backends are process-global.
    """

    def __init__(
        self,
        root: Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 3000,
        dsn: str | None = None,
        data_dir: Path | None = None,
        env_overrides: Mapping[str, str] | None = None,
        parameter_overrides: Mapping[str, str] | None = None,
        prepare_database: bool = True,
        stack_name: str = STACK_NAME,
        log_requests: bool = True,
        environments: int | Mapping[str, int] = DEFAULT_API_ENVIRONMENTS,
        log_sink: LogSink | None = None,
        reset: bool = False,
        on_request: RequestHook | None = None,
        reset_journal: bool = False,
        prewarm: int = DEFAULT_PREWARM,
        aws_host: str = "127.0.0.1",
        sam_env_vars: Path | None = None,
        lambda_endpoint: str | None = None,
        throttle: bool = True,
    ) -> None:
        self.root = (root or find_root()).resolve()
        self.host = host
        self.port = port
        self.data_dir = (data_dir or Path.cwd() / ".sms-gateway").resolve()
        self.dsn = dsn or os.environ.get(DSN_VARIABLE) or default_dsn(self.data_dir)
        self.env_overrides = dict(env_overrides or {})
        self.parameter_overrides = dict(parameter_overrides or {})
        self.prepare_database = prepare_database
        self.stack_name = stack_name
        self.log_requests = log_requests
        self.environment_counts = environments
        self.log_sink: LogSink = log_sink or print_log_line
        self.reset = reset
        self.reset_journal = reset_journal
        self.prewarm = max(0, prewarm)
        self.journal_path = self.data_dir / JOURNAL_FILE
        self.restored: RestoreReport | None = None
        self.on_request = on_request
        self.aws_host = aws_host
        self.sam_env_vars_path = sam_env_vars
        self.lambda_endpoint = lambda_endpoint.rstrip("/") if lambda_endpoint else None
        self.throttle_enabled = throttle
        self.stage_throttle: StageThrottle | None = None
        self._declared: dict[str, list[str]] = {}

        self.template = SamTemplate.from_file(self.root / TEMPLATE_FILE)
        self.environments: dict[str, dict[str, str]] = {}
        self.resources = LocalResources()
        self.functions: dict[str, LocalFunction] = {}
        self.pollers: dict[str, SqsPoller] = {}
        self.stage = "dev"
        self._moto: JournaledMotoServer | None = None
        self._moto_endpoint: str | None = None
        self._front: ApiFront | None = None
        self._lock_fd: int | None = None
        self._boto_session: boto3.session.Session | None = None
        self._started = False

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Bring everything up; on any failure, tear down what started and re-raise.

        Raises:
            RuntimeError: already started.
            DataDirInUse: another stack runs on ``data_dir`` (checked first: nothing is
                touched).
            TemplateError: the template cannot be turned into local resources.
            JournalError: the AWS journal is corrupt (see ``reset_journal``).
            OSError: the HTTP port is taken (checked before the data dir is wiped, restored
                or migrated).
            Exception: a handler module failed to import, or the database setup failed.
        """
        if self._started:
            raise RuntimeError("local stack already started")
        self._started = True
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        # First the data dir's lock, then the HTTP port (the front's listening socket): a stack
        # that cannot run must not wipe, compact or migrate what a running one uses.
        self._lock_fd = lock_data_dir(self.data_dir)
        self._front = ApiFront(
            Router([]),
            host=self.host,
            port=self.port,
            stage=self.stage,
            account_id=ACCOUNT_ID,
            log_requests=self.log_requests,
            on_request=self.on_request,
        )
        if self.reset or self.reset_journal:
            self._wipe()
        prestart_environments()  # the zygote's imports run beside moto's start and migrations
        self._moto = JournaledMotoServer(self.journal_path, host=self.aws_host, port=0)
        self._moto.start()
        moto_host, moto_port = self._moto.get_host_and_port()
        self._moto_endpoint = f"http://{moto_host}:{moto_port}"

        resolver = Resolver(
            self.template,
            parameter_overrides=self.parameter_overrides,
            pseudo_parameters={
                "AWS::Region": REGION,
                "AWS::AccountId": ACCOUNT_ID,
                "AWS::Partition": "aws",
                "AWS::URLSuffix": "amazonaws.com",
                "AWS::StackName": self.stack_name,
                "AWS::StackId": (
                    f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{self.stack_name}/local"
                ),
                "AWS::NotificationARNs": [],
            },
        )
        specs = self.template.functions()
        for spec in specs:
            name = f"{self.stack_name}-{spec.logical_id}"
            resolver.refs[spec.logical_id] = name
            resolver.attributes[(spec.logical_id, "Arn")] = (
                f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"
            )
        for api_id, api in self.template.resources_of_type("AWS::Serverless::Api").items():
            resolver.refs[api_id] = "local"
            stage = (api.get("Properties") or {}).get("StageName", "dev")
            self.stage = str(resolver.resolve(stage))
        if self.throttle_enabled:
            self.stage_throttle = StageThrottle(method_throttles(self.template, resolver))
            self._front.throttle = self.stage_throttle

        self.resources = provision(
            self.template,
            resolver,
            sqs=self._sqs_client(),
            dynamodb=self._dynamodb_client(),
            stack_name=self.stack_name,
        )
        # Before any handler or poller runs: nothing else talks to moto yet.
        self.restored = self._moto.restore()

        if self.prepare_database:
            self._prepare_database()

        for spec in specs:
            declared = function_environment(spec, resolver)
            environment = self._handler_environment(declared)
            self.environments[spec.logical_id] = environment
            self._declared[spec.logical_id] = list(declared)  # sam local invokes any function
            if not spec.api_routes and not spec.sqs_sources:
                continue  # nothing here invokes it (the migrations' custom resource)
            self.functions[spec.logical_id] = LocalFunction(
                spec=spec,
                root=self.root,
                function_name=f"{self.stack_name}-{spec.logical_id}",
                region=REGION,
                account_id=ACCOUNT_ID,
                environment=environment,
                max_environments=self._environment_count(spec),
                log_sink=self.log_sink,
            )

        if self.sam_env_vars_path is not None:
            write_sam_env_vars(self.sam_env_vars_path, self.sam_env_vars())
        self._prewarm()

        routes = [
            (route, _api_invoker(function))
            for function in self.functions.values()
            for route in function.spec.api_routes
        ]
        self._front.router = Router(routes)
        self._front.stage = self.stage
        self._front.start()

        by_arn = self.resources.queue_url_by_arn
        for function in self.functions.values():
            for source in function.spec.sqs_sources:
                if not source.enabled:
                    continue
                arn = resolver.resolve(source.queue)
                if arn not in by_arn:
                    raise TemplateError(
                        f"{function.logical_id}.Events.{source.event}: queue {arn!r} "
                        "is not a queue of this template"
                    )
                invoke: SqsInvoker = function.invoke
                if self.lambda_endpoint is not None:
                    invoke = lambda_invoker(self.lambda_endpoint, function.logical_id)
                poller = SqsPoller(
                    sqs=self._sqs_client(),
                    queue_url=by_arn[arn],
                    queue_arn=arn,
                    invoke=invoke,
                    batch_size=source.batch_size,
                    batching_window_seconds=source.batching_window_seconds,
                    report_batch_item_failures=source.report_batch_item_failures,
                    region=REGION,
                    name=f"{function.logical_id}.{source.event}",
                )
                poller.start()
                self.pollers[poller.name] = poller
        logger.info("local stack up: %s (AWS at %s)", self.url, self._moto_endpoint)

    def stop(self) -> None:
        """Stop the HTTP front (no new request is accepted; requests in progress get up to
        5 s), then the pollers (a batch in progress may run up to its function's ``Timeout``,
        at most :data:`_POLLER_STOP_SECONDS`; :meth:`abort` from another thread cuts that
        short), every execution environment (no process is left behind) and moto (its
        memory is reset; the journal keeps what was accepted).

        Safe to call more than once, and after a failed :meth:`start`.
        """
        if self._front is not None:
            self._front.stop()
            self._front = None
        pollers = list(self.pollers.values())
        for poller in pollers:
            poller.request_stop()
        for poller in pollers:
            poller.stop(timeout=_POLLER_STOP_SECONDS)
        self.pollers = {}
        for function in self.functions.values():
            function.shutdown()  # every environment of every function exits in parallel
        for function in self.functions.values():
            function.stop()
        self.functions = {}
        if self._moto is not None:
            if self._moto_endpoint is not None:
                _reset_moto(self._moto_endpoint)
            self._moto.stop()
            self._moto = None
            self._moto_endpoint = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # frees the data dir's lock
            self._lock_fd = None
        self._started = False

    def abort(self) -> None:
        """Make a :meth:`stop` in progress fast: pollers stop polling and every execution
        environment is killed now (an invocation in progress ends ``Runtime.ExitError``; its
        messages stay in their queue and come back after a restart). Call it from another
        thread than the one in :meth:`stop` (the CLI does, on a second Ctrl-C); :meth:`stop`
        still has to run (it reaps and closes everything)."""
        for poller in list(self.pollers.values()):
            poller.request_stop()
        for function in list(self.functions.values()):
            function.kill()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what it serves --------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of the HTTP front, e.g. ``http://127.0.0.1:3000``.

        Raises:
            RuntimeError: not started.
        """
        if self._front is None:
            raise RuntimeError("local stack not started")
        return self._front.url

    @property
    def moto_endpoint(self) -> str:
        """The moto server's URL (``AWS_ENDPOINT_URL``).

        Raises:
            RuntimeError: not started.
        """
        if self._moto_endpoint is None:
            raise RuntimeError("local stack not started")
        return self._moto_endpoint

    def sam_env_vars(self) -> dict[str, dict[str, str]]:
        """The ``sam local invoke|start-api|start-lambda --env-vars`` document for this stack:
        logical id -> the variables the template declares for that function (Globals + its
        own), with this stack's values: ``AWS_ENDPOINT_URL`` (moto), the table names and queue
        URLs, ``SMS_GATEWAY_AUTH_MODE=local``, the short retry delays. SAM passes a function
        only the variables its template declares, so nothing else is written.

        The SQL functions reach the database the way a deployed stack does (the template
        declares no DSN): ``SMS_GATEWAY_DB_ENGINE`` / ``HOST`` / ``PORT`` / ``NAME`` from the
        stack's DSN, and ``SMS_GATEWAY_DB_SECRET_ARN`` naming a secret in the stack's moto
        that holds the DSN's user name and password (``DB_TLS=false``: a local server has no
        RDS certificate). A SQLite DSN leaves them empty: a file is not reachable from the
        functions' containers.

        Raises:
            RuntimeError: not started.
        """
        if not self._declared:
            raise RuntimeError("local stack not started")
        database = self._sam_database()
        return {
            logical_id: {
                name: database.get(name, self.environments[logical_id][name]) for name in names
            }
            for logical_id, names in self._declared.items()
        }

    def _sam_database(self) -> dict[str, str]:
        """The ``SMS_GATEWAY_DB_*`` values of :meth:`sam_env_vars` (empty for SQLite)."""
        import json

        from sqlalchemy.engine import make_url

        url = make_url(self.dsn)
        engine = url.get_backend_name()
        if engine not in ("postgresql", "mysql"):
            return {}
        client = self._session().client("secretsmanager", endpoint_url=self.moto_endpoint)
        name = f"{self.stack_name}/database"
        value = json.dumps({"username": url.username or "", "password": url.password or ""})
        try:
            arn = client.create_secret(Name=name, SecretString=value)["ARN"]
        except client.exceptions.ResourceExistsException:
            arn = client.put_secret_value(SecretId=name, SecretString=value)["ARN"]
        return {
            "SMS_GATEWAY_DB_ENGINE": engine,
            "SMS_GATEWAY_DB_HOST": url.host or "",
            "SMS_GATEWAY_DB_PORT": str(url.port or 0),
            "SMS_GATEWAY_DB_NAME": url.database or "",
            "SMS_GATEWAY_DB_SECRET_ARN": arn,
            "SMS_GATEWAY_DB_TLS": "false",
        }

    def demo_commands(self) -> list[str]:
        """The demo curl lines of DESIGN section 10, against this stack's URL."""
        base = self.url
        for wildcard in ("0.0.0.0", "[::]"):  # noqa: S104 - only rewriting a URL for display
            base = base.replace(f"//{wildcard}:", "//127.0.0.1:")
        json_header = "-H 'Content-Type: application/json'"
        return [
            f"curl -sS -X POST {base}/v1/messages {json_header} -H 'X-Tenant-ID: tenant-1' "
            '-H \'Idempotency-Key: demo-1\' -d \'{"to":"+12025550143","body":"hello"}\'',
            f"curl -sS -X POST {base}/v1/messages {json_header} -H 'X-Tenant-ID: tenant-2' "
            "-H 'Idempotency-Key: demo-2' "
            '-d \'{"to":"+12025550144","body":"fail","max_attempts":2}\'',
            f"curl -sS -X POST {base}/v1/receipts {json_header} "
            # the handset time: now (a time before the message was created is refused)
            '-d "{\\"message_id\\":\\"<id-from-send>\\",'
            '\\"delivered_at\\":\\"$(date -u +%Y-%m-%dT%H:%M:%SZ)\\"}"',
            f"curl -sS {base}/v1/messages/<id> -H 'X-Tenant-ID: tenant-1'",
        ]

    def banner(self) -> str:
        """The start-up text: URLs, DSN (password masked), queues, demo commands."""
        commands = self.demo_commands()
        report = self.restored
        restored = (
            f"  ({report.items} item(s), {report.messages} message(s) restored)" if report else ""
        )
        lines = [
            "sms-gateway local stack",
            f"  API          {self.url}  (stage {self.stage}, X-Tenant-ID header = tenant)",
            f"  AWS (moto)   {self.moto_endpoint}",
            *(
                [f"  sam env-vars {self.sam_env_vars_path}"]
                if self.sam_env_vars_path is not None
                else []
            ),
            *(
                [f"  SQS -> sam   {self.lambda_endpoint} (sam local start-lambda)"]
                if self.lambda_endpoint is not None
                else []
            ),
            *(
                [
                    f"  throttle     {s.http_method} {s.resource_path}: {s.rate:g}/s, "
                    f"burst {s.burst} (stage MethodSettings; 429 over it)"
                    for s in self.stage_throttle.settings
                ]
                if self.stage_throttle is not None
                else []
            ),
            f"  AWS journal  {self.journal_path}{restored}",
            f"  SQL          {mask_dsn(self.dsn)}",
        ]
        lines += [f"  table        {name}" for name in self.resources.table_names.values()]
        lines += [f"  queue        {url}" for url in self.resources.queue_urls.values()]
        lines += [
            f"  poller       {name} (batch {poller.batch_size})"
            for name, poller in self.pollers.items()
        ]
        lines += [
            "",
            "Demo flows (tenant-1..7 are seeded; see the README):",
            "  # 1. tenant-1 -> provider-a: sent on attempt 2",
            f"  {commands[0]}",
            "  # 2. tenant-2 -> provider-fail: failed, reason dead_letter",
            f"  {commands[1]}",
            "  # 3. a delivery receipt for message 1: delivered",
            f"  {commands[2]}",
            "  # status of a message",
            f"  {commands[3]}",
        ]
        return "\n".join(lines)

    # -- helpers ---------------------------------------------------------------------------

    def _prewarm(self) -> None:
        """``prewarm`` environments per function, all started in parallel; returns when every
        one is warm or failed (a failure is logged: that function cold-starts on demand)."""
        if not self.prewarm:
            return
        started = time.monotonic()
        local = [
            function
            for function in self.functions.values()
            # with lambda_endpoint, SQS-only functions run in sam local's containers
            if self.lambda_endpoint is None or function.spec.api_routes
        ]
        jobs = [function for function in local for _ in range(self.prewarm)]
        failures: list[str] = []

        def warm(function: LocalFunction) -> None:
            try:
                function.prewarm()
            except Exception as error:  # reported below; the start goes on
                failures.append(f"{function.logical_id}: {error}")

        threads = [
            threading.Thread(target=warm, args=(function,), name=f"prewarm-{function.logical_id}")
            for function in jobs
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for failure in failures:
            logger.error("prewarm failed (cold start on first use): %s", failure)
        logger.info(
            "prewarmed %d environment(s) in %.1f s",
            sum(function.environment_count for function in self.functions.values()),
            time.monotonic() - started,
        )

    def _environment_count(self, spec: FunctionSpec) -> int:
        if (
            isinstance(self.environment_counts, Mapping)
            and spec.logical_id in self.environment_counts
        ):
            return max(1, int(self.environment_counts[spec.logical_id]))
        per_api = (
            DEFAULT_API_ENVIRONMENTS
            if isinstance(self.environment_counts, Mapping)
            else self.environment_counts
        )
        pollers = sum(1 for source in spec.sqs_sources if source.enabled)
        return max(1, (per_api if spec.api_routes else 0) + pollers)

    def _handler_environment(self, template_env: Mapping[str, str]) -> dict[str, str]:
        """One function's variables: its template ones, then the local settings."""
        environment = dict(template_env)
        environment.update(
            {
                "AWS_ENDPOINT_URL": self.moto_endpoint,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
            }
        )
        for key in _TUNABLE:
            if key in os.environ and key in environment:
                environment[key] = os.environ[key]
        environment.update(_LOCAL_FORCED)
        if os.environ.get("PYTHONWARNINGS"):  # the developer's own filters come first
            environment["PYTHONWARNINGS"] = f"{os.environ['PYTHONWARNINGS']},{QUIET_WARNINGS}"
        environment[DSN_VARIABLE] = self.dsn
        for key, default in _LOCAL_DEFAULTS.items():
            environment[key] = os.environ.get(key, default)
        environment.update(self.env_overrides)
        return environment

    def _wipe(self) -> None:
        """``reset``: delete the journal and the default SQLite file (never another DSN);
        ``reset_journal`` alone: the journal only."""
        doomed = [self.journal_path, self.journal_path.with_name(JOURNAL_FILE + ".tmp")]
        if not self.reset:
            for path in doomed:
                path.unlink(missing_ok=True)
            logger.warning("reset: AWS journal %s removed (SQL database kept)", self.journal_path)
            return
        if self.dsn == default_dsn(self.data_dir):
            database = self.data_dir / "sms-gateway.db"
            doomed += [
                database.with_name(database.name + tail)
                for tail in ("", "-wal", "-shm", "-journal")
            ]
        else:
            logger.warning("--reset: the database at %s is kept", mask_dsn(self.dsn))
        for path in doomed:
            path.unlink(missing_ok=True)
        logger.info("reset: AWS journal and local data in %s removed", self.data_dir)

    def _prepare_database(self) -> None:
        # Imported here: only the full product needs them, and they pull in SQLAlchemy/Alembic.
        from sqlalchemy.engine import make_url

        from sms_gateway.storage.demo import seed_demo_policies
        from sms_gateway.storage.schema import run_migrations

        url = make_url(self.dsn)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        run_migrations(self.dsn)
        seed_demo_policies(self.dsn)

    def _session(self) -> boto3.session.Session:
        """The stack's own boto3 session, made once (its clients share the parsed service
        models). Its clients are made one at a time: at start, and by :meth:`sam_env_vars`."""
        if self._boto_session is None:
            self._boto_session = self._new_session()
        return self._boto_session

    def _new_session(self) -> boto3.session.Session:
        import boto3.session

        # moto accepts any credentials; these dummies keep real ones out of local traffic.
        return boto3.session.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's dummy credentials
            region_name=REGION,
        )

    def _sqs_client(self) -> SQSClient:
        return self._session().client("sqs", endpoint_url=self.moto_endpoint)

    def _dynamodb_client(self) -> DynamoDBClient:
        return self._session().client("dynamodb", endpoint_url=self.moto_endpoint)


def write_sam_env_vars(path: Path, document: Mapping[str, Mapping[str, str]]) -> None:
    """Write ``document`` (:meth:`LocalStack.sam_env_vars`) to ``path`` as JSON, readable by
    its owner only (the DSN may carry a password); the directory is created if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        json.dump(document, file, indent=2, sort_keys=True)
        file.write("\n")


class LambdaInvokeError(RuntimeError):
    """``sam local start-lambda`` answered an invocation with an error (``FunctionError``)."""


def lambda_invoker(endpoint: str, function_name: str, *, timeout: float = 300.0) -> SqsInvoker:
    """An :data:`~sms_gateway.local.pollers.SqsInvoker` that invokes ``function_name`` (its
    logical id, as ``sam local start-lambda`` names it) through the Lambda API at ``endpoint``:
    ``lambda.invoke`` (RequestResponse) with the SQS event, the decoded JSON payload returned.
    One attempt, no retry (the poller leaves a failed batch to SQS's redelivery, as Lambda's
    event source mapping does); ``timeout`` seconds per call covers a container's cold start.

    Raises (from the returned callable):
        LambdaInvokeError: the function raised or timed out (``FunctionError`` set).
        botocore.exceptions.BotoCoreError, ClientError: the endpoint did not answer.
    """
    import boto3.session
    from botocore.config import Config

    client = boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - sam local accepts any credentials
        region_name=REGION,
    ).client(
        "lambda",
        endpoint_url=endpoint,
        config=Config(read_timeout=timeout, connect_timeout=10, retries={"total_max_attempts": 1}),
    )
    lock = threading.Lock()  # boto3 clients are thread-safe; one poller per client anyway

    def invoke(event: dict[str, Any]) -> Any:
        with lock:
            answer = client.invoke(
                FunctionName=function_name,
                InvocationType="RequestResponse",
                Payload=json.dumps(event).encode("utf-8"),
            )
        payload = answer["Payload"].read()
        if answer.get("FunctionError"):
            raise LambdaInvokeError(
                f"{function_name}: {answer['FunctionError']}: {payload[:500]!r}"
            )
        return json.loads(payload) if payload else None

    return invoke


def _api_invoker(function: LocalFunction) -> Invoker:
    """Adapts :meth:`LocalFunction.invoke` to the HTTP front's ``(event, request_id)`` call."""

    def invoke(event: dict[str, Any], request_id: str) -> Any:
        return function.invoke(event, request_id)

    return invoke


def _reset_moto(endpoint: str) -> None:
    """Empty moto's (process-global) backends, so a later stack in this process starts clean."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5):  # noqa: S310 - loopback moto server
            pass
    except OSError as error:
        logger.warning("could not reset moto at %s: %s", endpoint, error)
