"""The one error map: every domain error the API can meet, and the problem+json answer it
gets (RFC 9457; the ``type`` slugs are the sections of ``docs/problems.md``).

Both API functions install this table (:func:`sms_gateway.api.rest.make_resolver`), so a
domain error answers the same whichever function raised it; ``docs/openapi.json`` lists the
same statuses and types per route. A domain error's message becomes ``detail`` (it is written
for clients); anything not in the table is a 500 whose detail says nothing (the stack goes to
the log).

Cold start: the table is built on a function's first request; it imports the domain errors
(no SQL, no boto3 beyond botocore's exception types, which the AWS clients load anyway).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sms_gateway.api.problems import FieldError, Problem, validation_problem

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True, slots=True)
class ProblemKind:
    """One row of the error map: the answer's ``status``, ``slug`` (problem type), ``title``,
    the ``detail`` used when the error carries no message, and extra ``headers``."""

    status: int
    slug: str
    title: str
    detail: str
    headers: dict[str, str] = field(default_factory=dict)

    def problem(self, detail: str | None = None) -> Problem:
        """This kind of problem with ``detail`` (or the default one)."""
        return Problem(
            self.status, self.slug, self.title, detail or self.detail, headers=dict(self.headers)
        )


# Every problem type the API answers with, by slug (docs/problems.md has a section for each).
KINDS: dict[str, ProblemKind] = {
    kind.slug: kind
    for kind in (
        ProblemKind(422, "validation-error", "Request validation failed", "invalid fields"),
        ProblemKind(400, "malformed-json", "Malformed request body", "body is not JSON"),
        ProblemKind(401, "unauthorized", "Unauthorized", "no tenant identity"),
        ProblemKind(
            422,
            "idempotency-key-reused",
            "Idempotency-Key reused",
            "this Idempotency-Key was already used with a different request body",
        ),
        ProblemKind(
            409,
            "idempotency-key-in-flight",
            "Request in progress",
            "a request with this Idempotency-Key is still being processed",
            {"Retry-After": "1"},
        ),
        ProblemKind(
            403,
            "api-key-not-active",
            "API key not active",
            "this API key belongs to no tenant, or it was revoked",
        ),
        ProblemKind(404, "message-not-found", "Message not found", "no message with that id"),
        ProblemKind(
            409,
            "receipt-without-attempt",
            "No attempt to report on",
            "the message has no attempt sent or in flight",
        ),
        ProblemKind(
            409,
            "message-not-cancelable",
            "Message can no longer be canceled",
            "only a queued message can be canceled",
        ),
        ProblemKind(
            401,
            "receipt-signature-invalid",
            "Receipt signature invalid",
            "the receipt's signature is missing or wrong",
        ),
        ProblemKind(
            503,
            "dependency-unavailable",
            "Service temporarily unavailable",
            "a dependency of the gateway is unavailable; retry with the same Idempotency-Key",
            {"Retry-After": "5"},
        ),
        ProblemKind(
            503,
            "storage-unavailable",
            "Service temporarily unavailable",
            "the message store is unavailable",
            {"Retry-After": "5"},
        ),
        ProblemKind(404, "not-found", "Not found", "no such route"),
        ProblemKind(500, "internal-error", "Internal error", "an unexpected error occurred"),
    )
}


def _invalid_field(exc: Exception) -> Problem:
    from sms_gateway.domain.errors import InvalidField

    assert isinstance(exc, InvalidField)
    return validation_problem([FieldError(exc.field, exc.message)])


def _batch_not_queued(exc: Exception) -> Problem:
    kind = KINDS["dependency-unavailable"]
    return Problem(kind.status, kind.slug, kind.title, str(exc), headers={"Retry-After": "2"})


def error_map() -> dict[type[Exception], Callable[[Exception], Problem]]:
    """Domain error type -> its answer (most specific types are looked up first, along the
    exception's MRO, by Powertools' resolver)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from sms_gateway.domain import errors
    from sms_gateway.providers.secrets import SecretUnavailable
    from sms_gateway.services.bulk import BatchNotQueued, BatchRefused
    from sms_gateway.storage.errors import StorageUnavailable

    def kind(slug: str) -> Callable[[Exception], Problem]:
        return lambda exc: KINDS[slug].problem(str(exc))

    return {
        errors.IdempotencyKeyReused: kind("idempotency-key-reused"),
        errors.IdempotencyInProgress: kind("idempotency-key-in-flight"),
        errors.MessageNotFound: kind("message-not-found"),
        errors.ApiKeyNotActive: kind("api-key-not-active"),
        errors.ReceiptConflict: kind("receipt-without-attempt"),
        errors.MessageNotCancelable: kind("message-not-cancelable"),
        errors.InvalidField: _invalid_field,
        # Some messages of a bulk request are queued, some are not: not a 202 for them.
        BatchNotQueued: _batch_not_queued,
        # SQS refused an entry as malformed: a bug of ours, a retry would fail again.
        BatchRefused: lambda exc: KINDS["internal-error"].problem(str(exc)),
        StorageUnavailable: lambda exc: KINDS["storage-unavailable"].problem(),
        # A provider's secret (a Twilio callback's auth token) cannot be read now.
        SecretUnavailable: lambda exc: KINDS["dependency-unavailable"].problem(
            "a provider secret cannot be read now"
        ),
        ClientError: lambda exc: KINDS["dependency-unavailable"].problem(),
        BotoCoreError: lambda exc: KINDS["dependency-unavailable"].problem(),
    }
