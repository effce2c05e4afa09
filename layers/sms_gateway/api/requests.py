"""``POST /v1/messages`` request validation (DESIGN sections 5 and 6).

Shape first (pydantic, strict: unknown fields rejected, no type coercion), then the content
rules: ``to`` to E.164, ``body`` within the segment limit, ``from`` a valid sender ID,
``max_attempts`` within 1..maxReceiveCount, ``validity_period`` within bounds.
All failures are collected and reported together, each naming its field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sms_gateway.api.problems import FieldError, Problem, validation_problem
from sms_gateway.domain.content import ContentError, ContentInfo, check_body, text_defect
from sms_gateway.domain.phone import InvalidPhoneNumber, normalize_sender_id, to_e164

IDEMPOTENCY_KEY_MAX = 255
# Validity period bounds in seconds: 1 minute to 72 hours (the common provider maximum).
VALIDITY_MIN_SECONDS = 60
VALIDITY_MAX_SECONDS = 72 * 3600


class SendMessageBody(BaseModel):
    """The JSON body of ``POST /v1/messages`` as clients send it."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=False)

    to: str
    body: str
    from_: str | None = Field(default=None, alias="from")
    max_attempts: int | None = None
    reference: str | None = Field(default=None, max_length=128)
    validity_period: int | None = None


@dataclass(frozen=True, slots=True)
class ValidatedMessage:
    """A request that passed every rule. ``to``: E.164; ``content``: encoding and segments;
    ``max_attempts``: the request's or the default (maxReceiveCount); seconds for validity."""

    to: str
    body: str
    sender_id: str | None
    max_attempts: int
    reference: str | None
    validity_period: int | None
    content: ContentInfo


def _field_name(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "$"


def validate_send_request(
    payload: Any, *, max_segments: int, max_attempts_limit: int
) -> ValidatedMessage:
    """Validate a decoded JSON body.

    Raises:
        Problem: 422 ``validation-error`` listing every invalid field.
    """
    if not isinstance(payload, dict):
        raise validation_problem([FieldError("$", "request body must be a JSON object")])
    try:
        shaped = SendMessageBody.model_validate(payload)
    except ValidationError as exc:
        raise validation_problem(
            [FieldError(_field_name(e["loc"]), e["msg"]) for e in exc.errors()]
        ) from exc

    errors: list[FieldError] = [
        *text_problems("body", shaped.body),
        *text_problems("reference", shaped.reference),
        *text_problems("from", shaped.from_),
    ]
    if errors:
        raise validation_problem(errors)
    to = ""
    try:
        to = to_e164(shaped.to)
    except InvalidPhoneNumber as exc:
        errors.append(FieldError("to", str(exc)))
    content: ContentInfo | None = None
    try:
        content = check_body(shaped.body, max_segments)
    except ContentError as exc:
        errors.append(FieldError("body", str(exc)))
    sender_id = None
    if shaped.from_ is not None:
        try:
            sender_id = normalize_sender_id(shaped.from_)
        except InvalidPhoneNumber as exc:
            errors.append(FieldError("from", str(exc)))
    max_attempts = shaped.max_attempts if shaped.max_attempts is not None else max_attempts_limit
    if not 1 <= max_attempts <= max_attempts_limit:
        errors.append(FieldError("max_attempts", f"must be between 1 and {max_attempts_limit}"))
    validity = shaped.validity_period
    if validity is not None and not VALIDITY_MIN_SECONDS <= validity <= VALIDITY_MAX_SECONDS:
        errors.append(
            FieldError(
                "validity_period",
                f"must be between {VALIDITY_MIN_SECONDS} and {VALIDITY_MAX_SECONDS} seconds",
            )
        )
    if errors or content is None:
        raise validation_problem(errors)
    return ValidatedMessage(
        to=to,
        body=shaped.body,
        sender_id=sender_id,
        max_attempts=max_attempts,
        reference=shaped.reference,
        validity_period=validity,
        content=content,
    )


def idempotency_key_of(value: str | None) -> str:
    """The ``Idempotency-Key`` header value (draft-ietf-httpapi-idempotency-key-header).

    Raises:
        Problem: 400 when missing, empty, longer than 255 or not printable ASCII.
    """
    if value is None or value == "":
        raise validation_problem([FieldError("Idempotency-Key", "header is required")], status=400)
    if len(value) > IDEMPOTENCY_KEY_MAX or not all(" " <= ch <= "~" for ch in value):
        raise validation_problem(
            [FieldError("Idempotency-Key", "must be 1-255 printable ASCII characters")],
            status=400,
        )
    return value


def decode_json_body(body: str | None) -> Any:
    """The request body decoded as JSON.

    Raises:
        Problem: 400 ``malformed-json`` for a missing or undecodable body.
    """
    if body is None or not body.strip():
        raise Problem(400, "malformed-json", "Malformed request body", "request body is empty")
    try:
        return json.loads(body, object_pairs_hook=_no_duplicate_members)
    except json.JSONDecodeError as exc:
        raise Problem(
            400, "malformed-json", "Malformed request body", f"body is not valid JSON: {exc.msg}"
        ) from exc
    except DuplicateMember as exc:
        raise Problem(
            400,
            "malformed-json",
            "Malformed request body",
            f"member {exc.name!r} appears more than once",
            errors=[FieldError(exc.name, "appears more than once")],
        ) from exc
    except RecursionError as exc:
        raise Problem(
            400, "malformed-json", "Malformed request body", "body is nested too deeply"
        ) from exc


class DuplicateMember(ValueError):
    """A JSON object names the same member twice (RFC 8259 leaves the meaning undefined)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _no_duplicate_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise DuplicateMember(name)
        result[name] = value
    return result


def text_problems(field: str, value: str | None) -> list[FieldError]:
    """``field``'s :func:`~sms_gateway.domain.content.text_defect`, as a field error."""
    defect = text_defect(value) if value is not None else None
    return [FieldError(field, defect)] if defect else []
    if "\x00" in value:
        return [FieldError(field, "must not contain the NUL character (U+0000)")]
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
        return [FieldError(field, "must not contain unpaired UTF-16 surrogates")]
    return []
