"""Execution environments forked from the zygote (:mod:`sms_gateway.local.zygote`) are what a
fresh ``python -m sms_gateway.local.worker`` is: the same variables, cwd, ``sys.path`` head and
warning filters, a child process of the stack, and no module of the gateway imported before
the handler's own init. The fallback (``SMS_GATEWAY_LOCAL_FORK_SERVER=0``: a fresh interpreter
per environment) is held to the same answers.

Handlers are tiny modules written under tmp_path; no AWS is involved.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from sms_gateway.local import zygote
from sms_gateway.local.runtime import LocalFunction
from sms_gateway.local.template import FunctionSpec

pytestmark = pytest.mark.local_stack

HANDLER = """\
import os
import sys
import warnings

# The gateway's modules (its local runtime aside) imported before this module's own init.
BEFORE = sorted(
    name
    for name in sys.modules
    if name.startswith("sms_gateway.") and not name.startswith("sms_gateway.local")
)
PRELOADED = "boto3" in sys.modules


def lambda_handler(event, context):
    warnings.warn("a warning from the handler", UserWarning, stacklevel=1)
    sys.stderr.flush()
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "path0": sys.path[0],
        "cwd": os.getcwd(),
        "before": BEFORE,
        "preloaded": PRELOADED,
        "warnoptions": list(sys.warnoptions),
    }
"""


class Sink:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, function: str, line: str) -> None:
        self.lines.append(line)


def invoke_once(root: Path, environment: dict[str, str]) -> tuple[dict[str, Any], list[str], int]:
    """One invocation in a new environment; its answer, its log and the process's exit code
    (reaped by this process: the environment is its child)."""
    spec = FunctionSpec("ZygoteFunction", "fn/", "app.lambda_handler", "python3.12", 10, 128, {})
    sink = Sink()
    function = LocalFunction(
        spec, root, "local-ZygoteFunction", "us-east-1", "123456789012",
        environment=environment, log_sink=sink,
    )  # fmt: skip
    try:
        answer: dict[str, Any] = function.invoke({})
        (environment_process,) = function._all
        process = environment_process._process
        assert process is not None
        # waitid works only on a child of this process; WNOWAIT leaves it running.
        assert os.waitid(os.P_PID, answer["pid"], os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
    finally:
        function.stop()
    assert process.returncode == 0  # exited on its own when the channel closed
    return answer, sink.lines, answer["pid"]


@pytest.fixture
def code_root(tmp_path: Path) -> Path:
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text(textwrap.dedent(HANDLER), encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("mode", ["fork", "spawn"])
def test_a_forked_environment_is_what_a_fresh_worker_is(
    code_root: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    if mode == "fork" and not sys.platform.startswith("linux"):
        pytest.skip("the zygote is Linux only")  # pragma: no cover - CI runs Linux
    monkeypatch.setenv(zygote.ENABLE_VARIABLE, "1" if mode == "fork" else "0")
    assert zygote.available() is (mode == "fork")
    code_dir = str((code_root / "fn").resolve())

    quiet, quiet_log, _ = invoke_once(code_root, {"PYTHONWARNINGS": "ignore::UserWarning"})
    loud, loud_log, _ = invoke_once(code_root, {})

    for answer in (quiet, loud):
        assert answer["ppid"] == os.getpid()
        assert answer["path0"] == code_dir
        assert answer["cwd"] == code_dir
        assert answer["before"] == []  # no gateway module before the handler's init
        assert answer["preloaded"] is (mode == "fork")
    assert quiet["warnoptions"] == ["ignore::UserWarning"]
    assert loud["warnoptions"] == []
    assert not any("a warning from the handler" in line for line in quiet_log)
    assert any("UserWarning: a warning from the handler" in line for line in loud_log)
    assert quiet["pid"] != loud["pid"]


def test_an_environment_is_spawned_when_the_zygote_cannot_fork(
    code_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(**kwargs: Any) -> None:
        raise zygote.ZygoteError("prctl(PR_SET_CHILD_SUBREAPER) failed")

    monkeypatch.setattr(zygote, "available", lambda: True)
    monkeypatch.setattr(zygote, "spawn", refuse)
    answer, _, _ = invoke_once(code_root, {})
    assert answer["ppid"] == os.getpid()
    assert answer["preloaded"] is False  # a fresh interpreter


@pytest.mark.parametrize("fork_server", ["1", "0"])
def test_prestart_starts_the_zygote_before_any_environment_and_it_ends_with_its_stack(
    fork_server: str,
) -> None:
    """``prestart_environments`` (a stack's first step) starts the zygote without waiting for
    it; with the fork server off it starts nothing. The zygote is gone once its stack
    process has exited."""
    import subprocess

    script = textwrap.dedent(
        """
        from sms_gateway.local import runtime, zygote
        runtime.prestart_environments()
        process = zygote._zygote._process
        print(process.pid if process is not None and process.poll() is None else "none")
        """
    )
    env = {**os.environ, zygote.ENABLE_VARIABLE: fork_server}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    answer = done.stdout.strip()
    if fork_server == "0" or not zygote.available():
        assert answer == "none"
        return
    pid = int(answer)
    with pytest.raises(ProcessLookupError):  # reaped by its stack's exit
        os.kill(pid, 0)
