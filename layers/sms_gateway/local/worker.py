"""One local Lambda execution environment: a process that imports one handler and serves
invocations one at a time (``python -m sms_gateway.local.worker``).

Started by :class:`sms_gateway.local.runtime.ExecutionEnvironment`, never by hand. It follows
the lifecycle of a Lambda execution environment (AWS Lambda Developer Guide, "Understanding
the Lambda execution environment lifecycle"): an *init* phase (the code directory goes first
on ``sys.path`` as ``LAMBDA_TASK_ROOT`` does, the handler module is imported once), then
*invoke* phases, one at a time, reusing the module's state while warm, until *shutdown*.

Channel (file descriptor ``--fd``, a socket wrapped by
:class:`multiprocessing.connection.Connection`; every message is one JSON object sent with
``send_bytes``):

- worker -> parent once, after init: ``{"type": "ready", "pid": int, "init_ms": float}`` or
  ``{"type": "init_error", "error": ERROR}`` (then the worker exits 1);
- parent -> worker: ``{"type": "invoke", "event": object, "context": {"function_name",
  "memory_limit_in_mb", "invoked_function_arn", "aws_request_id", "deadline_ms",
  "log_group_name", "log_stream_name"}}``;
- worker -> parent: ``{"type": "result", "payload": object}`` or
  ``{"type": "error", "error": ERROR}``,

where ERROR is Lambda's error shape ``{"errorMessage": str, "errorType": str,
"stackTrace": [str]}``. An answer that is not JSON is Lambda's ``Runtime.MarshalError``.

stdout and stderr are the function's log (CloudWatch's log stream): the parent reads them.
The worker exits when its channel closes, or when its parent process is gone (a watchdog
compares ``os.getppid()`` with ``--parent-pid`` twice a second), so a killed stack leaves no
orphan environments.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Final

__all__ = ["LambdaContext", "error_shape", "main", "run"]

_WATCHDOG_SECONDS: Final = 0.5


@dataclass
class LambdaContext:
    """The attributes of the Lambda Python runtime's context object that handlers and
    Powertools read. ``deadline_ms`` is the invocation's deadline in epoch milliseconds."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str
    deadline_ms: int
    log_group_name: str = ""
    log_stream_name: str = ""
    function_version: str = "$LATEST"
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left until the deadline (never negative)."""
        return max(0, self.deadline_ms - int(time.time() * 1000))


def error_shape(error: BaseException, error_type: str | None = None) -> dict[str, Any]:
    """Lambda's error answer for ``error``: ``{"errorMessage", "errorType", "stackTrace"}``
    (``stackTrace``: one string per frame, as the Python runtime formats it)."""
    return {
        "errorMessage": str(error),
        "errorType": error_type or type(error).__name__,
        "stackTrace": traceback.format_tb(error.__traceback__),
    }


def _send(channel: Connection, message: dict[str, Any]) -> None:
    channel.send_bytes(json.dumps(message).encode("utf-8"))


def _load(code_dir: str, handler: str) -> Callable[[Any, Any], Any]:
    """Import ``handler`` (``module.function``, ``pkg.module.function``) as Lambda's
    bootstrap does, with ``code_dir`` first on ``sys.path``."""
    module_name, _, function_name = handler.rpartition(".")
    if not module_name or not function_name:
        raise ValueError(f"handler {handler!r} is not of the form module.function")
    sys.path.insert(0, code_dir)
    module = importlib.import_module(module_name)
    function = getattr(module, function_name)
    if not callable(function):
        raise TypeError(f"{handler} is not callable")
    return function  # type: ignore[no-any-return]


def _report(error: BaseException, error_type: str) -> dict[str, Any]:
    """The error shape, also written to the log the way the Python runtime writes it."""
    shape = error_shape(error, error_type)
    print(f"[ERROR] {shape['errorType']}: {shape['errorMessage']}", file=sys.stderr)
    print("".join(traceback.format_exception(error)).rstrip("\n"), file=sys.stderr, flush=True)
    return shape


def _watch_parent(parent_pid: int) -> None:
    while True:
        if os.getppid() != parent_pid:
            os._exit(1)  # the stack is gone: an environment never outlives it
        time.sleep(_WATCHDOG_SECONDS)


def serve(channel: Connection, code_dir: str, handler: str) -> int:
    """Init, then answer invocations until the channel closes. Returns the exit status."""
    started = time.monotonic()
    try:
        function = _load(code_dir, handler)
    except Exception as error:
        # Lambda: Runtime.ImportModuleError / Runtime.HandlerNotFound / the init's own error.
        if isinstance(error, ModuleNotFoundError):
            kind = "Runtime.ImportModuleError"
        elif isinstance(error, AttributeError):
            kind = "Runtime.HandlerNotFound"
        else:
            kind = f"Runtime.{type(error).__name__}"
        _send(channel, {"type": "init_error", "error": _report(error, kind)})
        return 1
    init_ms = (time.monotonic() - started) * 1000
    _send(channel, {"type": "ready", "pid": os.getpid(), "init_ms": init_ms})
    while True:
        try:
            request = json.loads(channel.recv_bytes())
        except (EOFError, OSError):
            return 0  # shutdown: the parent closed the channel
        context = LambdaContext(**request["context"])
        try:
            answer = function(request["event"], context)
        except Exception as error:
            _send(channel, {"type": "error", "error": _report(error, type(error).__name__)})
            continue
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        try:
            _send(channel, {"type": "result", "payload": answer})
        except (TypeError, ValueError) as error:
            marshal = TypeError(f"Unable to marshal response: {error}")
            _send(channel, {"type": "error", "error": _report(marshal, "Runtime.MarshalError")})


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sms_gateway.local.worker --fd N --parent-pid P --code-dir D --handler H``."""
    parser = argparse.ArgumentParser(prog="sms_gateway.local.worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--code-dir", required=True)
    parser.add_argument("--handler", required=True)
    args = parser.parse_args(argv)
    return run(args.fd, args.parent_pid, args.code_dir, args.handler)


def run(fd: int, parent_pid: int, code_dir: str, handler: str) -> int:
    """Serve ``handler`` on channel ``fd`` (closed on return) while ``parent_pid`` is this
    process's parent; returns the exit status. ``main`` and a process forked by
    :mod:`sms_gateway.local.zygote` both end here."""
    # Ctrl-C in a terminal reaches the whole process group; the stack stops its environments.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    channel = Connection(fd)
    try:
        return serve(channel, code_dir, handler)
    finally:
        channel.close()


if __name__ == "__main__":
    sys.exit(main())
