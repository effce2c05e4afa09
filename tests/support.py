"""Test support: the gateway's real handlers driven in-process under moto, over real SQL.

:class:`Gateway` builds API Gateway events from the samples in ``events/`` (the same shapes
``sam local invoke`` replays), calls the functions' own ``lambda_handler``s, and pumps the
SendQueue and DeadLetterQueue through the local stack's SQS poller (Lambda's event source
mapping: partial batch responses, visibility timeouts, moto's redrive).
"""

from __future__ import annotations

import copy
import http.server
import importlib.util
import io
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

from sqlalchemy import select

from sms_gateway.local.pollers import PollOutcome, SqsPoller
from sms_gateway.providers.base import SendRequest, SendResult
from sms_gateway.storage.engine import make_engine
from sms_gateway.storage.repository import MessageRepository
from sms_gateway.storage.tables import receipts

REPO_ROOT = Path(__file__).resolve().parents[1]

# The template's functions, as the tests expect them (the template tests hold the template to
# this list; a new function is added here on purpose, with its handler in FUNCTION_IDS).
ALL_FUNCTIONS = frozenset(
    {
        "IngestFunction",
        "StatusFunction",
        "SenderFunction",
        "DlqFunction",
        "MigrateFunction",
        "AdminFunction",
        "RetentionFunction",
        "EumEventsFunction",
    }
)
# Those that reach the database (in the VPC, with its address and secret): all but ingest.
SQL_FUNCTIONS = ALL_FUNCTIONS - {"IngestFunction"}
EVENTS = REPO_ROOT / "events"


def load_handler(function_dir: str) -> ModuleType:
    """``functions/<function_dir>/app.py`` as a module (each function is its own package root
    in Lambda, so they are loaded by path, under distinct names)."""
    path = REPO_ROOT / "functions" / function_dir / "app.py"
    spec = importlib.util.spec_from_file_location(f"function_{function_dir}_app", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeLambdaContext:
    """The parts of ``LambdaContext`` Powertools reads."""

    def __init__(self, name: str) -> None:
        self.function_name = name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 512
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def sample(name: str) -> dict[str, Any]:
    """A copy of ``events/<name>``."""
    data: dict[str, Any] = json.loads((EVENTS / name).read_text(encoding="utf-8"))
    return data


def api_event(
    method: str,
    path: str,
    *,
    body: str | None = None,
    headers: dict[str, str] | None = None,
    path_parameters: dict[str, str] | None = None,
    api_key_id: str | None = None,
) -> dict[str, Any]:
    """An API Gateway REST proxy event shaped like ``events/ingest-post-message.json``, with
    only the given headers (plus the sample's transport headers)."""
    event = copy.deepcopy(sample("ingest-post-message.json"))
    for gateway_header in ("X-Tenant-ID", "Idempotency-Key", "Content-Type"):
        event["headers"].pop(gateway_header, None)
        event["multiValueHeaders"].pop(gateway_header, None)
    for key, value in (headers or {}).items():
        event["headers"][key] = value
        event["multiValueHeaders"][key] = [value]
    resource = "/v1/messages/{message_id}" if path_parameters else path
    event.update(
        httpMethod=method,
        path=path,
        resource=resource,
        body=body,
        pathParameters=path_parameters,
    )
    event["requestContext"].update(
        httpMethod=method, resourcePath=resource, path=f"/dev{path}", requestId=str(uuid.uuid4())
    )
    event["requestContext"]["identity"]["apiKeyId"] = api_key_id
    return event


@dataclass
class HttpAnswer:
    """A proxy response, decoded."""

    status: int
    headers: dict[str, str]
    body: Any

    @classmethod
    def of(cls, answer: dict[str, Any]) -> HttpAnswer:
        headers = {k.lower(): v for k, v in (answer.get("headers") or {}).items()}
        for key, values in (answer.get("multiValueHeaders") or {}).items():
            headers[key.lower()] = values[-1]
        text = answer.get("body")
        return cls(answer["statusCode"], headers, json.loads(text) if text else None)


@dataclass
class RecordingProvider:
    """Wraps a provider and records each call (a spy on the provider boundary)."""

    inner: Any
    calls: list[SendRequest] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.inner.name)

    def send(self, request: SendRequest) -> SendResult:
        self.calls.append(request)
        result: SendResult = self.inner.send(request)
        return result


class FakeClock:
    """A settable UTC clock; the services read time from :func:`sms_gateway.wiring.utc_now`."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Gateway:
    """Handlers + queues + database of one test."""

    sqs: Any
    send_queue_url: str
    send_queue_arn: str
    dead_letter_queue_url: str
    dead_letter_queue_arn: str
    dsn: str
    repo: MessageRepository
    providers: dict[str, RecordingProvider]
    handlers: dict[str, ModuleType]
    clock: FakeClock

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        return self.handlers[function].lambda_handler(event, FakeLambdaContext(function))

    def api(self, function: str, event: dict[str, Any]) -> HttpAnswer:
        return HttpAnswer.of(self.invoke(function, event))

    def post_message(
        self, tenant: str | None, key: str | None, body: str | dict[str, Any], **headers: str
    ) -> HttpAnswer:
        text = body if isinstance(body, str) else json.dumps(body)
        all_headers = {"Content-Type": "application/json", **headers}
        if tenant is not None:
            all_headers["X-Tenant-ID"] = tenant
        if key is not None:
            all_headers["Idempotency-Key"] = key
        return self.api("ingest", api_event("POST", "/v1/messages", body=text, headers=all_headers))

    def post_batch(
        self, tenant: str | None, key: str | None, body: str | dict[str, Any], **headers: str
    ) -> HttpAnswer:
        """``POST /v1/messages/batch`` (bulk send) through the ingest handler."""
        text = body if isinstance(body, str) else json.dumps(body)
        all_headers = {"Content-Type": "application/json", **headers}
        if tenant is not None:
            all_headers["X-Tenant-ID"] = tenant
        if key is not None:
            all_headers["Idempotency-Key"] = key
        return self.api(
            "ingest", api_event("POST", "/v1/messages/batch", body=text, headers=all_headers)
        )

    def get_message(self, tenant: str, message_id: str) -> HttpAnswer:
        return self.api(
            "status",
            api_event(
                "GET",
                f"/v1/messages/{message_id}",
                headers={"X-Tenant-ID": tenant},
                path_parameters={"message_id": message_id},
            ),
        )

    def cancel_message(self, tenant: str, message_id: str) -> HttpAnswer:
        """``POST /v1/messages/{id}/cancel`` through the status handler."""
        event = api_event(
            "POST",
            f"/v1/messages/{message_id}/cancel",
            headers={"X-Tenant-ID": tenant},
            path_parameters={"message_id": message_id},
        )
        event["resource"] = "/v1/messages/{message_id}/cancel"
        event["requestContext"]["resourcePath"] = event["resource"]
        return self.api("status", event)

    def post_receipt(self, payload: dict[str, Any] | str) -> HttpAnswer:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        return self.api(
            "status",
            api_event(
                "POST", "/v1/receipts", body=text, headers={"Content-Type": "application/json"}
            ),
        )

    def poller(self, which: str) -> SqsPoller:
        if which == "sender":
            url, arn = self.send_queue_url, self.send_queue_arn
        else:
            url, arn = self.dead_letter_queue_url, self.dead_letter_queue_arn
        return SqsPoller(
            sqs=self.sqs,
            queue_url=url,
            queue_arn=arn,
            invoke=lambda event: self.invoke(which, event),
            batch_size=10,
            wait_time_seconds=0,
            name=which,
        )

    def pump(self, which: str, max_rounds: int = 50) -> list[PollOutcome]:
        """Poll ``which`` (sender or dlq) until a poll receives nothing (bounded)."""
        poller = self.poller(which)
        outcomes = []
        for _ in range(max_rounds):
            outcome = poller.poll_once()
            if not outcome.received:
                return outcomes
            outcomes.append(outcome)
        raise AssertionError(f"{which} queue did not drain in {max_rounds} rounds")

    def run_until_idle(self, max_rounds: int = 20) -> None:
        """Alternate sender and DLQ pumps until neither receives anything."""
        for _ in range(max_rounds):
            if not self.pump("sender") and not self.pump("dlq"):
                return
        raise AssertionError("gateway did not go idle")

    def queue_depth(self, which: str = "send") -> int:
        url = self.send_queue_url if which == "send" else self.dead_letter_queue_url
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(
            attrs["ApproximateNumberOfMessagesNotVisible"]
        )

    def visible_messages(self, which: str = "send") -> int:
        """``ApproximateNumberOfMessages``: those a receive would get now."""
        url = self.send_queue_url if which == "send" else self.dead_letter_queue_url
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"])

    def sends(self, message_id: str) -> list[SendRequest]:
        """Every provider call made for ``message_id``, over all providers."""
        return [c for p in self.providers.values() for c in p.calls if c.message_id == message_id]


@contextmanager
def powertools_log() -> Iterator[io.StringIO]:
    """What the gateway's Powertools Logger writes (``sms_gateway.observability.logger``),
    captured: the real JSON lines, one per record."""
    from sms_gateway.observability import logger

    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        handler.setStream(previous)


@dataclass
class ResponseCatcher:
    """An HTTP server on 127.0.0.1 standing in for a custom resource's pre-signed S3
    ``ResponseURL``: records each request's method, path, headers and JSON body, answers 200."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)

    @contextmanager
    def serving(self) -> Iterator[ResponseCatcher]:
        catcher = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                catcher.requests.append(
                    {
                        "method": "PUT",
                        "path": self.path,
                        "headers": dict(self.headers.items()),
                        "body": json.loads(raw),
                    }
                )
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = serving_thread(server)
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


def serving_thread(server: Any) -> threading.Thread:
    """A daemon thread (not started) running ``server.serve_forever`` (a ``socketserver`` or
    werkzeug server) that sees ``shutdown()`` within 0.05 s: at the default poll interval,
    0.5 s, every stub's stop cost half a second."""
    return threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )


def receipt_columns(gateway: Gateway, message_id: str, *columns: str) -> list[tuple[Any, ...]]:
    """``columns`` of the receipts stored for ``message_id``, oldest first."""
    engine = make_engine(gateway.dsn)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(*(receipts.c[name] for name in columns))
                .where(receipts.c.message_id == message_id)
                .order_by(receipts.c.id)
            ).all()
    finally:
        engine.dispose()
    return [tuple(row) for row in rows]


def stored_receipts(gateway: Gateway, message_id: str) -> list[tuple[Any, ...]]:
    """The receipts stored for ``message_id``: (provider message id, outcome), oldest first."""
    return receipt_columns(gateway, message_id, "provider_message_id", "outcome")
