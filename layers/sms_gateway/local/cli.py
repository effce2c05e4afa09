"""``sms-gateway`` command line: ``sms-gateway local`` runs the local stack; ``migrate``,
``policy``, ``admin replay|stuck``, ``admin tenant ...`` and ``optout list|clear`` are the
operator's commands against a database (and, for tenants, the stack's TenantsTable and API
Gateway usage plans).

::

    sms-gateway local [--host 127.0.0.1] [--port 3000] [--dsn URL] [--data-dir DIR]
                      [--root DIR] [--parameter NAME=VALUE ...] [--environments N]
                      [--prewarm N] [--quiet] [--no-throttle]
                      [--reset | --reset-journal]
                      [--aws-host ADDR] [--sam-env-vars FILE] [--lambda-endpoint URL]

For ``sam local`` (README, "sam local and the local stack"): ``--aws-host`` binds the moto
endpoint to the Docker network's gateway address, where Lambda containers reach it;
``--sam-env-vars`` writes the ``--env-vars`` file; ``--lambda-endpoint`` hands the queues'
batches to ``sam local start-lambda``.

State survives a restart: the SQLite file and the AWS journal (queued messages, idempotency
records) live in --data-dir; ``--reset`` deletes both first (a --dsn database is kept),
``--reset-journal`` the journal only (every SQL database is kept). A corrupt journal stops the
start with a one-line message naming both.

Prints the API URL, the moto endpoint, the DSN and the demo curl lines, then a line
``Local stack ready on http://HOST:PORT`` once it serves, its ``--prewarm`` environments per
function warm. Ctrl-C or SIGTERM stops it (exit 0): the HTTP front first, then the pollers
once their batch is done; a second Ctrl-C/SIGTERM kills the environments at once (a batch cut
short stays queued). No process is left behind either way.
Exit 1 when it cannot start (a one-line message on stderr: the port is taken, another stack
runs on the same --data-dir, ...), 2 on bad arguments. A second stack on a --data-dir in use
is refused before it touches anything there (``--reset`` included).

The log on stdout is for people (:mod:`sms_gateway.local.logview`): one line per request and
per message transition, warnings and errors; EMF metrics go to ``DATA_DIR/metrics.jsonl``.
``--verbose`` adds every raw Powertools line and metric blob, and the stack's INFO logs
(stderr).
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from sms_gateway.local.stack import DEFAULT_API_ENVIRONMENTS, DEFAULT_PREWARM
from sms_gateway.local.template import TemplateError

__all__ = ["build_parser", "configure_logging", "main"]


def _parameter(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 0, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port, 0-65535, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (``local`` subcommand)."""
    parser = argparse.ArgumentParser(
        prog="sms-gateway", description="Multi-tenant SMS gateway: development tools."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    local = commands.add_parser(
        "local",
        help="run the gateway on this machine (moto + HTTP front + SQS pollers, no Docker)",
        description="Run the gateway locally: AWS from moto, each function in processes "
        "of its own (Lambda execution environments).",
    )
    local.add_argument(
        "--host",
        default="127.0.0.1",
        help="HTTP listen address: IPv4, IPv6 (::1) or a name (127.0.0.1)",
    )
    local.add_argument(
        "--port", type=_port, default=3000, help="HTTP port (3000, as sam local; 0 = any free)"
    )
    local.add_argument(
        "--dsn",
        default=None,
        help="SQLAlchemy URL of the message database "
        "(default: $SMS_GATEWAY_MESSAGE_DSN, else SQLite in --data-dir)",
    )
    local.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="directory of the default SQLite file and the AWS journal (default: ./.sms-gateway)",
    )
    local.add_argument(
        "--reset",
        action="store_true",
        help="start clean: delete the AWS journal and the default SQLite file in --data-dir",
    )
    local.add_argument(
        "--reset-journal",
        action="store_true",
        help="delete the AWS journal only (queued messages and idempotency records are lost; "
        "the SQL database is kept)",
    )
    local.add_argument(
        "--root",
        type=Path,
        default=None,
        help="repository root holding template.yaml (default: found from the cwd upwards)",
    )
    local.add_argument(
        "--parameter",
        "-P",
        type=_parameter,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="template parameter override, e.g. -P MaxReceiveCount=2 (repeatable)",
    )
    local.add_argument(
        "--environments",
        type=_positive,
        default=DEFAULT_API_ENVIRONMENTS,
        metavar="N",
        help="execution environments (processes) per API function, i.e. its concurrent "
        f"invocations ({DEFAULT_API_ENVIRONMENTS}); SQS functions get one per poller",
    )
    local.add_argument(
        "--prewarm",
        type=_count,
        default=DEFAULT_PREWARM,
        metavar="N",
        help="execution environments started per function before the stack is ready, in "
        f"parallel, like Lambda's provisioned concurrency ({DEFAULT_PREWARM}; 0: cold starts "
        "on first use)",
    )
    local.add_argument(
        "--aws-host",
        default="127.0.0.1",
        metavar="ADDR",
        help="address the AWS endpoint (moto) listens on (127.0.0.1); for sam local, the "
        "gateway address of the Docker network its containers join (docker network inspect)",
    )
    local.add_argument(
        "--sam-env-vars",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the `sam local ... --env-vars FILE` JSON here: per function, its template "
        "variables with this stack's values (endpoint, table, queue URLs, DSN)",
    )
    local.add_argument(
        "--lambda-endpoint",
        default=None,
        metavar="URL",
        help="invoke the SQS functions (sender, DLQ) through `sam local start-lambda` at URL "
        "(e.g. http://127.0.0.1:3001) instead of in this process",
    )
    local.add_argument("--quiet", action="store_true", help="no access log lines")
    local.add_argument(
        "--no-throttle",
        dest="throttle",
        action="store_false",
        help="do not emulate the stage's method throttling (by default the receipts routes "
        "answer 429 over ReceiptsRateLimit/ReceiptsBurstLimit, as API Gateway does)",
    )
    local.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="show the functions' raw JSON log lines and EMF metrics too, and INFO logs",
    )
    _add_admin_commands(commands)
    _add_operations_commands(commands)
    _add_optout_commands(commands)
    return parser


def configure_logging(*, verbose: bool) -> None:
    """The console log of ``sms-gateway local`` (stderr): WARNING and up, INFO with
    ``verbose``. Framework chatter stays off: moto's per-request lines (werkzeug), and
    waitress's warnings, which describe load rather than faults ("Task queue depth is N":
    requests of a burst waiting for a worker thread; "total open connections reached the
    connection limit"); waitress's errors still show, and ``verbose`` shows its warnings."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request log
    logging.getLogger("waitress").setLevel(logging.WARNING if verbose else logging.ERROR)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


def _run_local(args: argparse.Namespace) -> int:
    from sms_gateway.local.http_front import RequestLog
    from sms_gateway.local.journal import JournalError
    from sms_gateway.local.logview import METRICS_FILE, LogView
    from sms_gateway.local.stack import DataDirInUse, LocalStack, find_root, mask_dsn

    configure_logging(verbose=args.verbose)

    stopping = threading.Event()
    stack: LocalStack | None = None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # The first Ctrl-C/SIGTERM stops in order (front, pollers after their batch, ...);
        # the next one kills the environments, from a thread of its own (this handler runs
        # in the main thread, in the middle of stop()).
        if not stopping.is_set():
            stopping.set()
            return
        print("Forcing the stop: killing the functions' environments", file=sys.stderr)
        if stack is not None:
            threading.Thread(target=stack.abort, name="abort", daemon=True).start()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    data_dir = (args.data_dir or Path.cwd() / ".sms-gateway").resolve()
    metrics_path = data_dir / METRICS_FILE
    view = LogView(sys.stdout, metrics_path=metrics_path, verbose=args.verbose)

    def on_request(entry: RequestLog) -> None:
        view.request(
            entry.method, entry.path, entry.status, entry.latency_ms, entry.request_id, entry.tenant
        )

    try:
        stack = LocalStack(
            args.root or find_root(),
            host=args.host,
            port=args.port,
            dsn=args.dsn,
            data_dir=args.data_dir,
            parameter_overrides=dict(args.parameter),
            log_requests=not args.quiet,
            environments=args.environments,
            reset=args.reset,
            reset_journal=args.reset_journal,
            prewarm=args.prewarm,
            log_sink=view.feed,
            on_request=on_request if not args.quiet else None,
            aws_host=args.aws_host,
            sam_env_vars=args.sam_env_vars.resolve() if args.sam_env_vars else None,
            lambda_endpoint=args.lambda_endpoint,
            throttle=args.throttle,
        )
        stack.start()
        print(stack.banner(), flush=True)
        print(f"  metrics      {metrics_path} (EMF, one blob a line)", flush=True)
        print(f"Local stack ready on {stack.url}", flush=True)
        while not stopping.wait(0.5):
            pass
        print(
            "Stopping local stack (a running batch may take up to a minute; Ctrl-C again to force)",
            file=sys.stderr,
            flush=True,
        )
        return 0
    except (FileNotFoundError, TemplateError, OSError, DataDirInUse, JournalError) as error:
        hint = " (pick another port: --port N, or make run ARGS='--port N')"
        in_use = isinstance(error, OSError) and error.errno == errno.EADDRINUSE
        print(
            f"sms-gateway local: cannot start: {error}{hint if in_use else ''}",
            file=sys.stderr,
            flush=True,
        )
        return 1
    except Exception as error:
        # the database of --dsn cannot be reached or migrated (missing database, no server,
        # refused login): one line, as for the other start-up failures, not a traceback
        from sqlalchemy.exc import DBAPIError

        if not isinstance(error, DBAPIError):
            raise
        reason = str(error.orig if error.orig is not None else error).strip().splitlines()[0]
        print(
            f"sms-gateway local: cannot start: the SQL database "
            f"{mask_dsn(stack.dsn if stack else str(args.dsn))} is not usable: {reason} "
            "(it must exist and accept the login; see --dsn in the README)",
            file=sys.stderr,
            flush=True,
        )
        return 1
    finally:
        if stack is not None:
            stack.stop()
        view.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _add_admin_commands(commands: Any) -> None:
    dsn_help = "database URL (default: $SMS_GATEWAY_MESSAGE_DSN)"
    migrate = commands.add_parser(
        "migrate",
        help="apply the Alembic migrations to a database (run before the first deploy)",
        description="Upgrade the message database to the newest schema.",
    )
    migrate.add_argument("--dsn", default=None, help=dsn_help)
    policy = commands.add_parser(
        "policy",
        help="create or replace a tenant's route policy",
        description=(
            "Write a tenant route policy; every provider it names must be declared "
            "(SMS_GATEWAY_PROVIDERS, or the demo simulators with "
            "SMS_GATEWAY_DEMO_PROVIDERS=true). Examples: "
            'direct \'{"default_provider": "provider-b"}\'; '
            "failover "
            '\'{"providers": [{"provider": "provider-fail"}, {"provider": "provider-b"}]}\''
        ),
    )
    policy.add_argument("tenant_id")
    policy.add_argument("strategy", choices=["direct", "weighted", "failover"])
    policy.add_argument("payload", help="the policy's JSON payload")
    policy.add_argument("--dsn", default=None, help=dsn_help)


def _add_operations_commands(commands: Any) -> None:
    """``sms-gateway admin replay|stuck``: :mod:`sms_gateway.services.admin`, as the
    AdminFunction runs it."""
    dsn_help = "database URL (default: $SMS_GATEWAY_MESSAGE_DSN)"
    admin = commands.add_parser(
        "admin",
        help="operate on messages (replay dead letters, list stuck messages) and tenants",
        description="Operator commands (the AdminFunction runs the same code).",
    )
    sub = admin.add_subparsers(dest="admin_command", required=True, metavar="ADMIN_COMMAND")
    replay = sub.add_parser(
        "replay",
        help="replay dead letters as a new generation of their messages",
        description=(
            "Replay dead letters not replayed yet (every criterion given must hold; at least "
            "one). Each failed message goes back to queued with --attempts more attempts and "
            "a new SendQueue record; the dead letter is kept, marked replayed. A message that "
            "is no longer failed is skipped. Prints a JSON report."
        ),
    )
    replay.add_argument("--message-id", default=None)
    replay.add_argument("--tenant", dest="tenant_id", default=None)
    replay.add_argument("--reason", default=None, help="a reason code, e.g. dead_letter")
    replay.add_argument("--since", default=None, help="RFC 3339, e.g. 2026-11-30T00:00:00Z")
    replay.add_argument("--until", default=None, help="RFC 3339 (exclusive)")
    replay.add_argument(
        "--attempts", type=_positive, default=1, help="attempts granted (1..maxReceiveCount)"
    )
    replay.add_argument("--limit", type=_positive, default=100, help="dead letters at most")
    replay.add_argument("--dsn", default=None, help=dsn_help)
    replay.add_argument(
        "--queue-url", default=None, help="SendQueue URL (default: $SMS_GATEWAY_SEND_QUEUE_URL)"
    )
    stuck = sub.add_parser(
        "stuck",
        help="list messages in a state for longer than a duration",
        description="Messages in --state since longer than --older-than (90s, 15m, 2h, 1d).",
    )
    stuck.add_argument("--state", required=True)
    stuck.add_argument("--older-than", required=True)
    stuck.add_argument("--limit", type=_positive, default=100)
    stuck.add_argument("--json", action="store_true", help="print the JSON answer")
    stuck.add_argument("--dsn", default=None, help=dsn_help)
    stuck.add_argument("--queue-url", default=None, help=argparse.SUPPRESS)
    _add_tenant_commands(sub)


def _add_tenant_commands(sub: Any) -> None:
    """``sms-gateway admin tenant ...``: :mod:`sms_gateway.services.admin`'s ``tenant_*``
    commands, as the AdminFunction runs them."""
    tenant = sub.add_parser(
        "tenant",
        help="tenants: create, adopt a key, add/revoke keys, set quota and policy, list, show",
        description=(
            "Tenant records (TenantsTable), their usage plans and API keys (API Gateway), "
            "their route policies (SQL). Needs AWS credentials and AWS_REGION; the table, API "
            "and stage come from the flags or SMS_GATEWAY_TENANTS_TABLE, SMS_GATEWAY_API_ID, "
            "SMS_GATEWAY_API_STAGE (the stack's outputs TenantsTableName, the API id of "
            "ApiUrl, the Stage parameter). Prints JSON."
        ),
    )
    tsub = tenant.add_subparsers(dest="tenant_command", required=True, metavar="TENANT_COMMAND")

    def common(parser: argparse.ArgumentParser, *, dsn: bool = False) -> None:
        parser.add_argument("--table", default=None, help="default: $SMS_GATEWAY_TENANTS_TABLE")
        parser.add_argument("--api-id", default=None, help="default: $SMS_GATEWAY_API_ID")
        parser.add_argument("--stage", default=None, help="default: $SMS_GATEWAY_API_STAGE")
        if dsn:
            parser.add_argument(
                "--dsn", default=None, help="database URL (default: $SMS_GATEWAY_MESSAGE_DSN)"
            )

    def limits(parser: argparse.ArgumentParser, *, required: bool) -> None:
        parser.add_argument(
            "--rate", type=float, required=required, help="requests per second (steady)"
        )
        parser.add_argument("--burst", type=int, required=required, help="requests at once")
        parser.add_argument("--quota", type=int, required=required, help="requests per UTC day")

    create = tsub.add_parser(
        "create", help="a new tenant, its usage plan and first API key (value shown once)"
    )
    create.add_argument("name")
    create.add_argument("--tenant-id", default=None, help="default: a new t-... id")
    limits(create, required=False)
    common(create)
    adopt = tsub.add_parser(
        "adopt",
        help="an existing API key becomes a tenant whose id is the key id (keeps its data)",
    )
    adopt.add_argument("key_id")
    adopt.add_argument("name")
    limits(adopt, required=False)
    common(adopt)
    key = tsub.add_parser("key", help="add or revoke a tenant's API key")
    ksub = key.add_subparsers(dest="key_command", required=True, metavar="KEY_COMMAND")
    add = ksub.add_parser("add", help="another API key for the tenant (value shown once)")
    add.add_argument("tenant_id")
    common(add)
    revoke = ksub.add_parser("revoke", help="revoke one of the tenant's API keys")
    revoke.add_argument("tenant_id")
    revoke.add_argument("key_id")
    common(revoke)
    quota = tsub.add_parser("quota", help="set the tenant's throttle and daily quota")
    quota.add_argument("tenant_id")
    limits(quota, required=True)
    common(quota)
    policy = tsub.add_parser("policy", help="set the tenant's route policy")
    policy.add_argument("tenant_id")
    policy.add_argument("strategy", choices=["direct", "weighted", "failover"])
    policy.add_argument("payload", help="the policy's JSON payload")
    common(policy, dsn=True)
    listing = tsub.add_parser("list", help="every tenant")
    common(listing)
    show = tsub.add_parser("show", help="one tenant and its keys")
    show.add_argument("tenant_id")
    common(show)


def _add_optout_commands(commands: Any) -> None:
    """``sms-gateway optout list|clear``: the numbers recorded as opted out (a provider
    answered ``opted_out``); sends to them fail at once until cleared."""
    dsn_help = "database URL (default: $SMS_GATEWAY_MESSAGE_DSN)"
    optout = commands.add_parser(
        "optout",
        help="list or clear numbers recorded as opted out",
        description=(
            "A provider's opted_out answer records the number for the message's tenant and "
            "sender ID; later sends to it fail with reason opted_out without a provider call "
            "until cleared here (after the recipient opted back in, e.g. replied START)."
        ),
    )
    sub = optout.add_subparsers(dest="optout_command", required=True, metavar="OPTOUT_COMMAND")
    listing = sub.add_parser("list", help="list opted-out numbers (newest first, JSON)")
    listing.add_argument("--tenant", dest="tenant_id", default=None)
    listing.add_argument("--number", default=None, help="E.164, e.g. +14155550100")
    listing.add_argument("--limit", type=_positive, default=100)
    listing.add_argument("--dsn", default=None, help=dsn_help)
    clear = sub.add_parser("clear", help="clear a tenant's opt-out of a number")
    clear.add_argument("tenant_id")
    clear.add_argument("number", help="E.164, e.g. +14155550100")
    clear.add_argument(
        "--sender-id",
        default=None,
        help="only this sender ID's entry ('' for messages without one; default: all)",
    )
    clear.add_argument("--dsn", default=None, help=dsn_help)


def _run_optout(args: argparse.Namespace) -> int:
    from sms_gateway.storage.engine import make_engine
    from sms_gateway.storage.opt_outs import SqlOptOutStore
    from sms_gateway.storage.sql import Database

    engine = make_engine(_dsn(args))
    try:
        store = SqlOptOutStore(Database(engine))
        if args.optout_command == "list":
            entries = store.list(args.tenant_id, args.number, args.limit)
            print(json.dumps({"opt_outs": entries}, indent=2))
            return 0
        cleared = store.clear(args.tenant_id, args.number, args.sender_id)
    finally:
        engine.dispose()
    print(json.dumps({"tenant_id": args.tenant_id, "number": args.number, "cleared": cleared}))
    return 0 if cleared else 1


def _run_operations(args: argparse.Namespace) -> int:
    from sms_gateway.adapters.sqs import SqsMessageQueue
    from sms_gateway.services.admin import AdminError, run_command
    from sms_gateway.services.operations import MessageOperations
    from sms_gateway.services.ports import NullMetrics
    from sms_gateway.storage.engine import make_engine
    from sms_gateway.storage.operations import SqlOperationsStore
    from sms_gateway.storage.repository import MessageRepository
    from sms_gateway.storage.sql import Database

    if args.admin_command == "replay":
        command: dict[str, Any] = {"command": "replay", "attempts": args.attempts}
        for name in ("message_id", "tenant_id", "reason", "since", "until"):
            if getattr(args, name) is not None:
                command[name] = getattr(args, name)
        command["limit"] = args.limit
    else:
        command = {
            "command": "stuck",
            "state": args.state,
            "older_than": args.older_than,
            "limit": args.limit,
        }
    dsn = _dsn(args)
    queue_url = args.queue_url or os.environ.get("SMS_GATEWAY_SEND_QUEUE_URL", "")
    queue = None
    if args.admin_command == "replay" and queue_url:
        import boto3

        region = _queue_region(queue_url)
        queue = SqsMessageQueue(boto3.client("sqs", region_name=region), queue_url, "")
    max_budget = _positive(os.environ.get("SMS_GATEWAY_MAX_RECEIVE_COUNT", "3"))
    from sms_gateway.observability import logger

    level = logger.log_level
    logger.setLevel(logging.WARNING)  # the services' JSON lines would mix with the answer
    engine = make_engine(dsn)
    try:
        database = Database(engine)
        operations = MessageOperations(
            messages=MessageRepository(database),
            operations=SqlOperationsStore(database),
            queue=queue,
            metrics=NullMetrics(),
            clock=lambda: datetime.now(UTC),
            max_budget=max_budget,
        )
        answer = run_command(command, operations, datetime.now(UTC))
    except AdminError as exc:
        print(f"sms-gateway admin {args.admin_command}: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
        logger.setLevel(level)
    if args.admin_command == "stuck" and not args.json:
        print("message_id  tenant  status  since  age  attempts")
        for m in answer["messages"]:
            print(
                f"{m['message_id']}  {m['tenant_id']}  {m['status']}  {m['since']}  "
                f"{m['age_seconds']}s  {m['attempts']}/{m['max_attempts']}"
            )
        return 0
    print(json.dumps(answer, indent=2))
    return 1 if answer.get("failed") else 0  # a replay the queue refused is not a success


def _tenant_command(args: argparse.Namespace) -> dict[str, Any]:
    """The ``tenant_*`` command object of ``sms-gateway admin tenant ...``."""
    name = args.tenant_command
    if name == "key":
        name = f"key_{args.key_command}"
    command: dict[str, Any] = {"command": f"tenant_{name}"}
    for field in ("name", "tenant_id", "key_id", "strategy"):
        if getattr(args, field, None) is not None:
            command[field] = getattr(args, field)
    for flag, field in (("rate", "rate_limit"), ("burst", "burst_limit"), ("quota", "daily_quota")):
        if getattr(args, flag, None) is not None:
            command[field] = getattr(args, flag)
    if name == "policy":
        try:
            command["payload"] = json.loads(args.payload)
        except json.JSONDecodeError as exc:
            raise SystemExit(
                f"sms-gateway admin tenant policy: payload is not JSON: {exc}"
            ) from None
    return command


def _run_tenant(args: argparse.Namespace) -> int:
    """``sms-gateway admin tenant ...``: the AdminFunction's code, with clients built here."""
    from sms_gateway.adapters.apigateway_plans import ApiGatewayUsagePlans
    from sms_gateway.adapters.aws import apigateway_client, dynamodb_client
    from sms_gateway.adapters.dynamodb_tenants import DynamoDbTenantStore
    from sms_gateway.services.admin import AdminError, run_command
    from sms_gateway.services.tenants import TenantAdmin

    command = _tenant_command(args)
    table = args.table or os.environ.get("SMS_GATEWAY_TENANTS_TABLE", "")
    api_id = args.api_id or os.environ.get("SMS_GATEWAY_API_ID", "")
    stage = args.stage or os.environ.get("SMS_GATEWAY_API_STAGE", "")
    missing = [
        flag
        for flag, value in (("--table", table), ("--api-id", api_id), ("--stage", stage))
        if not value
    ]
    if missing:
        print(
            f"sms-gateway admin tenant: give {', '.join(missing)} (or SMS_GATEWAY_TENANTS_TABLE, "
            "SMS_GATEWAY_API_ID, SMS_GATEWAY_API_STAGE)",
            file=sys.stderr,
        )
        return 2
    if not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
        print("sms-gateway admin tenant: set AWS_REGION to the stack's region", file=sys.stderr)
        return 2
    engine = None
    write_policy = None
    providers = None
    if command["command"] == "tenant_policy":
        from sms_gateway.storage.engine import make_engine
        from sms_gateway.storage.policies import SqlPolicyStore

        providers = _declared_providers()
        if providers is None:
            return 2
        engine = make_engine(_dsn(args))
        write_policy = SqlPolicyStore(engine).put
    admin = TenantAdmin(
        DynamoDbTenantStore(dynamodb_client(), table),
        ApiGatewayUsagePlans(apigateway_client(), api_id, stage),
        lambda: datetime.now(UTC),
        write_policy=write_policy,
        providers=providers,
    )
    try:
        answer = run_command(command, None, datetime.now(UTC), tenants=lambda: admin)
    except AdminError as exc:
        print(f"sms-gateway admin tenant {args.tenant_command}: {exc}", file=sys.stderr)
        return 2
    finally:
        if engine is not None:
            engine.dispose()
    print(json.dumps(answer, indent=2))
    return 0


def _queue_region(queue_url: str) -> str:
    """The SendQueue's region: ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, else the one an AWS
    queue URL names (``https://sqs.<region>.amazonaws.com/...``).

    Raises:
        SystemExit: neither gives one (a local queue URL and no region set).
    """
    import re

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        return region
    found = re.match(r"https://sqs\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?/", queue_url)
    if found:
        return found.group(1)
    raise SystemExit(
        "sms-gateway admin replay: set AWS_REGION to the queue's region "
        "(the local stack's is us-east-1)"
    )


def _dsn(args: argparse.Namespace) -> str:
    dsn = args.dsn or os.environ.get("SMS_GATEWAY_MESSAGE_DSN", "")
    if not dsn:
        raise SystemExit("sms-gateway: give --dsn or set SMS_GATEWAY_MESSAGE_DSN")
    return str(dsn)


def _declared_providers() -> list[str] | None:
    """The provider names the deployment declares (the functions' ``SMS_GATEWAY_PROVIDERS``
    and ``SMS_GATEWAY_DEMO_PROVIDERS``, read from this environment); None after printing
    why the settings are invalid."""
    from sms_gateway.wiring import SettingsError, settings

    settings.cache_clear()
    try:
        return settings().provider_names
    except SettingsError as exc:
        print(f"sms-gateway: {exc}", file=sys.stderr)
        return None
    finally:
        settings.cache_clear()


def _run_admin(args: argparse.Namespace) -> int:
    from sms_gateway.domain.routing import InvalidRoutePolicy, parse_policy
    from sms_gateway.local.stack import mask_dsn
    from sms_gateway.storage.engine import make_engine
    from sms_gateway.storage.repository import RoutePolicyRepository
    from sms_gateway.storage.schema import run_migrations

    dsn = _dsn(args)
    if args.command == "migrate":
        run_migrations(dsn)
        print(f"migrated {mask_dsn(dsn)} to the newest schema")
        return 0
    try:
        payload = json.loads(args.payload)
    except json.JSONDecodeError as exc:
        print(f"sms-gateway: payload is not JSON: {exc}", file=sys.stderr)
        return 2
    try:
        policy = parse_policy(args.tenant_id, args.strategy, payload)
    except InvalidRoutePolicy as exc:
        print(f"sms-gateway: invalid policy: {exc}", file=sys.stderr)
        return 2
    known = _declared_providers()
    if known is None:
        return 2
    unknown = sorted(set(policy.providers) - set(known))
    if unknown:
        print(
            f"sms-gateway: unknown provider(s) {', '.join(unknown)}; the deployment declares "
            f"{', '.join(known) or 'none'} (SMS_GATEWAY_PROVIDERS, SMS_GATEWAY_DEMO_PROVIDERS)",
            file=sys.stderr,
        )
        return 2
    engine = make_engine(dsn)
    try:
        version = RoutePolicyRepository(engine).put(
            args.tenant_id, args.strategy, payload, datetime.now(UTC)
        )
    except InvalidRoutePolicy as exc:
        print(f"sms-gateway: invalid policy: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print(f"tenant {args.tenant_id}: {args.strategy} policy, version {version}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sms-gateway`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "local":
        return _run_local(args)
    if args.command == "admin" and args.admin_command == "tenant":
        return _run_tenant(args)
    if args.command == "admin":
        return _run_operations(args)
    if args.command == "optout":
        return _run_optout(args)
    return _run_admin(args)


if __name__ == "__main__":
    sys.exit(main())
