"""RFC 9457 problem details: the one place where errors become HTTP answers.

Every error answer is ``application/problem+json`` with ``type``, ``title``, ``status``,
``detail`` and, for validation, ``errors: [{"field", "message"}]``. Never a stack trace.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sms_gateway.domain.errors import FieldError

__all__ = ["FieldError", "Problem", "field_errors", "field_errors_of", "validation_problem"]

if TYPE_CHECKING:  # the error path imports pydantic, not this module
    from pydantic import ValidationError

PROBLEM_CONTENT_TYPE = "application/problem+json"
# Where a deployment publishes docs/problems.md (``ProblemTypeBase`` in the template,
# ``SMS_GATEWAY_PROBLEM_TYPE_BASE``); each ``type`` is this base + a section's anchor.
DEFAULT_PROBLEM_TYPE_BASE = "https://sms-gateway.example/docs/problems.md#"


@dataclass(slots=True)
class Problem(Exception):
    """An error with its HTTP answer. ``slug`` names the stable problem ``type``."""

    status: int
    slug: str
    title: str
    detail: str
    errors: list[FieldError] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        Exception.__init__(self, self.detail)

    def body(self, type_base: str = DEFAULT_PROBLEM_TYPE_BASE) -> dict[str, Any]:
        """The problem+json document; ``type`` is ``type_base`` + the slug."""
        doc: dict[str, Any] = {
            "type": type_base + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            doc["errors"] = [{"field": e.field, "message": e.message} for e in self.errors]
        return doc

    def to_json(self, type_base: str = DEFAULT_PROBLEM_TYPE_BASE) -> str:
        """The problem+json document as text."""
        return json.dumps(self.body(type_base))


def validation_problem(errors: list[FieldError], status: int = 422) -> Problem:
    """422 (or 400 for malformed headers) naming every invalid field."""
    names = ", ".join(sorted({e.field for e in errors}))
    return Problem(
        status=status,
        slug="validation-error",
        title="Request validation failed",
        detail=f"invalid field(s): {names}",
        errors=errors,
    )


# Plain wording for pydantic's error types (its own messages name Python notions).
_PLAIN = {
    "extra_forbidden": "unknown field: not part of this API",
    "missing": "is required",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "datetime_parsing": "must be an RFC 3339 date-time, e.g. 2026-02-05T12:00:00Z",
    "datetime_from_date_parsing": "must be an RFC 3339 date-time, e.g. 2026-02-05T12:00:00Z",
    "datetime_type": "must be an RFC 3339 date-time, e.g. 2026-02-05T12:00:00Z",
    "bool_type": "must be true or false",
    "list_type": "must be an array",
    "dict_type": "must be a JSON object",
    "model_type": "must be a JSON object",
}


def _plain(err: Any) -> str | None:
    """A client's wording for the pydantic errors whose text names Python notions
    ("at most 128 items", "Input should be a valid ...")."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    if kind in ("string_too_long", "too_long") and isinstance(value, str):
        return f"must be at most {ctx.get('max_length')} characters (got {len(value)})"
    if kind == "too_long" and isinstance(value, list):
        return f"must hold at most {ctx.get('max_length')} items (got {len(value)})"
    if kind == "string_too_short":
        least = ctx.get("min_length")
        return "must not be empty" if least == 1 else f"must be at least {least} characters"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    return _PLAIN.get(kind)


def field_errors(exc: ValidationError) -> list[FieldError]:
    """A pydantic ``ValidationError`` as field errors: the JSON member path (``$`` for the
    document itself) and a plain message."""
    return field_errors_of(exc)


def field_errors_of(exc: Any) -> list[FieldError]:
    """:func:`field_errors` for anything with pydantic's ``errors()`` list (a pydantic
    ``ValidationError`` or Powertools' ``RequestValidationError``)."""
    errors = []
    for err in exc.errors():
        name = ".".join(str(part) for part in err["loc"]) or "$"
        message = _plain(err) or str(err["msg"]).removeprefix("Value error, ")
        errors.append(FieldError(name, message))
    return errors
