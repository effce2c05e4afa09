"""An HTTP front that behaves like API Gateway's REST API with Lambda proxy integration.

Each request becomes the API Gateway (REST, payload v1, ``aws-proxy``) event the deployed API
would send; it is routed by the template's ``Api`` events and answered from the handler's proxy
response. API Gateway's own answers are kept: an unknown route is ``403 {"message":"Missing
Authentication Token"}``, a handler that raises or answers malformed is ``502 {"message":
"Internal server error"}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

from sms_gateway.local.template import ApiRoute

__all__ = [
    "ApiFront",
    "HttpRequest",
    "HttpResponse",
    "InvalidProxyResponse",
    "Router",
    "build_api_event",
    "proxy_response_to_http",
]

logger = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES: Final = 10 * 1024 * 1024  # API Gateway's request payload limit
_HOP_BY_HOP: Final = frozenset(
    {"connection", "content-length", "transfer-encoding", "keep-alive", "date", "server"}
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
    (a pair present in both appears once); ``Content-Type`` defaults to ``application/json``
    like a REST API; ``x-amzn-RequestId`` carries ``request_id``.

    Raises:
        InvalidProxyResponse: ``answer`` is not of that shape (API Gateway answers 502).
    """
    if not isinstance(answer, dict):
        raise InvalidProxyResponse(f"answer is {type(answer).__name__}, not a dict")
    status = answer.get("statusCode")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise InvalidProxyResponse(f"statusCode {status!r} is not an HTTP status")
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


def _header_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


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


class ApiFront:
    """``ThreadingHTTPServer`` on ``host:port`` serving a :class:`Router` as API Gateway would.

    Args:
        router: the routes.
        host, port: where to listen; port 0 picks a free port (see :attr:`port`).
        stage: the API stage shown in events (``requestContext.stage``).
        account_id: shown in ``requestContext.accountId``.
        log_requests: one access-log line per request on the module logger.
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
    ) -> None:
        self.router = router
        self.stage = stage
        self.account_id = account_id
        self.log_requests = log_requests
        server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
        self._server = server_class((host, port), _make_handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self.host = host

    @property
    def port(self) -> int:
        """The port actually bound."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://host:port`` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="sms-gateway-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket (waits for the serving loop to end)."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def handle(self, request: HttpRequest) -> HttpResponse:
        """Answer one request: route, build the event, invoke, translate the answer."""
        started = time.monotonic()
        request_id = str(uuid.uuid4())
        found = self.router.match(request.method, request.path)
        target = "-"
        if found is None:
            response = MISSING_TOKEN
        else:
            route, invoker, params = found
            target = route.function
            event = build_api_event(
                request,
                route,
                params,
                stage=self.stage,
                account_id=self.account_id,
                request_id=request_id,
            )
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
        if self.log_requests:
            logger.info(
                '%s "%s %s" %d %.0fms -> %s',
                request.source_ip,
                request.method,
                request.target,
                response.status,
                (time.monotonic() - started) * 1000,
                target,
            )
        return response


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _make_handler(front: ApiFront) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "sms-gateway-local"

        def _serve(self) -> None:
            try:
                body = self._read_body()
            except _TooLarge:
                self._write(TOO_LARGE)
                self.close_connection = True
                return
            request = HttpRequest(
                method=self.command,
                target=self.path,
                headers=list(self.headers.items()),
                body=body,
                source_ip=str(self.client_address[0]),
                protocol=self.request_version,
            )
            self._write(front.handle(request))

        def _read_body(self) -> bytes:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                chunks: list[bytes] = []
                size = 0
                while True:
                    line = self.rfile.readline(65537).split(b";", 1)[0].strip()
                    length = int(line or b"0", 16)
                    if length == 0:
                        while self.rfile.readline(65537).strip():  # trailers
                            pass
                        return b"".join(chunks)
                    size += length
                    if size > MAX_PAYLOAD_BYTES:
                        raise _TooLarge
                    chunks.append(self.rfile.read(length))
                    self.rfile.readline(3)  # CRLF after the chunk
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_PAYLOAD_BYTES:
                raise _TooLarge
            return self.rfile.read(length) if length > 0 else b""

        def _write(self, response: HttpResponse) -> None:
            self.send_response(response.status)
            for key, value in response.headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        def log_message(self, format: str, *args: Any) -> None:
            """Access logging is done by :meth:`ApiFront.handle`; keep stderr quiet."""

        # BaseHTTPRequestHandler dispatches on these names; every method is routed alike.
        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def do_PUT(self) -> None:
            self._serve()

        def do_PATCH(self) -> None:
            self._serve()

        def do_DELETE(self) -> None:
            self._serve()

        def do_HEAD(self) -> None:
            self._serve()

        def do_OPTIONS(self) -> None:
            self._serve()

    return Handler


class _TooLarge(Exception):
    pass
