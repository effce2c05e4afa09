"""RFC 9457 problem details: the one place where errors become HTTP answers.

Every error answer is ``application/problem+json`` with ``type``, ``title``, ``status``,
``detail`` and, for validation, ``errors: [{"field", "message"}]``. Never a stack trace.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the error path imports pydantic, not this module
    from pydantic import ValidationError

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_BASE = "https://github.com/sms-gateway/sms-gateway/blob/main/docs/problems.md#"


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid field: ``field`` is the JSON member (or header) name."""

    field: str
    message: str


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

    def body(self) -> dict[str, Any]:
        """The problem+json document."""
        doc: dict[str, Any] = {
            "type": PROBLEM_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            doc["errors"] = [{"field": e.field, "message": e.message} for e in self.errors]
        return doc

    def to_json(self) -> str:
        """The problem+json document as text."""
        return json.dumps(self.body())


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
}


def field_errors(exc: ValidationError) -> list[FieldError]:
    """A pydantic ``ValidationError`` as field errors: the JSON member path (``$`` for the
    document itself) and a plain message."""
    errors = []
    for err in exc.errors():
        name = ".".join(str(part) for part in err["loc"]) or "$"
        message = _PLAIN.get(err["type"]) or str(err["msg"]).removeprefix("Value error, ")
        errors.append(FieldError(name, message))
    return errors
