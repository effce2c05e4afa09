"""``sms-gateway local`` as a user runs it, in a subprocess on a free loopback port with a data
dir of its own: :func:`local_stack` starts it and waits for its ready line, :class:`Stack`
talks to it over HTTP (the e2e tests, the CLI tests of tests/integration).

Every wait is for a condition, and bounded generously for a busy machine: the stack must be
ready within 180 s, each request answers within 60 s and each flow settles within 60 s.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from sms_gateway.storage.engine import make_engine
from sms_gateway.storage.repository import MessageRepository
from tests.support import REPO_ROOT

READY = re.compile(r"Local stack ready on (http://127\.0\.0\.1:\d+)")
MOTO = re.compile(r"AWS \(moto\)\s+(http://127\.0\.0\.1:\d+)")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class Stack:
    url: str
    moto_url: str
    dsn: str
    repo: MessageRepository
    startup: list[str] = field(default_factory=list)  # its output up to the ready line

    def request(self, method: str, path: str, body: Any = None, **headers: str) -> Reply:
        data = None
        if body is not None:
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            headers.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                raw, status, hdrs = resp.read(), resp.status, resp.headers
        except urllib.error.HTTPError as err:
            raw, status, hdrs = err.read(), err.code, err.headers
        return Reply(
            status, {k.lower(): v for k, v in hdrs.items()}, json.loads(raw) if raw else None
        )

    def send(self, tenant: str, key: str, body: Any) -> Reply:
        return self.request(
            "POST", "/v1/messages", body, **{"X-Tenant-ID": tenant, "Idempotency-Key": key}
        )

    def status(self, tenant: str, message_id: str) -> Reply:
        return self.request("GET", f"/v1/messages/{message_id}", **{"X-Tenant-ID": tenant})

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def wait_status(
        self, tenant: str, message_id: str, wanted: str, timeout: float = 60.0
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            reply = self.status(tenant, message_id)
            return reply.body if reply.status == 200 and reply.body["status"] == wanted else None

        result: dict[str, Any] = self.wait_for(f"{message_id} -> {wanted}", check, timeout)
        return result


@contextmanager
def local_stack(
    data_dir: Path, *, env: Mapping[str, str] | None = None, args: Sequence[str] = ()
) -> Iterator[tuple[subprocess.Popen[str], Stack, Engine]]:
    """``sms-gateway local --port 0 --data-dir data_dir [args]`` in a subprocess, ready within
    180 s, with the process environment less ``SMS_GATEWAY_*``/``AWS_*`` plus ``env``. Yields
    the process, the :class:`Stack` (with the output lines up to the ready line) and an engine
    on its default SQLite file; on exit, SIGINT (then a kill after 60 s) unless the test
    already ended the process."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SMS_GATEWAY_", "AWS_"))}
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "sms_gateway.local.cli", "local", "--port", "0"),
            *("--data-dir", str(data_dir), *args),
        ],
        cwd=REPO_ROOT,
        env={**clean, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    url = moto = None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and url is None:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        moto = moto or (m.group(1) if (m := MOTO.search(line)) else None)
        url = m.group(1) if (m := READY.search(line)) else None
    if url is None or moto is None:
        proc.kill()
        proc.wait(timeout=10)
        raise AssertionError("local stack did not start:\n" + "".join(lines[-40:]))
    output = proc.stdout  # kept drained so the pipe never fills
    threading.Thread(target=lambda: [None for _ in output], daemon=True).start()
    dsn = f"sqlite:///{data_dir / 'sms-gateway.db'}"
    engine = make_engine(dsn)
    try:
        running = Stack(
            url=url, moto_url=moto, dsn=dsn, repo=MessageRepository(engine), startup=lines
        )
        yield proc, running, engine
    finally:
        engine.dispose()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)
