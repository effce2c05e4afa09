"""The local stack under concurrency, over real HTTP: the gateway's own functions, each in
execution environments of its own (processes), several per API function, as on Lambda.

- tenants do not leak into each other when their requests run at the same time;
- the API's 409 "in flight" answer: the same Idempotency-Key while the first request is still
  running (held, honestly, on its way to SQS by a gate in front of moto) lands in a second
  environment and is answered 409 with Retry-After.

The stack runs in this process on a free port; SQS calls of the functions go through a small
forwarding proxy (``AWS_ENDPOINT_URL_SQS``) that a test can close like a gate. Every wait is
bounded.
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sms_gateway.local.stack import LocalStack
from tests.support import REPO_ROOT, serving_thread

pytestmark = pytest.mark.e2e

GATE_WAIT_SECONDS = 20.0


class SqsGate:
    """A forwarding HTTP proxy to moto that can hold ``SendMessage`` calls while closed."""

    def __init__(self) -> None:
        self.target: str = ""
        self.open = threading.Event()
        self.open.set()
        self.held = threading.Event()
        gate = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                action = self.headers.get("X-Amz-Target", "")
                sending = action.endswith(".SendMessage") or b"Action=SendMessage&" in body
                if sending and not gate.open.is_set():
                    gate.held.set()
                    gate.open.wait(GATE_WAIT_SECONDS)
                parts = urllib.parse.urlsplit(gate.target)
                upstream = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    headers["Host"] = parts.netloc
                    upstream.request("POST", self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    payload = answer.read()
                    self.send_response(answer.status)
                    for key, value in answer.getheaders():
                        if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                finally:
                    upstream.close()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = serving_thread(self.server)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class Running:
    stack: LocalStack
    gate: SqsGate
    log: list[tuple[str, str]]

    def request(self, method: str, path: str, body: Any = None, **headers: str) -> Reply:
        parts = urllib.parse.urlsplit(self.stack.url)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
        try:
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers.setdefault("Content-Type", "application/json")
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            raw = response.read()
            return Reply(
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                json.loads(raw) if raw else None,
            )
        finally:
            connection.close()

    def send(self, tenant: str, key: str, body: Any) -> Reply:
        return self.request(
            "POST", "/v1/messages", body, **{"X-Tenant-ID": tenant, "Idempotency-Key": key}
        )

    def status(self, tenant: str, message_id: str) -> Reply:
        return self.request("GET", f"/v1/messages/{message_id}", **{"X-Tenant-ID": tenant})


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    data_dir: Path = tmp_path_factory.mktemp("concurrency")
    gate = SqsGate()
    gate.thread.start()
    log: list[tuple[str, str]] = []
    stack = LocalStack(
        REPO_ROOT,
        port=0,
        dsn=f"sqlite:///{data_dir / 'sms.db'}",
        data_dir=data_dir,
        env_overrides={"AWS_ENDPOINT_URL_SQS": gate.url},
        log_requests=False,
        environments=4,
        # every environment initialized before the mix: the test is about isolation between
        # concurrent invocations, not about cold starts on a loaded machine
        prewarm=4,
        log_sink=lambda function, line: log.append((function, line)),
    )
    try:
        stack.start()
        gate.target = stack.moto_endpoint
        yield Running(stack, gate, log)
    finally:
        gate.open.set()
        stack.stop()
        gate.server.shutdown()
        gate.server.server_close()


def wait_for_status(running: Running, tenant: str, message_id: str, timeout: float = 60) -> Reply:
    deadline = threading.Event()
    timer = threading.Timer(timeout, deadline.set)
    timer.start()
    try:
        while not deadline.is_set():
            reply = running.status(tenant, message_id)
            if reply.status == 200:
                return reply
            deadline.wait(0.2)
    finally:
        timer.cancel()
    raise AssertionError(f"{message_id} never readable by {tenant} within {timeout}s")


def test_concurrent_tenants_never_see_each_other(running: Running) -> None:
    secret = running.send(
        "tenant-1", f"secret-{uuid.uuid4().hex}", {"to": "+12025550143", "body": "s"}
    )
    assert secret.status == 202, secret.body
    secret_id = secret.body["message_id"]
    wait_for_status(running, "tenant-1", secret_id)

    per_thread = 25

    def post(thread: int) -> list[tuple[int, str | None, str]]:
        out = []
        for i in range(per_thread):
            to = f"+1202555{thread:02d}{i:02d}"
            reply = running.send("tenant-1", f"mix-{uuid.uuid4().hex}", {"to": to, "body": "hi"})
            out.append((reply.status, (reply.body or {}).get("message_id"), to))
        return out

    def read(thread: int) -> list[tuple[int, Any]]:
        return [
            (reply.status, reply.body)
            for reply in (running.status("tenant-2", secret_id) for _ in range(per_thread))
        ]

    with ThreadPoolExecutor(max_workers=8) as pool:
        posts = [pool.submit(post, n) for n in range(4)]
        reads = [pool.submit(read, n) for n in range(4)]
        posted = [item for future in posts for item in future.result(timeout=240)]
        read_back = [item for future in reads for item in future.result(timeout=240)]

    assert len(posted) == len(read_back) == 4 * per_thread
    leaks = [body for status, body in read_back if status != 404]
    assert leaks == []
    assert all(body["type"].endswith("message-not-found") for _, body in read_back)
    spurious = [(status, message_id) for status, message_id, _ in posted if status != 202]
    assert spurious == []
    ids = [message_id for _, message_id, _ in posted]
    assert None not in ids
    assert len(set(ids)) == len(ids)

    # Every message is tenant-1's (with its own number), none tenant-2's; read back from four
    # threads (the status function has four environments), as the mix was sent.
    def read_back_as_both(message_id: str) -> tuple[Any, int]:
        mine = wait_for_status(running, "tenant-1", message_id)
        return mine.body["to"], running.status("tenant-2", message_id).status

    with ThreadPoolExecutor(max_workers=4) as pool:
        seen = list(pool.map(read_back_as_both, ids, timeout=240))
    assert seen == [(to, 404) for _, _, to in posted]

    # It ran concurrently: each API function had several invocations in progress at once
    # (its environments were all started before the mix, so cold starts would prove nothing).
    assert running.stack.functions["IngestFunction"].peak_concurrency > 1
    assert running.stack.functions["StatusFunction"].peak_concurrency > 1


def test_same_key_while_the_first_request_is_in_flight_is_409(running: Running) -> None:
    key = f"inflight-{uuid.uuid4().hex}"
    body = {"to": "+12025550143", "body": "only once"}
    gate = running.gate
    gate.held.clear()
    gate.open.clear()
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            first = pool.submit(running.send, "tenant-1", key, body)
            # The first request has its INPROGRESS record and waits on its SendMessage.
            assert gate.held.wait(30), "the first request never reached SQS"
            second = running.send("tenant-1", key, body)
            gate.open.set()
            first_reply = first.result(timeout=60)
    finally:
        gate.open.set()
    assert first_reply.status == 202, first_reply.body
    assert second.status == 409, second.body
    assert second.headers["retry-after"] == "1"
    assert second.headers["content-type"] == "application/problem+json"
    # Once the first has finished, the same request is its replay.
    replay = running.send("tenant-1", key, body)
    assert replay.status == 202
    assert replay.body["message_id"] == first_reply.body["message_id"]
    assert replay.headers["idempotent-replayed"] == "true"
