"""Run a template's Lambda functions the way Lambda does: each in execution environments of
its own, one invocation at a time per environment.

Source: AWS Lambda Developer Guide, "Understanding the Lambda execution environment
lifecycle" (init, invoke, shutdown; environments are reused while warm and never run two
invocations at once) and "Lambda function scaling" (concurrent invocations get separate
environments).

Locally an execution environment (:class:`ExecutionEnvironment`) is an OS process running
:mod:`sms_gateway.local.worker`, forked from a zygote that has imported the heavy libraries
once (:mod:`sms_gateway.local.zygote`, on Linux) or else a fresh interpreter; either way it is
a child of this process, it gets exactly its function's environment variables, imports
the handler once (the cold start, logged with its duration), then serves invocations sent
over a socket. Its stdout and stderr are the function's log: each line goes to the stack's
``log_sink(function_logical_id, line)``. A :class:`LocalFunction` keeps up to
``max_environments`` of them, created on demand and reused warm; an invocation that outlives
the function's ``Timeout`` is answered as Lambda answers it and its environment is killed
(the next invocation gets a new one), as is an environment whose process died; one that
died while idle is never handed an invocation (it is dropped, and a new one cold-starts).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any, Final

from sms_gateway.local import zygote
from sms_gateway.local.template import NO_VALUE, FunctionSpec, Resolver, UnresolvableError

__all__ = [
    "ExecutionEnvironment",
    "FunctionError",
    "FunctionTimeout",
    "LocalFunction",
    "LogSink",
    "function_environment",
    "print_log_line",
]

logger = logging.getLogger(__name__)

LogSink = Callable[[str, str], None]
"""``log_sink(function_logical_id, line)``: one line of a function's log (its environments'
stdout and stderr), without the line break. Called from reader threads, concurrently."""

INIT_TIMEOUT_SECONDS: Final = 120.0
"""How long an environment's init (process start + handler import) may take. Lambda allows
10 s, on a core of its own; here several environments import boto3, Powertools and SQLAlchemy
at once on a shared laptop, and handler imports of 7-25 s were seen at a load of 6-9 on 2 cores
(30 s was not enough). An init that hangs still ends, after 2 minutes."""
_STOP_GRACE_SECONDS: Final = 2.0

# Host variables a Python process needs to start; nothing else of the host reaches a function
# (a Lambda function sees only its own variables and the runtime's reserved ones).
_HOST_PASSTHROUGH: Final = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TMPDIR",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "SYSTEMROOT",
)

_print_lock = threading.Lock()


def _host_environment() -> dict[str, str]:
    """What an environment takes from this process's environment (:data:`_HOST_PASSTHROUGH`)."""
    return {key: os.environ[key] for key in _HOST_PASSTHROUGH if key in os.environ}


def prestart_environments() -> None:
    """Get ready to start execution environments: where they are forked from a zygote
    (:mod:`sms_gateway.local.zygote`), start it now, so that its imports overlap the
    caller's own start-up work rather than delay the first environment."""
    zygote.prestart(_host_environment())


def print_log_line(function_logical_id: str, line: str) -> None:
    """The default :data:`LogSink`: the line on this process's stdout, as before the
    functions had processes of their own (``function_logical_id`` is not shown)."""
    with _print_lock:
        print(line, flush=True)


def function_environment(spec: FunctionSpec, resolver: Resolver) -> dict[str, str]:
    """The function's resolved ``Environment.Variables`` (Globals + its own, as SAM merges
    them), as strings the way Lambda passes them (booleans ``true``/``false``).

    A variable whose value references something with no local value is left out, with a
    warning; one that resolves to ``AWS::NoValue`` is left out silently.
    """
    environment: dict[str, str] = {}
    for name, raw in spec.environment.items():
        try:
            value = resolver.resolve(raw)
        except UnresolvableError as error:
            logger.warning("%s: %s left unset locally (%s)", spec.logical_id, name, error)
            continue
        if value is NO_VALUE:
            continue
        environment[name] = (
            ("true" if value else "false") if isinstance(value, bool) else str(value)
        )
    return environment


class FunctionError(Exception):
    """An invocation failed: Lambda's error answer ``{"errorMessage", "errorType",
    "stackTrace"}`` (as :attr:`error`). ``errorType`` is the handler's exception class name,
    or a runtime error (``Runtime.ExitError``, ``Runtime.ImportModuleError``,
    ``Runtime.MarshalError``, ``Sandbox.Timedout``)."""

    def __init__(self, function: str, error: Mapping[str, Any]) -> None:
        self.function = function
        self.error = dict(error)
        super().__init__(f"{function}: {self.error_type}: {self.error_message}")

    @property
    def error_type(self) -> str:
        """``errorType``."""
        return str(self.error.get("errorType", "Unknown"))

    @property
    def error_message(self) -> str:
        """``errorMessage``."""
        return str(self.error.get("errorMessage", ""))


class FunctionTimeout(FunctionError):
    """The invocation ran past the function's ``Timeout``: ``errorType`` ``Sandbox.Timedout``,
    ``errorMessage`` ``RequestId: <id> Error: Task timed out after N.00 seconds``."""


def _lambda_variables(function: LocalFunction, stream: str) -> dict[str, str]:
    """The reserved variables Lambda sets in every environment (Developer Guide, "Defined
    runtime environment variables") that make sense locally."""
    return {
        "AWS_LAMBDA_FUNCTION_NAME": function.function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.spec.memory_size),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": stream,
        "AWS_REGION": function.region,
        "AWS_DEFAULT_REGION": function.region,
        "LAMBDA_TASK_ROOT": str(function.code_dir),
        "_HANDLER": function.spec.handler,
    }


class _ChannelClosed(Exception):
    """The worker's end of the channel is closed: its process exited."""


class ExecutionEnvironment:
    """One execution environment of ``function``: a worker process serving one invocation at
    a time. Not thread-safe by itself: :class:`LocalFunction` hands it to one caller at once.

    Raises (from :meth:`start`): :class:`FunctionError` when the init fails
    (``Runtime.ImportModuleError``... or ``Sandbox.Timedout`` after
    :data:`INIT_TIMEOUT_SECONDS`), ``OSError`` when the process cannot be spawned.
    """

    def __init__(self, function: LocalFunction, number: int) -> None:
        self.function = function
        self.number = number
        self.log_stream_name = (
            f"{time.strftime('%Y/%m/%d', time.gmtime())}/[$LATEST]{uuid.uuid4().hex}"
        )
        self.pid: int | None = None
        self.init_ms: float | None = None
        self.invocations = 0
        self._process: subprocess.Popen[bytes] | zygote.ForkedProcess | None = None
        self._socket: socket.socket | None = None
        self._channel: Connection | None = None
        self._readers: list[threading.Thread] = []

    @property
    def alive(self) -> bool:
        """True while the process runs and its channel is open."""
        return (
            self._process is not None and self._process.poll() is None and self._channel is not None
        )

    def idle_and_alive(self) -> bool:
        """For an environment that is not invoking: True when its process still runs and its
        channel holds nothing (an idle worker sends nothing; readable means it closed its end,
        i.e. it died, or it broke the protocol). Reaps a dead process."""
        channel = self._channel
        if not self.alive or channel is None:
            return False
        try:
            return not channel.poll(0)
        except (EOFError, OSError):
            return False

    def start(self) -> None:
        """Spawn the process and wait for its init (the cold start). See the class for errors."""
        function = self.function
        ours, theirs = socket.socketpair()
        started = time.monotonic()
        try:
            host = _host_environment()
            environment = dict(host)
            environment.update(_lambda_variables(function, self.log_stream_name))
            environment.update(function.environment)
            self._process = None
            if zygote.available():
                try:
                    self._process = zygote.spawn(
                        host_environment=host,
                        environment=environment,
                        cwd=str(function.code_dir),
                        code_dir=str(function.code_dir),
                        handler=function.spec.handler,
                        channel_fd=theirs.fileno(),
                    )
                except zygote.ZygoteError as refused:  # e.g. prctl refused in a sandbox
                    logger.warning("%s: no zygote (%s); spawning", function.logical_id, refused)
            if self._process is None:
                self._process = self._spawn(environment, theirs)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        # The socket is kept to shut it down from another thread: that wakes a waiting
        # invocation (EOF) as well as the worker.
        self._socket = ours
        self._channel = Connection(os.dup(ours.fileno()))
        for stream in (self._process.stdout, self._process.stderr):
            assert stream is not None
            reader = threading.Thread(
                target=_forward_lines,
                args=(stream, function.logical_id, function.log_sink),
                name=f"{function.logical_id}-{self.number}-log",
                daemon=True,
            )
            reader.start()
            self._readers.append(reader)
        try:
            message = self._receive(INIT_TIMEOUT_SECONDS)
        except _ChannelClosed:
            error = self._exit_error("")
            self.kill()
            raise FunctionError(function.logical_id, error) from None
        if message is None:
            self.kill()
            raise FunctionTimeout(
                function.logical_id,
                {
                    "errorMessage": f"Init timed out after {INIT_TIMEOUT_SECONDS:.2f} seconds",
                    "errorType": "Sandbox.Timedout",
                    "stackTrace": [],
                },
            )
        if message.get("type") != "ready":
            self.kill()
            raise FunctionError(function.logical_id, message.get("error") or self._exit_error(""))
        self.pid = int(message["pid"])
        self.init_ms = (time.monotonic() - started) * 1000
        logger.info(
            "%s: cold start of environment %d (pid %d): %.0f ms (handler import %.0f ms)",
            function.logical_id,
            self.number,
            self.pid,
            self.init_ms,
            float(message["init_ms"]),
        )

    def _spawn(self, environment: dict[str, str], theirs: socket.socket) -> subprocess.Popen[bytes]:
        """A fresh interpreter running the worker (where no zygote is available)."""
        function = self.function
        return subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-u",
                "-m",
                "sms_gateway.local.worker",
                "--fd",
                str(theirs.fileno()),
                "--parent-pid",
                str(os.getpid()),
                "--code-dir",
                str(function.code_dir),
                "--handler",
                function.spec.handler,
            ],
            cwd=function.code_dir,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(theirs.fileno(),),
        )

    def invoke(self, event: Mapping[str, Any], request_id: str) -> Any:
        """One invocation; returns the handler's answer (decoded JSON).

        Raises:
            FunctionError: the handler raised, or its answer is not JSON, or the process died
                (``Runtime.ExitError``; this environment is then dead).
            FunctionTimeout: no answer within ``Timeout`` seconds; the process is killed.
        """
        function = self.function
        if self._channel is None:
            raise RuntimeError(f"{function.logical_id} environment {self.number} is not running")
        timeout = function.spec.timeout
        deadline_ms = int(time.time() * 1000) + timeout * 1000
        context = {
            "function_name": function.function_name,
            "memory_limit_in_mb": function.spec.memory_size,
            "invoked_function_arn": function.arn,
            "aws_request_id": request_id,
            "deadline_ms": deadline_ms,
            "log_group_name": f"/aws/lambda/{function.function_name}",
            "log_stream_name": self.log_stream_name,
        }
        self.invocations += 1
        try:
            payload = json.dumps({"type": "invoke", "event": event, "context": context})
            self._channel.send_bytes(payload.encode("utf-8"))
        except OSError:
            self.kill()
            raise FunctionError(function.logical_id, self._exit_error(request_id)) from None
        try:
            message = self._receive(timeout)
        except _ChannelClosed:
            error = self._exit_error(request_id)  # waits for the exit status first
            self.kill()
            raise FunctionError(function.logical_id, error) from None
        if message is None:
            self.kill()
            text = f"Task timed out after {timeout:.2f} seconds"
            # Lambda writes this line to the function's log stream.
            function.log_sink(function.logical_id, f"{_utc_now()} {request_id} {text}")
            raise FunctionTimeout(
                function.logical_id,
                {
                    "errorMessage": f"RequestId: {request_id} Error: {text}",
                    "errorType": "Sandbox.Timedout",
                    "stackTrace": [],
                },
            )
        if message.get("type") == "result":
            return message.get("payload")
        raise FunctionError(function.logical_id, message.get("error") or {})

    def _receive(self, timeout: float) -> dict[str, Any] | None:
        """The next message, or ``None`` when none came within ``timeout`` seconds.

        Raises:
            _ChannelClosed: the process closed the channel (it exited) or it was shut down.
        """
        channel = self._channel
        if channel is None:
            raise _ChannelClosed
        try:
            if not channel.poll(timeout):
                return None
            message: dict[str, Any] = json.loads(channel.recv_bytes())
        except (EOFError, OSError):
            raise _ChannelClosed from None
        return message

    def _exit_error(self, request_id: str) -> dict[str, Any]:
        """Lambda's ``Runtime.ExitError`` for a process that ended."""
        status = None
        if self._process is not None:
            try:
                status = self._process.wait(timeout=_STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                status = None
        # Worded as Lambda's runtime words it: "exit status 3", "signal: killed".
        how = (
            f"signal: {(signal.strsignal(-status) or str(-status)).lower()}"
            if status is not None and status < 0
            else f"exit status {status}"
        )
        prefix = f"RequestId: {request_id} " if request_id else ""
        return {
            "errorMessage": f"{prefix}Error: Runtime exited with error: {how}",
            "errorType": "Runtime.ExitError",
            "stackTrace": [],
        }

    def shutdown(self) -> None:
        """The first half of :meth:`stop`, without waiting: shut the channel (an idle
        worker exits at once; an invocation in progress is answered ``Runtime.ExitError``)."""
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        """Shutdown: :meth:`shutdown`, kill the process if it has not exited after
        :data:`_STOP_GRACE_SECONDS`, and wait for its log to drain."""
        self.shutdown()
        if self._process is not None and self._process.poll() is None:
            try:
                self._process.wait(timeout=_STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._close()

    def kill(self) -> None:
        """End the process now (SIGKILL) and reap it."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._close()

    def _close(self) -> None:
        channel, sock = self._channel, self._socket
        self._channel = self._socket = None
        for closable in (channel, sock):
            if closable is not None:
                with contextlib.suppress(OSError):
                    closable.close()
        self._join_readers()

    def _join_readers(self) -> None:
        for reader in self._readers:
            if reader is not threading.current_thread():
                reader.join(timeout=_STOP_GRACE_SECONDS)
        self._readers = []


def _forward_lines(stream: IO[bytes], function: str, sink: LogSink) -> None:
    """Pass each line of ``stream`` to ``sink`` until the process closes it."""
    with stream:
        for raw in stream:
            try:
                sink(function, raw.decode("utf-8", "replace").rstrip("\r\n"))
            except Exception:  # a broken sink must not stop the function's log
                logger.exception("log sink failed on a line of %s", function)


def _utc_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


@dataclass
class LocalFunction:
    """One function of the template with its pool of execution environments.

    Args:
        spec: the function's template definition (``timeout`` seconds, ``memory_size`` MB).
        root: the directory that ``CodeUri`` is relative to (where template.yaml lives).
        function_name: the physical name (``<stack>-<logical id>``).
        region, account_id: for ``invoked_function_arn`` and ``AWS_REGION``.
        environment: exactly the variables the function's environments get (besides the
            reserved ``AWS_LAMBDA_*`` ones and what a process needs to start: ``PATH``...).
        max_environments: at most this many environments at once, i.e. concurrent
            invocations; more callers wait for one to be free (deployed, Lambda would
            throttle at its concurrency limit).
        log_sink: receives the environments' stdout and stderr, line by line.

    Environments are created on demand (a cold start) and reused warm, most recently used
    first (as Lambda tends to); an environment that timed out or died is discarded and its
    place goes to the next cold start.
    """

    spec: FunctionSpec
    root: Path
    function_name: str
    region: str
    account_id: str
    environment: Mapping[str, str] = field(default_factory=dict)
    max_environments: int = 1
    log_sink: LogSink = print_log_line
    _idle: list[ExecutionEnvironment] = field(default_factory=list, init=False, repr=False)
    _all: list[ExecutionEnvironment] = field(default_factory=list, init=False, repr=False)
    _count: int = field(default=0, init=False, repr=False)
    _started: int = field(default=0, init=False, repr=False)
    _busy: int = field(default=0, init=False, repr=False)
    _peak: int = field(default=0, init=False, repr=False)
    _invocations: int = field(default=0, init=False, repr=False)
    _closed: bool = field(default=False, init=False, repr=False)
    _cond: threading.Condition = field(default_factory=threading.Condition, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_environments < 1:
            raise ValueError(f"max_environments {self.max_environments}: at least 1")

    @property
    def logical_id(self) -> str:
        """The function's logical id in the template."""
        return self.spec.logical_id

    @property
    def code_dir(self) -> Path:
        """``root / CodeUri``."""
        return (self.root / self.spec.code_uri).resolve()

    @property
    def arn(self) -> str:
        """The function's ARN as ``invoked_function_arn`` shows it."""
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"

    @property
    def environment_count(self) -> int:
        """Environments alive or starting now."""
        with self._cond:
            return self._count

    @property
    def cold_starts(self) -> int:
        """Environments started so far (each one a cold start)."""
        with self._cond:
            return self._started

    @property
    def peak_concurrency(self) -> int:
        """The most invocations that have been in progress at once so far."""
        with self._cond:
            return self._peak

    @property
    def invocations(self) -> int:
        """Invocations started so far (counted when an environment takes one)."""
        with self._cond:
            return self._invocations

    def invoke(self, event: Mapping[str, Any], request_id: str | None = None) -> Any:
        """Invoke the function with ``event`` in a free environment; return its answer.

        Blocks while all ``max_environments`` environments are busy. ``request_id`` becomes
        ``context.aws_request_id`` (default: a new UUID).

        Raises:
            FunctionError: the handler raised (``errorType`` is its exception class), its
                init failed, its answer is not JSON, or its process died.
            FunctionTimeout: it ran past ``Timeout``; that environment is killed.
            RuntimeError: the function was stopped.
        """
        request_id = request_id or str(uuid.uuid4())
        environment = self._acquire()
        with self._cond:
            self._invocations += 1
            self._busy += 1
            self._peak = max(self._peak, self._busy)
        healthy = False
        try:
            answer = environment.invoke(event, request_id)
            healthy = True
            return answer
        except FunctionError:
            healthy = environment.alive  # a handler's own exception leaves it warm
            raise
        finally:
            with self._cond:
                self._busy -= 1
            self._release(environment, healthy)

    def _acquire(self) -> ExecutionEnvironment:
        dead: list[ExecutionEnvironment] = []
        try:
            return self._acquire_live(dead)
        finally:
            for environment in dead:  # reaped and closed outside the lock
                logger.info(
                    "%s: environment %d died while idle; discarded",
                    self.logical_id,
                    environment.number,
                )
                environment.kill()

    def _acquire_live(self, dead: list[ExecutionEnvironment]) -> ExecutionEnvironment:
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError(f"{self.logical_id} is stopped")
                while self._idle:
                    # Lambda never routes to a dead sandbox: an environment whose process
                    # died while idle (kill -9, OOM) is dropped and its place freed.
                    candidate = self._idle.pop()
                    if candidate.idle_and_alive():
                        return candidate
                    dead.append(candidate)
                    self._count -= 1
                    if candidate in self._all:
                        self._all.remove(candidate)
                if self._count < self.max_environments:
                    self._count += 1
                    self._started += 1
                    number = self._started
                    break
                self._cond.wait()
        return self._cold_start(number)

    def _cold_start(self, number: int) -> ExecutionEnvironment:
        """Start environment ``number``, whose place :attr:`_count` already holds."""
        environment = ExecutionEnvironment(self, number)
        try:
            environment.start()
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise
        with self._cond:
            self._all.append(environment)
        return environment

    def prewarm(self) -> bool:
        """Start one more environment now and keep it idle and warm (Lambda's provisioned
        concurrency), unless ``max_environments`` are already there. Thread-safe: call it from
        several threads to warm several environments in parallel.

        Returns True when an environment was started.

        Raises:
            FunctionError: its init failed (its place is freed; invocations cold-start).
            RuntimeError: the function was stopped.
        """
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self.logical_id} is stopped")
            if self._count >= self.max_environments:
                return False
            self._count += 1
            self._started += 1
            number = self._started
        environment = self._cold_start(number)
        self._release(environment, healthy=True)
        return True

    def _release(self, environment: ExecutionEnvironment, healthy: bool) -> None:
        with self._cond:
            if healthy and not self._closed:
                self._idle.append(environment)
                self._cond.notify()
                return
            self._count -= 1
            if environment in self._all:
                self._all.remove(environment)
            self._cond.notify()
        environment.kill()

    def kill(self) -> None:
        """Kill every environment now (SIGKILL), busy ones included (their invocations end
        ``Runtime.ExitError``); later :meth:`invoke` calls raise ``RuntimeError``. Safe to call
        beside :meth:`stop` and more than once."""
        with self._cond:
            self._closed = True
            environments = list(self._all)
            self._idle = []
            self._cond.notify_all()
        for environment in environments:
            environment.kill()

    def shutdown(self) -> None:
        """Begin :meth:`stop` without waiting: later :meth:`invoke` calls raise
        ``RuntimeError`` and every environment is told to shut down at once, so that the
        environments of several functions exit in parallel (then call :meth:`stop`)."""
        with self._cond:
            self._closed = True
            environments = list(self._all)
            self._idle = []
            self._cond.notify_all()
        for environment in environments:
            environment.shutdown()

    def stop(self) -> None:
        """Shut every environment down, all at once, and wait for each to exit (one still
        busy after :data:`_STOP_GRACE_SECONDS` is killed); later :meth:`invoke` calls raise
        ``RuntimeError``. Idempotent."""
        self.shutdown()
        with self._cond:
            environments = list(self._all)
        for environment in environments:
            environment.stop()
