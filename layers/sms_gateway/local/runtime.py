"""Run a template's Lambda handlers in this process, the way the Lambda runtime would call them.

A :class:`LocalFunction` is one warm "execution environment": its handler module is imported
once (from ``<CodeUri>/<module>.py`` under a module name of its own, so the four ``app.py``
files do not collide), and it serves one invocation at a time, like a Lambda container.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Final

from sms_gateway.local.template import NO_VALUE, FunctionSpec, Resolver, UnresolvableError

__all__ = [
    "FakeLambdaContext",
    "LambdaHandler",
    "LocalFunction",
    "load_handler",
    "resolve_environment",
]

logger = logging.getLogger(__name__)

LambdaHandler = Callable[[dict[str, Any], Any], Any]
"""A Lambda handler: ``handler(event, context) -> answer``."""

_MODULE_PREFIX: Final = "_sms_gateway_local_handler_"


@dataclass
class FakeLambdaContext:
    """The attributes of the Lambda Python runtime's context object that handlers and
    Powertools read (``function_name``, ``aws_request_id``, ``get_remaining_time_in_millis``...).

    ``deadline_ms`` is the invocation's deadline in epoch milliseconds (start + Timeout).
    """

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str
    deadline_ms: int
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left until the deadline (never negative)."""
        return max(0, self.deadline_ms - int(time.time() * 1000))


def load_handler(
    code_dir: Path, handler: str, module_name: str
) -> tuple[ModuleType, LambdaHandler]:
    """Import ``handler`` (``"module.function"`` or ``"pkg.module.function"``) from ``code_dir``.

    The module file is ``code_dir/module.py`` (or ``code_dir/pkg/module.py``); it is imported
    under ``module_name`` and registered in ``sys.modules`` under that name.

    Raises:
        FileNotFoundError: no such module file.
        AttributeError: the module has no such function.
        Exception: whatever the module raises while it is imported (its init code).
    """
    module_path, _, function_name = handler.rpartition(".")
    if not module_path or not function_name:
        raise ValueError(f"handler {handler!r} is not of the form module.function")
    relative = Path(*module_path.split("."))
    candidates = [code_dir / relative.with_suffix(".py"), code_dir / relative / "__init__.py"]
    source = next((path for path in candidates if path.is_file()), None)
    if source is None:
        raise FileNotFoundError(f"handler module for {handler!r} not found under {code_dir}")
    spec = importlib.util.spec_from_file_location(module_name, source)
    if spec is None or spec.loader is None:  # pragma: no cover - only for odd file types
        raise ImportError(f"cannot import {source}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
        function = getattr(module, function_name)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    if not callable(function):
        sys.modules.pop(module_name, None)
        raise AttributeError(f"{handler} is not callable")
    return module, function


def resolve_environment(functions: Iterable[FunctionSpec], resolver: Resolver) -> dict[str, str]:
    """The union of the functions' resolved ``Environment.Variables`` (Globals included).

    Values become strings as Lambda passes them. A variable whose value references something
    with no local value is left out with a warning; when two functions give one variable
    different values, the later function wins, with a warning (all handlers share one process
    environment locally).
    """
    environment: dict[str, str] = {}
    owner: dict[str, str] = {}
    for spec in functions:
        for name, raw in spec.environment.items():
            try:
                value = resolver.resolve(raw)
            except UnresolvableError as error:
                logger.warning("%s: %s left unset locally (%s)", spec.logical_id, name, error)
                continue
            if value is NO_VALUE:
                continue
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            if name in environment and environment[name] != text:
                logger.warning(
                    "%s=%r (from %s) replaces %r (from %s) in the shared local environment",
                    name,
                    text,
                    spec.logical_id,
                    environment[name],
                    owner[name],
                )
            environment[name] = text
            owner[name] = spec.logical_id
    return environment


@dataclass
class LocalFunction:
    """One function of the template loaded in-process: a single warm Lambda container.

    Args:
        spec: the function's template definition.
        root: the directory that ``CodeUri`` is relative to (where template.yaml lives).
        function_name: the physical name (``<stack>-<logical id>``).
        region, account_id: for ``invoked_function_arn``.

    Invocations are serialized by a lock: Lambda never runs two at once in one container, and
    handlers (and Powertools' per-invocation state) rely on that.
    """

    spec: FunctionSpec
    root: Path
    function_name: str
    region: str
    account_id: str
    _module: ModuleType | None = field(default=None, init=False, repr=False)
    _handler: LambdaHandler | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

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
    def module(self) -> ModuleType:
        """The imported handler module.

        Raises:
            RuntimeError: :meth:`load` has not run.
        """
        if self._module is None:
            raise RuntimeError(f"{self.logical_id} is not loaded")
        return self._module

    def load(self) -> None:
        """Import the handler module (the container's init phase). Idempotent.

        Raises: what :func:`load_handler` raises.
        """
        if self._handler is not None:
            return
        module_name = f"{_MODULE_PREFIX}{self.logical_id}_{uuid.uuid4().hex[:8]}"
        self._module, self._handler = load_handler(self.code_dir, self.spec.handler, module_name)
        logger.info("loaded %s from %s (%s)", self.logical_id, self.code_dir, self.spec.handler)

    def unload(self) -> None:
        """Forget the handler module (drops it from ``sys.modules``)."""
        if self._module is not None:
            sys.modules.pop(self._module.__name__, None)
        self._module = None
        self._handler = None

    def new_context(self, request_id: str | None = None) -> FakeLambdaContext:
        """A fresh context for one invocation; its deadline is now + ``Timeout``."""
        stream_day = time.strftime("%Y/%m/%d", time.gmtime())
        return FakeLambdaContext(
            function_name=self.function_name,
            memory_limit_in_mb=self.spec.memory_size,
            invoked_function_arn=self.arn,
            aws_request_id=request_id or str(uuid.uuid4()),
            deadline_ms=int(time.time() * 1000) + self.spec.timeout * 1000,
            log_group_name=f"/aws/lambda/{self.function_name}",
            log_stream_name=f"{stream_day}/[$LATEST]{uuid.uuid4().hex}",
        )

    def invoke(self, event: Mapping[str, Any], request_id: str | None = None) -> Any:
        """Call the handler with ``event`` and a fresh context; return its answer.

        Exceptions from the handler propagate (the caller maps them as Lambda would). A run
        longer than the function's Timeout is only logged: nothing is killed locally.

        Raises:
            RuntimeError: :meth:`load` has not run.
        """
        if self._handler is None:
            raise RuntimeError(f"{self.logical_id} is not loaded")
        with self._lock:
            context = self.new_context(request_id)
            started = time.monotonic()
            try:
                return self._handler(dict(event), context)
            finally:
                elapsed = time.monotonic() - started
                if elapsed > self.spec.timeout:
                    logger.warning(
                        "%s ran %.1f s, beyond its Timeout of %d s (Lambda would have stopped it)",
                        self.logical_id,
                        elapsed,
                        self.spec.timeout,
                    )
