"""Loopback servers that behave like the HTTP providers' APIs (issue 7, item 7): Twilio's
Messages API and the generic HTTP aggregator. 127.0.0.1 only, port chosen by the OS.

Each answers per destination number (``To`` / ``to``): success by default; a scripted refusal
(``refuse``), a slow answer (``slow``: sleeps past the client's read timeout), or a reset
after the request was read (``reset``: the connection is closed with no answer); ``during``
runs a callable once when the next request for a number has arrived, before it is answered
(what happens while the provider call is in flight, e.g. a receipt). Every
request is recorded (method, path, headers, raw body) for exact assertions.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

TWILIO_SID = "AC" + "a1" * 16
TWILIO_TOKEN = "twilio-test-auth-token"
AGGREGATOR_SECRET = "aggregator-test-signing-secret"


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Script:
    """What the fake answers for a number: ``refusals`` (status, JSON body), ``slow`` (seconds
    to sleep before a success), ``reset`` (how many more times to close without an answer)."""

    refusals: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    slow: dict[str, float] = field(default_factory=dict)
    reset: dict[str, int] = field(default_factory=dict)
    during: dict[str, list[Callable[[], None]]] = field(default_factory=dict)


class _Fake(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # a batch's parallel sends connect at once

    def __init__(self, kind: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.kind = kind
        self.script = Script()
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def refuse(self, to: str, status: int, body: dict[str, Any]) -> None:
        self.script.refusals[to] = (status, body)

    def slow(self, to: str, seconds: float) -> None:
        self.script.slow[to] = seconds

    def reset(self, to: str, times: int = 1_000_000) -> None:
        self.script.reset[to] = times

    def during(self, to: str, action: Callable[[], None]) -> None:
        """Run ``action`` when the next request for ``to`` has arrived, before its answer
        (one action per request, in the order given)."""
        self.script.during.setdefault(to, []).append(action)


class _Handler(BaseHTTPRequestHandler):
    server: _Fake

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        # the client may have given up (read timeout): what the slow case is about
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        fake = self.server
        with fake.lock:
            fake.requests.append(
                Recorded("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, raw)
            )
        if fake.kind == "twilio":
            self._twilio(raw)
        else:
            self._aggregator(raw)

    def _scripted(self, to: str) -> bool:
        script = self.server.script
        if script.during.get(to):
            script.during[to].pop(0)()
        if script.reset.get(to, 0) > 0:
            script.reset[to] -= 1
            self.close_connection = True
            self.connection.close()
            return True
        if to in script.slow:
            time.sleep(script.slow[to])
        if to in script.refusals:
            self._answer(*script.refusals[to])
            return True
        return False

    def _twilio(self, raw: bytes) -> None:
        expected = "Basic " + base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self._answer(401, {"code": 20003, "message": "Authenticate", "status": 401})
            return
        if self.path != f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json":
            self._answer(404, {"code": 20404, "message": "not found", "status": 404})
            return
        form = dict(parse_qsl(raw.decode(), keep_blank_values=True))
        if self._scripted(form.get("To", "")):
            return
        sid = "SM" + uuid.uuid4().hex
        self._answer(201, {"sid": sid, "status": "queued", "to": form.get("To")})

    def _aggregator(self, raw: bytes) -> None:
        timestamp = self.headers.get("X-Timestamp", "")
        mac = hmac.new(
            AGGREGATOR_SECRET.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256
        ).hexdigest()
        if self.headers.get("X-Signature") != f"v1={mac}":
            self._answer(401, {"error": {"code": "unauthorized", "message": "bad signature"}})
            return
        data = json.loads(raw)
        if self._scripted(data.get("to", "")):
            return
        self._answer(200, {"provider_message_id": "agg-" + uuid.uuid4().hex})


@contextmanager
def fake_server(kind: str) -> Iterator[_Fake]:
    """A running fake (``twilio`` or ``http``) on 127.0.0.1; stopped on exit."""
    server = _Fake(kind)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


FakeServer = _Fake
