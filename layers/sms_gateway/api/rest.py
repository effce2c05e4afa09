"""The Powertools REST resolver both API functions use, with the one error map installed.

Every error answer is problem+json (RFC 9457): :class:`~sms_gateway.api.problems.Problem` as
it says; a domain error by :func:`sms_gateway.api.errors.error_map`; anything else a 500 with
a generic detail (the stack goes to the log only). Problem ``type`` URIs are the deployment's
``ProblemTypeBase`` (``SMS_GATEWAY_PROBLEM_TYPE_BASE``) + the section of ``docs/problems.md``.

Routes are declared with their contract (:class:`RouteDoc`: request model, answers, problem
types, headers); the resolver is Powertools' ``APIGatewayRestResolver(enable_validation=True)``
(path parameters validated by it, OpenAPI from it: :mod:`sms_gateway.api.openapi`). Request
bodies are read by :mod:`sms_gateway.api.requests`, not by Powertools' body validation: the
body is JSON whatever the ``Content-Type``, a member named twice is refused, and every invalid
field (shape and domain rule) is reported in one answer, which the body validation does not do.

Cold start: a function's module declares its routes on a :class:`Routes`, which only records
them; Powertools' event handler (its package imports every resolver it has: AppSync, Bedrock,
VPC Lattice ...) and the error map are imported when the first request comes.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, TypeVar

from sms_gateway.api.problems import (
    DEFAULT_PROBLEM_TYPE_BASE,
    PROBLEM_CONTENT_TYPE,
    FieldError,
    Problem,
    validation_problem,
)
from sms_gateway.observability import logger

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
    from aws_lambda_powertools.utilities.typing import LambdaContext

Route = TypeVar("Route", bound=Callable[..., Any])


@dataclass(frozen=True)
class RouteDoc:
    """A route's contract, for the resolver and ``docs/openapi.json``.

    ``summary``: one line; ``body``: the request model's name in :mod:`sms_gateway.api.models`
    (None: no body); ``answers``: 2xx status -> response model name (names, so that a
    function's module loads no pydantic at init); ``problems``: status -> the problem slugs
    it may answer with;
    ``request_headers``/``answer_headers``: header name -> description (answer headers per
    2xx status: ``{202: {"Location": "..."}}``); ``auth``: ``api_key`` (tenant) or
    ``receipt_signature`` (provider)."""

    summary: str
    body: str | None = None
    answers: dict[int, str] = field(default_factory=dict)
    problems: dict[int, tuple[str, ...]] = field(default_factory=dict)
    request_headers: dict[str, str] = field(default_factory=dict)
    answer_headers: dict[int, dict[str, str]] = field(default_factory=dict)
    auth: str = "api_key"


def problem_response(problem: Problem, type_base: str = DEFAULT_PROBLEM_TYPE_BASE) -> Response[str]:
    """``problem`` as an HTTP answer."""
    from aws_lambda_powertools.event_handler import Response

    return Response(
        status_code=problem.status,
        content_type=PROBLEM_CONTENT_TYPE,
        body=problem.to_json(type_base),
        headers=problem.headers or None,
    )


def json_response[M](status: int, body: M, headers: dict[str, str] | None = None) -> Response[M]:
    """A JSON answer: ``body`` is a response model of :mod:`sms_gateway.api.models`, which
    Powertools validates against the route's return annotation (``Response[Model]``) and
    serializes in the model's field order (so a replay is byte-identical to the first)."""
    from aws_lambda_powertools.event_handler import Response

    return Response(status_code=status, content_type="application/json", body=body, headers=headers)


class Routes:
    """A function's routes, served by a Powertools ``APIGatewayRestResolver`` made on the
    first request (:func:`make_resolver`).

    ``get``/``post`` record a route and its :class:`RouteDoc` (path parameters as
    ``<name>``); ``current_event`` and ``resolve`` are the resolver's. ``type_base``: a
    callable giving the problem type base (read from the settings on the first request).
    """

    def __init__(self, type_base: Callable[[], str] | None = None) -> None:
        self._type_base = type_base
        self.routes: list[tuple[str, str, Callable[..., Any], RouteDoc]] = []
        self._resolver: APIGatewayRestResolver | None = None

    def get(self, path: str, doc: RouteDoc) -> Callable[[Route], Route]:
        """Record ``GET path``."""
        return self._route("GET", path, doc)

    def post(self, path: str, doc: RouteDoc) -> Callable[[Route], Route]:
        """Record ``POST path``."""
        return self._route("POST", path, doc)

    def _route(self, method: str, path: str, doc: RouteDoc) -> Callable[[Route], Route]:
        def record(handler: Route) -> Route:
            if self._resolver is not None:
                raise RuntimeError("routes are declared when the module loads")
            self.routes.append((method, path, handler, doc))
            return handler

        return record

    @property
    def resolver(self) -> APIGatewayRestResolver:
        """The Powertools resolver, made (and its modules imported) on first use."""
        if self._resolver is None:
            base = self._type_base() if self._type_base else DEFAULT_PROBLEM_TYPE_BASE
            self._resolver = make_resolver(self.routes, base)
        return self._resolver

    @property
    def current_event(self) -> APIGatewayProxyEvent:
        """The request being handled."""
        return self.resolver.current_event

    def resolve(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        """API Gateway REST proxy event in, proxy response out."""
        return self.resolver.resolve(event, context)


def make_resolver(
    routes: list[tuple[str, str, Callable[..., Any], RouteDoc]],
    type_base: str = DEFAULT_PROBLEM_TYPE_BASE,
) -> APIGatewayRestResolver:
    """A validating resolver serving ``routes``, with the error map installed."""
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
    from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

    from sms_gateway.api import models
    from sms_gateway.api.errors import KINDS, error_map
    from sms_gateway.api.problems import field_errors_of

    # An answer that breaks its model is our bug: a 500 (internal-error), never a 422.
    app = APIGatewayRestResolver(
        enable_validation=True, response_validation_error_http_code=HTTPStatus.INTERNAL_SERVER_ERROR
    )
    names = {**vars(models), "Response": Response}
    for method, path, handler, doc in routes:
        # The functions import Response and the models only for type checking (init stays
        # light): resolve the annotations now, so Powertools validates the answers by them.
        inner = inspect.unwrap(handler)  # under the tracer's wrapper
        inner.__annotations__ = typing.get_type_hints(inner, localns=names)
        app.route(path, method, summary=doc.summary, operation_id=handler.__name__)(handler)

    def answer(problem: Problem) -> Response[str]:
        if problem.status >= 500:
            logger.exception("answered %s %s", problem.status, problem.slug)
        return problem_response(problem, type_base)

    @app.exception_handler(Problem)
    def _problem(exc: Problem) -> Response[str]:
        return problem_response(exc, type_base)

    @app.exception_handler(RequestValidationError)
    def _invalid(exc: RequestValidationError) -> Response[str]:
        # Path parameters (Powertools validates them): name the parameter, not its location.
        errors = [FieldError(e.field.split(".")[-1], e.message) for e in field_errors_of(exc)]
        return problem_response(validation_problem(errors), type_base)

    for exc_type, to_problem in error_map().items():

        def _mapped(
            exc: Exception, to_problem: Callable[[Exception], Problem] = to_problem
        ) -> Response[str]:
            return answer(to_problem(exc))

        app.exception_handler(exc_type)(_mapped)

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response[str]:
        return answer(KINDS["internal-error"].problem())

    @app.not_found
    def _not_found(exc: Exception) -> Response[str]:
        return problem_response(KINDS["not-found"].problem(), type_base)

    return app
