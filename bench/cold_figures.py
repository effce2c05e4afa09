"""Cold-start figures of the four functions, from the ``sam build`` output (issue 6, item 8).

Each figure is measured in fresh interpreters set up as Lambda's python3.12 runtime sets one
up: the function's build directory (``/var/task``) then the layer's ``python/``
(``/opt/python``) on ``PYTHONPATH``, no bytecode written (both are read-only in Lambda, so
what is not compiled at build time is compiled at every cold start), ``-S`` so that nothing
outside the build output can be imported (Lambda does not process ``.pth`` files in
``/opt/python`` either), and the environment Lambda gives a function with
``Tracing: Active``: ``LAMBDA_TASK_ROOT`` (Powertools traces only where it is set),
``AWS_XRAY_CONTEXT_MISSING=LOG_ERROR``, ``AWS_XRAY_DAEMON_ADDRESS``, the template's Globals
(``POWERTOOLS_*``) and ``AWS_XRAY_SDK_ENABLED`` unset, as Lambda leaves it (the SDK's default
is enabled). Tracing off adds ``POWERTOOLS_TRACE_DISABLED=true``.

Figures, each the median of ``--pairs`` interleaved pairs (for round i: the baseline then the
function, reversed every other round, so that drift in the machine's load hits both sides):

- cold import: seconds of ``import app`` (the handler module Lambda imports at init) beside a
  baseline (``import boto3`` for the API functions, ``import boto3, sqlalchemy, pg8000`` for
  the SQL ones) and the ratio of the two medians, with the issue's goal where it has one;
- first request: ``import app`` plus one invocation with a sample event from ``events/``
  (AWS endpoints and the database point at a closed local port, so no network time is in it;
  the request fails fast with a 503 or a batch item failure). This is what the imports
  deferred to the first request cost: a cold start pays import plus first request.

Times are wall-clock seconds measured inside the interpreter (``time.perf_counter``, so the
interpreter's own start is left out) and process CPU seconds (``time.process_time``, less
sensitive to other processes on a shared machine). ``--breakdown`` prints what each import
of each function costs (``python -X importtime``, median over the runs).

Usage: ``python -m bench.cold_figures [--pairs N] [--breakdown] [--build DIR]``; ``make
bench`` runs it after ``make build`` (through :mod:`bench.bench`).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / ".aws-sam" / "build"

BOTO3 = "import boto3"
BOTO3_SQL = "import boto3, sqlalchemy, pg8000"


@dataclass(frozen=True)
class Function:
    """One function's figures: its baseline statement, goal (ratio, None: reported only) and
    the sample event of its first request (a file in ``events/``)."""

    logical_id: str
    baseline: str
    goal: float | None
    event: str


FUNCTIONS = (
    Function("IngestFunction", BOTO3, 1.3, "ingest-post-message.json"),
    Function("SenderFunction", BOTO3_SQL, 1.3, "sender-batch.json"),
    Function("StatusFunction", BOTO3_SQL, None, "status-get-message.json"),
    Function("DlqFunction", BOTO3_SQL, None, "dlq-batch.json"),
)

# Nothing listens here: AWS calls and the database fail at once, without network time.
CLOSED_PORT = "http://127.0.0.1:9"
MARKER = "@@ first request"
TRACE_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"

TIMED = """
import time
wall, cpu = time.perf_counter(), time.process_time()
{statement}
print(time.perf_counter() - wall, time.process_time() - cpu)
"""
FIRST_REQUEST = """
import json, sys
import app
sys.stderr.write("{marker}\\n")

class Context:
    function_name = {name!r}
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + {name!r}
    aws_request_id = "bench-1"
    def get_remaining_time_in_millis(self):
        return 10_000

with open({event!r}) as f:
    app.lambda_handler(json.load(f), Context())
"""


def first_request(fn: Function) -> str:
    """Python code: ``import app``, then one invocation with ``fn``'s sample event."""
    event = str(ROOT / "events" / fn.event)
    return FIRST_REQUEST.format(name=fn.logical_id, event=event, marker=MARKER)


def globals_environment() -> dict[str, str]:
    """The template's Globals environment, with the parameters' defaults."""
    from sms_gateway.local.template import Resolver, SamTemplate

    template = SamTemplate.from_file(ROOT / "template.yaml")
    variables = Resolver(template).resolve(template.function_globals["Environment"]["Variables"])
    return {name: str(value) for name, value in variables.items()}


def lambda_environment(build: Path, logical_id: str | None, tracing: bool) -> dict[str, str]:
    """The environment of a fresh interpreter standing in for a Lambda execution environment
    of ``logical_id`` (None: the layer alone, for a baseline)."""
    task_root = build / (logical_id or "DependenciesLayer")
    path = [build / "DependenciesLayer" / "python"]
    if logical_id:
        path.insert(0, task_root)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "PYTHONPATH": os.pathsep.join(str(p) for p in path),
        "PYTHONDONTWRITEBYTECODE": "1",
        "LAMBDA_TASK_ROOT": str(task_root),
        "AWS_LAMBDA_FUNCTION_NAME": logical_id or "baseline",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
        "_X_AMZN_TRACE_ID": TRACE_HEADER,
        # first request only: every AWS call and the database fail fast, once
        "AWS_ENDPOINT_URL": CLOSED_PORT,
        "AWS_MAX_ATTEMPTS": "1",
        "SMS_GATEWAY_IDEMPOTENCY_TABLE": "bench-idempotency",
        "SMS_GATEWAY_SEND_QUEUE_URL": f"{CLOSED_PORT}/000000000000/send",
        "SMS_GATEWAY_DEAD_LETTER_QUEUE_URL": f"{CLOSED_PORT}/000000000000/dead-letter",
        "SMS_GATEWAY_MESSAGE_DSN": "postgresql+pg8000://bench@127.0.0.1:9/bench",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    env.update({k: v for k, v in globals_environment().items() if k != "POWERTOOLS_LOG_LEVEL"})
    if not tracing:
        env["POWERTOOLS_TRACE_DISABLED"] = "true"
    return env


def run_timed(env: dict[str, str], statement: str) -> tuple[float, float]:
    """``(wall seconds, CPU seconds)`` of ``statement`` in a fresh interpreter."""
    run = subprocess.run(
        [sys.executable, "-S", "-c", TIMED.format(statement=statement)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        raise RuntimeError(f"{statement!r} failed:\n{run.stderr[-2000:]}")
    wall, cpu = run.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


@dataclass(frozen=True)
class Pairs:
    """Medians over interleaved pairs, in seconds: ``(wall, cpu)`` of each side."""

    baseline: tuple[float, float]
    function: tuple[float, float]

    def ratio(self, index: int) -> float:
        """function / baseline (index 0: wall, 1: CPU)."""
        return self.function[index] / self.baseline[index]


def paired(
    base_env: dict[str, str], base: str, env: dict[str, str], statement: str, n: int
) -> Pairs:
    """``n`` interleaved pairs (baseline first in even rounds, function first in odd ones)."""
    runs: dict[str, list[tuple[float, float]]] = {"base": [], "fn": []}
    for i in range(n):
        order = [("base", base_env, base), ("fn", env, statement)]
        for side, side_env, side_statement in order if i % 2 == 0 else reversed(order):
            runs[side].append(run_timed(side_env, side_statement))

    def medians(samples: list[tuple[float, float]]) -> tuple[float, float]:
        return (statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples))

    return Pairs(medians(runs["base"]), medians(runs["fn"]))


def sql_modules_after_import(build: Path, logical_id: str) -> list[str]:
    """The SQL modules loaded by ``import app``, tracing on as deployed."""
    code = (
        "import sys, app; "
        "print(' '.join(m for m in ('sqlalchemy', 'pg8000', 'pymysql', 'alembic', 'sqlite3') "
        "if m in sys.modules))"
    )
    env = lambda_environment(build, logical_id, tracing=True)
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    return out.split()


def print_figures(pairs: int = 9, build: Path = BUILD) -> None:
    """Print the cold-import and first-request figures (see the module docstring)."""
    if not (build / "DependenciesLayer" / "python").is_dir():
        print(f"\n(no {build}: run `make build` first for the cold-start figures)")
        return
    if sys.version_info[:2] != (3, 12):
        print(f"\n(cold-start figures need CPython 3.12, the runtime's; this is {sys.version})")
        return
    print(
        f"\n== cold start from the sam build output: median of {pairs} interleaved pairs, "
        "fresh interpreters, as Lambda sets them up (wall | CPU)"
    )
    header = f"{'function':15} {'tracing':7} {'figure':28} {'ms wall':>8} {'ms CPU':>8}"
    print(f"{header} {'x wall':>7} {'x CPU':>6}  goal")
    for fn in FUNCTIONS:
        for tracing in (True, False):
            env = lambda_environment(build, fn.logical_id, tracing)
            base_env = lambda_environment(build, None, tracing)
            on = "on" if tracing else "off"
            imports = paired(base_env, fn.baseline, env, "import app", pairs)
            goal = f"<= {fn.goal}x" if fn.goal else "(reported)"
            print(
                f"{fn.logical_id:15} {on:7} {fn.baseline:28} "
                f"{imports.baseline[0] * 1e3:8.1f} {imports.baseline[1] * 1e3:8.1f}"
            )
            print(
                f"{fn.logical_id:15} {on:7} {'import app':28} "
                f"{imports.function[0] * 1e3:8.1f} {imports.function[1] * 1e3:8.1f} "
                f"{imports.ratio(0):6.2f}x {imports.ratio(1):5.2f}x  {goal}"
            )
            first = paired(
                base_env,
                fn.baseline,
                env,
                first_request(fn),
                max(3, pairs // 3),
            )
            print(
                f"{fn.logical_id:15} {on:7} {'import app + first request':28} "
                f"{first.function[0] * 1e3:8.1f} {first.function[1] * 1e3:8.1f} "
                f"{first.ratio(0):6.2f}x {first.ratio(1):5.2f}x  (reported; no network in it)"
            )
    for fn in FUNCTIONS[:1]:
        sql = sql_modules_after_import(build, fn.logical_id)
        print(f"{fn.logical_id} imports SQL modules, tracing on: {', '.join(sql) or 'none'}")


IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)")


def import_costs(
    build: Path, fn: Function, runs: int, first: bool = False
) -> list[tuple[str, float, float]]:
    """``[(module, self ms, cumulative ms)]`` of each module ``import app`` loads (``first``:
    that its first request loads), medians of ``runs`` runs of ``python -X importtime``
    (tracing on), in first-import order."""
    env = lambda_environment(build, fn.logical_id, tracing=True)
    samples: dict[str, list[tuple[int, int]]] = defaultdict(list)
    order: dict[str, int] = {}
    for _ in range(runs):
        err = subprocess.run(
            [sys.executable, "-S", "-X", "importtime", "-c", first_request(fn)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stderr
        at_import, _, in_request = err.partition(MARKER)
        for line in (in_request if first else at_import).splitlines():
            if m := IMPORTTIME.match(line):
                name = m.group(4)
                samples[name].append((int(m.group(1)), int(m.group(2))))
                order.setdefault(name, len(order))
    return [
        (
            name,
            statistics.median(s[0] for s in samples[name]) / 1e3,
            statistics.median(s[1] for s in samples[name]) / 1e3,
        )
        for name in sorted(samples, key=order.__getitem__)
    ]


# Families of modules, for the breakdown: a module counts in the first family it starts with.
FAMILIES = (
    ("sms_gateway", "sms_gateway (ours)"),
    ("aws_lambda_powertools.event_handler", "Powertools event handler"),
    ("aws_lambda_powertools.utilities.idempotency", "Powertools idempotency"),
    ("aws_lambda_powertools.utilities.batch", "Powertools batch"),
    ("aws_lambda_powertools", "Powertools core (logger, metrics, tracer)"),
    ("aws_xray_sdk", "aws-xray-sdk"),
    ("wrapt", "aws-xray-sdk"),
    ("boto3", "boto3 + s3transfer"),
    ("s3transfer", "boto3 + s3transfer"),
    ("botocore", "botocore"),
    ("urllib3", "botocore"),
    ("dateutil", "botocore"),
    ("jmespath", "botocore"),
    ("pydantic_settings", "pydantic-settings + dotenv"),
    ("dotenv", "pydantic-settings + dotenv"),
    ("pydantic", "pydantic (+ core)"),
    ("annotated_types", "pydantic (+ core)"),
    ("typing_inspection", "pydantic (+ core)"),
    ("phonenumbers", "phonenumbers"),
    ("sqlalchemy", "SQLAlchemy"),
    ("pg8000", "pg8000 (+ scramp, asn1crypto)"),
    ("scramp", "pg8000 (+ scramp, asn1crypto)"),
    ("asn1crypto", "pg8000 (+ scramp, asn1crypto)"),
    ("pymysql", "PyMySQL"),
    ("sqlite3", "sqlite3"),
    ("_sqlite3", "sqlite3"),
    ("cachetools", "cachetools"),
)


def family(module: str) -> str:
    """The breakdown row ``module`` counts in (the standard library and the rest: 'other')."""
    for prefix, name in FAMILIES:
        if module == prefix or module.startswith(prefix + "."):
            return name
    return "other (standard library, typing_extensions, ...)"


def print_breakdown(build: Path = BUILD, runs: int = 5) -> None:
    """What each family of modules costs each function's ``import app`` (self times summed)."""
    print(
        "\n== what `import app` and then the first request load, tracing on "
        f"(python -X importtime: self times summed by family, median of {runs})"
    )
    for fn in FUNCTIONS:
        for first in (False, True):
            costs = import_costs(build, fn, runs, first)
            by_family: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
            for module, self_ms, _ in costs:
                row = by_family[family(module)]
                row[0] += self_ms
                row[1] += 1
            total = sum(row[0] for row in by_family.values())
            what = "its first request adds" if first else "import app"
            print(f"{fn.logical_id}, {what}: {len(costs)} modules, {total:.1f} ms")
            for name, (ms, count) in sorted(by_family.items(), key=lambda kv: -kv[1][0]):
                print(f"  {name:45} {ms:7.1f} ms {int(count):4d} modules")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=9, help="interleaved pairs (>= 7)")
    parser.add_argument("--breakdown", action="store_true", help="-X importtime per family")
    parser.add_argument("--build", type=Path, default=BUILD, help="sam build output")
    args = parser.parse_args()
    if args.breakdown:
        print_breakdown(args.build)
    print_figures(max(7, args.pairs), args.build)


if __name__ == "__main__":
    main()
