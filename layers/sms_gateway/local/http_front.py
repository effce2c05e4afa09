"""An HTTP front that behaves like API Gateway's REST API with Lambda proxy integration.

Each request becomes the API Gateway (REST, payload v1, ``aws-proxy``) event the deployed API
would send; it is routed by the template's ``Api`` events and answered from the handler's proxy
response. API Gateway's own answers are kept: an unknown route is ``403 {"message":"Missing
Authentication Token"}``, a handler that raises or answers malformed is ``502 {"message":
"Internal server error"}``.

The server underneath is waitress (a maintained WSGI server with strict HTTP/1.1 parsing, a
configurable listen backlog and body limit, and a pool of worker threads); this module adds
only what API Gateway does differently: JSON error answers, refusing ``Content-Length`` beside
``Transfer-Encoding`` (RFC 9112 section 6.3), and an answer to a body cut short by the client.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import http
import json
import logging
import re
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError, get_header_lines
from waitress.server import BaseWSGIServer, MultiSocketServer, create_server
from waitress.task import ErrorTask, WSGITask
from waitress.utilities import BadRequest, RequestEntityTooLarge

from sms_gateway.local.template import ApiRoute
from sms_gateway.local.throttle import TOO_MANY_REQUESTS_BODY, StageThrottle

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = [
    "ApiFront",
    "HttpRequest",
    "HttpResponse",
    "InvalidProxyResponse",
    "RequestLog",
    "Router",
    "build_api_event",
    "print_request_line",
    "proxy_response_to_http",
]

logger = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES: Final = 10 * 1024 * 1024
"""API Gateway's payload limit, 10 MB = 10,485,760 bytes ("Amazon API Gateway quotas": payload
size, REST APIs); larger requests are answered 413."""
LISTEN_BACKLOG: Final = 1024
"""Pending connections the kernel queues before ``accept`` (capped by ``net.core.somaxconn``)."""
CONNECTION_LIMIT: Final = 1024
"""Open connections the server keeps at once, idle keep-alive ones included (waitress's default
of 100 is below the 128 pending connections issue 5 asks for: past the limit it stops
accepting, so a new request waits for an idle connection to time out). Matches the backlog."""
CHANNEL_TIMEOUT_SECONDS: Final = 60
"""An idle keep-alive connection is closed after this many seconds (waitress's default is 120);
API Gateway, too, closes idle client connections rather than keeping them without end."""
SERVER_THREADS: Final = 16
"""Requests handled at once; more wait in the server's queue, none is refused."""
# The server writes these itself, or they describe a hop, not the answer (RFC 9110 section 7.6.1).
_HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "content-length",
        "transfer-encoding",
        "keep-alive",
        "date",
        "server",
        "te",
        "trailer",
        "trailers",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    }
)

Invoker = Callable[[dict[str, Any], str], Any]
"""``invoke(event, request_id) -> proxy response``: calls one function's handler."""


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request as received.

    ``target`` is the request line's target (path and query, percent-encoded); ``headers``
    keeps the client's order, case and repeats; ``body`` is the raw payload.
    """

    method: str
    target: str
    headers: Sequence[tuple[str, str]]
    body: bytes
    source_ip: str = "127.0.0.1"
    protocol: str = "HTTP/1.1"

    @property
    def path(self) -> str:
        """The URL-decoded path, without the query string."""
        return unquote(urlsplit(self.target).path) or "/"

    @property
    def query(self) -> str:
        """The raw query string (no ``?``)."""
        return urlsplit(self.target).query

    def header(self, name: str) -> str | None:
        """The last value of header ``name`` (case-insensitive), or ``None``."""
        found = None
        for key, value in self.headers:
            if key.lower() == name.lower():
                found = value
        return found


@dataclass(frozen=True)
class HttpResponse:
    """An HTTP answer: status code, headers (repeats allowed, order kept) and body bytes."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @classmethod
    def json(cls, status: int, payload: Any, **extra_headers: str) -> HttpResponse:
        """A JSON answer; ``extra_headers`` use ``_`` for ``-`` in their names."""
        headers = [("Content-Type", "application/json")]
        headers += [(key.replace("_", "-"), value) for key, value in extra_headers.items()]
        return cls(status, headers, json.dumps(payload, separators=(",", ":")).encode())


MISSING_TOKEN: Final = HttpResponse.json(
    403,
    {"message": "Missing Authentication Token"},
    x_amzn_ErrorType="MissingAuthenticationTokenException",
)
INTERNAL_ERROR: Final = HttpResponse.json(502, {"message": "Internal server error"})
# API Gateway's answer to a request over the stage's method throttle (no function invoked)
TOO_MANY_REQUESTS: Final = HttpResponse.json(
    429, TOO_MANY_REQUESTS_BODY, x_amzn_ErrorType="TooManyRequestsException"
)
TOO_LARGE: Final = HttpResponse.json(413, {"message": "Request Too Long"})


class InvalidProxyResponse(ValueError):
    """A handler's answer is not a valid Lambda proxy response (API Gateway answers 502)."""


def _multi_map(pairs: Sequence[tuple[str, str]]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """(last value per key, every value per key), keys as given."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for key, value in pairs:
        single[key] = value
        multi.setdefault(key, []).append(value)
    return single, multi


def build_api_event(
    request: HttpRequest,
    route: ApiRoute,
    path_parameters: Mapping[str, str],
    *,
    stage: str,
    account_id: str = "123456789012",
    api_id: str = "local",
    request_id: str | None = None,
    now_ms: int | None = None,
) -> dict[str, Any]:
    """The API Gateway REST API proxy event (payload format 1.0) for ``request``.

    Shape as documented for Lambda proxy integrations: ``resource`` (the route's path
    template), ``path``, ``httpMethod``, ``headers``/``multiValueHeaders``,
    ``queryStringParameters``/``multiValueQueryStringParameters`` (``None`` when empty),
    ``pathParameters`` (``None`` when empty), ``stageVariables`` (``None``), ``requestContext``
    (``requestId``, ``stage``, ``resourcePath``, ``httpMethod``, ``identity.sourceIp``,
    ``requestTimeEpoch`` in ms ...), ``body`` (text, or base64 with ``isBase64Encoded`` when it
    is not UTF-8; ``None`` when empty).

    Like API Gateway, adds ``X-Forwarded-For``/``-Port``/``-Proto`` when the client did not.
    """
    request_id = request_id or str(uuid.uuid4())
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    pairs = list(request.headers)
    present = {key.lower() for key, _ in pairs}
    host = request.header("Host") or "localhost"
    port = host.rsplit(":", 1)[1] if ":" in host and not host.endswith("]") else "80"
    for key, value in (
        ("X-Forwarded-For", request.source_ip),
        ("X-Forwarded-Port", port),
        ("X-Forwarded-Proto", "http"),
    ):
        if key.lower() not in present:
            pairs.append((key, value))
    headers, multi_headers = _multi_map(pairs)
    query, multi_query = _multi_map(parse_qsl(request.query, keep_blank_values=True))

    body: str | None
    is_base64 = False
    if not request.body:
        body = None
    else:
        try:
            body = request.body.decode("utf-8")
        except UnicodeDecodeError:
            body = base64.b64encode(request.body).decode("ascii")
            is_base64 = True

    method = request.method.upper()
    return {
        "resource": route.path,
        "path": request.path,
        "httpMethod": method,
        "headers": headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": dict(path_parameters) or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": uuid.uuid5(uuid.NAMESPACE_URL, route.path).hex[:6],
            "resourcePath": route.path,
            "httpMethod": method,
            "extendedRequestId": base64.urlsafe_b64encode(uuid.uuid4().bytes)[:16].decode(),
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now_ms / 1000)),
            "path": f"/{stage}{request.path}",
            "accountId": account_id,
            "protocol": request.protocol,
            "stage": stage,
            "domainPrefix": host.split(".", 1)[0].split(":", 1)[0],
            "requestTimeEpoch": now_ms,
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": request.source_ip,
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": request.header("User-Agent"),
                "user": None,
                "apiKey": None,
                "apiKeyId": None,
                "clientCert": None,
            },
            "domainName": host,
            "apiId": api_id,
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }


def proxy_response_to_http(answer: Any, request_id: str | None = None) -> HttpResponse:
    """Turn a Lambda proxy response into HTTP, as API Gateway does.

    ``answer`` is ``{"statusCode": int, "headers"?: {str: str}, "multiValueHeaders"?:
    {str: [str]}, "body"?: str, "isBase64Encoded"?: bool}``. Headers from both maps are merged
    (a pair present in both appears once); hop-by-hop headers are dropped (the server frames
    the answer itself); ``Content-Type`` defaults to ``application/json`` like a REST API;
    ``x-amzn-RequestId`` carries ``request_id``.

    Raises:
        InvalidProxyResponse: ``answer`` is not of that shape (API Gateway answers 502
            "Malformed Lambda proxy response"): ``statusCode`` outside 200-599 (a 1xx is an
            interim answer, RFC 9110 section 15.2, never the final answer a proxy response
            is; 101 would switch protocols), a header name that is not an RFC 9110 token
            (``:``, spaces...), a value that is null, an object or a list, or holds a control
            character (CR, LF, NUL, 0x01-0x1F but tab, DEL) or a character beyond Latin-1.
    """
    if not isinstance(answer, dict):
        raise InvalidProxyResponse(f"answer is {type(answer).__name__}, not a dict")
    status = answer.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
        raise InvalidProxyResponse(f"statusCode {status!r} is not a final HTTP status")
    headers: list[tuple[str, str]] = []
    multi = answer.get("multiValueHeaders") or {}
    single = answer.get("headers") or {}
    if not isinstance(multi, dict) or not isinstance(single, dict):
        raise InvalidProxyResponse("headers and multiValueHeaders must be objects")
    for key, values in multi.items():
        if not isinstance(values, list):
            raise InvalidProxyResponse(f"multiValueHeaders[{key!r}] is not a list")
        headers += [(str(key), _header_text(value)) for value in values]
    for key, value in single.items():
        pair = (str(key), _header_text(value))
        if pair not in headers:
            headers.append(pair)
    for key, value in headers:
        if not _TOKEN.fullmatch(key):
            raise InvalidProxyResponse(f"header name {key!r} is not an RFC 9110 token")
        if not _FIELD_VALUE.fullmatch(value):
            raise InvalidProxyResponse(
                f"header {key!r}: value holds control characters or is not Latin-1 text"
            )
    headers = [(key, value) for key, value in headers if key.lower() not in _HOP_BY_HOP]
    if not any(key.lower() == "content-type" for key, _ in headers):
        headers.append(("Content-Type", "application/json"))
    if request_id:
        headers.append(("x-amzn-RequestId", request_id))

    body = answer.get("body")
    if body is None:
        payload = b""
    elif not isinstance(body, str):
        raise InvalidProxyResponse(f"body is {type(body).__name__}, not a string")
    elif answer.get("isBase64Encoded"):
        try:
            payload = base64.b64decode(body, validate=True)
        except binascii.Error as error:
            raise InvalidProxyResponse(f"body is not base64: {error}") from None
    else:
        payload = body.encode("utf-8")
    return HttpResponse(status, headers, payload)


_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""A header name: ``token`` (RFC 9110 section 5.6.2)."""
_FIELD_VALUE: Final = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
"""A header value: visible ASCII, space, tab and obs-text (Latin-1 0x80-0xFF), no other
control character (RFC 9110 section 5.5); waitress writes header fields as Latin-1."""


def _header_text(value: Any) -> str:
    """A header value as API Gateway writes it: strings as is, numbers and booleans in JSON
    spelling; anything else (null, objects, lists) is a malformed proxy response."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise InvalidProxyResponse(f"header value {value!r} is not a string, number or boolean")


@dataclass
class Router:
    """Routes (method, path) to a function by the template's ``Api`` events.

    Most specific first (literal segments over ``{param}`` over ``{param+}``), as API Gateway
    matches resources. ``routes`` pairs each route with the invoker of its function.
    """

    routes: Sequence[tuple[ApiRoute, Invoker]]

    def __post_init__(self) -> None:
        self.routes = sorted(self.routes, key=lambda item: item[0].specificity, reverse=True)

    def match(self, method: str, path: str) -> tuple[ApiRoute, Invoker, dict[str, str]] | None:
        """The route, invoker and path parameters for a request, or ``None`` (API Gateway's
        403 Missing Authentication Token, which it also answers for a known path with an
        unknown method)."""
        for route, invoker in self.routes:
            params = route.match(method, path)
            if params is not None:
                return route, invoker, params
        return None


@dataclass(frozen=True)
class RequestLog:
    """One answered request, for a one-line log.

    ``path`` is the decoded path without the query string (a query may carry a phone number);
    ``latency_ms`` is milliseconds from the request being read to the answer being ready;
    ``request_id`` is the ``x-amzn-RequestId`` answered; ``tenant`` is the API key's id when the
    event carries one, else the ``X-Tenant-ID`` header, else ``None``; ``function`` is the
    function the route invoked (``None`` for API Gateway's own answers and framing errors).
    Never a body, and no header other than the tenant's.
    """

    method: str
    path: str
    status: int
    latency_ms: float
    request_id: str
    tenant: str | None = None
    function: str | None = None
    source_ip: str = "-"


RequestHook = Callable[[RequestLog], None]
"""``on_request(entry)``: called once per answered request, from the thread that answered."""


def print_request_line(entry: RequestLog) -> None:
    """The default :data:`RequestHook`: one INFO line on this module's logger, e.g.
    ``127.0.0.1 "POST /v1/messages" 202 12ms -> IngestFunction tenant=tenant-1 id=...``."""
    logger.info(
        '%s "%s %s" %d %.0fms -> %s tenant=%s id=%s',
        entry.source_ip,
        entry.method,
        entry.path,
        entry.status,
        entry.latency_ms,
        entry.function or "-",
        entry.tenant or "-",
        entry.request_id,
    )


class ApiFront:
    """A waitress server on ``host:port`` serving a :class:`Router` as API Gateway would.

    Args:
        router: the routes.
        host, port: where to listen (IPv4 or IPv6 literal, or a name); port 0 picks a free
            port (see :attr:`port`).
        stage: the API stage shown in events (``requestContext.stage``).
        account_id: shown in ``requestContext.accountId``.
        log_requests: without ``on_request``, log one access line per request with
            :func:`print_request_line`.
        on_request: called with a :class:`RequestLog` for every answered request, framing
            errors included; exceptions it raises are logged and otherwise ignored.
        threads: requests handled at once (each in its own worker thread).
        backlog: the listen backlog (pending connections), at least 128. Open connections
            are limited to :data:`CONNECTION_LIMIT` (or ``backlog`` if larger); idle ones are
            closed after :data:`CHANNEL_TIMEOUT_SECONDS`.
        throttle: the stage's method throttling (:mod:`sms_gateway.local.throttle`): a
            routed request it refuses is answered :data:`TOO_MANY_REQUESTS` (429) without
            invoking the function. None: no throttling. May be replaced while serving.

    Framing follows RFC 9112 section 6.3: a malformed ``Content-Length`` (not digits, repeated
    with different values), a bad chunk, a body the client ends before its framing does, or
    ``Content-Length`` beside ``Transfer-Encoding`` is answered 400 and the connection closed;
    a payload over :data:`MAX_PAYLOAD_BYTES` is answered 413 ``{"message":"Request Too
    Long"}`` as soon as its length is known (spooled to a temporary file, not memory, while
    chunks arrive).

    Raises:
        OSError: the address is taken or cannot be bound (from the constructor).
        ValueError: ``backlog`` is under 128 or ``threads`` under 1.
    """

    def __init__(
        self,
        router: Router,
        *,
        host: str = "127.0.0.1",
        port: int = 3000,
        stage: str = "dev",
        account_id: str = "123456789012",
        log_requests: bool = True,
        on_request: RequestHook | None = None,
        threads: int = SERVER_THREADS,
        backlog: int = LISTEN_BACKLOG,
        throttle: StageThrottle | None = None,
    ) -> None:
        if backlog < 128:
            raise ValueError(f"backlog {backlog} is under 128")
        if threads < 1:
            raise ValueError(f"threads {threads} is under 1")
        self.router = router
        self.throttle = throttle
        self.stage = stage
        self.account_id = account_id
        self.log_requests = log_requests
        self.on_request = on_request or (print_request_line if log_requests else None)
        self.host = host
        self._server = create_server(
            self._wsgi,
            host=host,
            port=port,
            threads=threads,
            backlog=backlog,
            connection_limit=max(CONNECTION_LIMIT, backlog),
            channel_timeout=CHANNEL_TIMEOUT_SECONDS,
            # waitress refuses a body of max_request_body_size bytes or more.
            max_request_body_size=MAX_PAYLOAD_BYTES + 1,
            ident="sms-gateway-local",
            expose_tracebacks=False,
        )
        channel_class = _api_channel_class(self)
        for listener in self._listeners():
            listener.channel_class = channel_class
        self._thread: threading.Thread | None = None

    def _listeners(self) -> list[Any]:
        """The listening sockets' servers: one, or one per address a host name resolved to.
        (Typed ``Any``: types-waitress lacks ``effective_port``, ``_map`` and the trigger.)"""
        server = self._server
        if isinstance(server, MultiSocketServer):
            return [s for s in (server.map or {}).values() if isinstance(s, BaseWSGIServer)]
        return [server]

    @property
    def port(self) -> int:
        """The port actually bound."""
        return int(self._listeners()[0].effective_port)

    @property
    def url(self) -> str:
        """``http://host:port`` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Serve in a daemon thread (the worker threads already run)."""
        self._thread = threading.Thread(
            target=self._server.run, name="sms-gateway-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Close the listening socket and every connection, then end the worker threads
        (requests still running get up to 5 seconds)."""
        server = self._server
        first = self._listeners()[0]
        socket_map = server.map if isinstance(server, MultiSocketServer) else first._map
        if self._thread is not None and socket_map:
            # Closed from the serving thread itself (woken by the trigger), never beside it.
            try:
                first.trigger.pull_trigger(lambda: wasyncore.close_all(socket_map))
            except OSError:  # the trigger is already closed: close from here
                wasyncore.close_all(socket_map, ignore_all=True)
            self._thread.join(timeout=5)
            self._thread = None
        else:
            wasyncore.close_all(socket_map)
        server.task_dispatcher.shutdown(timeout=5)

    def handle(self, request: HttpRequest) -> HttpResponse:
        """Answer one request: route, build the event, invoke, translate the answer.

        Unknown paths, and known paths with another method, get API Gateway's 403
        ``{"message":"Missing Authentication Token"}``; a request over the stage's method
        throttle gets 429 ``{"message":"Too Many Requests"}`` and invokes nothing; a handler
        that raises or answers malformed gets 502 ``{"message":"Internal server error"}``.
        """
        started = time.monotonic()
        request_id = str(uuid.uuid4())
        found = self.router.match(request.method, request.path)
        function: str | None = None
        tenant = request.header(TENANT_HEADER)
        throttle = self.throttle
        if found is None:
            response = MISSING_TOKEN
        elif throttle is not None and not throttle.allow(request.method, found[0].path):
            response = TOO_MANY_REQUESTS
        else:
            route, invoker, params = found
            function = route.function
            event = build_api_event(
                request,
                route,
                params,
                stage=self.stage,
                account_id=self.account_id,
                request_id=request_id,
            )
            tenant = event["requestContext"]["identity"]["apiKeyId"] or tenant
            try:
                answer = invoker(event, request_id)
            except Exception:
                print(
                    f"{route.function} raised on {request.method} {request.path}:\n"
                    f"{traceback.format_exc()}",
                    file=sys.stderr,
                    flush=True,
                )
                response = INTERNAL_ERROR
            else:
                try:
                    response = proxy_response_to_http(answer, request_id)
                except InvalidProxyResponse as error:
                    logger.error("%s: malformed Lambda proxy response: %s", route.function, error)
                    response = INTERNAL_ERROR
        self.record(
            RequestLog(
                method=request.method,
                path=request.path,
                status=response.status,
                latency_ms=(time.monotonic() - started) * 1000,
                request_id=request_id,
                tenant=tenant,
                function=function,
                source_ip=request.source_ip,
            )
        )
        return response

    def record(self, entry: RequestLog) -> None:
        """Pass ``entry`` to the ``on_request`` hook, if any; a failing hook is logged."""
        if self.on_request is None:
            return
        try:
            self.on_request(entry)
        except Exception:
            logger.exception("on_request hook failed for %s %s", entry.method, entry.path)

    def _wsgi(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)  # digits, checked by the parser
        request = HttpRequest(
            method=environ["REQUEST_METHOD"],
            target=environ.get("REQUEST_URI") or "/",
            headers=environ.get(_RAW_HEADERS, ()),
            body=environ["wsgi.input"].read(length) if length > 0 else b"",
            source_ip=str(environ.get("REMOTE_ADDR") or "-"),
            protocol=environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
        )
        response = self.handle(request)
        headers = [*response.headers, ("Content-Length", str(len(response.body)))]
        start_response(f"{response.status} {_reason(response.status)}", headers)
        return [] if request.method == "HEAD" else [response.body]  # RFC 9110 section 9.3.2


TENANT_HEADER: Final = "X-Tenant-ID"
_RAW_HEADERS: Final = "sms_gateway.raw_headers"
"""WSGI environ key: the request's header lines as sent (order, case and repeats kept);
WSGI's ``HTTP_*`` keys upper-case names and join repeats, and API Gateway keeps both."""


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _error_answer(error: Any) -> HttpResponse:
    """waitress's framing errors as JSON ``{"message": ...}`` answers, API Gateway's style."""
    if isinstance(error, RequestEntityTooLarge):
        return TOO_LARGE
    return HttpResponse.json(int(error.code), {"message": f"{error.reason}: {error.body}"})


class _ApiParser(HTTPRequestParser):
    """waitress's parser, keeping the raw header lines and refusing ambiguous framing."""

    raw_headers: tuple[tuple[str, str], ...] = ()

    def parse_header(self, header_plus: bytes) -> None:
        # Kept first, so that an error answer can still name the tenant; the parser below
        # checks each line's RFC 9110 field syntax ("name: value") and refuses bad ones.
        pairs = []
        with contextlib.suppress(ParsingError):
            for line in get_header_lines(header_plus.partition(b"\r\n")[2]):
                name, _, value = line.partition(b":")
                if b"_" in name:  # waitress drops these: X_Tenant_ID must not pose as X-Tenant-ID
                    continue
                pairs.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
        self.raw_headers = tuple(pairs)
        super().parse_header(header_plus)
        # RFC 9112 section 6.3: Content-Length beside Transfer-Encoding "ought to be handled as
        # an error" (a request smuggling shape); a server MAY reject it. waitress would drop
        # Content-Length and go on; refuse instead (400, connection closed).
        if self.chunked and "CONTENT_LENGTH" in self.headers:
            raise ParsingError("Content-Length and Transfer-Encoding together")


class _ApiTask(WSGITask):
    def get_environment(self) -> WSGIEnvironment:
        environ = super().get_environment()
        environ[_RAW_HEADERS] = getattr(self.request, "raw_headers", ())
        return environ


def _api_channel_class(front: ApiFront) -> type[HTTPChannel]:
    """An ``HTTPChannel`` (one per connection) with the parser and tasks above, and an answer
    to a body cut short: waitress closes silently on EOF; a 400 tells the client why."""

    class _ApiErrorTask(ErrorTask):
        def execute(self) -> None:
            started = time.monotonic()
            request: Any = self.request  # a parser; types-waitress says its error
            answer = _error_answer(request.error)
            # The server speaks HTTP/1.1 (RFC 9110 section 6.2), whatever a request it could
            # not parse claimed (waitress would fall back to HTTP/1.0 for those).
            self.version = "1.1"
            self.status = f"{answer.status} {_reason(answer.status)}"
            self.response_headers = [*self.response_headers, *answer.headers]
            self.set_close_on_finish()
            self.content_length = len(answer.body)
            self.write(answer.body)
            raw = {key.lower(): value for key, value in getattr(request, "raw_headers", ())}
            # A request refused in its start line or headers never got a command or a path
            # (waitress sets them only once the header block parses).
            method = getattr(request, "command", None)
            path = getattr(request, "path", None)
            front.record(
                RequestLog(
                    method=method if isinstance(method, str) and method else "-",
                    path=unquote(path) if isinstance(path, str) and path else "-",
                    status=answer.status,
                    latency_ms=(time.monotonic() - started) * 1000,
                    request_id=str(uuid.uuid4()),
                    tenant=raw.get(TENANT_HEADER.lower()),
                    source_ip=str(self.channel.addr[0]) if self.channel.addr else "-",
                )
            )

    class _ApiChannel(HTTPChannel):
        parser_class = _ApiParser
        task_class = _ApiTask
        error_task_class = _ApiErrorTask

        def handle_read(self) -> None:
            request = self.request
            if request is not None and request.headers_finished and _at_eof(self.socket):
                # RFC 9112 section 6.3: a body shorter than its framing is incomplete; answer
                # it (the client half-closed and still reads) instead of dropping it. Queued
                # as waitress's received() queues a finished request.
                request.error = BadRequest("the body ended before its declared length")
                request.completed = True
                channel: Any = self  # types-waitress lacks requests_lock; add_task takes us
                with channel.requests_lock:
                    channel.requests.append(request)
                    channel.request = None
                    if len(channel.requests) == 1:
                        channel.server.add_task(channel)
                return
            super().handle_read()

    return _ApiChannel


def _at_eof(sock: socket.socket | None) -> bool:
    """Whether the peer has closed its side (a readable socket with nothing to read)."""
    if sock is None:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return False  # reset and the like: waitress's own handling closes the channel
