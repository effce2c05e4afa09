"""``POST /v1/messages`` request validation (DESIGN sections 5 and 6).

Shape first (pydantic, strict: unknown fields rejected, no type coercion), then the content
rules: ``to`` to E.164, ``body`` within the segment limit, ``from`` a valid sender ID,
``max_attempts`` within 1..maxReceiveCount, ``validity_period`` within bounds.
All failures are collected and reported together, each naming its field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import ValidationError

from sms_gateway.api.models import SendMessageBody
from sms_gateway.api.problems import FieldError, Problem, field_errors, validation_problem
from sms_gateway.domain.content import ContentError, check_body
from sms_gateway.domain.message import ValidatedBatch, ValidatedMessage
from sms_gateway.domain.phone import InvalidPhoneNumber, normalize_sender_id, to_e164
from sms_gateway.domain.receipts import Receipt

__all__ = ["SendMessageBody", "ValidatedMessage", "validate_send_request"]

IDEMPOTENCY_KEY_MAX = 255
# Validity period bounds in seconds: 1 minute to 72 hours (the common provider maximum).
VALIDITY_MIN_SECONDS = 60
VALIDITY_MAX_SECONDS = 72 * 3600


def validate_send_request(
    payload: Any, *, max_segments: int, max_attempts_limit: int, possible_numbers: bool = False
) -> ValidatedMessage:
    """Validate a decoded JSON body: every field is checked, and every invalid one reported.

    Raises:
        Problem: 422 ``validation-error`` listing every invalid field.
    """
    if not isinstance(payload, dict):
        raise validation_problem([FieldError("$", "request body must be a JSON object")])
    errors: list[FieldError] = []
    shaped: SendMessageBody | None = None
    try:
        shaped = SendMessageBody.model_validate(payload)
    except ValidationError as exc:
        errors.extend(field_errors(exc))
    failed = {e.field for e in errors}

    def given(name: str, kind: type) -> Any:
        """The raw value of a field whose shape is right (None: absent or already reported)."""
        value = payload.get(name)
        return value if name not in failed and isinstance(value, kind) else None

    to = content = sender_id = None
    if (raw_to := given("to", str)) is not None:
        try:
            to = to_e164(raw_to, possible_only=possible_numbers)
        except InvalidPhoneNumber as exc:
            errors.append(FieldError("to", str(exc)))
    if (raw_body := given("body", str)) is not None:
        try:
            content = check_body(raw_body, max_segments)
        except ContentError as exc:
            errors.append(FieldError("body", str(exc)))
    if (raw_from := given("from", str)) is not None:
        try:
            sender_id = normalize_sender_id(raw_from)
        except InvalidPhoneNumber as exc:
            errors.append(FieldError("from", str(exc)))
    attempts = given("max_attempts", int)
    if attempts is not None and not 1 <= attempts <= max_attempts_limit:
        errors.append(FieldError("max_attempts", f"must be between 1 and {max_attempts_limit}"))
    validity = given("validity_period", int)
    if validity is not None and not VALIDITY_MIN_SECONDS <= validity <= VALIDITY_MAX_SECONDS:
        errors.append(
            FieldError(
                "validity_period",
                f"must be between {VALIDITY_MIN_SECONDS} and {VALIDITY_MAX_SECONDS} seconds",
            )
        )
    if errors or shaped is None or to is None or content is None:
        raise validation_problem(errors)
    return ValidatedMessage(
        to=to,
        body=shaped.body,
        sender_id=sender_id,
        max_attempts=shaped.max_attempts or max_attempts_limit,
        reference=shaped.reference,
        validity_period=shaped.validity_period,
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
    except ValueError as exc:  # e.g. an integer beyond Python's digit limit
        raise Problem(
            400, "malformed-json", "Malformed request body", "body holds an unreadable value"
        ) from exc


class _Event(Protocol):
    @property
    def decoded_body(self) -> str | None: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


class Limits(Protocol):
    """The settings a message is checked against (:class:`sms_gateway.settings.Settings`)."""

    @property
    def max_segments(self) -> int: ...

    @property
    def max_receive_count(self) -> int: ...

    @property
    def possible_number_tenants(self) -> frozenset[str]: ...


def read_send_request(
    event: _Event, limits: Limits, tenant_id: str
) -> tuple[str, ValidatedMessage, Any]:
    """``POST /v1/messages``: the Idempotency-Key, the message and the decoded body (``to``
    checked as *possible* only for a tenant of ``limits.possible_number_tenants``).

    Raises:
        Problem: 400 (key, JSON) or 422 naming every invalid field.
    """
    key = idempotency_key_of(event.headers.get("Idempotency-Key"))
    payload = decode_json_body(request_text(event))
    message = validate_send_request(
        payload,
        max_segments=limits.max_segments,
        max_attempts_limit=limits.max_receive_count,
        possible_numbers=tenant_id in limits.possible_number_tenants,
    )
    return key, message, payload


def read_batch_request(
    event: _Event, limits: Limits, tenant_id: str
) -> tuple[str, ValidatedBatch, Any]:
    """``POST /v1/messages/batch``: the Idempotency-Key, the checked batch (at least one
    valid message; none invalid under ``all_or_nothing``) and the decoded body.

    Raises:
        Problem: 400 (key, JSON) or 422: the request's own shape, or no message to queue
            (each invalid message named ``messages[i].field``).
    """
    from sms_gateway.api.batch import batch_problem, validate_batch_request

    key = idempotency_key_of(event.headers.get("Idempotency-Key"))
    payload = decode_json_body(request_text(event))
    batch = validate_batch_request(
        payload,
        max_segments=limits.max_segments,
        max_attempts_limit=limits.max_receive_count,
        possible_numbers=tenant_id in limits.possible_number_tenants,
    )
    if batch.rejected and (batch.all_or_nothing or not batch.accepted):
        raise batch_problem(
            batch.rejected, total=len(batch.items), all_or_nothing=batch.all_or_nothing
        )
    return key, batch, payload


def request_text(event: _Event) -> str | None:
    """The request body as text (API Gateway may deliver it base64-encoded).

    Raises:
        Problem: 400 ``malformed-json`` when the base64 or the UTF-8 inside is broken.
    """
    try:
        return event.decoded_body
    except ValueError as exc:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise Problem(
            400, "malformed-json", "Malformed request body", "body is not valid base64 / UTF-8"
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


class _Settings(Protocol):
    @property
    def receipts_signed(self) -> bool: ...

    @property
    def receipt_secrets(self) -> Mapping[str, str]: ...


def read_receipt(event: _Event, settings: _Settings, now: float) -> tuple[Receipt, str | None]:
    """``POST /v1/receipts``: the receipt and the provider that signed it (None when receipts
    are unsigned: local mode without secrets). ``now``: Unix seconds. A receipt secret that
    is a reference is read through Powertools parameters, current then previous version
    (:func:`sms_gateway.providers.secrets.secret_versions`).

    Raises:
        SecretUnavailable: a receipt secret cannot be read now (answered 503).
        Problem: 401 signature refused, 400 malformed JSON, 422 naming every invalid field.
    """
    from sms_gateway.api import signatures
    from sms_gateway.providers.secrets import secret_versions

    raw = request_text(event) or ""
    provider = None
    if settings.receipts_signed:
        provider = signatures.verify(
            event.headers, raw, settings.receipt_secrets, now, versions=secret_versions
        )
    return receipt_from_payload(decode_json_body(raw)), provider


def receipt_from_payload(payload: Any) -> Receipt:
    """A receipt from its JSON payload (``POST /v1/receipts``' body, or what a provider's own
    callback stands for).

    Raises:
        Problem: 422 naming every invalid field.
    """
    from sms_gateway.api.models import ReceiptBody

    try:
        body = ReceiptBody.model_validate(payload)
    except ValidationError as exc:
        raise validation_problem(field_errors(exc)) from exc
    return body.to_domain()
