"""``make sam-local-check``: the functions in SAM's own Lambda emulator, against the local stack.

Run after ``make build`` and Docker's start (the Makefile does both: ``sam build``, then
``$(DOCKER_UP)``, which starts dockerd and, where no registry is reachable, builds the
stand-in base image). Then, each step checked and printed (``PASS``/``FAIL``):

1. a Docker user network (``sms-gateway-sam``; created if missing) whose gateway address
   (e.g. 172.18.0.1) is where this machine's servers meet the Lambda containers;
2. a throwaway PostgreSQL (``initdb`` in a temp dir) listening on that address, a free port
   in 20000-40000, trust login from the network: the message database of every function,
   in a container or not (sam local mounts the code read-only, so no SQLite file);
3. ``sms-gateway local --aws-host GATEWAY --dsn ... --sam-env-vars FILE --lambda-endpoint
   URL``: moto on the gateway address, the ``--env-vars`` file written, the queues' batches
   handed to ``sam local start-lambda``;
4. ``sam local start-lambda`` with that file (the sender and DLQ functions' containers);
5. ``sam local invoke`` of every file in ``events/`` with its expected outcome (status code
   and body fields, ``batchItemFailures``), as ``tests/integration/test_events.py`` asserts
   them in-process;
6. ``sam local start-api`` with that file, and the README's three demo flows through it to
   their end states (``scripts/demo_flows.py``): start-api -> ingest container -> SendQueue
   (moto) -> the local stack's poller -> start-lambda -> sender container -> PostgreSQL;
7. everything it started is stopped (containers, sam processes, the stack, PostgreSQL, the
   network if it created it; dockerd stays), also on failure or Ctrl-C.

Bounded: each step has a timeout (``--timeout`` for the whole run, 1500 s by default; a run
takes 9 to 13 minutes on this project's busy 2-core machines, most of it SAM rebuilding the
function image with the layer for each ``sam local invoke``).
Prints ``N passed, M failed`` and the duration; exit 1 if any check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_flows import Checks, Tenant, request, run_flows

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
IMAGE = os.environ.get("SAM_LOCAL_IMAGE", "local/lambda-python:3.12")
NETWORK = os.environ.get("SAM_LOCAL_NETWORK", "sms-gateway-sam")

# events/ file prefix -> function logical id
FUNCTIONS = {
    "ingest": "IngestFunction",
    "status": "StatusFunction",
    "sender": "SenderFunction",
    "dlq": "DlqFunction",
    "admin": "AdminFunction",
    "retention": "RetentionFunction",
    "migrate": "MigrateFunction",
    "eum_events": "EumEventsFunction",
}
# expected statusCode of the API samples (None: an SQS sample, answered with batchItemFailures;
# a name: a direct invocation whose answer :func:`outcome` checks by that function's shape).
# The samples run in name order against one database: the admin samples before the DLQ sample
# has recorded a dead letter (nothing to replay, nothing stuck; no tenant in TenantsTable), the
# End User Messaging event before the sender sample has sent its message (unmatched: kept, and
# applied when the sender records that provider message id, so the status sample reads it
# delivered), the cancel
# sample after the sender sample has sent the message it names (409: too late to cancel).
EXPECTED: dict[str, int | str | None] = {
    "admin-replay.json": "admin",
    "admin-stuck.json": "admin",
    "admin-tenant-list.json": "admin",
    "eum_events-delivered.json": "eum_events",
    "migrate-create.json": "migrate",
    "retention-schedule.json": "retention",
    "status-cancel-message.json": 409,
    "dlq-batch.json": None,
    "ingest-post-message-failing-tenant.json": 202,
    "ingest-post-message-invalid.json": 422,
    "ingest-post-message.json": 202,
    "ingest-post-messages-batch.json": 202,
    "sender-batch.json": None,
    "status-get-message.json": 200,
    "status-post-receipt.json": 200,
}


def log(text: str) -> None:
    print(f"== {text}", flush=True)


def free_port() -> int:
    """A TCP port in 20000-40000 that nothing listens on now (loopback and the gateway)."""
    for _ in range(200):
        port = random.randint(20000, 40000)
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError("no free port in 20000-40000")


def run(args: list[str], timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)


def sam_args() -> list[str]:
    """The options every sam local command here takes (the README's)."""
    return [
        "--docker-network",
        NETWORK,
        "--invoke-image",
        IMAGE,
        "--skip-pull-image",
    ]


def wait_until(predicate: Any, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, port)) == 0


class Background:
    """A process in a session of its own, its output in a file; :meth:`stop` ends the
    whole session (SIGINT, then SIGTERM, then SIGKILL)."""

    def __init__(self, name: str, args: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log_path = log_path
        self._file: IO[bytes] = log_path.open("wb")
        self.process = subprocess.Popen(
            args,
            stdout=self._file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )

    def text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, grace: float = 60) -> None:
        for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            if self.process.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(wait)
        with contextlib.suppress(ProcessLookupError):  # anything left in its session
            os.killpg(self.process.pid, signal.SIGKILL)
        self._file.close()


class Run:
    """Everything one check starts, and its teardown."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.created_network = False
        self.gateway = ""
        self.pg_data: Path | None = None
        self.pg_user: list[str] = []
        self.background: list[Background] = []
        self.env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
        self.env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        self.env["SAM_CLI_TELEMETRY"] = "0"

    # -- network and database ---------------------------------------------------------------

    def network(self) -> str:
        found = run(["docker", "network", "inspect", NETWORK])
        if found.returncode != 0:
            made = run(["docker", "network", "create", NETWORK])
            if made.returncode != 0:
                raise RuntimeError(f"docker network create: {made.stderr.strip()}")
            self.created_network = True
        gateway = run(
            [
                "docker",
                "network",
                "inspect",
                NETWORK,
                "-f",
                "{{range .IPAM.Config}}{{.Gateway}} {{.Subnet}}{{end}}",
            ]
        ).stdout.split()
        self.gateway, subnet = gateway[0], gateway[1]
        self.subnet = subnet
        return self.gateway

    def postgres(self) -> str:
        """A throwaway PostgreSQL on the gateway address; returns its DSN (database sms)."""
        port = free_port()
        base = Path(tempfile.mkdtemp(prefix="sam-local-pg-", dir=self.work))
        self.pg_data = base / "data"
        if os.geteuid() == 0:  # initdb refuses root: run the server as postgres
            shutil.chown(base, "postgres")
            self.pg_user = ["runuser", "-u", "postgres", "--"]
        initdb = run([*self.pg_user, "initdb", "-D", str(self.pg_data), "-U", "postgres",
                      "-A", "trust", "--no-sync"], timeout=120)  # fmt: skip
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb: {initdb.stderr.strip()[-500:]}")
        with (self.pg_data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {self.subnet} trust\n")
        options = f"-c listen_addresses={self.gateway} -p {port} -k {base} -c fsync=off"
        started = run([*self.pg_user, "pg_ctl", "-D", str(self.pg_data), "-l",
                       str(base / "postgres.log"), "-o", options, "-w", "start"],
                      timeout=120)  # fmt: skip
        if started.returncode != 0:
            raise RuntimeError(f"pg_ctl start: {started.stderr.strip()[-500:]}")
        created = run(["createdb", "-h", self.gateway, "-p", str(port), "-U", "postgres", "sms"])
        if created.returncode != 0:
            raise RuntimeError(f"createdb: {created.stderr.strip()}")
        return f"postgresql+pg8000://postgres@{self.gateway}:{port}/sms"

    # -- processes --------------------------------------------------------------------------

    def start(self, name: str, args: list[str]) -> Background:
        process = Background(name, args, self.work / f"{name}.log", self.env)
        self.background.append(process)
        return process

    def teardown(self) -> list[str]:
        """Stop everything started, newest first; returns what could not be stopped."""
        problems: list[str] = []
        for process in reversed(self.background):
            process.stop()
            if process.process.poll() is None:
                problems.append(f"{process.name} still running (pid {process.process.pid})")
        left = run(["docker", "ps", "-aq", "--filter", f"network={NETWORK}"]).stdout.split()
        if left:
            run(["docker", "rm", "-f", *left], timeout=120)
        if self.pg_data is not None:
            stopped = run([*self.pg_user, "pg_ctl", "-D", str(self.pg_data), "-m", "fast",
                           "-w", "stop"], timeout=60)  # fmt: skip
            if stopped.returncode != 0:
                problems.append(f"pg_ctl stop: {stopped.stderr.strip()}")
        if self.created_network:
            removed = run(["docker", "network", "rm", NETWORK])
            if removed.returncode != 0:
                problems.append(f"docker network rm: {removed.stderr.strip()}")
        return problems


def invoke_events(run_: Run, env_vars: Path, checks: Checks) -> None:
    """``sam local invoke`` of each sample, in name order (the sender sample before the status
    samples, which read the message it sends)."""
    for path in sorted((ROOT / "events").glob("*.json")):
        name = path.name
        function = FUNCTIONS[name.split("-", 1)[0]]
        label = f"sam local invoke {function} -e events/{name}"
        if name not in EXPECTED:
            checks.check(label, False, "no expected outcome in scripts/sam_local_check.py")
            continue
        started = time.monotonic()
        retried = ""
        try:
            for attempt in (1, 2):
                done = run(
                    [str(BIN / "sam"), "local", "invoke", function, "-e", str(path),
                     "--env-vars", str(env_vars), *sam_args()],
                    timeout=300, cwd=ROOT, env=run_.env,
                )  # fmt: skip
                # The emulator counts the handler's import (the cold start) in the function's
                # Timeout, which Lambda does not (init has a budget of its own): on a busy
                # machine a 10 s function can time out on its first invocation. Once, retried.
                if attempt == 1 and f"'{function}' timed out after" in done.stdout + done.stderr:
                    retried = f", retried after a timeout at {time.monotonic() - started:.0f} s"
                    continue
                break
        except subprocess.TimeoutExpired:
            checks.check(label, False, "no answer within 300 s")
            continue
        seconds = time.monotonic() - started
        (run_.work / f"invoke-{name}.log").write_text(done.stderr + done.stdout)
        lines = done.stdout.strip().splitlines()
        try:
            answer = json.loads(lines[-1]) if lines else None
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            checks.check(label, False, f"exit {done.returncode}: {done.stderr.strip()[-300:]}")
            continue
        ok, detail = outcome(name, answer, done.stdout + done.stderr)
        checks.check(label, ok, f"{detail} ({seconds:.0f} s{retried})")


def outcome(name: str, answer: dict[str, Any], log_text: str = "") -> tuple[bool, str]:
    """Whether ``answer`` (and the invocation's log, ``log_text``) is the sample's expected
    outcome, and what it was."""
    expected = EXPECTED[name]
    sample = json.loads((ROOT / "events" / name).read_text())
    if expected == "admin":
        if sample["command"] == "replay":
            return answer.get("replayed") == 0, f"replayed {answer.get('replayed')}"
        if sample["command"] == "tenant_list":
            # TenantsTable in the local stack's moto: no tenant registered there
            return answer == {"tenants": []}, f"tenants {answer}"
        listed = answer.get("messages")
        return listed == [], f"stuck {listed}"
    if expected == "eum_events":
        # before the sender sample has sent the message it names: kept, unmatched
        return answer == {"unmatched": 1}, f"outcomes {answer}"
    if expected == "retention":
        counts = (answer.get("deleted"), answer.get("redacted"))
        return counts == (0, 0), f"deleted, redacted = {counts}"
    if expected == "migrate":
        # The migration runs against the check's database (already at head: nothing to do);
        # the answer's PUT to the sample's pre-signed S3 ResponseURL cannot leave this machine,
        # so the invocation ends in that error, after the log line of the migration.
        migrated = "migrated from" in log_text
        return migrated, f"migration {'ran' if migrated else 'did not run'}; then {answer}"[:300]
    if expected is None:
        records = sample["Records"]
        malformed = [r["messageId"] for r in records if not r["body"].endswith("}")]
        wanted = [] if name.startswith("dlq-") else [{"itemIdentifier": m} for m in malformed]
        got = answer.get("batchItemFailures")
        return got == wanted, f"batchItemFailures {got}"
    status = answer.get("statusCode")
    try:
        body = json.loads(answer.get("body") or "{}")
    except ValueError:
        body = {}
    ok = status == expected
    detail = f"{status}"
    if name == "ingest-post-message-invalid.json":
        fields = {e["field"] for e in body.get("errors", [])}
        ok = ok and fields == {"to", "body"}
        detail += f" errors on {sorted(fields)}"
    elif name == "ingest-post-messages-batch.json":
        statuses = [m.get("status") for m in body.get("messages", [])]
        ok = ok and (body.get("accepted"), body.get("rejected")) == (2, 1)
        ok = ok and statuses == ["queued", "queued", "rejected"]
        detail += f" accepted={body.get('accepted')} rejected={body.get('rejected')} {statuses}"
    elif name.startswith("ingest-"):
        ok = ok and body.get("status") == "queued"
        detail += f" {body.get('status')}"
    elif name == "status-get-message.json":
        # The End User Messaging sample, replayed before the sender sample, reported this
        # message delivered under the provider message id the sender then recorded: kept
        # unmatched, it was applied at that moment (never-regress rules, DESIGN section 7).
        ok = ok and body.get("status") == "delivered"
        detail += f" {body.get('status')}"
    elif name == "status-cancel-message.json":
        ok = ok and body.get("type", "").endswith("#message-not-cancelable")
        detail += f" {body.get('type', '').rsplit('#', 1)[-1]}"
    elif name == "status-post-receipt.json":
        ok = ok and body.get("status") == "delivered"
        detail += f" {body.get('status')}"
    return ok, detail


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """SIGALRM after ``seconds``: a KeyboardInterrupt-like stop of the whole check."""

    def expired(signum: int, frame: Any) -> None:
        raise TimeoutError(f"sam-local-check: over its {seconds:.0f} s bound")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(int(seconds))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def check(checks: Checks, run_: Run, timeout: float) -> None:
    log(f"Docker network {NETWORK}")
    gateway = run_.network()
    checks.check(f"docker network {NETWORK}", True, f"gateway {gateway}, subnet {run_.subnet}")

    log("throwaway PostgreSQL on the gateway address")
    dsn = run_.postgres()
    checks.check("PostgreSQL for the functions' containers", True, dsn)

    lambda_port, api_port, stack_port = free_port(), free_port(), free_port()
    env_vars = run_.work / "env.json"
    log("sms-gateway local (moto on the gateway, queues -> sam local start-lambda)")
    stack = run_.start(
        "sms-gateway-local",
        [str(BIN / "sms-gateway"), "local", "--port", str(stack_port), "--aws-host", gateway,
         "--dsn", dsn, "--data-dir", str(run_.work / "data"), "--sam-env-vars", str(env_vars),
         "--lambda-endpoint", f"http://127.0.0.1:{lambda_port}", "--reset"],
    )  # fmt: skip
    ready = wait_until(
        lambda: "Local stack ready on" in stack.text() or stack.process.poll() is not None, 180
    )
    if not checks.check(
        "sms-gateway local ready, --env-vars file written",
        ready and stack.process.poll() is None and env_vars.is_file(),
        str(env_vars),
    ):
        print(stack.text()[-2000:])
        return

    log("sam local start-lambda")
    start = time.monotonic()
    lambda_ = run_.start(
        "start-lambda",
        [str(BIN / "sam"), "local", "start-lambda", "-p", str(lambda_port), "--env-vars",
         str(env_vars), "--warm-containers", "LAZY", *sam_args()],
    )  # fmt: skip
    if not checks.check(
        "sam local start-lambda listening",
        wait_until(lambda: listening(lambda_port) or lambda_.process.poll() is not None, 120)
        and lambda_.process.poll() is None,
        f"127.0.0.1:{lambda_port} after {time.monotonic() - start:.0f} s",
    ):
        print(lambda_.text()[-2000:])
        return

    log("sam local invoke: every file in events/")
    invoke_events(run_, env_vars, checks)

    log("sam local start-api")
    start = time.monotonic()
    api = run_.start(
        "start-api",
        [str(BIN / "sam"), "local", "start-api", "-p", str(api_port), "--env-vars",
         str(env_vars), *sam_args()],
    )  # fmt: skip
    if not checks.check(
        "sam local start-api listening",
        wait_until(lambda: listening(api_port) or api.process.poll() is not None, 300)
        and api.process.poll() is None,
        f"127.0.0.1:{api_port} after {time.monotonic() - start:.0f} s",
    ):
        print(api.text()[-2000:])
        return
    base = f"http://127.0.0.1:{api_port}"
    status, body = request(
        "POST",
        f"{base}/v1/messages",
        {"to": "12", "body": ""},
        {"X-Tenant-ID": "tenant-1", "Idempotency-Key": "sam-local-invalid"},
        timeout=120,
    )
    fields = sorted(e.get("field") for e in body.get("errors", []))
    checks.check(
        "start-api: invalid message -> 422 naming the fields",
        status == 422 and fields == ["body", "to"],
        f"{status} {fields}",
    )
    log("demo flows through start-api and start-lambda")
    run_flows(
        base,
        checks,
        sent_tenant=Tenant("tenant-1"),
        failing_tenant=Tenant("tenant-2"),
        timeout=min(180.0, timeout / 4),
    )
    invocations = lambda_.text().count("Invoking app.lambda_handler")
    checks.check(
        "the queues' batches ran in start-lambda's containers",
        invocations >= 3,
        f"{invocations} invocation(s) logged by start-lambda",
    )
    crashed = [p.name for p in (stack, lambda_, api) if p.process.poll() is not None]
    checks.check("no process died during the run", not crashed, ", ".join(crashed))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=1500, help="bound of the run (s)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    args = parser.parse_args(argv)
    if not (ROOT / ".aws-sam" / "build" / "template.yaml").is_file():
        print("sam-local-check: run `make build` first (make sam-local-check does)")
        return 1
    if run(["docker", "image", "inspect", IMAGE]).returncode != 0:
        print(f"sam-local-check: no Docker image {IMAGE} (make sam-local-check starts Docker)")
        return 1
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="sam-local-check-"))
    os.chmod(work, 0o755)  # noqa: S103 - the postgres user creates its data dir below
    checks = Checks()
    run_ = Run(work)
    try:
        with deadline(args.timeout):
            check(checks, run_, args.timeout)
    except (Exception, KeyboardInterrupt) as error:
        checks.check("the check ran to its end", False, f"{type(error).__name__}: {error}")
    finally:
        log("stopping everything started")
        problems = run_.teardown()
        checks.check("everything started is stopped", not problems, "; ".join(problems))
        if args.keep or checks.failed:
            print(f"logs in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"sam-local-check: {checks.summary()} in {time.monotonic() - started:.0f} s")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
