"""The local stack's HTTP front over real sockets on loopback: framing, API Gateway's own
answers, the payload limit, concurrency and the per-request hook.

Framing rules: RFC 9112 section 6.3 (message body length). Payload limit: "Amazon API Gateway
quotas", API Gateway payload size 10 MB (10,485,760 bytes) for REST APIs. Unknown routes and
methods: a REST API answers 403 ``{"message":"Missing Authentication Token"}`` with
``x-amzn-ErrorType: MissingAuthenticationTokenException``.

The handler is an in-process echo, so these tests depend on neither moto nor the real
functions.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from sms_gateway.local.http_front import (
    MAX_PAYLOAD_BYTES,
    ApiFront,
    RequestLog,
    Router,
)
from sms_gateway.local.template import ApiRoute

MISSING_TOKEN = {"message": "Missing Authentication Token"}


class Echo:
    """An invoker answering 200 with what the event carried; counts concurrent calls."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.events: list[dict[str, Any]] = []
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any], request_id: str) -> dict[str, Any]:
        with self._lock:
            self.events.append(event)
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            time.sleep(self.delay)
            return {
                "statusCode": 200,
                "headers": {"Content-Type": "application/json"},
                "body": json.dumps(
                    {
                        "method": event["httpMethod"],
                        "resource": event["resource"],
                        "body": event["body"],
                        "length": len(event["body"] or ""),
                        "headers": event["headers"],
                        "multi": event["multiValueHeaders"],
                    }
                ),
            }
        finally:
            with self._lock:
                self.running -= 1


def make_front(echo: Echo, **kwargs: Any) -> ApiFront:
    routes = [
        (ApiRoute("Echo", "Post", "POST", "/v1/items"), echo),
        (ApiRoute("Echo", "Get", "GET", "/v1/items/{item_id}"), echo),
    ]
    return ApiFront(Router(routes), port=0, log_requests=False, **kwargs)


@pytest.fixture
def echo() -> Echo:
    return Echo()


@pytest.fixture
def front(echo: Echo) -> Iterator[ApiFront]:
    server = make_front(echo)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def raw_exchange(port: int, data: bytes, *, half_close: bool = False) -> bytes:
    """Send ``data`` as is, optionally end our side, and read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return received
            received += chunk


def parse_answer(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of the first answer in ``raw``."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), raw[:200]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    return int(lines[0].split()[1]), headers, rest[:length]


def request(
    front: ApiFront, method: str, target: str, body: bytes | None = None, **headers: str
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request over http.client; header names are looked up case-insensitively (waitress
    writes them capitalized, HTTP/2 clients see them lower-case: case is no contract)."""
    connection = http.client.HTTPConnection("127.0.0.1", front.port, timeout=10)
    try:
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


# -- framing: RFC 9112 section 6.3 -------------------------------------------------------

POST = b"POST /v1/items HTTP/1.1\r\nHost: 127.0.0.1\r\n"


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("non-numeric Content-Length", POST + b"Content-Length: abc\r\n\r\nhello"),
        ("negative Content-Length", POST + b"Content-Length: -5\r\n\r\nhello"),
        (
            "two different Content-Lengths",
            POST + b"Content-Length: 5\r\nContent-Length: 3\r\n\r\nhello",
        ),
        (
            "two equal Content-Lengths",
            POST + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        ),
        (
            "Content-Length with chunked",
            POST
            + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "bad chunk size",
            POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        ),
        (
            "chunk longer than its size",
            POST + b"Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
        ),
    ],
)
def test_malformed_framing_is_answered_400_and_reaches_no_handler(
    front: ApiFront, echo: Echo, name: str, data: bytes
) -> None:
    status, headers, body = parse_answer(raw_exchange(front.port, data))
    assert status == 400, name
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["message"].startswith("Bad Request")
    assert headers["connection"] == "close"
    assert echo.events == []


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("truncated chunked body", POST + b"Transfer-Encoding: chunked\r\n\r\na\r\nhel"),
        (
            "chunked body without its last chunk",
            POST + b"Transfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n",
        ),
        ("body shorter than Content-Length", POST + b"Content-Length: 10\r\n\r\nhello"),
    ],
)
def test_a_body_cut_short_by_the_client_is_answered_400(
    front: ApiFront, echo: Echo, name: str, data: bytes
) -> None:
    # The client ends its side mid-body and still reads: it gets an answer, not a reset.
    status, _, body = parse_answer(raw_exchange(front.port, data, half_close=True))
    assert status == 400, name
    assert json.loads(body) == {"message": "Bad Request: the body ended before its declared length"}
    assert echo.events == []


def test_well_framed_bodies_reach_the_handler_whole(front: ApiFront, echo: Echo) -> None:
    chunked = POST + b"Transfer-Encoding: chunked\r\n\r\n3;ext=1\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n"
    sized = POST + b"Content-Length: 5\r\nConnection: close\r\n\r\nhello"
    raw = raw_exchange(front.port, chunked + sized)  # two requests pipelined, one connection
    assert raw.startswith(b"HTTP/1.1 200 ")
    assert raw.count(b"HTTP/1.1 200 ") == 2
    assert [event["body"] for event in echo.events] == ["hello", "hello"]


# -- API Gateway's own answers -----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/v1/nope"),  # unknown route
        ("GET", "/"),
        ("DELETE", "/v1/items"),  # known path, method not allowed
        ("PUT", "/v1/items/i-1"),
        ("BREW", "/v1/items"),  # a method no server knows
        ("PROPFIND", "/v1/items/i-1"),
    ],
)
def test_unknown_methods_and_routes_get_missing_authentication_token(
    front: ApiFront, echo: Echo, method: str, target: str
) -> None:
    status, headers, body = request(front, method, target)
    assert status == 403
    assert json.loads(body) == MISSING_TOKEN
    assert headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    assert headers["Content-Type"] == "application/json"
    assert echo.events == []


def test_head_on_a_known_get_route_answers_headers_only(front: ApiFront) -> None:
    raw = raw_exchange(
        front.port, b"HEAD /v1/items/i-1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    # HEAD is not declared on the route: API Gateway's 403, with no body after the headers.
    status, headers, _ = parse_answer(raw)
    assert status == 403
    assert raw.endswith(b"\r\n\r\n")
    assert int(headers["content-length"]) == len(json.dumps(MISSING_TOKEN, separators=(",", ":")))


def test_header_case_order_and_repeats_reach_the_event(front: ApiFront, echo: Echo) -> None:
    data = (
        b"GET /v1/items/i-1 HTTP/1.1\r\nHost: h\r\nX-Tenant-ID: tenant-1\r\n"
        b"Accept: text/plain\r\nAccept: application/json\r\nX_Tenant_ID: spoof\r\n"
        b"Connection: close\r\n\r\n"
    )
    status, _, body = parse_answer(raw_exchange(front.port, data))
    assert status == 200
    answer = json.loads(body)
    assert answer["headers"]["X-Tenant-ID"] == "tenant-1"
    assert answer["multi"]["Accept"] == ["text/plain", "application/json"]
    assert "X_Tenant_ID" not in answer["headers"]  # underscores could pose as dashes


# -- payload limit: API Gateway quotas, 10 MB --------------------------------------------


def test_payload_limit_is_api_gateways_10_mb() -> None:
    assert MAX_PAYLOAD_BYTES == 10_485_760


def test_a_declared_length_over_10_mb_is_refused_before_the_body_is_sent(
    front: ApiFront, echo: Echo
) -> None:
    # Headers only: the answer comes without the server waiting for (or reading) the body.
    data = POST + f"Content-Length: {MAX_PAYLOAD_BYTES + 1}\r\n\r\n".encode()
    status, headers, body = parse_answer(raw_exchange(front.port, data))
    assert (status, json.loads(body)) == (413, {"message": "Request Too Long"})
    assert headers["content-type"] == "application/json"
    assert echo.events == []


def test_a_chunked_body_over_10_mb_is_refused(front: ApiFront, echo: Echo) -> None:
    chunk = b"x" * (1024 * 1024)
    framed = b"100000\r\n" + chunk + b"\r\n"
    with socket.create_connection(("127.0.0.1", front.port), timeout=10) as sock:
        sock.sendall(POST + b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(11):  # 11 MiB, past the limit; no last chunk is ever sent
            sock.sendall(framed)
        received = b""
        while b"\r\n\r\n" not in received or not received.endswith(b"}"):
            part = sock.recv(65536)
            if not part:
                break
            received += part
    status, _, body = parse_answer(received)
    assert (status, json.loads(body)) == (413, {"message": "Request Too Long"})
    assert echo.events == []


def test_a_payload_of_exactly_10_mb_is_accepted(front: ApiFront, echo: Echo) -> None:
    status, _, body = request(front, "POST", "/v1/items", b"a" * MAX_PAYLOAD_BYTES)
    assert status == 200
    assert json.loads(body)["length"] == MAX_PAYLOAD_BYTES


# -- concurrency and backlog -------------------------------------------------------------


def test_64_parallel_requests_all_get_answers() -> None:
    echo = Echo(delay=0.2)
    front = make_front(echo, threads=16)
    front.start()
    try:
        barrier = threading.Barrier(64)

        def one(index: int) -> int:
            barrier.wait()
            status, _, body = request(front, "GET", f"/v1/items/i-{index}")
            assert json.loads(body)["resource"] == "/v1/items/{item_id}"
            return status

        with ThreadPoolExecutor(max_workers=64) as pool:
            statuses = list(pool.map(one, range(64)))
    finally:
        front.stop()
    assert statuses == [200] * 64
    assert len(echo.events) == 64
    assert echo.most_at_once > 1  # handled concurrently, not one at a time
    assert echo.most_at_once <= 16


def test_128_connections_wait_in_the_backlog_while_the_server_does_not_accept() -> None:
    echo = Echo()
    front = make_front(echo)  # bound and listening, serving loop not started: nobody accepts
    sockets = []
    try:
        for _ in range(128):
            sock = socket.create_connection(("127.0.0.1", front.port), timeout=5)
            sock.sendall(b"GET /v1/items/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            sockets.append(sock)
        front.start()
        answers = [parse_answer(_read_all(sock))[0] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
        front.stop()
    assert answers == [200] * 128


def _read_all(sock: socket.socket) -> bytes:
    received = b""
    while part := sock.recv(65536):
        received += part
    return received


def test_backlog_under_128_is_refused(echo: Echo) -> None:
    with pytest.raises(ValueError, match="backlog 5 is under 128"):
        make_front(echo, backlog=5)


# -- host / port -------------------------------------------------------------------------


def test_serves_on_ipv6_loopback(echo: Echo) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        front = ApiFront(
            Router([(ApiRoute("Echo", "Get", "GET", "/v1/items/{item_id}"), echo)]),
            host="::1",
            port=0,
            log_requests=False,
        )
    except OSError as error:
        pytest.skip(f"::1 cannot be bound here: {error}")
    front.start()
    try:
        assert front.url == f"http://[::1]:{front.port}"
        connection = http.client.HTTPConnection("::1", front.port, timeout=10)
        connection.request("GET", "/v1/items/i-6")
        response = connection.getresponse()
        assert response.status == 200
        event = echo.events[0]
        assert event["requestContext"]["identity"]["sourceIp"] == "::1"
        connection.close()
    finally:
        front.stop()


def test_stop_frees_the_port(echo: Echo) -> None:
    front = make_front(echo)
    front.start()
    port = front.port
    assert request(front, "GET", "/v1/items/a")[0] == 200
    front.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


# -- the per-request hook ----------------------------------------------------------------


def test_on_request_gets_one_entry_per_request_without_body_or_number(echo: Echo) -> None:
    entries: list[RequestLog] = []
    front = make_front(echo, on_request=entries.append)
    front.start()
    try:
        status, headers, _ = request(
            front,
            "POST",
            "/v1/items?to=%2B12025550143",
            b'{"to":"+12025550143","body":"hello"}',
            **{"X-Tenant-ID": "tenant-1", "Content-Type": "application/json"},
        )
        assert status == 200
        request(front, "GET", "/v1/nope")
        raw_exchange(front.port, POST + b"X-Tenant-ID: tenant-2\r\nContent-Length: x\r\n\r\n")
    finally:
        front.stop()
    posted, unknown, malformed = entries
    assert (posted.method, posted.path, posted.status) == ("POST", "/v1/items", 200)
    assert posted.tenant == "tenant-1"
    assert posted.function == "Echo"
    assert posted.request_id == headers["x-amzn-RequestId"]
    assert 0 <= posted.latency_ms < 10_000
    assert posted.source_ip == "127.0.0.1"
    assert "12025550143" not in repr(entries)
    assert "hello" not in repr(entries)
    assert (unknown.status, unknown.function, unknown.tenant) == (403, None, None)
    assert (malformed.method, malformed.path, malformed.status) == ("POST", "/v1/items", 400)
    assert malformed.tenant == "tenant-2"


def test_log_requests_prints_the_access_line_through_the_default_hook(
    echo: Echo, caplog: pytest.LogCaptureFixture
) -> None:
    routes = [(ApiRoute("Echo", "Get", "GET", "/v1/items/{item_id}"), echo)]
    front = ApiFront(Router(routes), port=0, log_requests=True)
    front.start()
    try:
        with caplog.at_level("INFO", logger="sms_gateway.local.http_front"):
            _, headers, _ = request(front, "GET", "/v1/items/i-1?x=1", **{"X-Tenant-ID": "t-9"})
    finally:
        front.stop()
    (line,) = [r.getMessage() for r in caplog.records if r.name.endswith("http_front")]
    request_id = headers["x-amzn-RequestId"]
    assert line.startswith('127.0.0.1 "GET /v1/items/i-1" 200 ')
    assert line.endswith(f"ms -> Echo tenant=t-9 id={request_id}")


def test_a_failing_hook_does_not_change_the_answer(echo: Echo) -> None:
    def broken(entry: RequestLog) -> None:
        raise RuntimeError("hook down")

    front = make_front(echo, on_request=broken)
    front.start()
    try:
        assert request(front, "GET", "/v1/items/i-1")[0] == 200
    finally:
        front.stop()


# -- malformed requests and handler answers: one answer, one log line, connection closed ---


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("NUL in a header value", b"GET /v1/items/x HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"),
        ("space before the colon", b"GET /v1/items/x HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n"),
        ("bad start line", b"\x16\x03\x01 garbage\r\n\r\n"),
    ],
)
def test_a_malformed_request_gets_400_one_log_entry_and_a_closed_connection(
    echo: Echo, caplog: pytest.LogCaptureFixture, name: str, data: bytes
) -> None:
    entries: list[RequestLog] = []
    front = make_front(echo, on_request=entries.append)
    front.start()
    try:
        with caplog.at_level("WARNING"):
            # raw_exchange reads until the server closes (a 10 s socket timeout otherwise).
            status, headers, body = parse_answer(raw_exchange(front.port, data))
            deadline = time.monotonic() + 10
            while not entries and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        front.stop()
    assert status == 400, name
    assert json.loads(body)["message"].startswith("Bad Request")
    assert headers["connection"] == "close"
    assert [entry.status for entry in entries] == [400]
    assert [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")] == []
    assert echo.events == []


def test_a_header_value_outside_latin_1_in_a_handler_answer_is_502() -> None:
    def answer(event: dict[str, Any], request_id: str) -> dict[str, Any]:
        return {"statusCode": 200, "headers": {"X-Name": "\u65e5\u672c"}, "body": "{}"}

    front = ApiFront(
        Router([(ApiRoute("F", "Get", "GET", "/v1/items/{item_id}"), answer)]),
        port=0,
        log_requests=False,
    )
    front.start()
    try:
        status, _, body = request(front, "GET", "/v1/items/x")
    finally:
        front.stop()
    assert (status, json.loads(body)) == (502, {"message": "Internal server error"})


def test_130_idle_connections_leave_room_for_a_request(front: ApiFront) -> None:
    # Issue 5 asks for at least 128 pending connections; idle keep-alive ones count against
    # waitress's connection limit (100 by default), past which it stops accepting.
    idle = [socket.create_connection(("127.0.0.1", front.port), timeout=5) for _ in range(130)]
    try:
        time.sleep(0.5)  # let the server accept them all
        started = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", front.port, timeout=5)
        try:
            connection.request("GET", "/v1/items/i-1")
            assert connection.getresponse().status == 200
        finally:
            connection.close()
        assert time.monotonic() - started < 5
    finally:
        for sock in idle:
            sock.close()


def test_idle_keep_alive_connections_are_closed_after_the_channel_timeout() -> None:
    from sms_gateway.local.http_front import CHANNEL_TIMEOUT_SECONDS, CONNECTION_LIMIT

    assert CONNECTION_LIMIT >= 1024
    assert 0 < CHANNEL_TIMEOUT_SECONDS <= 60


def test_a_request_over_the_stage_throttle_is_429_and_invokes_nothing(echo: Echo) -> None:
    """(issue 11) The stage's method throttle (the local emulation of ``MethodSettings``):
    over the burst, API Gateway's 429 ``{"message":"Too Many Requests"}``, the handler not
    called; another route is not throttled; the hook sees the 429 with no function."""
    from sms_gateway.local.throttle import MethodThrottle, StageThrottle

    clock = [0.0]
    entries: list[RequestLog] = []
    throttle = StageThrottle(
        [MethodThrottle("POST", "/v1/items", rate=1, burst=3)], clock=lambda: clock[0]
    )
    server = make_front(echo, throttle=throttle, on_request=entries.append)
    server.start()
    try:
        answers = [request(server, "POST", "/v1/items", b"{}") for _ in range(5)]
        assert [status for status, _, _ in answers] == [200, 200, 200, 429, 429]
        _, headers, body = answers[-1]
        assert json.loads(body) == {"message": "Too Many Requests"}
        assert headers["x-amzn-ErrorType"] == "TooManyRequestsException"
        assert len(echo.events) == 3
        assert [request(server, "GET", "/v1/items/1")[0] for _ in range(5)] == [200] * 5
        clock[0] += 1.0  # one token back
        assert [request(server, "POST", "/v1/items", b"{}")[0] for _ in range(2)] == [200, 429]
        assert len(echo.events) == 3 + 5 + 1
        throttled = [e for e in entries if e.status == 429]
        assert [(e.method, e.path, e.function) for e in throttled] == [
            ("POST", "/v1/items", None)
        ] * 3
        assert throttle.throttled == {("POST", "/v1/items"): 3}
    finally:
        server.stop()
