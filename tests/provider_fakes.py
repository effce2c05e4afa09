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
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from tests.support import serving_thread

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
    # Twilio: numbers whose reset comes after the message was created (the answer was lost)
    created_before_reset: set[str] = field(default_factory=set)
    # Twilio: an HTTP status the Messages list answers with instead of the list
    list_status: int | None = None
    during: dict[str, list[Callable[[], None]]] = field(default_factory=dict)


class _Fake(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # a batch's parallel sends connect at once

    def __init__(self, kind: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.kind = kind
        self.script = Script()
        self.requests: list[Recorded] = []
        # Twilio: the messages it created (its Messages list), oldest first
        self.created: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def refuse(self, to: str, status: int, body: dict[str, Any]) -> None:
        self.script.refusals[to] = (status, body)

    def slow(self, to: str, seconds: float) -> None:
        self.script.slow[to] = seconds

    def reset(self, to: str, times: int = 1_000_000, *, created: bool = False) -> None:
        """Close the connection with no answer ``times`` times for ``to``; ``created``
        (Twilio): the message was created first, so its Messages list shows it."""
        self.script.reset[to] = times
        if created:
            self.script.created_before_reset.add(to)

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

    def do_GET(self) -> None:
        """Twilio's Messages list (twilio-python ``MessageList.page``): filtered by ``To`` and
        ``From``, newest first, at most ``PageSize``; ``{"messages": [...], ...}``."""
        fake = self.server
        with fake.lock:
            fake.requests.append(
                Recorded("GET", self.path, {k.lower(): v for k, v in self.headers.items()}, b"")
            )
        path, _, query = self.path.partition("?")
        expected = "Basic " + base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
        if fake.kind != "twilio" or self.headers.get("Authorization") != expected:
            self._answer(401, {"code": 20003, "message": "Authenticate", "status": 401})
            return
        if path != f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json":
            self._answer(404, {"code": 20404, "message": "not found", "status": 404})
            return
        if fake.script.list_status is not None:
            self._answer(fake.script.list_status, {"code": 20500, "message": "x", "status": 500})
            return
        params = dict(parse_qsl(query))
        size = int(params.get("PageSize", "50"))
        with fake.lock:
            found = [
                m
                for m in reversed(fake.created)
                if m["to"] == params.get("To", m["to"])
                and m["from"] == params.get("From", m["from"])
            ][:size]
        self._answer(200, {"messages": found, "page": 0, "page_size": size})

    def _create(self, form: dict[str, str]) -> str:
        """Twilio's message resource for ``form``; recorded in the Messages list."""
        sid = "SM" + uuid.uuid4().hex
        with self.server.lock:
            self.server.created.append(
                {
                    "sid": sid,
                    "to": form.get("To"),
                    "from": form.get("From"),
                    "body": form.get("Body"),
                    "status": "queued",
                    "direction": "outbound-api",
                    "date_created": formatdate(usegmt=True),
                    "date_sent": None,
                }
            )
        return sid

    def _scripted(self, to: str, form: dict[str, str] | None = None) -> bool:
        script = self.server.script
        if script.during.get(to):
            script.during[to].pop(0)()
        if script.reset.get(to, 0) > 0:
            if form is not None and to in script.created_before_reset:
                self._create(form)
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
        if self._scripted(form.get("To", ""), form):
            return
        sid = self._create(form)
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
    thread = serving_thread(server)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


FakeServer = _Fake
