"""The local stack's execution environments (:mod:`sms_gateway.local.runtime`): each function
runs in processes of its own, one invocation at a time per process, as Lambda runs them
(Developer Guide, "Understanding the Lambda execution environment lifecycle").

Handlers are tiny modules written under tmp_path; no AWS is involved.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sms_gateway.local.runtime import FunctionError, FunctionTimeout, LocalFunction
from sms_gateway.local.template import FunctionSpec

pytestmark = pytest.mark.local_stack

HANDLER = """\
import json
import os
import time

print("init of", os.environ["AWS_LAMBDA_FUNCTION_NAME"])
if os.environ.get("FAIL_AT_INIT"):
    raise RuntimeError("init went wrong")
COUNTER = {"n": 0}


def lambda_handler(event, context):
    COUNTER["n"] += 1
    action = event.get("action")
    if action == "sleep":
        time.sleep(event["seconds"])
    elif action == "raise":
        raise ValueError("bad input")
    elif action == "exit":
        os._exit(3)
    elif action == "set":
        COUNTER["mark"] = event["mark"]
    elif action == "unserializable":
        return {1, 2}
    print("handled", context.aws_request_id)
    return {
        "pid": os.getpid(),
        "count": COUNTER["n"],
        "mark": COUNTER.get("mark"),
        "env": dict(os.environ),
        "remaining_ms": context.get_remaining_time_in_millis(),
        "cwd": os.getcwd(),
    }
"""


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, exited but not yet reaped by init, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return not stat.parent.parent.joinpath("self").exists()


def wait_until(condition: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()  # type: ignore[no-any-return]


class Sink:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __call__(self, function: str, line: str) -> None:
        with self._lock:
            self.lines.append((function, line))

    def text(self, function: str) -> str:
        with self._lock:
            return "\n".join(line for name, line in self.lines if name == function)


@pytest.fixture
def code_root(tmp_path: Path) -> Path:
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text(textwrap.dedent(HANDLER), encoding="utf-8")
    return tmp_path


def make_function(
    root: Path,
    name: str = "EchoFunction",
    *,
    timeout: int = 5,
    environment: dict[str, str] | None = None,
    max_environments: int = 2,
    sink: Sink | None = None,
) -> LocalFunction:
    spec = FunctionSpec(
        logical_id=name,
        code_uri="fn/",
        handler="app.lambda_handler",
        runtime="python3.12",
        timeout=timeout,
        memory_size=256,
        environment={},
    )
    return LocalFunction(
        spec=spec,
        root=root,
        function_name=f"local-{name}",
        region="us-east-1",
        account_id="123456789012",
        environment=environment or {},
        max_environments=max_environments,
        log_sink=sink or Sink(),
    )


def test_concurrent_invocations_run_in_separate_processes_with_their_own_state(
    code_root: Path,
) -> None:
    function = make_function(code_root, max_environments=2)
    answers: list[dict[str, Any]] = []
    try:
        # Warm one environment and mark its module state.
        first = function.invoke({"action": "set", "mark": "A"}, "r0")
        threads = [
            threading.Thread(
                target=lambda i=i: answers.append(
                    function.invoke({"action": "sleep", "seconds": 1.0}, f"r{i}")
                )
            )
            for i in (1, 2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(answers) == 2
        pids = {answer["pid"] for answer in answers}
        assert len(pids) == 2  # two invocations at once: two environments
        assert first["pid"] in pids  # the warm one was reused
        assert os.getpid() not in pids
        by_pid = {answer["pid"]: answer for answer in answers}
        # The mark lives in the first environment's module only.
        assert by_pid[first["pid"]]["mark"] == "A"
        assert by_pid[first["pid"]]["count"] == 2
        (other,) = pids - {first["pid"]}
        assert by_pid[other]["mark"] is None
        assert by_pid[other]["count"] == 1
        assert function.cold_starts == 2
        assert function.environment_count == 2
    finally:
        function.stop()
    assert not any(pid_alive(pid) for pid in pids)


def test_one_invocation_at_a_time_per_environment(code_root: Path) -> None:
    function = make_function(code_root, max_environments=1)
    answers: list[dict[str, Any]] = []
    try:
        started = time.monotonic()
        threads = [
            threading.Thread(
                target=lambda: answers.append(function.invoke({"action": "sleep", "seconds": 0.5}))
            )
            for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        elapsed = time.monotonic() - started
        assert sorted(answer["count"] for answer in answers) == [1, 2, 3]
        assert len({answer["pid"] for answer in answers}) == 1
        assert elapsed >= 1.5  # serialized: three half-second invocations
        assert function.cold_starts == 1
    finally:
        function.stop()


def test_each_function_sees_exactly_its_own_environment(
    code_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMS_GATEWAY_ONLY_IN_THE_PARENT", "leak")
    monkeypatch.setenv("AWS_PROFILE", "someone-real")
    one = make_function(code_root, "OneFunction", environment={"SHARED": "1", "ONLY_ONE": "x"})
    two = make_function(code_root, "TwoFunction", environment={"SHARED": "2"}, timeout=7)
    try:
        env_one = one.invoke({})["env"]
        answer_two = two.invoke({})
        env_two = answer_two["env"]
    finally:
        one.stop()
        two.stop()
    assert (env_one["SHARED"], env_one["ONLY_ONE"]) == ("1", "x")
    assert env_two["SHARED"] == "2"
    assert "ONLY_ONE" not in env_two
    for env in (env_one, env_two):
        assert "SMS_GATEWAY_ONLY_IN_THE_PARENT" not in env
        assert "AWS_PROFILE" not in env
        assert env["AWS_REGION"] == "us-east-1"
        assert env["_HANDLER"] == "app.lambda_handler"
        assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env_two["AWS_LAMBDA_FUNCTION_NAME"] == "local-TwoFunction"
    assert answer_two["cwd"] == str((code_root / "fn").resolve())  # LAMBDA_TASK_ROOT
    assert 5_000 < answer_two["remaining_ms"] <= 7_000


def test_a_timed_out_invocation_is_answered_as_lambda_does_and_its_environment_replaced(
    code_root: Path,
) -> None:
    sink = Sink()
    function = make_function(code_root, timeout=1, max_environments=1, sink=sink)
    try:
        before = function.invoke({})["pid"]
        started = time.monotonic()
        with pytest.raises(FunctionTimeout) as caught:
            function.invoke({"action": "sleep", "seconds": 30}, "req-slow")
        assert time.monotonic() - started < 5
        assert caught.value.error == {
            "errorMessage": "RequestId: req-slow Error: Task timed out after 1.00 seconds",
            "errorType": "Sandbox.Timedout",
            "stackTrace": [],
        }
        assert not pid_alive(before)  # killed and reaped
        assert "req-slow Task timed out after 1.00 seconds" in sink.text("EchoFunction")
        after = function.invoke({})
        assert after["pid"] != before
        assert after["count"] == 1  # a cold start: fresh module state
        assert function.cold_starts == 2
    finally:
        function.stop()


def test_handler_errors_keep_the_environment_and_a_dead_process_is_replaced(
    code_root: Path,
) -> None:
    sink = Sink()
    function = make_function(code_root, max_environments=1, sink=sink)
    try:
        pid = function.invoke({})["pid"]
        with pytest.raises(FunctionError) as raised:
            function.invoke({"action": "raise"})
        assert raised.value.error_type == "ValueError"
        assert raised.value.error_message == "bad input"
        assert any("lambda_handler" in frame for frame in raised.value.error["stackTrace"])
        # The log arrives through a reader thread of its own, maybe after the answer.
        assert wait_until(lambda: "[ERROR] ValueError: bad input" in sink.text("EchoFunction"))
        with pytest.raises(FunctionError) as marshal:
            function.invoke({"action": "unserializable"})
        assert marshal.value.error_type == "Runtime.MarshalError"
        assert function.invoke({})["pid"] == pid  # still the warm environment

        with pytest.raises(FunctionError) as exited:
            function.invoke({"action": "exit"}, "req-exit")
        assert exited.value.error_type == "Runtime.ExitError"
        assert exited.value.error_message == (
            "RequestId: req-exit Error: Runtime exited with error: exit status 3"
        )
        again = function.invoke({})
        assert again["pid"] != pid
        assert again["count"] == 1
    finally:
        function.stop()


def test_init_failure_is_a_function_error_and_the_stdout_is_the_log(code_root: Path) -> None:
    sink = Sink()
    function = make_function(code_root, environment={"FAIL_AT_INIT": "1"}, sink=sink)
    try:
        with pytest.raises(FunctionError) as caught:
            function.invoke({})
        assert caught.value.error_type == "Runtime.RuntimeError"
        assert caught.value.error_message == "init went wrong"
        assert function.environment_count == 0
    finally:
        function.stop()
    log = sink.text("EchoFunction")
    assert "init of local-EchoFunction" in log
    assert "[ERROR] Runtime.RuntimeError: init went wrong" in log


ORPHAN_SCRIPT = """\
import json, sys, time
from pathlib import Path
from sms_gateway.local.runtime import LocalFunction
from sms_gateway.local.template import FunctionSpec

spec = FunctionSpec("EchoFunction", "fn/", "app.lambda_handler", "python3.12", 5, 128, {})
function = LocalFunction(spec, Path(sys.argv[1]), "f", "us-east-1", "123456789012",
                         log_sink=lambda name, line: None)
print(json.dumps(function.invoke({})["pid"]), flush=True)
time.sleep(60)
"""


def test_environments_do_not_outlive_a_killed_stack(code_root: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_SCRIPT, str(code_root)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        worker = json.loads(parent.stdout.readline())
        assert pid_alive(worker)
        parent.kill()
        parent.wait(10)
        # The worker's watchdog sees its parent gone within half a second.
        assert wait_until(lambda: not pid_alive(worker), timeout=10)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_an_idle_environment_whose_process_died_is_never_handed_a_request(
    code_root: Path,
) -> None:
    # Lambda never routes to a dead sandbox: the next request cold-starts a new one.
    function = make_function(code_root, max_environments=2)
    try:
        pids = {function.invoke({})["pid"]}
        pid = pids.pop()
        os.kill(pid, signal.SIGKILL)  # killed while idle (OOM killer, kill -9 ...)
        # Until all of its threads are gone the process shows as a zombie but cannot be
        # waited for yet; WNOWAIT asks whether it can, without reaping it.
        assert wait_until(
            lambda: os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        )
        answer = function.invoke({}, "after-kill")
        assert answer["count"] == 1  # a fresh environment
        assert function.cold_starts == 2
        assert function.environment_count == 1  # the dead one no longer counts
    finally:
        function.stop()
