"""``docs/openapi.json``: the API's OpenAPI 3.1 document, generated from the routes and the
models (``make openapi`` writes it; ``tests/unit/test_openapi.py`` fails when the committed
document differs from a fresh one: the CI drift check).

Powertools' event handler makes the skeleton from the routes (paths, operation ids, path
parameters, the 2xx models of the return annotations:
``APIGatewayRestResolver.get_openapi_json_schema``). This module adds what it cannot know:
the request bodies (read by :mod:`sms_gateway.api.requests`, not by Powertools), every
problem status with its problem types (:data:`sms_gateway.api.errors.KINDS`), the headers
(``Idempotency-Key``, ``Idempotent-Replayed``, ``Location``, ``Retry-After``, the receipt
signing headers) and the security schemes (API key deployed, ``X-Tenant-ID`` locally).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from sms_gateway.api.errors import KINDS
from sms_gateway.api.problems import PROBLEM_CONTENT_TYPE
from sms_gateway.api.rest import RouteDoc, make_resolver

TITLE = "SMS gateway API"
API_VERSION = "1.0.0"
DESCRIPTION = (
    "Multi-tenant SMS gateway: send one SMS or up to 100, read a message's status, report "
    "delivery receipts. Errors are application/problem+json (RFC 9457); each problem type is "
    "a section of docs/problems.md, published at the deployment's ProblemTypeBase."
)
_REF = "#/components/schemas/{model}"
_STATUS_WORDS = {
    200: "OK",
    202: "Accepted",
    400: "Bad request",
    401: "Unauthorized",
    404: "Not found",
    409: "Conflict",
    422: "Unprocessable content",
    500: "Internal error",
    503: "Service unavailable",
}


def _security_schemes() -> dict[str, Any]:
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn

    return {
        "ApiKey": APIKey(
            name="x-api-key",
            **{"in": APIKeyIn.header},
            description="Deployed (AuthMode api_key): an API Gateway API key of the tenant; "
            "its key id maps to the tenant's id (a tenant may have several keys, for "
            "rotation). A revoked or unregistered key answers 403 api-key-not-active.",
        ),
        "LocalTenant": APIKey(
            name="X-Tenant-ID",
            **{"in": APIKeyIn.header},
            description="Local stack and sam local only (AuthMode local): the tenant id, "
            "1-128 of A-Z a-z 0-9 . _ : -",
        ),
    }


RouteList = Iterable[tuple[str, str, Callable[..., Any], RouteDoc]]


def _schema_refs(models: Iterable[str]) -> dict[str, Any]:
    """JSON schemas of the named models of :mod:`sms_gateway.api.models` (and the models
    they use), for ``components.schemas``."""
    from sms_gateway.api import models as m

    schemas: dict[str, Any] = {}
    for name in models:
        schema = getattr(m, name).model_json_schema(ref_template=_REF, by_alias=True)
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    return schemas


def _ref(model: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=model)}


# The value rules of the request headers (sms_gateway.api.requests, sms_gateway.api.signatures).
HEADER_SCHEMAS: dict[str, dict[str, Any]] = {
    "Idempotency-Key": {"type": "string", "pattern": "^[ -~]{1,255}$"},
    "X-Timestamp": {"type": "string", "pattern": "^[0-9]{1,12}$"},
    "X-Signature": {"type": "string", "pattern": "^v1=[0-9a-f]{64}$"},
}


def _header(name: str, description: str, *, required: bool = False) -> dict[str, Any]:
    schema = HEADER_SCHEMAS.get(name, {"type": "string"})
    return {"description": description, "required": required, "schema": schema}


def _problem_response(status: int, slugs: tuple[str, ...]) -> dict[str, Any]:
    kinds = [KINDS[slug] for slug in slugs]
    types = "; ".join(f"{k.slug} ({k.title})" for k in kinds)
    answer: dict[str, Any] = {
        "description": f"{_STATUS_WORDS.get(status, status)}: problem type(s) {types}",
        "content": {
            PROBLEM_CONTENT_TYPE: {"schema": {"$ref": _REF.format(model="ProblemDocument")}}
        },
    }
    if any("Retry-After" in k.headers for k in kinds):
        answer["headers"] = {
            "Retry-After": {
                "description": "seconds to wait before retrying",
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            }
        }
    return answer


def document(routes: RouteList) -> dict[str, Any]:
    """The OpenAPI document of ``routes`` (both API functions' :class:`~sms_gateway.api.rest.
    Routes` entries), as a JSON-able dict with a stable order."""
    routes = list(routes)
    app = make_resolver(routes)
    doc: dict[str, Any] = json.loads(
        app.get_openapi_json_schema(
            title=TITLE,
            version=API_VERSION,
            description=DESCRIPTION,
            security_schemes=_security_schemes(),
        )
    )
    needed = {"ProblemDocument"}
    for method, path, _handler, route in routes:
        op = doc["paths"][re.sub(r"<(\w+)>", r"{\1}", path)][method.lower()]
        params = op.setdefault("parameters", [])
        for param in params:
            if param["in"] == "path":
                param["schema"] = {"type": "string", "minLength": 1, "maxLength": 64}
        for name, text in route.request_headers.items():
            required = name == "Idempotency-Key"
            params.append({"name": name, "in": "header", **_header(name, text, required=required)})
        if route.body:
            needed.add(route.body)
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": _REF.format(model=route.body)}}
                },
            }
        responses: dict[str, Any] = {}
        for status, model in sorted(route.answers.items()):
            needed.add(model)
            answer: dict[str, Any] = {
                "description": _STATUS_WORDS[status],
                "content": {"application/json": {"schema": _ref(model)}},
            }
            if headers := route.answer_headers.get(status):
                answer["headers"] = {name: _header(name, text) for name, text in headers.items()}
            responses[str(status)] = answer
        for status, slugs in sorted(route.problems.items()):
            responses[str(status)] = _problem_response(status, slugs)
        op["responses"] = responses
        op["security"] = [{"ApiKey": []}, {"LocalTenant": []}] if route.auth == "api_key" else [{}]
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        schemas.pop(unused, None)
    schemas.update(_schema_refs(sorted(needed)))
    doc["components"]["schemas"] = dict(sorted(schemas.items()))
    doc["components"]["x-problem-types"] = {
        slug: {"status": k.status, "title": k.title} for slug, k in KINDS.items()
    }
    return doc


def render(routes: RouteList) -> str:
    """:func:`document` as the text committed in ``docs/openapi.json``."""
    return json.dumps(document(routes), indent=2, ensure_ascii=False) + "\n"
