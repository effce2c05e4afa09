"""The Powertools REST resolver both API functions use, with every error mapped in one place.

Mapping (RFC 9457 problem+json): :class:`Problem` as it says; idempotency key reused -> 422;
in flight -> 409 with ``Retry-After``; unknown message -> 404; database or AWS dependency
down -> 503 with ``Retry-After``; anything else -> 500 with a generic detail (the stack goes to
the log only).
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from botocore.exceptions import BotoCoreError, ClientError

from sms_gateway.api.problems import PROBLEM_CONTENT_TYPE, Problem
from sms_gateway.observability import logger


def problem_response(problem: Problem) -> Response[str]:
    """``problem`` as an HTTP answer."""
    return Response(
        status_code=problem.status,
        content_type=PROBLEM_CONTENT_TYPE,
        body=problem.to_json(),
        headers=problem.headers or None,
    )


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[str]:
    """A JSON answer."""
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps(body),
        headers=headers,
    )


def make_resolver(extra: dict[type[Exception], Problem] | None = None) -> APIGatewayRestResolver:
    """A resolver with the problem mapping installed.

    ``extra``: more exception types and the problem each answers with (per function).
    """
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
