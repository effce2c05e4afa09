"""The Powertools REST resolver both API functions use, with every error mapped in one place.

Mapping (RFC 9457 problem+json): :class:`Problem` as it says; idempotency key reused -> 422;
in flight -> 409 with ``Retry-After``; unknown message -> 404; database or AWS dependency
down -> 503 with ``Retry-After``; anything else -> 500 with a generic detail (the stack goes to
the log only).

Cold start: a function's module declares its routes on a :class:`Routes`, which only records
them; Powertools' event handler (its package imports every resolver it has: AppSync, Bedrock,
VPC Lattice ...) and the function's error types are imported when the first request comes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from sms_gateway.api.problems import PROBLEM_CONTENT_TYPE, Problem
from sms_gateway.observability import logger

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
    from aws_lambda_powertools.utilities.typing import LambdaContext

Route = TypeVar("Route", bound=Callable[..., Any])
ProblemMap = Mapping[type[Exception], Problem]


def problem_response(problem: Problem) -> Response[str]:
    """``problem`` as an HTTP answer."""
    from aws_lambda_powertools.event_handler import Response

    return Response(
        status_code=problem.status,
        content_type=PROBLEM_CONTENT_TYPE,
        body=problem.to_json(),
        headers=problem.headers or None,
    )


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[str]:
    """A JSON answer."""
    from aws_lambda_powertools.event_handler import Response

    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps(body),
        headers=headers,
    )


class Routes:
    """A function's routes, served by a Powertools ``APIGatewayRestResolver`` made on the
    first request (:func:`make_resolver`).

    ``get``/``post`` record a route as Powertools' decorators do (path parameters as
    ``<name>``); ``current_event`` and ``resolve`` are the resolver's.
    """

    def __init__(self, extra: Callable[[], ProblemMap] | ProblemMap | None = None) -> None:
        self._extra = extra
        self._routes: list[tuple[str, str, Callable[..., Any]]] = []
        self._resolver: APIGatewayRestResolver | None = None

    def get(self, path: str) -> Callable[[Route], Route]:
        """Record ``GET path``."""
        return self._route("GET", path)

    def post(self, path: str) -> Callable[[Route], Route]:
        """Record ``POST path``."""
        return self._route("POST", path)

    def _route(self, method: str, path: str) -> Callable[[Route], Route]:
        def record(handler: Route) -> Route:
            if self._resolver is not None:
                raise RuntimeError("routes are declared when the module loads")
            self._routes.append((method, path, handler))
            return handler

        return record

    @property
    def resolver(self) -> APIGatewayRestResolver:
        """The Powertools resolver, made (and its modules imported) on first use."""
        if self._resolver is None:
            extra = self._extra() if callable(self._extra) else self._extra
            resolver = make_resolver(extra)
            for method, path, handler in self._routes:
                resolver.route(path, method)(handler)
            self._resolver = resolver
        return self._resolver

    @property
    def current_event(self) -> APIGatewayProxyEvent:
        """The request being handled."""
        return self.resolver.current_event

    def resolve(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        """API Gateway REST proxy event in, proxy response out."""
        return self.resolver.resolve(event, context)


def make_resolver(extra: ProblemMap | None = None) -> APIGatewayRestResolver:
    """A resolver with the problem mapping installed.

    ``extra``: more exception types and the problem each answers with (per function).
    """
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver
    from botocore.exceptions import BotoCoreError, ClientError

    app = APIGatewayRestResolver()

    @app.exception_handler(Problem)
    def _problem(exc: Problem) -> Response[str]:
        return problem_response(exc)

    for exc_type, problem in (extra or {}).items():

        def _mapped(exc: Exception, problem: Problem = problem) -> Response[str]:
            detail = str(exc) or problem.detail
            return problem_response(
                Problem(
                    problem.status, problem.slug, problem.title, detail, headers=problem.headers
                )
            )

        app.exception_handler(exc_type)(_mapped)

    @app.exception_handler([ClientError, BotoCoreError])
    def _aws_down(exc: Exception) -> Response[str]:
        logger.exception("AWS dependency failed")
        return problem_response(
            Problem(
                503,
                "dependency-unavailable",
                "Service temporarily unavailable",
                "a dependency of the gateway is unavailable; retry with the same Idempotency-Key",
                headers={"Retry-After": "5"},
            )
        )

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response[str]:
        logger.exception("unhandled error")
        return problem_response(
            Problem(500, "internal-error", "Internal error", "an unexpected error occurred")
        )

    @app.not_found
    def _not_found(exc: Exception) -> Response[str]:
        return problem_response(Problem(404, "not-found", "Not found", "no such route"))

    return app
